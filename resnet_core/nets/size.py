"""How big a net is before it is built: parameter estimates and the limits that refuse a net
too big for this machine."""

from __future__ import annotations

from resnet_core.nets.block_kinds import block_kind
from resnet_core.nets.spec import ArchSpec, SpecError

MAX_PARAMS = 100_000_000  # ResNet-152 has 60 M; beyond this a page would stall or run out of memory


def estimate_params(spec: ArchSpec) -> int:
    """Conv and linear weights of a net, counted from its spec without building it.

    Within a few percent of the real count (BatchNorm and biases are left out): enough to
    refuse a net too big to build interactively before allocating it.
    """
    if spec.is_cnn:
        channels, total = spec.in_channels, 0  # no stem: the first stage reads the image
    else:
        channels = spec.stem_channels()
        total = channels * spec.in_channels * (49 if spec.stem == "imagenet" else 9)
    for stage, (depth, width) in enumerate(zip(spec.depths, spec.widths, strict=True)):
        out = width * spec.expansion
        for position in range(depth):
            if spec.is_cnn:
                total += 9 * channels * width
            else:
                total += block_kind(spec.block).params(channels, width)
            reshapes = channels != out or (position == 0 and stage > 0)
            if spec.residual and spec.shortcut == "projection" and reshapes:
                total += channels * out  # 1x1 projection shortcut
            channels = out
    return total + channels * spec.num_classes


def check_params(spec: ArchSpec, limit: int, what: str, error: type[SpecError] = SpecError) -> None:
    """Raise `error` if the net's estimated parameters exceed `limit`; `what` ends the
    sentence "about N M parameters is too big ..." (e.g. "to build here")."""
    estimate = estimate_params(spec)
    if estimate > limit:
        raise error(
            f"about {estimate / 1e6:,.0f} M parameters is too big {what} "
            f"(limit {limit / 1e6:.0f} M); use fewer blocks or narrower stages"
        )


def check_buildable(spec: ArchSpec) -> None:
    """Raise SpecError if the net is too big to build and trace interactively."""
    try:
        check_params(spec, MAX_PARAMS, "to build here")
    except SpecError as error:
        raise SpecError(f"size: {error}") from None


# Memory ------------------------------------------------------------------------------------
BYTES_PER_VALUE = 4  # fp32
KEPT_PER_OUTPUT = 3  # conv, BatchNorm and ReLU outputs are all kept for the backward pass
STATE_PER_PARAM = 4  # weight, gradient, momentum and one more optimizer buffer


