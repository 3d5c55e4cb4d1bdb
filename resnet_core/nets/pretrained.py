"""torchvision's ImageNet weights for the `-imagenet` presets.

The presets `resnet18-imagenet` ... `resnet152-imagenet` are torchvision's ResNet-18 ... 152
(He et al. 2016, https://arxiv.org/abs/1512.03385, Table 1, with the stride on the
bottleneck's 3x3 conv as torchvision's v1.5), and our modules carry torchvision's names
(conv1, bn1, layer1.0.conv1, ..., layer2.0.downsample.0/1, fc), so a torchvision state dict
maps onto ours key for key. `to_our_keys` only drops the `module.` prefix that
`nn.DataParallel` adds.

Two sources: a state dict file on disk (read with `weights_only=True`, never executed), or
torchvision's own weight enum and cache (`~/.cache/torch/hub/checkpoints`), which downloads
only when asked to. Every problem a user can cause is one `WeightsError` line.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from resnet_core.common.errors import first_line
from resnet_core.common.weights import SavedFileError, load_saved
from resnet_core.nets.model import build_model
from resnet_core.nets.spec import PRESETS, ArchSpec, spec_label

__all__ = [
    "IMAGENET",
    "WeightsError",
    "torchvision_arch",
    "to_our_keys",
    "check_state_dict",
    "read_weights_file",
    "torchvision_cache_path",
    "torchvision_download_mb",
    "torchvision_weights",
    "load_weights",
    "pretrained_model",
]

IMAGENET = "imagenet"  # the source name for torchvision's weights (download or cache)
MAX_LISTED = 4  # keys named in a mismatch message


class WeightsError(ValueError):
    """Weights that cannot be used for a net: the message says which and why, in one line."""


def torchvision_arch(name_or_spec: str | ArchSpec) -> str:
    """'resnet50' for `resnet50-imagenet` (or its spec); WeightsError for any other net."""
    label = spec_label(name_or_spec)
    if label.endswith("-imagenet") and label in PRESETS:
        return label.removesuffix("-imagenet")
    choices = ", ".join(name for name in PRESETS if name.endswith("-imagenet"))
    raise WeightsError(f"ImageNet weights exist only for the presets {choices}; not for {label}")


def to_our_keys(state: Mapping[str, Any]) -> dict[str, Any]:
    """A torchvision ResNet state dict under our module names (the same, less `module.`)."""
    return {key.removeprefix("module."): value for key, value in state.items()}


def _listed(keys: list[str]) -> str:
    shown = ", ".join(keys[:MAX_LISTED])
    return shown + (f" and {len(keys) - MAX_LISTED} more" if len(keys) > MAX_LISTED else "")


WRAPPERS = ("state_dict", "model")  # where training scripts (and our checkpoints) nest it


def _unwrap(state: Any) -> Any:
    """The state dict a training checkpoint nests under "state_dict" or "model", else `state`."""
    if isinstance(state, Mapping):
        for key in WRAPPERS:
            if isinstance(state.get(key), Mapping):
                return state[key]
    return state


def check_state_dict(model: nn.Module, state: Any, where: str) -> dict[str, torch.Tensor]:
    """`state` under our keys if it fits `model` exactly, else one WeightsError naming the
    missing and unexpected keys or the first shape mismatch. A state dict nested under
    "state_dict" or "model" (a training checkpoint) is taken from there."""
    state = _unwrap(state)
    if not isinstance(state, Mapping) or not all(isinstance(k, str) for k in state):
        raise WeightsError(f"{where}: not a state dict (a {type(state).__name__})")
    state = to_our_keys(state)
    not_tensors = [key for key, value in state.items() if not isinstance(value, torch.Tensor)]
    if not_tensors:
        raise WeightsError(f"{where}: not a state dict ({_listed(not_tensors)} hold no tensor)")
    ours = model.state_dict()
    label = spec_label(model.spec)
    # Files saved before BatchNorm counted its batches lack num_batches_tracked; torch fills it.
    missing = [k for k in ours if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [key for key in state if key not in ours]
    if missing or unexpected:
        parts = [f"missing {_listed(missing)}" if missing else ""]
        parts.append(f"unexpected {_listed(unexpected)}" if unexpected else "")
        raise WeightsError(f"{where}: not weights for {label} ({'; '.join(p for p in parts if p)})")
    for key, value in ours.items():
        if key in state and state[key].shape != value.shape:
            raise WeightsError(
                f"{where}: not weights for {label} ({key} has shape {list(state[key].shape)}, "
                f"{label} needs {list(value.shape)})"
            )
    return state


def read_weights_file(path: str | os.PathLike) -> Any:
    """What a weights file holds, read with weights_only=True (`resnet_core.common.weights`);
    problems are a WeightsError."""
    path = Path(path)
    try:
        return load_saved(path)
    except SavedFileError as error:
        if error.kind == "folder":
            raise WeightsError(
                f"{path}: a folder; give the path of a .pth state dict file"
            ) from None
        if error.kind == "missing":
            raise WeightsError(
                f"{path}: no such file; give the path of a .pth state dict file"
            ) from None
        if error.kind == "objects":
            named = f" ({error.detail})" if error.detail else ""
            raise WeightsError(
                f"{path}: holds a Python object{named}, not only tensors, so it is never "
                "loaded; save the net's state_dict() instead"
            ) from None
        if error.kind == "not_file":
            raise WeightsError(f"{path}: {error.REASONS['not_file']}") from None
        raise WeightsError(
            f"{path}: not a readable weights file ({error.REASONS[error.kind]})"
        ) from None


def _weights_enum(arch: str) -> Any:
    """torchvision's default ImageNet weights of `arch` (imported here: only this needs it)."""
    from torchvision.models import get_model_weights

    return get_model_weights(arch).DEFAULT


