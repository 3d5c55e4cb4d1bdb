"""Architecture specs: one frozen dataclass describes every network the app can build.

A spec is data (He et al. 2016, "Deep Residual Learning for Image Recognition",
https://arxiv.org/abs/1512.03385): stem, block type, blocks and channels per stage, whether
the skip connections exist, and how a shortcut changes shape. Presets are a table of specs,
so tests and the app iterate over the same registry.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import re
from dataclasses import dataclass
from typing import Any

from resnet_core.common import files
from resnet_core.nets.block_kinds import BLOCK_KINDS, block_kind

__all__ = [
    "ArchSpec",
    "SpecError",
    "PRESETS",
    "PRESET_INFO",
    "list_presets",
    "get_preset",
    "resolve_spec",
]

FAMILIES = ("resnet", "small_cnn", "seed_cnn")
CNN_FAMILIES = ("small_cnn", "seed_cnn")  # conv-BN-ReLU stacks with max-pools, no blocks
# Older run folders call the small_cnn family "simple_cnn", the name its preset had before the
# seed notebook's SimpleCNN took that preset name; their spec.json files still load.
_FAMILY_ALIASES = {"simple_cnn": "small_cnn"}
STEMS = ("cifar", "imagenet")
BLOCKS = BLOCK_KINDS  # the registered block kinds, by name (`resnet_core.nets.block_kinds`)
SHORTCUTS = ("projection", "zero_pad")
MAX_STAGES = 8
MAX_BLOCKS_PER_STAGE = 256
MAX_WIDTH = 8192


class SpecError(ValueError):
    """A user-visible problem with an architecture spec, preset name or input size."""


# User-provided text ----------------------------------------------------------------------
MAX_JSON_CHARS = 100_000  # a spec is a few hundred characters
MAX_JSON_DEPTH = 16  # a spec nests two levels
MAX_NUMBER_CHARS = 12  # no field of a net needs a number longer than this
MAX_LIST = 64  # values in one list field (stages)
MAX_PRESET_NAME = 40
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")


def _json_depth(text: str) -> int:
    """How deep brackets nest in JSON text, strings skipped (checked before parsing)."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def parse_json(text: Any, what: str = "spec") -> Any:
    """Parse JSON a user provided, bounded before parsing: its length, how deep it nests and
    how long its numbers are. Any problem is a one-line SpecError naming `what`."""
    if not isinstance(text, str):
        raise SpecError(f"{what}: expected JSON text, got {type(text).__name__}")
    if len(text) > MAX_JSON_CHARS:
        raise SpecError(
            f"{what}: {len(text):,} characters is too long for a spec (limit {MAX_JSON_CHARS:,})"
        )
    if _json_depth(text) > MAX_JSON_DEPTH:
        raise SpecError(f"{what}: nested more than {MAX_JSON_DEPTH} levels deep; a spec needs two")
    longest = max((len(m) for m in _NUMBER.findall(text)), default=0)
    if longest > MAX_NUMBER_CHARS:
        raise SpecError(f"{what}: a number with {longest:,} characters is too large for any field")
    try:
        return files.parse_json(text)
    except json.JSONDecodeError as error:
        raise SpecError(f"{what}: not valid JSON ({error.msg} at line {error.lineno})") from None
    except (ValueError, RecursionError) as error:
        raise SpecError(f"{what}: not valid JSON ({type(error).__name__})") from None


def parse_int_list(text: str, field: str) -> list[Any]:
    """'3, 3, 3' -> [3, 3, 3] from a form field; a part that is not a short whole number is
    passed on as text, so the spec check names it."""
    parts = [part.strip() for part in str(text).replace(";", ",").split(",") if part.strip()]
    if len(parts) > MAX_LIST:
        raise SpecError(f"{field}: {len(parts)} values is too many; use at most {MAX_LIST}")
    return [
        int(part) if part.lstrip("-").isdigit() and len(part) <= MAX_NUMBER_CHARS else part
        for part in parts
    ]