def estimate_activation_values(spec: ArchSpec, side: int) -> int:
    """Activation values one image keeps for the backward pass, from the spec alone.

    Counts every conv, BatchNorm and ReLU output (and each residual add) stage by stage;
    an estimate within a small factor, enough to refuse work far too big before any tensor
    is allocated.
    """
    if spec.is_cnn:
        return _cnn_activation_values(spec, side)
    stem = 2 if spec.stem == "imagenet" else 1
    side = max(side // stem, 1)
    values = spec.stem_channels() * side * side * KEPT_PER_OUTPUT
    side = max(side // 2, 1) if stem == 2 else side  # the ImageNet stem's max-pool
    for stage, (depth, width) in enumerate(zip(spec.depths, spec.widths, strict=True)):
        if stage > 0:
            side = max(side // 2, 1)
        out = width * spec.expansion
        # conv outputs of the block, and the residual add once
        kept, added = block_kind(spec.block).kept_channels(width), out
        values += depth * (kept * KEPT_PER_OUTPUT + added) * side * side
    return values


def _cnn_activation_values(spec: ArchSpec, side: int) -> int:
    """`estimate_activation_values` of a plain conv stack: each conv-BN-ReLU layer at the
    side it runs at, the side halved by the max-pool after a stage (small_cnn: every stage;
    seed_cnn: every stage but the last)."""
    values = 0
    last = len(spec.depths) - 1
    for stage, (depth, width) in enumerate(zip(spec.depths, spec.widths, strict=True)):
        values += depth * width * KEPT_PER_OUTPUT * side * side
        if stage < last or spec.family == "small_cnn":
            side = max(side // 2, 1)
    return values


def estimate_training_bytes(spec: ArchSpec, batch: int, side: int = 32) -> int:
    """Memory one training step of `batch` images needs: activations plus weights and
    optimizer state."""
    activations = batch * estimate_activation_values(spec, side) * BYTES_PER_VALUE
    return activations + estimate_params(spec) * STATE_PER_PARAM * BYTES_PER_VALUE


def fmt_bytes(count: float) -> str:
    """1.2 GB, 340 MB, ..."""
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6)):
        if count >= size:
            return f"{count / size:,.1f} {unit}"
    return f"{count / 1e3:,.0f} kB"


def check_fits(
    spec: ArchSpec, batch: int, side: int, budget: int, where: str, error: type = SpecError
) -> None:
    """Raise `error` (naming the estimate and the limit) if the net is too big to build or
    one step of `batch` images at `side` x `side` needs more memory than `budget` bytes."""
    check_buildable(spec)
    estimate = estimate_training_bytes(spec, batch, side)
    if estimate > budget:
        raise error(
            f"memory: training this net (about {estimate_params(spec):,} parameters) on a "
            f"batch of {batch:,} images of {side}x{side} needs about {fmt_bytes(estimate)}, "
            f"more than {where} allows ({fmt_bytes(budget)}); "
            "use a smaller batch, a smaller input or a smaller net"
        )


# Work ----------------------------------------------------------------------------------------
def _conv(cin: int, cout: int, kernel: int, side: int) -> int:
    return cin * cout * kernel * kernel * side * side


def estimate_mult_adds(spec: ArchSpec, side: int) -> int:
    """Multiply-adds of one image through the net at `side` x `side`, from the spec alone:
    conv and linear layers, the side halved where the net strides. Within a small factor of
    the traced count, enough to refuse work far too big before the net is built."""
    channels, total = spec.in_channels, 0
    if spec.is_cnn:
        last = len(spec.depths) - 1
        for stage, (depth, width) in enumerate(zip(spec.depths, spec.widths, strict=True)):
            for _ in range(depth):
                total, channels = total + _conv(channels, width, 3, side), width
            if stage < last or spec.family == "small_cnn":
                side = max(side // 2, 1)
        return total + channels * spec.num_classes
    stem = spec.stem_channels()
    if spec.stem == "imagenet":
        side = max(side // 2, 1)
        total, side = _conv(channels, stem, 7, side), max(side // 2, 1)
    else:
        total = _conv(channels, stem, 3, side)
    channels = stem
    for stage, (depth, width) in enumerate(zip(spec.depths, spec.widths, strict=True)):
        out = width * spec.expansion
        for position in range(depth):
            inner = side
            if position == 0 and stage > 0:
                side = max(side // 2, 1)
            total += block_kind(spec.block).mult_adds(channels, width, inner, side)
            if spec.residual and spec.shortcut == "projection" and channels != out:
                total += _conv(channels, out, 1, side)
            channels = out
    return total + channels * spec.num_classes


# What the app's server, shared by a class, does per request. A net is adopted (a ?net= link,
# a custom net) only if one image through it is within SERVER_MULT_ADDS: ResNet-152 at
# 224x224 is 11.5 G, the widest CIFAR nets the spec allows are 100 G and more. A measurement
# on a batch (the gradient page) may do GRADIENT_MULT_ADDS: ResNet-152 at 224 on 16 images.
# Traces run on the meta device and cost nothing of the kind.
SERVER_MULT_ADDS = 16 * 10**9
GRADIENT_MULT_ADDS = 10**12


class WorkTooBig(SpecError):
    """A net (at an input size) that is more work than one request to the app may cost."""


def check_server_work(
    spec: ArchSpec, side: int, passes: int = 1, budget: int = SERVER_MULT_ADDS
) -> None:
    """Raise WorkTooBig if `passes` images through the net at `side` x `side` (a backward
    pass counts as two more) are more multiply-adds than `budget`, the work a request to the
    shared app may cost; checked before the net is built."""
    work = estimate_mult_adds(spec, side) * passes
    if work > budget:
        raise WorkTooBig(
            f"work: {_passes(passes)} through this net at {side}x{side} is about "
            f"{work / 1e9:,.0f} G multiply-adds, more than the app does per request "
            f"({budget / 1e9:,.0f} G); use the command line on your own machine"
        )


def _passes(passes: int) -> str:
    return "one image" if passes == 1 else f"{passes:,} image passes"