def torchvision_cache_path(arch: str) -> Path:
    """Where torchvision keeps the downloaded weights of `arch` (resnet18, ...)."""
    url = _weights_enum(arch).url
    return Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]


def torchvision_download_mb(arch: str) -> float | None:
    """Megabytes of torchvision's weights file for `arch`, as its enum records (None if not)."""
    size = _weights_enum(arch).meta.get("_file_size")
    return float(size) if isinstance(size, (int, float)) else None


def torchvision_weights(arch: str, download: bool = False, progress: bool = False) -> Any:
    """torchvision's ImageNet state dict of `arch` from its cache; with `download`, fetched
    first if the cache lacks it (needs internet). Problems are a WeightsError."""
    cached = torchvision_cache_path(arch)
    if cached.is_file():
        return read_weights_file(cached)
    if not download:
        raise WeightsError(
            f"torchvision's {arch} ImageNet weights are not downloaded yet ({cached} is missing); "
            "download them first (needs internet) or give a weights file"
        )
    url = _weights_enum(arch).url
    match = torch.hub.HASH_REGEX.search(cached.name)  # torchvision's names carry a hash prefix
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(url, str(cached), match and match.group(1), progress)
    except Exception as error:  # noqa: BLE001 - offline, proxy, disk full: one line
        raise WeightsError(
            f"could not download torchvision's {arch} weights from {url} "
            f"({type(error).__name__}: {first_line(error)}); are you offline? "
            "Download the file elsewhere and give its path instead"
        ) from None
    return read_weights_file(cached)


def load_weights(
    model: nn.Module, source: str | os.PathLike, download: bool = False, progress: bool = False
) -> nn.Module:
    """Load ImageNet weights into an `-imagenet` preset's model, in place, and return it.

    Args:
        model: a model `build_model` made from an `-imagenet` preset.
        source: "imagenet" (torchvision's weights) or the path of a torchvision-style
            state dict file (`.pth`).
        download: for "imagenet", fetch the weights if torchvision's cache lacks them.
        progress: show torchvision's download progress bar (on stderr).

    Raises:
        WeightsError: not an `-imagenet` preset, unreadable file, or weights that do not fit
            (the message names the missing/unexpected keys or the shape mismatch).
    """
    arch = torchvision_arch(model.spec)
    if str(source) == IMAGENET:
        state, where = torchvision_weights(arch, download, progress), f"torchvision {arch}"
    else:
        state, where = read_weights_file(source), str(source)
    model.load_state_dict(check_state_dict(model, state, where))
    return model


def pretrained_model(
    name_or_spec: str | ArchSpec, source: str | os.PathLike, download: bool = False
) -> nn.Module:
    """An `-imagenet` preset carrying ImageNet weights from `source`, in eval mode."""
    torchvision_arch(name_or_spec)  # refuse other nets before building anything
    return load_weights(build_model(name_or_spec), source, download).eval()
