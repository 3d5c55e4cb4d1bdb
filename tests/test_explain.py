"""Sentences are built from the numbers they are given."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

from resnet_core.analysis.measure import measure_net, sample_batch
from resnet_core.nets.model import build_model
from resnet_core.nets.spec import resolve_spec
from resnet_core.views.explain import (
    build_sentence,
    fmt_count,
    fmt_ratio,
    fmt_seconds,
    gradient_sentence,
    gradient_story,
    ratio_spread_sentence,
    response_sentence,
    run_sentence,
)


def _grads(first: float, last: float) -> pd.DataFrame:
    return pd.DataFrame(
        {"kind": ["conv", "bn", "conv", "linear"], "grad_norm": [first, 1.0, last, 5.0]}
    )


@pytest.mark.parametrize(
    ("ratio", "text"),
    [
        (8234.0, "8,200x"),
        (123.0, "120x"),
        (12.4, "12x"),
        (1.53, "1.5x"),
        (0.25, "0.25x"),
        (0.02, "0.02x"),
        (math.inf, "n/a"),
    ],
)
def test_fmt_ratio(ratio, text):
    assert fmt_ratio(ratio) == text


def test_formats():
    assert (
        fmt_count(272_474) == "272 k"
        and fmt_count(40_600_000) == "40.6 M"
        and fmt_count(12) == "12"
    )
    assert (
        fmt_seconds(75) == "1 min 15 s"
        and fmt_seconds(None) == "unknown"
        and fmt_seconds(3700) == "1 h 1 min"
    )


def test_gradient_sentence_uses_the_numbers():
    text = gradient_sentence({"plain56": _grads(8000, 1), "resnet56": _grads(12, 1)})
    assert (
        text
        == "The first conv layer gets 8,000x the last conv layer's gradient in plain56, 12x in resnet56."
    )


def test_story_says_explode_when_measured():
    text = gradient_story("plain56", 8000, "resnet56", 12)
    assert "explode" in text and "8,000x" in text and "12x" in text


def test_story_says_vanish_when_measured():
    assert "vanish" in gradient_story("plain56", 0.001, "resnet56", 0.5)


def test_story_admits_no_advantage():
    assert "no advantage" in gradient_story("plain20", 3, "resnet20", 30)


def test_response_sentence_compares_with_paper():
    frames = {"plain": pd.DataFrame({"std": [1.0, 2.0]}), "res": pd.DataFrame({"std": [0.2, 0.4]})}
    text = response_sentence(frames, {"plain": False, "res": True})
    assert (
        "1.50 in plain" in text
        and "0.30 in res" in text
        and "Fig. 7" in text
        and "respond less" in text
    )


def test_build_and_run_sentences():
    assert "270 k parameters" in build_sentence("resnet20", 20, 270_000, 40_600_000, 32)
    assert (
        run_sentence("resnet20", "done", 71.25, 1, 63)
        == "resnet20 reached 71.2% test accuracy in 1 epoch (1 min 3 s); done."
    )
    assert "no test accuracy yet" in run_sentence("resnet20", "running", None, 0, None)


def test_sample_batch_is_seeded_and_normalised():
    images = torch.randint(0, 256, (50, 3, 32, 32), dtype=torch.uint8)
    labels = torch.arange(50) % 10
    a, la = sample_batch(images, labels, 8, seed=3)
    b, lb = sample_batch(images, labels, 8, seed=3)
    assert a.shape == (8, 3, 32, 32) and torch.equal(a, b) and torch.equal(la, lb)
    assert a.abs().max() < 3
    noise, targets = sample_batch(None, None, 4, seed=0)
    assert noise.shape == (4, 3, 32, 32) and targets.max() < 10


def test_measure_net_is_reproducible():
    inputs, targets = sample_batch(None, None, 4, seed=0)
    spec = resolve_spec("resnet20")
    g1, r1 = measure_net(spec, inputs, targets, seed=1)
    g2, _ = measure_net(spec, inputs, targets, seed=1)
    pd.testing.assert_frame_equal(g1, g2)
    assert r1 is None  # no Fig. 7 of an untrained net
    assert (g1["grad_norm"] > 0).all()
    trained = build_model(spec).state_dict()
    _, responses = measure_net(spec, inputs, targets, seed=1, state_dict=trained)
    assert len(responses) == 19


def test_ratio_spread_says_one_seed_or_whether_the_ranges_overlap():
    one = ratio_spread_sentence({"plain56": [900.0], "resnet56": [3.0]}, [4])
    assert one == "One seed (4): the first/last ratio is 900x in plain56 and 3x in resnet56."
    apart = ratio_spread_sentence({"plain56": [900.0, 2400.0], "resnet56": [2.0, 3.5]}, [0, 1])
    assert "Over seeds 0-1" in apart and "900x-2,400x in plain56" in apart
    assert apart.endswith("the ranges do not overlap.")
    close = ratio_spread_sentence({"plain20": [3.0, 12.0], "resnet20": [2.0, 4.0]}, [0, 1, 2])
    assert "overlap: within the seed-to-seed spread" in close and "seeds 0-2" in close