def _shown(value: Any) -> str:
    """A value for an error message, cut to 40 characters."""
    text = repr(value) if not isinstance(value, int) or abs(value) < 10**30 else "a huge number"
    return text if len(text) <= 40 else text[:37] + "..."


def _check_int(field: str, value: Any, minimum: int, maximum: int | None = None) -> int:
    """Return value as int if it is a whole number in range, else raise SpecError."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SpecError(
            f"{field}: {_shown(value)} is not a whole number; use an integer >= {minimum}"
        )
    if isinstance(value, float) and not value.is_integer():
        raise SpecError(
            f"{field}: {_shown(value)} is not a whole number; use an integer >= {minimum}"
        )
    value = int(value)
    if value < minimum:
        raise SpecError(f"{field}: {_shown(value)} is too small; it must be >= {minimum}")
    if maximum is not None and value > maximum:
        raise SpecError(f"{field}: {_shown(value)} is too large; it must be <= {maximum}")
    return value


def check_choice(
    field: str, value: Any, allowed: tuple[str, ...], error: type[ValueError] = SpecError
) -> str:
    """`value` if it is one of `allowed`, else `error` naming the field and the choices."""
    if value not in allowed:
        raise error(f"{field}: {_shown(value)} is not allowed; choose one of {', '.join(allowed)}")
    return value


def _check_int_list(field: str, value: Any, minimum: int, maximum: int) -> tuple[int, ...]:
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise SpecError(f"{field}: {_shown(value)} is not a list of integers, e.g. [2, 2, 2, 2]")
    items = list(value)
    if not items:
        raise SpecError(f"{field}: the list is empty; give at least one stage, e.g. [3, 3, 3]")
    if len(items) > MAX_STAGES:
        raise SpecError(f"{field}: {len(items)} stages is too many; at most {MAX_STAGES}")
    return tuple(
        _check_int(f"{field}[{i}]", item, minimum, maximum) for i, item in enumerate(items)
    )


def check_fields(cls: type, data: Any, error: type[Exception], what: str) -> dict:
    """`data` if it is a dict whose keys are all fields of dataclass `cls`, else `error`.

    The message names `what` and lists the unknown and the allowed fields.
    """
    if not isinstance(data, dict):
        raise error(f"{what}: expected a JSON object, got {type(data).__name__}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise error(
            f"{what}: unknown field(s) {', '.join(map(repr, unknown))}; "
            f"allowed fields are {', '.join(sorted(known))}"
        )
    return data


@dataclass(frozen=True)
class ArchSpec:
    """Everything needed to build one network.

    Attributes:
        stem: "cifar" (3x3 conv, stride 1) or "imagenet" (7x7 conv, stride 2, then max-pool).
        block: a registered block kind (`resnet_core.nets.block_kinds`): "basic" (two 3x3
            convs), "bottleneck" (1x1, 3x3, 1x1; output is 4x width), "preact" and
            "preact_bottleneck" (the same with BN-ReLU before each conv, He et al. 2016b).
        depths: blocks per stage, each >= 1. The first stage keeps the spatial size, every
            later stage halves it.
        widths: channels per stage (for bottleneck blocks, the inner width), same length.
        residual: True adds the skip connections; False gives the plain twin (same layers).
        shortcut: where a block changes shape, "projection" (1x1 conv + BN, option B) or
            "zero_pad" (stride-2 subsampling plus zero channels, option A, no parameters).
        num_classes: outputs of the final linear layer.
        in_channels: channels of the input image.
        stem_width: channels after the stem; None means widths[0].
        zero_init: start the last BatchNorm of every residual branch at scale 0 (Goyal et al.
            2017; torchvision's zero_init_residual): each block begins as the identity.
        family: "resnet" for everything above; two plain conv stacks ignore the block,
            stem and shortcut fields:
            "small_cnn": per stage, `depths` conv-BN-ReLU layers (biasless convs), then a
            2x2 max-pool after every stage;
            "seed_cnn": the course's seed-notebook SimpleCNN, per stage `depths` conv-BN-ReLU
            layers whose convs have a bias, a 2x2 max-pool after every stage but the last.
    """

    stem: str = "cifar"
    block: str = "basic"
    depths: tuple[int, ...] = (2, 2, 2, 2)
    widths: tuple[int, ...] = (64, 128, 256, 512)
    residual: bool = True
    shortcut: str = "projection"
    num_classes: int = 10
    in_channels: int = 3
    stem_width: int | None = None
    family: str = "resnet"
    zero_init: bool = False

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # frozen dataclass: normalise once, at construction
        family = (
            _FAMILY_ALIASES.get(self.family, self.family)
            if isinstance(self.family, str)
            else self.family
        )
        set_(self, "family", check_choice("family", family, FAMILIES))
        set_(self, "stem", check_choice("stem", self.stem, STEMS))
        set_(self, "block", check_choice("block", self.block, tuple(BLOCK_KINDS)))
        set_(self, "shortcut", check_choice("shortcut", self.shortcut, SHORTCUTS))
        set_(self, "depths", _check_int_list("depths", self.depths, 1, MAX_BLOCKS_PER_STAGE))
        set_(self, "widths", _check_int_list("widths", self.widths, 1, MAX_WIDTH))
        if len(self.depths) != len(self.widths):
            raise SpecError(
                f"depths and widths: {len(self.depths)} stages in depths {list(self.depths)} but "
                f"{len(self.widths)} in widths {list(self.widths)}; give one width per stage"
            )
        if not isinstance(self.residual, bool):
            raise SpecError(f"residual: {self.residual!r} is not allowed; use true or false")
        set_(self, "num_classes", _check_int("num_classes", self.num_classes, 1, 100_000))
        set_(self, "in_channels", _check_int("in_channels", self.in_channels, 1, 64))
        if self.stem_width is not None:
            set_(self, "stem_width", _check_int("stem_width", self.stem_width, 1, MAX_WIDTH))
        self._check_zero_init()
        if self.residual and self.shortcut == "zero_pad" and self.family == "resnet":
            channels = self.stage_out_channels()
            previous = self.stem_channels()
            for stage, out in enumerate(channels):
                if out < previous:
                    raise SpecError(
                        f"shortcut: 'zero_pad' cannot shrink channels ({previous} -> {out} at "
                        f"stage {stage + 1}); use 'projection' or non-decreasing widths"
                    )
                previous = out

    def _check_zero_init(self) -> None:
        if not isinstance(self.zero_init, bool):
            raise SpecError(f"zero_init: {self.zero_init!r} is not allowed; use true or false")
        if self.zero_init and not (self.residual and self.family == "resnet"):
            raise SpecError("zero_init: only a residual net has branches to start at zero")
        if self.zero_init and block_kind(self.block).last_norm is None:
            raise SpecError(
                f"zero_init: a {self.block} block ends with a conv, not a BatchNorm; "
                "use block basic or bottleneck"
            )

    # Derived sizes -------------------------------------------------------------------------
    @property
    def expansion(self) -> int:
        """Output channels of a block per unit of width (4 for bottleneck blocks)."""
        return block_kind(self.block).expansion if self.family == "resnet" else 1

    def stem_channels(self) -> int:
        """Channels coming out of the stem."""
        return self.stem_width if self.stem_width is not None else self.widths[0]

    def stage_out_channels(self) -> tuple[int, ...]:
        """Channels coming out of each stage."""
        return tuple(width * self.expansion for width in self.widths)

    @property
    def is_cnn(self) -> bool:
        """A plain conv stack (small_cnn, seed_cnn) rather than a ResNet or its plain twin."""
        return self.family in CNN_FAMILIES

    def downsample_factor(self) -> int:
        """How much the spatial size shrinks from input to the last stage."""
        if self.family == "small_cnn":
            return 2 ** len(self.depths)  # a max-pool after every stage
        if self.family == "seed_cnn":
            return 2 ** (len(self.depths) - 1)  # no max-pool after the last stage
        stem = 4 if self.stem == "imagenet" else 1
        return stem * 2 ** (len(self.depths) - 1)

    def min_input_size(self) -> int:
        """Smallest square input side whose last stage is at least 1x1 without padding tricks."""
        return self.downsample_factor()

    def num_layers(self) -> int:
        """Weighted layers in the main path (the N in ResNet-N): stem + block convs + fc."""
        per_block = 1 if self.is_cnn else len(block_kind(self.block).convs)
        stem = 0 if self.is_cnn else 1
        return stem + per_block * sum(self.depths) + 1

    # Serialisation -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; `ArchSpec.from_dict` reverses it."""
        data = dataclasses.asdict(self)
        data["depths"] = list(self.depths)
        data["widths"] = list(self.widths)
        return data

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, data: Any) -> ArchSpec:
        """Build a spec from a dict (e.g. parsed JSON); unknown keys raise SpecError."""
        return cls(**check_fields(cls, data, SpecError, "spec"))

    @classmethod
    def from_json(cls, text: str) -> ArchSpec:
        """Parse a spec from JSON text a user typed, pasted or linked; SpecError otherwise."""
        return cls.from_dict(parse_json(text, "spec"))

    def replace(self, **changes: Any) -> ArchSpec:
        """A copy with some fields changed (validated again)."""
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise SpecError(f"override: unknown field(s) {', '.join(map(repr, unknown))}")
        return dataclasses.replace(self, **changes)


