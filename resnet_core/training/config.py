"""One training run's settings: `TrainConfig`, validated once at construction.

Every field has a default, a range or a list of choices, and a help text in its metadata;
the CLI's train flags and the Train page's form are generated from these fields.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from dataclasses import dataclass, field
from typing import Any

from resnet_core.common.errors import ConfigError
from resnet_core.exercises.student_nets import student_n_blocks
from resnet_core.nets.spec import (
    ArchSpec,
    SpecError,
    check_choice,
    check_fields,
    parse_int_list,
    resolve_spec,
    spec_label,
)
from resnet_core.training.data import NORMALIZATIONS, PAD_MODES

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("cosine", "step", "onecycle", "constant")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
# torch.compile modes; the two with CUDA graphs replay a whole forward or backward as one
# launch on CUDA, which is what short-step GPU runs are limited by (benchmarks/RESULTS.md).
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
DATASETS = ("cifar10", "synthetic")
TTA_MODES = ("none", "flip")
_DEVICE_PATTERN = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")
EVAL_BATCH_SIZE = 1000


def _whole(name: str, value: Any, minimum: int, maximum: int | None = None) -> int:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or (isinstance(value, float) and not value.is_integer())
    ):
        raise ConfigError(f"{name}: {value!r} is not a whole number; use an integer >= {minimum}")
    value = int(value)
    if value < minimum or (maximum is not None and value > maximum):
        allowed = f">= {minimum}" if maximum is None else f"between {minimum} and {maximum}"
        raise ConfigError(f"{name}: {value} is out of range; it must be {allowed}")
    return value


def _number(name: str, value: Any, low: float, high: float, high_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{name}: {value!r} is not a number; use a value in [{low}, {high}]")
    value = float(value)
    if value < low or value > high or (high_open and value >= high):
        bracket = ")" if high_open else "]"
        raise ConfigError(f"{name}: {value} is out of range; it must be in [{low}, {high}{bracket}")
    return value


def _choice(name: str, value: Any, allowed: tuple[str, ...]) -> str:
    return check_choice(name, value, allowed, ConfigError)


def _flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{name}: {value!r} is not allowed; use true or false")
    return value


MAX_MILESTONES = 64


def _milestones(value: Any) -> tuple[int, ...] | None:
    """Epoch milestones from a list of whole numbers or text such as "8, 12" (or "[8, 12]",
    as a form shows a list); None or empty text means none. Strictly increasing, each >= 1."""
    if value is None or (isinstance(value, str) and not value.strip(" []()")):
        return None
    if isinstance(value, str):
        try:
            value = parse_int_list(value.strip().strip("[]()"), "milestones")
        except SpecError as error:
            raise ConfigError(str(error)) from None
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"milestones: {value!r} is not a list of epochs; use e.g. 8, 12")
    if len(value) > MAX_MILESTONES:
        raise ConfigError(f"milestones: {len(value)} is too many; use at most {MAX_MILESTONES}")
    epochs = tuple(_whole(f"milestones[{i}]", item, 1, 100_000) for i, item in enumerate(value))
    for before, after in zip(epochs, epochs[1:]):
        if after <= before:
            raise ConfigError(
                f"milestones: {list(epochs)} must be strictly increasing ({after} follows "
                f"{before}); list the epochs in order, e.g. 8, 12"
            )
    return epochs or None


def option(default: Any, help: str, choices: tuple[str, ...] | None = None) -> Any:  # noqa: A002
    """A TrainConfig field with its help text (and its choices) in the metadata, which the
    CLI flags and the Train page form are generated from."""
    metadata: dict[str, Any] = {"help": help}
    if choices is not None:
        metadata["choices"] = choices
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class TrainConfig:
    """Everything one training run needs; JSON round-trips through to_dict/from_dict.

    Each field's help text is in its metadata (`field_help(name)`), and so is its list of
    choices where it has a fixed one (`metadata["choices"]`).
    """

    model: str | dict = option("resnet20", "preset name (e.g. resnet20) or an ArchSpec")
    epochs: int = option(1, "passes over the training set")
    batch_size: int = option(128, "images per step")
    optimizer: str = option("sgd", "sgd, adam or adamw", OPTIMIZERS)
    lr: float = option(0.2, "peak learning rate")
    momentum: float = option(0.9, "SGD momentum (beta1 for Adam/AdamW)")
    nesterov: bool = option(True, "Nesterov momentum for SGD")
    weight_decay: float = option(
        5e-4, "L2 penalty on conv/linear weights (not on BatchNorm or biases)"
    )
    schedule: str = option(
        "onecycle",
        "onecycle (linear warm-up then linear decay to 0), cosine (warm-up then cosine "
        "to 0), step (x gamma at 50% and 75% of the steps, as He et al. 2016, or at the "
        "milestones) or constant (lr throughout); every schedule starts with the warm-up "
        "when warmup > 0",
        SCHEDULES,
    )
    warmup: float = option(0.2, "fraction of all steps spent warming up, in [0, 1)")
    warmup_lr_factor: float = option(
        0.0,
        "0 = linear warm-up from 0; otherwise the learning rate is held at this fraction of "
        "lr during the warm-up, in [0, 1] (He et al. 2016's ResNet-110: 0.1)",
    )
    milestones: tuple[int, ...] | None = option(
        None,
        "schedule step only: epochs after which the lr is multiplied by gamma, e.g. 8, 12 "
        "(as torch's MultiStepLR stepped once per epoch); unset: 50% and 75% of the steps",
    )
    gamma: float = option(
        0.1, "schedule step: the factor each drop multiplies the lr by, in (0, 1]"
    )
    label_smoothing: float = option(0.1, "cross-entropy label smoothing, in [0, 1)")
    ema: float = option(
        0.0,
        "exponential moving average of the weights, decay per step in [0, 1) (0 = off); "
        "evaluation and checkpoints use the averaged weights",
    )
    tta: str = option(
        "none",
        "test-time augmentation at evaluation: none, or flip (average the logits of each "
        "image and its mirror image)",
        TTA_MODES,
    )
    augment: bool = option(
        True, "random crops and horizontal flips of the training images (false: neither)"
    )
    crop_pad: str = option(
        "reflect",
        "how the random crop pads by 4 pixels: reflect (mirror the border) or zeros (black, "
        "as torchvision's RandomCrop(32, padding=4))",
        PAD_MODES,
    )
    normalize: str = option(
        "cifar10",
        "per-channel normalisation: cifar10 (the training set's std 0.2470, 0.2435, 0.2616) or "
        "notebook (the widely copied std 0.2023, 0.1994, 0.2010); same mean",
        tuple(NORMALIZATIONS),
    )
    seed: int = option(0, "seeds initialisation, shuffling and augmentation")
    device: str = option("auto", "auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps")
    precision: str = option(
        "auto",
        "auto (bf16 on a GPU that has it; on a CPU, bf16 only where a quick probe finds it "
        "faster than fp32; the run records what it chose), fp32, or autocast to bf16 or fp16 "
        "(fp16 uses a gradient scaler)",
        PRECISIONS,
    )
    channels_last: bool = option(True, "NHWC memory format for model and batches")
    compile: bool = option(
        False, "wrap the model in torch.compile (slow to start; see benchmarks/RESULTS.md)"
    )
    compile_mode: str = option(
        "default",
        "torch.compile mode when compile is on: default, reduce-overhead (CUDA graphs), "
        "max-autotune or max-autotune-no-cudagraphs",
        COMPILE_MODES,
    )
    subset: int | None = option(
        None, "train on the first N images, stratified by class (synthetic: the train size)"
    )
    data_dir: str | None = option(
        None, "folder with CIFAR-10 (unset: $RESNET_EXPLORER_DATA, else ./data)"
    )
    dataset: str = option(
        "cifar10", "cifar10 or synthetic (a generated stand-in, flagged wherever shown)", DATASETS
    )
    download: bool = option(
        False, "let torchvision download CIFAR-10 into data_dir if it is missing"
    )
    eval_every: int = option(
        1, "evaluate on the test set every N epochs (and always after the last)"
    )
    grad_norm_every: int = option(0, "emit per-layer gradient norms every N steps (0 = off)")
    log_every: int = option(
        1,
        "read the loss back and emit a step event every N steps (1 = every step; larger "
        "values avoid a device sync per step on GPUs)",
    )
    eval_batch_size: int = option(EVAL_BATCH_SIZE, "images per evaluation batch")
    student: str | None = option(
        None,
        "a simple_resnet exercise file: its SimpleResNet is trained, from the weights `model` "
        "(its reference spec) starts from",
    )

    def __post_init__(self) -> None:
        # frozen: every check below normalises its fields once, at construction
        self._check_model()
        self._check_optimisation()
        self._check_run()

    def _check_model(self) -> None:
        set_ = object.__setattr__
        if isinstance(self.model, ArchSpec):
            set_(self, "model", self.model.to_dict())
        try:
            resolve_spec(self.model)
        except SpecError as error:
            raise ConfigError(f"model: {error}") from None
        if isinstance(self.model, dict):
            set_(self, "model", resolve_spec(self.model).to_dict())
        if self.student is not None:
            self._check_student()

    def _check_student(self) -> None:
        if not isinstance(self.student, str) or not self.student.endswith(".py"):
            raise ConfigError(f"student: {self.student!r} is not a Python file (FILE.py)")
        if student_n_blocks(self.spec()) is None:
            raise ConfigError(
                "student: a SimpleResNet computes the CIFAR ResNet of 16/32/64 channels with "
                "projection shortcuts; set model to that spec (exercises.student_spec)"
            )

    def _check_optimisation(self) -> None:
        """Optimizer, learning-rate schedule and loss settings."""
        set_ = object.__setattr__
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        set_(self, "lr", _number("lr", self.lr, 0.0, 100.0))
        if self.lr <= 0:
            raise ConfigError(f"lr: {self.lr} must be > 0, e.g. 0.1 for sgd or 1e-3 for adam")
        set_(self, "momentum", _number("momentum", self.momentum, 0.0, 1.0, high_open=True))
        _flag("nesterov", self.nesterov)
        if self.nesterov and self.optimizer == "sgd" and self.momentum == 0:
            raise ConfigError("nesterov: true needs momentum > 0; set momentum or nesterov false")
        set_(self, "weight_decay", _number("weight_decay", self.weight_decay, 0.0, 1.0))
        _choice("schedule", self.schedule, SCHEDULES)
        set_(self, "warmup", _number("warmup", self.warmup, 0.0, 1.0, high_open=True))
        set_(self, "warmup_lr_factor", _number("warmup_lr_factor", self.warmup_lr_factor, 0.0, 1.0))
        set_(self, "milestones", _milestones(self.milestones))
        if self.milestones is not None and self.schedule != "step":
            raise ConfigError(
                f"milestones: only schedule step uses them (schedule is {self.schedule}); "
                "set schedule step or clear milestones"
            )
        set_(self, "gamma", _number("gamma", self.gamma, 0.0, 1.0))
        if self.gamma <= 0:
            raise ConfigError(f"gamma: {self.gamma} must be > 0, e.g. 0.1 for a tenfold drop")
        smoothing = _number("label_smoothing", self.label_smoothing, 0.0, 1.0, high_open=True)
        set_(self, "label_smoothing", smoothing)
        set_(self, "ema", _number("ema", self.ema, 0.0, 1.0, high_open=True))
        _choice("tta", self.tta, TTA_MODES)

    def _check_run(self) -> None:
        """Data, augmentation, device, precision and logging settings."""
        set_ = object.__setattr__
        set_(self, "epochs", _whole("epochs", self.epochs, 1, 100_000))
        set_(self, "batch_size", _whole("batch_size", self.batch_size, 1, 1 << 16))
        _flag("augment", self.augment)
        _choice("crop_pad", self.crop_pad, PAD_MODES)
        _choice("normalize", self.normalize, tuple(NORMALIZATIONS))
        set_(self, "seed", _whole("seed", self.seed, 0, 2**31 - 1))
        if not isinstance(self.device, str) or not _DEVICE_PATTERN.match(self.device):
            raise ConfigError(
                f"device: {self.device!r} is not allowed; choose auto, cpu, cuda, cuda:N or mps"
            )
        _choice("precision", self.precision, PRECISIONS)
        _flag("channels_last", self.channels_last)
        _flag("compile", self.compile)
        _choice("compile_mode", self.compile_mode, COMPILE_MODES)
        if self.subset is not None:
            set_(self, "subset", _whole("subset", self.subset, 10))
        if self.data_dir is not None:
            if not isinstance(self.data_dir, (str, os.PathLike)):
                raise ConfigError(f"data_dir: {self.data_dir!r} is not a folder path")
            set_(self, "data_dir", str(self.data_dir))
        _choice("dataset", self.dataset, DATASETS)
        _flag("download", self.download)
        set_(self, "eval_every", _whole("eval_every", self.eval_every, 1))
        set_(self, "grad_norm_every", _whole("grad_norm_every", self.grad_norm_every, 0))
        set_(self, "log_every", _whole("log_every", self.log_every, 1))
        set_(self, "eval_batch_size", _whole("eval_batch_size", self.eval_batch_size, 1, 1 << 16))

    @property
    def synthetic(self) -> bool:
        return self.dataset == "synthetic"

    def spec(self) -> ArchSpec:
        """The ArchSpec of `model`."""
        return resolve_spec(self.model)

    def label(self) -> str:
        """Short model name for tables: the preset name or a custom description."""
        spec = self.spec()
        n_blocks = student_n_blocks(spec.replace(residual=True))
        if (
            n_blocks is not None
        ):  # a student's net, the reference it is checked against, its plain twin
            layers = 6 * n_blocks + 2
            if self.student is not None:
                return f"your SimpleResNet-{layers}"
            return f"reference ResNet-{layers}" if spec.residual else f"plain-{layers}"
        return self.model if isinstance(self.model, str) else spec_label(self.spec())

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; `TrainConfig.from_dict` reverses it."""
        data = dataclasses.asdict(self)
        if isinstance(self.model, dict):
            data["model"] = dict(self.model)
        if self.milestones is not None:
            data["milestones"] = list(self.milestones)
        return data

    @classmethod
    def from_dict(cls, data: Any) -> TrainConfig:
        """Build from a dict (e.g. parsed config.json); unknown keys raise ConfigError."""
        if isinstance(data, TrainConfig):
            return data
        return cls(**check_fields(cls, data, ConfigError, "config"))

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with some fields changed (validated again)."""
        return self.from_dict({**self.to_dict(), **changes})


_FIELDS = {item.name: item for item in dataclasses.fields(TrainConfig)}


def field_help(name: str) -> str:
    """The help text of TrainConfig field `name` (from its metadata); KeyError if unknown."""
    return _FIELDS[name].metadata["help"]
