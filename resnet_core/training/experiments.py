"""The lecture's experiments, defined as data and run with the ordinary training engine.

- degradation: deeper plain nets train worse, residual nets do not (He et al. 2016, Fig. 6,
  https://arxiv.org/abs/1512.03385).
- he2016: He et al.'s CIFAR-10 recipe (Sec. 4.2) on plain-20/32/44/56 and ResNet-20/32/44/
  56/110, for Table 6 and Fig. 6; he2016_b512 is the same schedule at batch 512 and lr 0.4.
- cnn_vs_resnet: the seed notebook's SimpleCNN (preset simple_cnn) against ResNet-18; the
  shipped results predate it and compare the small CNN baseline (preset small_cnn).
- weight_decay: weight decay 5e-4 vs 1e-4 and the train-test generalisation gap.

On a GPU, cnn_vs_resnet and weight_decay train every setting with seeds 0, 1 and 2 (labels
such as wd5e-4_seed1), so that a difference can be set against the seed-to-seed spread.

he2016 against He et al. Sec. 4.2 (batch 128, SGD lr 0.1, momentum 0.9, no Nesterov, weight
decay 1e-4, 4-pixel zero-padded crops and flips, lr / 10 at 32k and 48k iterations, stop at
64k, fp32; ResNet-110 at lr 0.01 until the training error is below 80 %), where it differs:
- iterations become epochs of our 50,000 training images: the loader drops the last partial
  batch, so 390 steps per epoch; lr / 10 after epochs 82 and 123 (31,980 and 47,970
  iterations), stop after 164 (63,960).
- He determined the 64k iterations on a 45k/5k train/val split; we train on all 50,000
  training images and report the 10,000 test images at the last epoch (no epoch picked on
  the test set). One run per net; Table 6 gives the best of 5.
- images are normalised per channel (mean and std), not by subtracting the per-pixel mean;
  weight decay applies to conv and linear weights, not to BatchNorm or biases.
- ResNet-110 trains at lr 0.01 for a fixed 400 iterations (0.625 % of training), not until
  its training error is below 80 %.
- fp32 as He, but on a GPU PyTorch runs the convolutions in TF32 (cuDNN's default).
- with `--jobs 9` every net trains in its own process, all on one GPU; He used two GPUs per net.
- he2016_b512 differs only in batch 512 and lr 0.4 (scaled linearly with the batch): the
  same 164 epochs in 97 steps each, ResNet-110's warm-up over the same share of training.
The runs keep one step event per epoch and no weights, so that the folders stay small.
- layer_responses: std of each BN output of the trained degradation nets (He et al. Fig. 7).

Every experiment writes ordinary run directories (as `python -m resnet_core train` does)
under one folder, plus `experiment.json` with the command, hardware, date, versions, wall
time and the recipe that produced the numbers. This module holds the experiments as data;
`experiment_runner` runs one, `responses` measures Fig. 7, `slimming` makes the runs fit to
ship and `experiment_results` reads a finished experiment's folder.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "EXPERIMENTS",
    "Experiment",
    "RunPlan",
    "ExperimentError",
    "list_experiments",
    "get_experiment",
    "member_configs",
    "shipped_root",
    "HE2016",
    "he_epochs",
    "setting_of",
]


def _find_shipped_root() -> Path:
    """checkpoints/demo beside app.py: in an installed package resnet_core/_app/ (see
    pyproject.toml), in a checkout the repository root."""
    package = Path(__file__).resolve().parents[1]
    installed = package / "_app" / "checkpoints" / "demo"
    return installed if installed.is_dir() else package.parent / "checkpoints" / "demo"


SHIPPED_ROOT = _find_shipped_root()


class ExperimentError(ValueError):
    """Unknown experiment, or results that are missing or incomplete."""


@dataclass(frozen=True)
class RunPlan:
    """One training run of an experiment: a label, a model and config changes."""

    label: str
    model: str
    overrides: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Experiment:
    """An experiment: runs that share a recipe, and the recipes for GPU and CPU.

    `gpu_recipe` is the full recipe (full CIFAR-10); `cpu_recipe` is the reduced one used
    where no GPU is present. Both are TrainConfig fields.
    """

    name: str
    title: str
    claim: str
    runs: tuple[RunPlan, ...]
    gpu_recipe: dict[str, Any]
    cpu_recipe: dict[str, Any]
    analysis_of: str | None = None  # reuses another experiment's trained runs
    gpu_seeds: tuple[int, ...] = (0,)  # the GPU recipe trains every run once per seed
    ship_weights: bool = True  # False: the run folders keep their metrics only


_SGD = {"optimizer": "sgd", "momentum": 0.9, "nesterov": True, "label_smoothing": 0.0}
_DEGRADATION_RUNS = (
    RunPlan("plain20", "plain20"),
    RunPlan("plain56", "plain56"),
    RunPlan("resnet20", "resnet20"),
    RunPlan("resnet56", "resnet56"),
)

# The block variants that followed ResNet: one depth, every block kind, the plain twins.
_VARIANT_RUNS = tuple(
    RunPlan(name, name)
    for name in (
        "plain56",
        "resnet56",
        "preact-resnet56",
        "resnet56-zeroinit",
        "resnet56-skipinit",
        "resnet56-fixup",
        "plain56-nonorm",
    )
)

# He et al.'s CIFAR recipe, shortened (degradation); the gradient-norm runs add logging.
_HE_GPU = {
    **_SGD,
    "epochs": 16,
    "batch_size": 128,
    "lr": 0.1,
    "weight_decay": 1e-4,
    "schedule": "cosine",
    "warmup": 0.05,
    "precision": "bf16",
    "channels_last": True,
}
_HE_CPU = {
    **_SGD,
    "epochs": 4,
    "batch_size": 128,
    "lr": 0.1,
    "weight_decay": 1e-4,
    "schedule": "cosine",
    "warmup": 0.05,
    "subset": 10_000,
    "precision": "auto",
}
# Gradient norms over training: both pairs (20 and 56 layers) train on the same recipe.
_GRAD_FLOW_RECIPES = {
    "gpu_recipe": {**_HE_GPU, "grad_norm_every": 20},
    "cpu_recipe": {**_HE_CPU, "epochs": 3, "grad_norm_every": 10},
}

# He et al. 2016, Sec. 4.2: batch 128, lr 0.1 divided by 10 at 32k and 48k iterations, stop
# at 64k; ResNet-110 starts at lr 0.01 until the training error is below 80 % (about 400
# iterations). He chose the 64k on a 45k/5k train/val split; we train on all 50k images.
HE2016 = {
    "batch_size": 128,
    "lr": 0.1,
    "drops": (32_000, 48_000),
    "stop": 64_000,
    "warmup_iterations": 400,
    "warmup_lr_factor": 0.1,
}
TRAIN_IMAGES = 50_000


def he_epochs(iterations: int, batch_size: int = HE2016["batch_size"]) -> int:
    """The whole epochs of our 50k training images (last partial batch dropped) nearest to
    `iterations` of He's batch of 128."""
    return round(iterations / (TRAIN_IMAGES // batch_size))


def _he2016_recipe(batch_size: int, subset: int | None = None) -> dict[str, Any]:
    """He's recipe in epochs, at `batch_size` with the learning rate scaled linearly."""
    steps_per_epoch = (subset or TRAIN_IMAGES) // batch_size
    return {
        "optimizer": "sgd",
        "momentum": 0.9,
        "nesterov": False,
        "weight_decay": 1e-4,
        "label_smoothing": 0.0,
        "batch_size": batch_size,
        "lr": HE2016["lr"] * batch_size / HE2016["batch_size"],
        "schedule": "step",
        "milestones": [he_epochs(drop) for drop in HE2016["drops"]],
        "gamma": 0.1,
        "epochs": he_epochs(HE2016["stop"]),
        "warmup": 0.0,
        "augment": True,
        "crop_pad": "zeros",
        "precision": "fp32",
        "channels_last": True,
        "log_every": steps_per_epoch,  # one step event per epoch: small files, no sync
    }


def _he2016_runs() -> tuple[RunPlan, ...]:
    """plain-20..56 and ResNet-20..110; ResNet-110 warms up at a tenth of the rate."""
    warmup = HE2016["warmup_iterations"] / HE2016["stop"]  # a fraction, at any batch size
    slow_start = {"warmup": warmup, "warmup_lr_factor": HE2016["warmup_lr_factor"]}
    plain = tuple(RunPlan(f"plain{d}", f"plain{d}") for d in (20, 32, 44, 56))
    residual = tuple(RunPlan(f"resnet{d}", f"resnet{d}") for d in (20, 32, 44, 56))
    return (*plain, *residual, RunPlan("resnet110", "resnet110", slow_start))


_HE2016_CPU = {
    **_he2016_recipe(128, subset=2_000),
    "epochs": 2,
    "milestones": [1],
    "subset": 2_000,
    "precision": "auto",
}


def _he2016_experiment(name: str, batch_size: int, what: str) -> Experiment:
    """The reproduction at `batch_size` (the learning rate scaled linearly)."""
    return Experiment(
        name=name,
        title=f"He et al. 2016 {what}",
        claim="test error beside Table 6; training error per epoch as Fig. 6",
        runs=_he2016_runs(),
        gpu_recipe=_he2016_recipe(batch_size),
        cpu_recipe=_HE2016_CPU,
        ship_weights=False,
    )


_SEEDS = (0, 1, 2)

EXPERIMENTS: dict[str, Experiment] = {
    experiment.name: experiment
    for experiment in (
        Experiment(
            name="degradation",
            title="Deeper plain nets train worse; residual nets do not",
            claim="final training error: plain56 > plain20, resnet56 < plain56",
            runs=_DEGRADATION_RUNS,
            gpu_recipe=_HE_GPU,
            cpu_recipe=_HE_CPU,
        ),
        _he2016_experiment("he2016", 128, "Sec. 4.2 on CIFAR-10: plain-20..56, ResNet-20..110"),
        _he2016_experiment(
            "he2016_b512", 512, "Sec. 4.2 at batch 512 and lr 0.4 (scaled), same epochs"
        ),
        Experiment(
            name="cnn_vs_resnet",
            title="The seed notebook's SimpleCNN against ResNet-18",
            claim="resnet18 reaches a higher test accuracy than simple_cnn",
            runs=(RunPlan("simple_cnn", "simple_cnn"), RunPlan("resnet18", "resnet18")),
            gpu_recipe={
                **_SGD,
                "epochs": 15,
                "batch_size": 256,
                "lr": 0.2,
                "weight_decay": 5e-4,
                "schedule": "onecycle",
                "label_smoothing": 0.1,
                "precision": "bf16",
                "channels_last": True,
            },
            cpu_recipe={
                **_SGD,
                "epochs": 2,
                "batch_size": 128,
                "lr": 0.1,
                "weight_decay": 5e-4,
                "schedule": "onecycle",
                "subset": 5_000,
                "precision": "auto",
            },
            gpu_seeds=_SEEDS,
        ),
        Experiment(
            name="weight_decay",
            title="Weight decay 5e-4 vs 1e-4: accuracy and the generalisation gap",
            claim="the train-test gap per epoch and the best test accuracy of each",
            runs=(
                RunPlan("wd5e-4", "resnet18", {"weight_decay": 5e-4}),
                RunPlan("wd1e-4", "resnet18", {"weight_decay": 1e-4}),
            ),
            gpu_recipe={
                **_SGD,
                "epochs": 15,
                "batch_size": 256,
                "lr": 0.2,
                "schedule": "onecycle",
                "precision": "bf16",
                "channels_last": True,
            },
            cpu_recipe={
                **_SGD,
                "model": "resnet20",
                "epochs": 4,
                "batch_size": 128,
                "lr": 0.1,
                "schedule": "onecycle",
                "subset": 10_000,
                "precision": "auto",
            },
            gpu_seeds=_SEEDS,
        ),
        Experiment(
            name="grad_flow",
            title="Gradient norms per layer over training, plain-20 vs ResNet-20",
            claim="per-layer gradient norms every 10 steps of both nets, on the same batches",
            runs=(RunPlan("plain20", "plain20"), RunPlan("resnet20", "resnet20")),
            **_GRAD_FLOW_RECIPES,
        ),
        Experiment(
            name="grad_flow56",
            title="Gradient norms per layer over training, plain-56 vs ResNet-56",
            claim="per-layer gradient norms every 10 steps of both nets, on the same batches",
            runs=(RunPlan("resnet56", "resnet56"), RunPlan("plain56", "plain56")),
            # On the CPU recipe (lr 0.1 after 12 warm-up steps) ResNet-56 diverged at step 10
            # and never left chance: half the rate, a fifth of the run to warm up.
            gpu_recipe=_GRAD_FLOW_RECIPES["gpu_recipe"],
            cpu_recipe={**_GRAD_FLOW_RECIPES["cpu_recipe"], "lr": 0.05, "warmup": 0.2},
        ),
        Experiment(
            name="variants56",
            title="The block variants after ResNet at depth 56, trained on the same batches",
            claim="training loss and test accuracy of plain, residual, pre-activation, "
            "zero-init, SkipInit, Fixup and plain without normalisation",
            runs=_VARIANT_RUNS,
            gpu_recipe=_HE_GPU,
            # grad_flow56's CPU recipe (half the rate, a fifth of the run to warm up), no logging
            cpu_recipe={**_HE_CPU, "epochs": 3, "lr": 0.05, "warmup": 0.2},
            ship_weights=False,
        ),
        Experiment(
            name="layer_responses",
            title="Residual nets have smaller layer responses (He et al. Fig. 7)",
            claim="std of BN outputs: resnets' responses are smaller than plain nets'",
            runs=_DEGRADATION_RUNS,
            gpu_recipe={},
            cpu_recipe={},
            analysis_of="degradation",
        ),
    )
}


def list_experiments() -> list[str]:
    return list(EXPERIMENTS)


def get_experiment(name: str) -> Experiment:
    if name not in EXPERIMENTS:
        raise ExperimentError(
            f"experiment: unknown name {name!r}; choose one of {', '.join(EXPERIMENTS)}"
        )
    return EXPERIMENTS[name]


def shipped_root() -> Path:
    """Where the results that ship with the app live (checkpoints/demo beside app.py).

    Read-only in an installed package: runs go to `checkpoints_root()`, never here.
    """
    return SHIPPED_ROOT


def setting_of(label: str) -> str:
    """The setting a run label names without its seed: "wd5e-4_seed1" -> "wd5e-4"."""
    return label.rsplit("_seed", 1)[0]


def _plans(experiment: Experiment, recipe_name: str) -> tuple[RunPlan, ...]:
    """The runs to train: on the GPU recipe one per run and seed when it has several."""
    if recipe_name != "gpu-full" or len(experiment.gpu_seeds) < 2:
        return experiment.runs
    return tuple(
        RunPlan(f"{plan.label}_seed{seed}", plan.model, {**plan.overrides, "seed": seed})
        for plan in experiment.runs
        for seed in experiment.gpu_seeds
    )


def member_configs(
    experiment: Experiment,
    device: str,
    epochs: int | None = None,
    data_dir: str | None = None,
    overrides: dict[str, Any] | None = None,
) -> tuple[str, list[tuple[RunPlan, dict[str, Any]]]]:
    """The recipe name and each run's TrainConfig dict for this device."""
    recipe_name = "gpu-full" if device.startswith("cuda") else "cpu-reduced"
    recipe = dict(experiment.gpu_recipe if recipe_name == "gpu-full" else experiment.cpu_recipe)
    if epochs is not None:
        recipe["epochs"] = epochs
    members = []
    for plan in _plans(experiment, recipe_name):
        config = {"seed": 0, **recipe, "model": plan.model, **plan.overrides, "device": device}
        if recipe_name == "cpu-reduced" and "model" in experiment.cpu_recipe:
            config["model"] = experiment.cpu_recipe["model"]
        if data_dir is not None:
            config["data_dir"] = data_dir
        config.update(overrides or {})
        members.append((plan, config))
    return recipe_name, members