# Presets ----------------------------------------------------------------------------------
def _imagenet(block: str, depths: tuple[int, ...]) -> ArchSpec:
    # torchvision's ResNet: 7x7 stem, 1000 classes, projection shortcuts (option B).
    return ArchSpec("imagenet", block, depths, (64, 128, 256, 512), num_classes=1000)


def _cifar_wide(block: str, depths: tuple[int, ...], residual: bool = True) -> ArchSpec:
    # The common CIFAR adaptation of ResNet-18/34/50/...: 3x3 stem, no max-pool.
    return ArchSpec("cifar", block, depths, (64, 128, 256, 512), residual=residual)


def _cifar_thin(n: int, residual: bool = True) -> ArchSpec:
    # He et al. section 4.2: 6n+2 layers, 16/32/64 channels, option A shortcuts.
    return ArchSpec(
        "cifar", "basic", (n, n, n), (16, 32, 64), residual=residual, shortcut="zero_pad"
    )


_TORCHVISION_DEPTHS = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}

PRESETS: dict[str, ArchSpec] = {}
PRESET_INFO: dict[str, dict[str, Any]] = {}


def _register(name: str, spec: ArchSpec, input_size: int, description: str) -> None:
    PRESETS[name] = spec
    PRESET_INFO[name] = {"input_size": input_size, "description": description}


