"""Sentences built from measured numbers, so the app says what it measured, not a canned story.

The textbook account of why plain deep nets train badly is "vanishing gradients". With
BatchNorm (every net here has it) the measurement at initialisation usually shows the
opposite: the early layers of a deep plain net get far *larger* gradients than the last
ones (Yang et al. 2019, "A Mean Field Theory of Batch Normalization",
https://arxiv.org/abs/1902.08129). He et al. 2016 (https://arxiv.org/abs/1512.03385, Fig. 7)
compare layer responses: residual nets have smaller ones. These helpers word whichever
of those the numbers support.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence

import pandas as pd

from resnet_core.analysis.probes import grad_ratio
from resnet_core.nets.size import estimate_params, estimate_training_bytes, fmt_bytes
from resnet_core.nets.spec import ArchSpec

__all__ = [
    "fmt_count",
    "fmt_ratio",
    "fmt_seconds",
    "build_sentence",
    "gradient_sentence",
    "gradient_story",
    "response_sentence",
    "response_pairs",
    "response_gap",
    "effect_word",
    "ratio_spread_sentence",
    "sample_text",
    "run_sentence",
    "training_size_sentence",
    "INIT_RESPONSES",
]

# Why the gradient page shows no layer responses of untrained nets.
INIT_RESPONSES = (
    "He et al. (Fig. 7) measured layer responses of *trained* nets, with BatchNorm in eval "
    "mode. At initialisation that measurement says nothing: in training mode every "
    "BatchNorm output has std 1 by construction, and in eval mode its running statistics "
    "are still the untrained defaults (mean 0, variance 1), so the stds only echo the input "
    "scale."
)

# A first/last gradient ratio inside [1/EVEN, EVEN] counts as "even"; outside, one end dominates.
EVEN = 10.0

# How large a relative difference (a fraction) is in words: the first bound above it names it.
EFFECT_WORDS = (
    (0.005, "a negligible difference"),
    (0.02, "a slight difference"),
    (0.05, "a difference of a few percent"),
    (0.2, "a clear difference"),
    (math.inf, "a large difference"),
)


def fmt_count(value: float) -> str:
    """12_345_678 -> '12.3 M'; small numbers stay whole."""
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= size:
            return f"{value / size:.3g} {unit}"
    return f"{value:,.0f}"


def fmt_ratio(ratio: float) -> str:
    """A ratio the way people say it: '8,000x', '12x', '1.5x', '0.02x'."""
    if not math.isfinite(ratio):
        return "n/a"
    if ratio >= 100:
        digits = int(math.floor(math.log10(ratio))) - 1  # two significant figures
        return f"{round(ratio, -digits):,.0f}x"
    if ratio >= 10:
        return f"{ratio:.0f}x"
    if ratio >= 0.1:
        return f"{ratio:.2g}x"
    return f"{ratio:.1g}x"


def fmt_seconds(seconds: float | None) -> str:
    """75 -> '1 min 15 s'; None -> 'unknown'."""
    if seconds is None or not math.isfinite(seconds):
        return "unknown"
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def build_sentence(label: str, layers: int, params: int, mult_adds: int, side: int) -> str:
    """One line about a net's size and cost."""
    return (
        f"**{label}** has {layers} weighted layers, {fmt_count(params)} parameters and needs "
        f"{fmt_count(mult_adds)} multiply-adds for one {side}x{side} image."
    )


def gradient_sentence(frames: dict[str, pd.DataFrame]) -> str:
    """'The first conv layer gets 8,000x the last conv layer's gradient in plain56, 12x in resnet56.'"""
    items = [(name, fmt_ratio(grad_ratio(frame))) for name, frame in frames.items()]
    if not items:
        return ""
    name, ratio = items[0]
    text = f"The first conv layer gets {ratio} the last conv layer's gradient in {name}"
    return text + "".join(f", {ratio} in {name}" for name, ratio in items[1:]) + "."


