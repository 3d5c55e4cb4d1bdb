"""How big a net is before it is built: parameter estimates and the limits that refuse a net
too big for this machine."""

from __future__ import annotations

from resnet_core.nets.spec import ArchSpec, SpecError

MAX_PARAMS = 100_000_000  # ResNet-152 has 60 M; beyond this a page would stall or run out of memory


def estimate_params(spec: ArchSpec) -> int:
    """Conv and linear weights of a net, counted from its spec without building it.

    Within a few percent of the real count (BatchNorm and biases are left out): enough to
    refuse a net too big to build interactively before allocating it.
    """
    if spec.family == "simple_cnn":
        channels, total = spec.in_channels, 0
    else:
        channels = spec.stem_channels()
        total = channels * spec.in_channels * (49 if spec.stem == "imagenet" else 9)
    for stage, (depth, width) in enumerate(zip(spec.depths, spec.widths, strict=True)):
        out = width * spec.expansion
        for position in range(depth):
            if spec.family == "simple_cnn":
                total += 9 * channels * width
            elif spec.block == "bottleneck":
                total += channels * width + 9 * width * width + width * out
            else:
                total += 9 * channels * width + 9 * width * out
            reshapes = channels != out or (position == 0 and stage > 0)
            if spec.residual and spec.shortcut == "projection" and reshapes:
                total += channels * out  # 1x1 projection shortcut
            channels = out
    return total + channels * spec.num_classes


def check_buildable(spec: ArchSpec) -> None:
    """Raise SpecError if the net is too big to build and trace interactively."""
    estimate = estimate_params(spec)
    if estimate > MAX_PARAMS:
        raise SpecError(
            f"size: about {estimate / 1e6:,.0f} M parameters is too big to build here "
            f"(limit {MAX_PARAMS / 1e6:.0f} M); use fewer blocks or narrower stages"
        )