for _depth, (_block, _depths) in _TORCHVISION_DEPTHS.items():
    _register(f"resnet{_depth}", _cifar_wide(_block, _depths), 32, f"ResNet-{_depth}, CIFAR stem")
for _n in (3, 5, 7, 9, 18):
    _layers = 6 * _n + 2
    _register(f"resnet{_layers}", _cifar_thin(_n), 32, f"CIFAR ResNet-{_layers} (He et al. 4.2)")
    _register(f"plain{_layers}", _cifar_thin(_n, False), 32, f"plain twin of ResNet-{_layers}")
for _n in (3, 9, 18):  # He et al. 2016b: BN-ReLU before each conv, nothing after the add
    _layers = 6 * _n + 2
    _register(
        f"preact-resnet{_layers}",
        ArchSpec("cifar", "preact", (_n, _n, _n), (16, 32, 64)),
        32,
        f"pre-activation ResNet-{_layers} (He et al. 2016b)",
    )
_register(
    "preact-resnet164",
    ArchSpec("cifar", "preact_bottleneck", (18, 18, 18), (16, 32, 64)),
    32,
    "pre-activation bottleneck ResNet-164 (He et al. 2016b)",
)
for _n in (3, 9, 18):  # Goyal et al. 2017: every residual branch starts at zero
    _layers = 6 * _n + 2
    _register(
        f"resnet{_layers}-zeroinit",
        _cifar_thin(_n).replace(zero_init=True),
        32,
        f"ResNet-{_layers}, last BatchNorm of each branch starting at 0 (Goyal et al. 2017)",
    )