def gradient_story(plain: str, plain_ratio: float, residual: str, residual_ratio: float) -> str:
    """What the measured first/last gradient ratios say, set against the textbook story.

    Args:
        plain: name of the net without skips; plain_ratio its first/last conv gradient ratio.
        residual: name of the net with skips; residual_ratio likewise.
    """
    p, r = fmt_ratio(plain_ratio), fmt_ratio(residual_ratio)
    spread_p, spread_r = abs(math.log10(plain_ratio)), abs(math.log10(residual_ratio))
    if plain_ratio > EVEN and spread_p > spread_r:
        return (
            f"**Measured: the gradients explode, they do not vanish.** The textbook story says a deep "
            f"plain net's early layers get almost no gradient. With BatchNorm, as here, {plain}'s first "
            f"layer gets {p} the gradient of its last layer, while the skips in {residual} keep that "
            f"to {r}. Either way the plain net's layers would learn at wildly different speeds; "
            f"the identity paths even them out."
        )
    if plain_ratio < 1 / EVEN and spread_p > spread_r:
        return (
            f"**Measured: the gradients vanish.** {plain}'s first layer gets only {p} the gradient of "
            f"its last layer, as the textbook story says; with skips, {residual} gets {r}."
        )
    if spread_p <= spread_r:
        return (
            f"**Measured: no advantage for the skips here.** {plain}'s first/last gradient ratio is "
            f"{p}, {residual}'s is {r}. At this depth, batch and seed the plain net passes gradient "
            f"as evenly; the gap usually appears as the nets get deeper."
        )
    return (
        f"**Measured: both nets pass gradient fairly evenly** ({p} in {plain}, {r} in {residual}); "
        f"the difference grows with depth: try a deeper pair."
    )


def ratio_spread_sentence(ratios: Mapping[str, Sequence[float]], seeds: Sequence[int]) -> str:
    """Each net's first/last gradient ratio over `seeds` (its min-max) and whether the nets'
    ranges overlap, e.g. "Over seeds 0-2 the first/last ratio is 900x-2,400x in plain56 and
    2.1x-3.4x in resnet56: the ranges do not overlap."; says "one seed" for a single one."""
    spans = {net: (min(values), max(values)) for net, values in ratios.items()}
    if len(seeds) < 2:
        parts = [f"{fmt_ratio(low)} in {net}" for net, (low, _) in spans.items()]
        return f"One seed ({seeds[0]}): the first/last ratio is " + " and ".join(parts) + "."
    parts = [f"{fmt_ratio(low)}-{fmt_ratio(high)} in {net}" for net, (low, high) in spans.items()]
    (a_low, a_high), (b_low, b_high) = list(spans.values())[:2]
    overlap = a_low <= b_high and b_low <= a_high
    verdict = "overlap: within the seed-to-seed spread" if overlap else "do not overlap"
    return (
        f"Over seeds {seeds[0]}-{seeds[-1]} the first/last ratio is "
        + " and ".join(parts)
        + f": the ranges {verdict}."
    )


def effect_word(gap: float) -> str:
    """How large a relative difference is, in words chosen by its size: 0.012 -> 'a slight
    difference'."""
    return next(word for bound, word in EFFECT_WORDS if abs(gap) < bound)


def _depth(name: str) -> str | None:
    found = re.search(r"\d+", name)
    return found.group() if found else None


def response_pairs(names: list[str], residual: dict[str, bool]) -> list[tuple[str, str]]:
    """(plain, residual) nets to compare: the only two there are, else those of one depth."""
    plains = [n for n in names if not residual.get(n, False)]
    residuals = [n for n in names if residual.get(n, False)]
    if len(plains) == 1 and len(residuals) == 1:
        return [(plains[0], residuals[0])]
    return [(p, r) for r in residuals for p in plains if _depth(p) and _depth(p) == _depth(r)]


def response_gap(plain: pd.DataFrame, residual: pd.DataFrame) -> float:
    """How much smaller the residual net's median layer-response std is than the plain
    net's, as a fraction of the plain net's (negative: larger)."""
    return 1 - float(residual["std"].median()) / float(plain["std"].median())


