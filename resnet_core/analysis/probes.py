"""Probes that show why skip connections help: per-layer gradient norms and layer responses.

`gradient_norms` reads each layer's weight gradient after one backward pass (the quantity
behind the "vanishing/exploding gradient" story); `layer_responses` reproduces He et al.
2016, Fig. 7 (std of each BatchNorm output, https://arxiv.org/abs/1512.03385).
"""

from __future__ import annotations

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from resnet_core.common.modes import frozen_bn_stats, model_mode

__all__ = [
    "PROBE_IMAGES",
    "PROBE_SEED",
    "gradient_norms",
    "layer_responses",
    "parameterised_layers",
    "grad_norm_rows",
    "grad_ratio",
]

# The probe images: PROBE_IMAGES test images, the same number of each class, picked with
# PROBE_SEED (`resnet_core.analysis.sampling.stratified_indices`): one fixed batch on which
# trained nets' layer responses (Fig. 7) are measured. The pick is recorded as sample.json
# beside responses.csv, so that the pages that describe it and tests/test_fig7.py speak of
# the same images. (Not "the first N": an image-folder test set is sorted by class.)
PROBE_IMAGES = 500  # 50 of each CIFAR-10 class
PROBE_SEED = 0

_KINDS: tuple[tuple[type[nn.Module], str], ...] = (
    (nn.Conv2d, "conv"),
    (nn.BatchNorm2d, "bn"),
    (nn.Linear, "linear"),
)


def _kind(module: nn.Module) -> str | None:
    for cls, name in _KINDS:
        if isinstance(module, cls):
            return name
    return None


def parameterised_layers(model: nn.Module) -> list[tuple[str, str, nn.Module]]:
    """(path, kind, module) for every conv, BN and linear layer with a weight.

    Registration order; for every model `build_model` makes this is the forward order
    (tests check it).
    """
    layers = []
    for name, module in model.named_modules():
        kind = _kind(module)
        if kind is not None and getattr(module, "weight", None) is not None:
            layers.append((name, kind, module))
    return layers


def grad_norm_rows(model: nn.Module) -> list[dict]:
    """Rows of index/layer/kind/grad_norm/weight_norm from the gradients already in `p.grad`.

    Layers whose weight has no gradient get grad_norm NaN.
    """
    rows = []
    for index, (name, kind, module) in enumerate(parameterised_layers(model)):
        weight = module.weight
        grad = weight.grad
        rows.append(
            {
                "index": index,
                "layer": name,
                "kind": kind,
                "grad_norm": float(grad.detach().float().norm())
                if grad is not None
                else float("nan"),
                "weight_norm": float(weight.detach().float().norm()),
            }
        )
    return rows


def _device_of(model: nn.Module) -> torch.device:
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


def gradient_norms(
    model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, train_mode: bool = True
) -> pd.DataFrame:
    """Weight-gradient norm of every parameterised layer after one cross-entropy backward.

    Args:
        model: any network `build_model` makes (left with its gradients cleared afterwards).
        inputs: a batch (N, C, H, W); moved to the model's device.
        targets: class indices (N,).
        train_mode: BatchNorm uses batch statistics (True, as in training) or running ones.

    Returns:
        DataFrame with columns index, layer, kind ("conv" | "bn" | "linear"), grad_norm,
        weight_norm, one row per layer in forward order.
    """
    device = _device_of(model)
    inputs, targets = inputs.to(device), targets.to(device)
    model.zero_grad(set_to_none=True)
    with model_mode(model, train_mode), frozen_bn_stats(model), torch.enable_grad():
        loss = F.cross_entropy(model(inputs), targets)
        loss.backward()
    frame = pd.DataFrame(grad_norm_rows(model))
    model.zero_grad(set_to_none=True)
    return frame


def grad_ratio(frame: pd.DataFrame) -> float:
    """First conv's gradient norm over the last conv's (how much more the input end gets)."""
    convs = frame[frame["kind"] == "conv"]
    return float(convs["grad_norm"].iloc[0] / convs["grad_norm"].iloc[-1])


@torch.no_grad()
def layer_responses(
    model: nn.Module, inputs: torch.Tensor, train_mode: bool = False
) -> pd.DataFrame:
    """Standard deviation of every BatchNorm output (He et al. Fig. 7).

    Args:
        model: a network from `build_model`.
        inputs: a batch (N, C, H, W); moved to the model's device.
        train_mode: False (default, as in the paper: running statistics) or batch statistics.

    Returns:
        DataFrame with columns index, layer, std in forward order.
    """
    device = _device_of(model)
    rows: list[dict] = []
    handles = []

    def hook(name: str):
        def record(_module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
            rows.append({"layer": name, "std": float(output.detach().float().std())})

        return record

    for name, module in model.named_modules():
        if isinstance(module, nn.BatchNorm2d):
            handles.append(module.register_forward_hook(hook(name)))
    try:
        with model_mode(model, train_mode), frozen_bn_stats(model):
            model(inputs.to(device))
    finally:
        for handle in handles:
            handle.remove()
    frame = pd.DataFrame(rows, columns=["layer", "std"])
    frame.insert(0, "index", range(len(frame)))
    return frame