for _n in (3, 9, 18):  # without normalisation, and the inits that train deep nets without it
    _layers = 6 * _n + 2
    for _kind, _name, _who in (
        ("skipinit", "SkipInit", "De & Smith 2020"),
        ("fixup", "Fixup", "Zhang et al. 2019"),
    ):
        _register(
            f"resnet{_layers}-{_kind}",
            _cifar_thin(_n).replace(block=_kind),
            32,
            f"ResNet-{_layers} without BatchNorm, {_name} ({_who})",
        )
    _register(
        f"resnet{_layers}-nonorm",
        _cifar_thin(_n).replace(block="nonorm"),
        32,
        f"ResNet-{_layers} without BatchNorm, He initialisation",
    )
    _register(
        f"plain{_layers}-nonorm",
        _cifar_thin(_n, False).replace(block="nonorm"),
        32,
        f"plain twin of ResNet-{_layers} without BatchNorm",
    )
for _depth in (18, 34):
    _block, _depths = _TORCHVISION_DEPTHS[_depth]
    _register(
        f"plain{_depth}", _cifar_wide(_block, _depths, False), 32, f"plain twin of ResNet-{_depth}"
    )
for _depth, (_block, _depths) in _TORCHVISION_DEPTHS.items():
    _register(
        f"resnet{_depth}-imagenet", _imagenet(_block, _depths), 224, f"torchvision ResNet-{_depth}"
    )
_register(
    "simple_cnn",
    ArchSpec(family="seed_cnn", depths=(1, 1, 1, 1), widths=(32, 64, 128, 256), residual=False),
    32,
    "the seed notebook's SimpleCNN: 4 conv layers, 3 max-pools, 391,946 parameters",
)
_register(
    "small_cnn",
    ArchSpec(family="small_cnn", depths=(2, 2), widths=(64, 128), residual=False),
    32,
    "small CNN baseline: 4 conv layers, 2 max-pools",
)


def list_presets() -> list[str]:
    """Names of all presets, in a stable teaching order."""
    return list(PRESETS)


def get_preset(name: str) -> ArchSpec:
    """The spec of a preset; an unknown name raises SpecError listing close matches."""
    key = name.strip().lower() if isinstance(name, str) else name
    if key in PRESETS:
        return PRESETS[key]
    if not isinstance(key, str) or len(key) > MAX_PRESET_NAME:
        raise SpecError(f"preset: unknown name {_shown(name)}; run 'python -m resnet_core presets'")
    close = difflib.get_close_matches(str(key), PRESETS, n=4, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}?" if close else "run 'python -m resnet_core presets'"
    raise SpecError(f"preset: unknown name {name!r}; {hint}")


def resolve_spec(name_or_spec: str | ArchSpec | dict, **overrides: Any) -> ArchSpec:
    """Turn a preset name, dict or spec (plus field overrides) into a validated ArchSpec."""
    if isinstance(name_or_spec, ArchSpec):
        spec = name_or_spec
    elif isinstance(name_or_spec, dict):
        spec = ArchSpec.from_dict(name_or_spec)
    elif isinstance(name_or_spec, str):
        spec = get_preset(name_or_spec)
    else:
        raise SpecError(
            f"model: expected a preset name, dict or ArchSpec, got {type(name_or_spec).__name__}"
        )
    return spec.replace(**overrides) if overrides else spec


def spec_label(name_or_spec: str | ArchSpec) -> str:
    """A short human name: the preset name, or e.g. 'custom basic [3, 3, 3] residual'."""
    if isinstance(name_or_spec, str):
        return name_or_spec
    for name, spec in PRESETS.items():
        if spec == name_or_spec:
            return name
    spec = name_or_spec
    kind = "residual" if spec.residual else "plain"
    zero = " zero-init" if spec.zero_init else ""
    return f"custom {spec.block} {list(spec.depths)} {kind}{zero}"