def _gap_clause(plain: str, residual: str, gap: float) -> str:
    """ "resnet56's median is 1.2 % smaller than plain56's (a slight difference)"."""
    if round(100 * gap, 1) == 0:
        return f"{residual}'s median is within 0.1 % of {plain}'s ({effect_word(gap)})"
    side = "smaller" if gap > 0 else "larger"
    return (
        f"{residual}'s median is {100 * abs(gap):.1f} % {side} than {plain}'s ({effect_word(gap)})"
    )


def _gap_verdict(gaps: dict[tuple[str, str], float]) -> str:
    """Whether the measured differences bear out He et al. Fig. 7, and how strongly."""
    (plain, residual), least = min(gaps.items(), key=lambda item: item[1])
    if round(100 * least, 1) <= 0:
        return (
            f"Here {residual}'s layers do not respond less than {plain}'s (He et al. Fig. 7 "
            "measured trained nets; these numbers are from these nets and images)."
        )
    if abs(least) < EFFECT_WORDS[1][0]:  # negligible or slight
        return (
            f"The residual layers respond less, as He et al. (Fig. 7) found, but for "
            f"{residual} it is {effect_word(least)}."
        )
    return (
        "The residual layers respond less, as He et al. (Fig. 7) found: each block only "
        "adds a small correction to what the skip carries."
    )


ONE_TRAINED_RUN = "One trained run of each net: the spread between training seeds is not measured."


def response_sentence(frames: dict[str, pd.DataFrame], residual: dict[str, bool]) -> str:
    """Median layer-response std of each net; how much smaller (or larger) each residual
    net's is than its plain twin's, in percent and in words; and whether that bears out
    He et al. Fig. 7."""
    medians = {name: float(frame["std"].median()) for name, frame in frames.items() if len(frame)}
    if not medians:
        return ""
    text = (
        "Median layer response std: "
        + ", ".join(f"{v:.2f} in {n}" for n, v in medians.items())
        + "."
    )
    pairs = response_pairs(list(medians), residual)
    if not pairs:
        return text
    gaps = {(p, r): response_gap(frames[p], frames[r]) for p, r in pairs}
    clauses = "; ".join(_gap_clause(p, r, gap) for (p, r), gap in gaps.items())
    return f"{text} So {clauses}. {_gap_verdict(gaps)} {ONE_TRAINED_RUN}"


def sample_text(sample: dict | None) -> str:
    """The images a shipped result was measured on, from its sample.json: '500 CIFAR-10
    test images, 50 of each class, picked with seed 0'."""
    if not sample:
        return "test images (no record of which)"
    count, split, how = len(sample["indices"]), sample["split"], sample["how"]
    data = "synthetic" if sample.get("dataset") == "synthetic" else "CIFAR-10"
    classes = sample.get("classes")
    if how.startswith("stratified, seed ") and classes and count % classes == 0:
        seed = how.removeprefix("stratified, seed ")
        return f"{count:,} {data} {split} images, {count // classes:,} of each class, picked with seed {seed}"
    return f"{count:,} {data} {split} images ({how})"


def run_sentence(
    model: str, state: str, best_test_acc: float | None, epochs: int, seconds: float | None
) -> str:
    """'resnet20 reached 71.3% test accuracy in 1 epoch (2 min 3 s); done.'"""
    if best_test_acc is None:
        return f"{model}: {state}, no test accuracy yet."
    plural = "epoch" if epochs == 1 else "epochs"
    return (
        f"{model} reached {best_test_acc:.1f}% test accuracy in {epochs} {plural} "
        f"({fmt_seconds(seconds)}); {state}."
    )


def training_size_sentence(spec: ArchSpec, batch: int, side: int, budget: int, where: str) -> str:
    """What training the net takes, from the estimates the trainer refuses a run by: 'About
    272 k parameters; a training step on 128 images of 32x32 needs about 310 MB, and cpu
    allows 12 GB.' (or says that it does not fit)."""
    need = estimate_training_bytes(spec, batch, side)
    head = (
        f"About {fmt_count(estimate_params(spec))} parameters; a training step on {batch} "
        f"images of {side}x{side} needs about {fmt_bytes(need)}"
    )
    if need > budget:
        return (
            f"{head}, more than {where} allows ({fmt_bytes(budget)}): use a smaller batch or net."
        )
    return f"{head}, and {where} allows {fmt_bytes(budget)}."
