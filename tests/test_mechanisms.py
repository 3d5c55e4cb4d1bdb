"""The three mechanisms, reproduced from our own measurements at init: shattered gradients
(Balduzzi et al. 2017), short paths (Veit et al. 2016), and BatchNorm's pull toward the
identity (De & Smith 2020)."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
import torch

from resnet_core.analysis.mechanisms import branch_variance, path_gradients, shattered_gradients
from resnet_core.nets.model import build_model

SEEDS = (0, 1, 2)


def _images(count: int, seed: int) -> torch.Tensor:
    return torch.randn(count, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def _correlation(name: str, seed: int) -> float:
    torch.manual_seed(seed)
    model = build_model(name)
    start, end = _images(2, 100 + seed)
    return shattered_gradients(model, start, end, points=32)["correlation"]


def test_gradients_shatter_in_a_deep_plain_net_and_not_in_its_residual_twin():
    plain = [_correlation("plain56", seed) for seed in SEEDS]
    residual = [_correlation("resnet56", seed) for seed in SEEDS]
    assert max(plain) < min(residual), (plain, residual)  # on every seed
    # measured at 32 points: plain56 about 0.0 (white noise), resnet56 about 0.35
    assert max(abs(c) for c in plain) < 0.1 and min(residual) > 0.25, (plain, residual)
    shallow = [_correlation("plain20", seed) for seed in SEEDS]
    assert sum(shallow) > sum(plain)  # the plain net shatters more as it deepens


def test_the_forward_is_unchanged_by_the_measurements():
    torch.manual_seed(0)
    model = build_model("resnet20").eval()
    images = _images(4, 1)
    before = model(images)
    branch_variance(model, images)
    path_gradients(model, images, torch.tensor([0, 1, 2, 3]), lengths=[0, 3], samples=1)
    assert torch.equal(model(images), before)


def test_path_counts_and_the_gradient_of_long_paths_vanishes():
    torch.manual_seed(0)
    model = build_model("resnet56")
    images, labels = _images(8, 3), torch.arange(8) % 10
    table = path_gradients(model, images, labels, lengths=[0, 9, 18, 27], samples=2)
    n = 27
    assert list(table["paths"]) == [math.comb(n, k) for k in (0, 9, 18, 27)]
    gradient = table.set_index("k")["gradient"]
    assert gradient[27] < gradient[9] < gradient[0]  # each branch shrinks what passes it
    assert (table["total"] == table["paths"] * table["gradient"]).all()


@pytest.mark.parametrize("seed", SEEDS)
def test_batchnorm_pulls_blocks_toward_the_identity_and_zero_init_starts_there(seed):
    images = _images(32, 10 + seed)
    torch.manual_seed(seed)
    normed = branch_variance(build_model("resnet56"), images)
    ratio = normed["ratio"]
    assert ratio.iloc[-5:].mean() < 0.25 * ratio.iloc[:5].mean()  # falls along depth
    torch.manual_seed(seed)
    zero = branch_variance(build_model("resnet56-zeroinit"), images)
    assert (zero["ratio"] == 0).all()
    torch.manual_seed(seed)
    skip = branch_variance(build_model("resnet56-skipinit"), images)
    assert (skip["ratio"] == 0).all()
    torch.manual_seed(seed)
    bare = branch_variance(build_model("resnet56-nonorm"), images)
    assert bare["skip"].iloc[-1] > 1e3 * bare["skip"].iloc[0]  # the signal explodes
    assert bare["ratio"].min() > 0.1  # no block is pulled toward the identity


def test_the_command_line_prints_and_writes_each_mechanism(tmp_path, capsys):
    from resnet_core.cli.main import main

    out = tmp_path / "shatter.csv"
    argv = ["mechanisms", "shatter", "plain20", "resnet20", "--seeds", "2", "--points", "16"]
    assert main([*argv, "--out", str(out)]) == 0
    written = pd.read_csv(out)
    assert list(written["net"]) == ["plain20", "plain20", "resnet20", "resnet20"]
    assert "correlation" in capsys.readouterr().out
    assert main(["mechanisms", "variance", "resnet20-zeroinit", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 9 and all(row["ratio"] == 0 for row in rows)
    assert main(["mechanisms", "paths", "resnet20", "--images", "4", "--samples", "1"]) == 0
    assert "paths" in capsys.readouterr().out
