"""Lesion studies: delete blocks of a trained net at test time and measure what is left.

Veit, Wilber and Belongie 2016, "Residual networks behave like ensembles of relatively
shallow networks", https://arxiv.org/abs/1605.06431: deleting any one block of a trained
ResNet barely changes its test error (Fig. 3), and deleting k blocks at random makes it
worse smoothly, not all at once (Fig. 5a). A plain net has a single path through its
layers, so removing one layer breaks it. The paper reads this as a residual net being an
ensemble of many paths of different lengths, most of them short.

What "delete" means here:
- a residual block keeps its join and loses its residual branch: it returns
  relu(shortcut(x)). For identity and zero-pad shortcuts that is the shortcut output itself
  (x has just left a ReLU, so it is non-negative); a projection shortcut keeps its 1x1 conv
  and BN, as in the paper's ImageNet nets.
- a plain block (residual=False) becomes the identity where its input and output shapes
  match; at a stage transition (stride 2, more channels) it cannot be deleted.

Nothing in the model is edited: `lesioned` swaps the chosen blocks' `forward` for the
duration of a `with` block and puts the originals back.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn

from resnet_core.analysis.inspect import predict
from resnet_core.nets.model import ResidualBlock, ResNet, ZeroPadShortcut

__all__ = [
    "DEFAULT_IMAGES",
    "DEFAULT_DRAWS",
    "MAX_DRAWS",
    "LesionError",
    "LesionUnit",
    "Progress",
    "lesion_units",
    "lesioned",
    "count_correct",
    "random_draws",
    "single_lesions",
    "random_lesions",
    "lesion_study",
]

DEFAULT_IMAGES = 2000  # test images per evaluation: 200 of each class
DEFAULT_DRAWS = 5  # random sets of blocks per k
MAX_DRAWS = 100  # more adds nothing to the range of a curve, and costs hours on a CPU

# Called as on_progress(done, total, sentence) after each evaluation of the net.
Progress = Callable[[int, int, str], None]


class LesionError(ValueError):
    """A lesion that cannot be made: a net without blocks, an unknown or undeletable block."""


@dataclass(frozen=True)
class LesionUnit:
    """One block of a ResNet, as a lesion study sees it.

    Attributes:
        name: "stage.block", both counted from 1 ("2.1" is the first block of stage 2).
        path: the module's name in the model, e.g. "layer2.0".
        stage: stage number, from 1.
        position: block number within its stage, from 1.
        deletable: whether the block can be removed without changing any shape.
        replaced_by: what stands in for it: "identity", "zero-pad shortcut",
            "projection shortcut", or "cannot delete".
    """

    name: str
    path: str
    stage: int
    position: int
    deletable: bool
    replaced_by: str


def _channels(block: ResidualBlock) -> tuple[int, int]:
    """(input channels, output channels) of a basic or bottleneck block."""
    last = block.conv3 if hasattr(block, "conv3") else block.conv2
    return block.conv1.in_channels, last.out_channels


def _unit(block: ResidualBlock, stage: int, position: int, path: str) -> LesionUnit:
    """How one block can be deleted: through its shortcut, as identity, or not at all."""
    name = f"{stage}.{position}"
    if block.residual:
        if block.downsample is None:
            kind = "identity"
        elif isinstance(block.downsample, ZeroPadShortcut):
            kind = "zero-pad shortcut"
        else:
            kind = "projection shortcut"
        return LesionUnit(name, path, stage, position, True, kind)
    channels_in, channels_out = _channels(block)
    same_shape = block.stride == 1 and channels_in == channels_out
    kind = "identity" if same_shape else "cannot delete"
    return LesionUnit(name, path, stage, position, same_shape, kind)


def lesion_units(model: nn.Module) -> list[LesionUnit]:
    """Every block of a ResNet (residual or plain) in forward order.

    Raises:
        LesionError: the model is not a ResNet (a plain conv stack has no blocks).
    """
    if not isinstance(model, ResNet):
        raise LesionError(
            f"{type(model).__name__} has no ResNet blocks to delete; a lesion study needs a "
            "residual or plain ResNet (e.g. resnet20 or plain20)"
        )
    units = []
    for stage, (stage_name, blocks) in enumerate(zip(model.stage_names, model.stages()), 1):
        for position, block in enumerate(blocks, 1):
            units.append(_unit(block, stage, position, f"{stage_name}.{position - 1}"))
    return units


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


@contextmanager
def lesioned(model: nn.Module, names: Iterable[str]) -> Iterator[nn.Module]:
    """Delete the named blocks (e.g. ["1.2", "3.1"]) for the `with` block, then restore them.

    A residual block keeps its skip alone (`ResidualBlock.dropped`: its addition returns the
    skip, so every block kind is deleted the way it adds); a plain block becomes the identity
    (an instance attribute `forward` that shadows the class's method). Leaving the block
    undoes both, so the model afterwards is exactly the model before.

    Raises:
        LesionError: an unknown block name, or a block that cannot be deleted.
    """
    units = {unit.name: unit for unit in lesion_units(model)}
    chosen = list(dict.fromkeys(names))
    for name in chosen:
        if name not in units:
            raise LesionError(f"no block {name!r}; this net has {', '.join(units)}")
        if not units[name].deletable:
            raise LesionError(f"block {name} changes shape and cannot be deleted")
    modules = dict(model.named_modules())
    saved: list[tuple[nn.Module, object]] = []
    try:
        for name in chosen:
            block = modules[units[name].path]
            saved.append((block, block.__dict__.get("forward")))
            if block.residual:
                block.dropped = True
            else:
                block.forward = _identity
        yield model
    finally:
        for block, previous in reversed(saved):
            block.__dict__.pop("dropped", None)
            if previous is None:
                block.__dict__.pop("forward", None)
            else:
                block.forward = previous


def count_correct(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    mean: Sequence[float],
    std: Sequence[float],
    batch_size: int = 500,
    device: str | torch.device = "cpu",
) -> int:
    """How many of the uint8 images (N, C, H, W) the model classifies right, in eval mode."""
    probs = predict(model, images, mean, std, batch_size, device)  # (N, num_classes)
    return int((probs.argmax(1) == labels.cpu()).sum())


def random_draws(
    units: Sequence[LesionUnit], k: int, draws: int, seed: int
) -> list[tuple[str, ...]]:
    """`draws` random sets of k deletable blocks, each in forward order.

    The draws for one k depend only on (seed, k), so asking for fewer k values, or in
    another order, gives the same sets.
    """
    names = [unit.name for unit in units if unit.deletable]
    if not 0 <= k <= len(names):
        raise LesionError(f"k: {k} must be between 0 and {len(names)} (the deletable blocks)")
    if not 0 <= draws <= MAX_DRAWS:
        raise LesionError(f"draws: {draws} must be between 0 and {MAX_DRAWS}")
    rng = np.random.default_rng([seed, k])
    return [
        tuple(names[i] for i in sorted(rng.choice(len(names), size=k, replace=False)))
        for _ in range(draws)
    ]


@dataclass
class _Evaluator:
    """Counts correct answers of the model with some blocks deleted, once per distinct set."""

    model: nn.Module
    images: torch.Tensor
    labels: torch.Tensor
    mean: Sequence[float]
    std: Sequence[float]
    batch_size: int
    device: str | torch.device

    def __post_init__(self) -> None:
        self.seen: dict[frozenset[str], int] = {}

    def correct(self, names: Sequence[str]) -> int:
        key = frozenset(names)
        if key not in self.seen:
            with lesioned(self.model, names):
                self.seen[key] = count_correct(
                    self.model,
                    self.images,
                    self.labels,
                    self.mean,
                    self.std,
                    self.batch_size,
                    self.device,
                )
        return self.seen[key]


def _single_rows(
    evaluator: _Evaluator, units: list[LesionUnit], step: Callable[[str], None]
) -> pd.DataFrame:
    """One row per block: accuracy with that block alone deleted (NaN where it cannot be)."""
    total = len(evaluator.labels)
    intact = evaluator.correct(())
    rows = []
    for unit in units:
        correct = evaluator.correct((unit.name,)) if unit.deletable else None
        if unit.deletable:
            step(f"deleted block {unit.name} alone")
        rows.append(
            {
                "block": unit.name,
                "stage": unit.stage,
                "position": unit.position,
                "deletable": unit.deletable,
                "replaced_by": unit.replaced_by,
                "correct": correct,
                "images": total,
                "accuracy": correct / total if correct is not None else float("nan"),
                "intact": intact / total,
            }
        )
    frame = pd.DataFrame(rows)
    frame["correct"] = frame["correct"].astype("Int64")
    frame["drop"] = (100 * (frame["intact"] - frame["accuracy"])).round(4)  # percentage points
    return frame


def _random_rows(
    evaluator: _Evaluator,
    units: list[LesionUnit],
    draws: int,
    seed: int,
    ks: Sequence[int],
    step: Callable[[str], None],
) -> pd.DataFrame:
    """One row per (k, draw): accuracy with k random deletable blocks deleted."""
    total = len(evaluator.labels)
    rows = [{"k": 0, "draw": 0, "blocks": "", "correct": evaluator.correct(()), "images": total}]
    for k in ks:
        for draw, names in enumerate(random_draws(units, k, draws, seed)):
            correct = evaluator.correct(names)
            step(f"deleted {k} random blocks (draw {draw + 1} of {draws})")
            rows.append(
                {
                    "k": k,
                    "draw": draw,
                    "blocks": " ".join(names),
                    "correct": correct,
                    "images": total,
                }
            )
    frame = pd.DataFrame(rows)
    frame["accuracy"] = frame["correct"] / frame["images"]
    return frame


def _evaluator(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    mean: Sequence[float],
    std: Sequence[float],
    batch_size: int,
    device: str | torch.device,
) -> _Evaluator:
    if len(images) != len(labels) or len(images) == 0:
        raise LesionError(f"images ({len(images)}) and labels ({len(labels)}): need N > 0 of each")
    return _Evaluator(model, images, labels, mean, std, batch_size, device)


def _stepper(total: int, on_progress: Progress | None) -> Callable[[str], None]:
    """A counter that reports each finished evaluation to `on_progress`."""
    done = [0]

    def step(sentence: str) -> None:
        done[0] += 1
        if on_progress is not None:
            on_progress(done[0], total, sentence)

    return step


def single_lesions(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    mean: Sequence[float],
    std: Sequence[float],
    batch_size: int = 500,
    device: str | torch.device = "cpu",
    on_progress: Progress | None = None,
) -> pd.DataFrame:
    """Test accuracy with each block deleted on its own (Veit et al. 2016, Fig. 3).

    Args:
        model: a trained ResNet (residual or plain), already on `device`.
        images: uint8 (N, C, H, W) test images; labels: int64 (N,).
        mean, std: the normalisation the net was trained with (fractions of 255).
        batch_size: images per forward pass.
        device: where to run.
        on_progress: called after each deletion as (done, total, sentence).

    Returns:
        One row per block: block, stage, position, deletable, replaced_by, correct (NA
        where the block cannot be deleted), images, accuracy (fraction), intact
        (fraction, nothing deleted) and drop (percentage points lost).
    """
    units = lesion_units(model)
    evaluator = _evaluator(model, images, labels, mean, std, batch_size, device)
    step = _stepper(sum(unit.deletable for unit in units), on_progress)
    return _single_rows(evaluator, units, step)


def random_lesions(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    mean: Sequence[float],
    std: Sequence[float],
    draws: int = 5,
    seed: int = 0,
    ks: Sequence[int] | None = None,
    batch_size: int = 500,
    device: str | torch.device = "cpu",
    on_progress: Progress | None = None,
) -> pd.DataFrame:
    """Test accuracy with k randomly chosen deletable blocks deleted (Veit et al. 2016,
    Fig. 5a), `draws` sets per k, drawn by `random_draws` from `seed`.

    Args:
        ks: the numbers of blocks to delete; default 1 .. every deletable block.
        Others as in `single_lesions`.

    Returns:
        One row per (k, draw), plus k=0 (nothing deleted): k, draw, blocks (space-separated
        names), correct, images, accuracy (fraction).
    """
    units = lesion_units(model)
    ks = _ks(units, ks)
    evaluator = _evaluator(model, images, labels, mean, std, batch_size, device)
    step = _stepper(len(ks) * draws, on_progress)
    return _random_rows(evaluator, units, draws, seed, ks, step)


def _ks(units: Sequence[LesionUnit], ks: Sequence[int] | None) -> list[int]:
    deletable = sum(unit.deletable for unit in units)
    return list(range(1, deletable + 1)) if ks is None else [int(k) for k in ks]


def lesion_study(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    mean: Sequence[float],
    std: Sequence[float],
    draws: int = 5,
    seed: int = 0,
    ks: Sequence[int] | None = None,
    batch_size: int = 500,
    device: str | torch.device = "cpu",
    on_progress: Progress | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """`single_lesions` and `random_lesions` together, sharing evaluations (the intact net,
    and single deletions that a k=1 draw repeats) and one progress count.

    With draws=0 only single deletions are measured (the random table holds k=0 only).
    """
    units = lesion_units(model)
    ks = _ks(units, ks) if draws > 0 else []
    evaluator = _evaluator(model, images, labels, mean, std, batch_size, device)
    step = _stepper(sum(unit.deletable for unit in units) + len(ks) * draws, on_progress)
    single = _single_rows(evaluator, units, step)
    return single, _random_rows(evaluator, units, draws, seed, ks, step)
