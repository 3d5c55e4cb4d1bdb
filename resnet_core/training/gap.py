"""When one net's training loss opened a gap below another's in a lockstep group: the moment
the live demo is judged by (`benchmarks/time_to_gap.py`) and the Train page marks.

A gap is open from the first step at which the lower net's running-mean loss is at least
`margin` below the other's and stays so at every later step both have logged; a gap that
closes again does not count. Pure pandas on the members' step rows, so the benchmark, the
page and the tests read the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

__all__ = ["MARGIN", "SPAN", "Gap", "gap_opened", "demo_pairs"]

MARGIN = 0.2  # nats of training loss
SPAN = 10  # logged steps in the running mean


@dataclass(frozen=True)
class Gap:
    """Whether and when `lower`'s smoothed loss fell `margin` below `upper`'s.

    Attributes:
        step: the first step of the open gap, or None while it is not open.
        seconds: `lower`'s elapsed seconds at that step (None without elapsed times).
        last_step: the last step both nets have logged (0 before either has).
        difference: upper's smoothed loss minus lower's at `last_step` (nan before SPAN steps).
    """

    lower: str
    upper: str
    margin: float
    step: int | None
    seconds: float | None
    last_step: int
    difference: float

    @property
    def open(self) -> bool:
        return self.step is not None


def _logged(steps: pd.DataFrame, nets: list[str]) -> pd.DataFrame:
    """Loss per step (rows) and net (columns), at the steps every one of `nets` logged."""
    pivot = steps.pivot_table(index="step", columns="net", values="loss", aggfunc="last")
    if not set(nets) <= set(pivot.columns):
        return pd.DataFrame(columns=nets)
    return pivot[nets].dropna().sort_index()


def gap_opened(
    steps: pd.DataFrame, lower: str, upper: str, margin: float = MARGIN, span: int = SPAN
) -> Gap:
    """The gap between two members from their step rows (columns net, step, loss, and
    optionally elapsed: seconds since the run started)."""
    both = _logged(steps, [lower, upper])
    last = int(both.index.max()) if len(both) else 0
    smooth = both.rolling(span, min_periods=span).mean().dropna()
    if smooth.empty:
        return Gap(lower, upper, margin, None, None, last, float("nan"))
    ahead = (smooth[upper] - smooth[lower]) >= margin
    difference = float(smooth[upper].iloc[-1] - smooth[lower].iloc[-1])
    if not ahead.iloc[-1]:
        return Gap(lower, upper, margin, None, None, last, difference)
    behind = ahead[~ahead]
    start = int(ahead.index[0] if behind.empty else ahead.index[ahead.index > behind.index[-1]][0])
    return Gap(
        lower, upper, margin, start, _elapsed(steps, (lower, upper), start), last, difference
    )


def _elapsed(steps: pd.DataFrame, nets: tuple[str, str], step: int) -> float | None:
    """When both nets had logged `step` (nets that train side by side reach it at different
    times; the gap is there to see only once the slower one has)."""
    if "elapsed" not in steps:
        return None
    rows = steps[steps["net"].isin(nets) & (steps["step"] == step)].dropna(subset=["elapsed"])
    return float(rows["elapsed"].max()) if rows["net"].nunique() == len(set(nets)) else None


def demo_pairs(
    residual: dict[str, bool], depth: dict[str, int]
) -> tuple[tuple[str, str] | None, tuple[str, str] | None]:
    """What a group of nets is there to show: (the deepest residual net, the plain net of its
    depth, else the deepest plain one) for "residual below plain", and (the shallowest plain
    net, the deepest) for "deeper plain is worse"; None where the group has no such pair."""
    plain = sorted((n for n, r in residual.items() if not r), key=lambda n: depth[n])
    skips = sorted((n for n, r in residual.items() if r), key=lambda n: depth[n])
    gap = None
    if plain and skips:
        twins = [n for n in plain if depth[n] == depth[skips[-1]]]
        gap = (skips[-1], (twins or plain)[-1])
    deeper = (
        (plain[0], plain[-1]) if len(plain) >= 2 and depth[plain[0]] < depth[plain[-1]] else None
    )
    return gap, deeper
