"""The Train page's ready-made choices and what the page says of them.

`READY_CHOICES` maps each choice to the nets it trains (TrainConfig field overrides; more than one
net train together as a lockstep group); `CHOICE_NOTES` says what a choice reproduces where
that needs saying; `missing_device` says why this machine cannot train a choice. They live
here, not in the page, so that tests and benchmarks queue exactly what the page offers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from resnet_core.common.device import resolve_device
from resnet_core.common.errors import ConfigError
from resnet_core.training.notebooks import NOTEBOOK_NOTES, NOTEBOOK_RECIPES
from resnet_core.training.speedruns import SPEEDRUNS, Speedrun

__all__ = [
    "READY_CHOICES",
    "CHOICE_NOTES",
    "DEGRADATION_LIVE",
    "DEEPER_PLAIN",
    "SHALLOW_PAIR",
    "missing_device",
    "speedrun_note",
]


# Ready-made choices for the Train page: name -> the nets it trains (TrainConfig field
# overrides); more than one net train together as a lockstep group.
_SIDE_BY_SIDE = {"epochs": 2, "subset": 10_000, "batch_size": 128, "grad_norm_every": 5}
# The degradation demos (benchmarks/time_to_gap.py measures them; RESULTS.md has the table):
# grad_flow56's CPU recipe (lr 0.1 diverged) for 2 epochs, at a peak lr of 0.03: at 0.05
# ResNet-56's loss spiked at the end of the warm-up (to 3.8-6.7 on two of three seeds).
_DEGRADATION_LIVE = {
    "epochs": 2,
    "subset": 10_000,
    "batch_size": 128,
    "lr": 0.03,
    "schedule": "cosine",
    "warmup": 0.2,
    "grad_norm_every": 10,
}
DEGRADATION_LIVE = "Degradation live: plain-56 vs ResNet-56"
DEEPER_PLAIN = "Deeper plain nets are worse: plain-20 vs plain-56 vs ResNet-56"
SHALLOW_PAIR = "plain-20 vs ResNet-20 side by side: at 20 layers skips barely matter yet"
READY_CHOICES: dict[str, list[dict[str, Any]]] = {
    "Quick CPU demo: ResNet-20 on 10,000 images, 1 epoch": [
        {"model": "resnet20", "epochs": 1, "subset": 10_000, "batch_size": 128},
    ],
    DEGRADATION_LIVE: [
        {"model": "plain56", **_DEGRADATION_LIVE},
        {"model": "resnet56", **_DEGRADATION_LIVE},
    ],
    DEEPER_PLAIN: [
        {"model": "plain20", **_DEGRADATION_LIVE},
        {"model": "plain56", **_DEGRADATION_LIVE},
        {"model": "resnet56", **_DEGRADATION_LIVE},
    ],
    SHALLOW_PAIR: [
        {"model": "plain20", **_SIDE_BY_SIDE},
        {"model": "resnet20", **_SIDE_BY_SIDE},
    ],
    **{speedrun.label(): [speedrun.fields()] for speedrun in SPEEDRUNS.values()},
    **NOTEBOOK_RECIPES,
}


def _setting(name: str, value: Any) -> str:
    """A setting as a note shows it: "label smoothing 0.0", "tta off"."""
    shown = ("on" if value else "off") if isinstance(value, bool) else value
    return f"{name.replace('_', ' ')} {shown}"


def speedrun_note(speedrun: Speedrun) -> str:
    """What a speedrun choice is made for and of: each ingredient, why it is there, and the
    settings that take it out."""
    config = speedrun.train_config()
    parts = [
        f"**{item.name}**: {item.why} (off: {', '.join(_setting(*kv) for kv in item.off.items())})"
        for item in speedrun.ingredients
    ]
    m = speedrun.measured
    measured = (
        "not yet measured"
        if m is None
        else f"measured: {m.accuracy:.1%} in {m.train_seconds:.0f} s on {m.hardware}"
    )
    return (
        f"Made for a CUDA GPU: {speedrun.title}, {config.epochs} epochs at batch "
        f"{config.batch_size}, {config.precision}, a recipe for {speedrun.target_text} test accuracy "
        f"({measured}). Ingredients: " + "; ".join(parts) + "."
    )


# What a ready-made choice reproduces, for the ones that need saying.
CHOICE_NOTES: dict[str, str] = {
    DEGRADATION_LIVE: (
        "Measured on a 2-core CPU (benchmarks/time_to_gap.py, three seeds): ResNet-56's "
        "training loss fell 0.2 below plain-56's for good after 36 to 47 s (median 46 s), "
        "at steps 43 to 56; the page says when and marks the step."
    ),
    SHALLOW_PAIR: (
        "At 20 layers a plain net trains about as well as a ResNet (He et al. 2016, Fig. 6): "
        "the curves stay close, and early on the plain one is often ahead. For the gap, "
        "take the 56-layer pair."
    ),
    **{speedrun.label(): speedrun_note(speedrun) for speedrun in SPEEDRUNS.values()},
    **NOTEBOOK_NOTES,
}


def missing_device(configs: Sequence[dict[str, Any]]) -> str | None:
    """Why this machine cannot train `configs` on the device they ask for, in words for the
    Train page; None when it can."""
    for config in configs:
        device = str(config.get("device") or "auto")
        try:
            resolve_device(device)
        except ConfigError:
            kind = "a CUDA GPU" if device.startswith("cuda") else f"device {device}"
            return (
                f"This choice trains on {kind}, which this machine does not have: Start is "
                "refused as it stands. To try it here anyway, set device to cpu or auto "
                "(it takes far longer than on a GPU)."
            )
    return None
