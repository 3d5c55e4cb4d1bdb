"""Gradient and response probes reproduce the plain-vs-residual measurements."""

import math

import pytest
import torch

from resnet_core import build_model, gradient_norms, layer_responses
from resnet_core.analysis.probes import grad_ratio


def batch(seed: int, n: int = 64):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 32, 32, generator=generator), torch.randint(
        0, 10, (n,), generator=generator
    )


def probe(name: str, seed: int):
    torch.manual_seed(seed)
    return gradient_norms(build_model(name), *batch(seed))


def test_gradient_norms_columns_and_rows():
    model = build_model("resnet20")
    frame = gradient_norms(model, *batch(0, 8))
    assert list(frame.columns) == ["index", "layer", "kind", "grad_norm", "weight_norm"]
    # 19 convs + 19 BNs + 1 linear
    assert frame["kind"].value_counts().to_dict() == {"conv": 19, "bn": 19, "linear": 1}
    assert frame["layer"].iloc[0] == "conv1" and frame["layer"].iloc[-1] == "fc"
    assert (frame["grad_norm"] > 0).all() and frame["grad_norm"].map(math.isfinite).all()
    assert all(p.grad is None for p in model.parameters()), "probe leaves no gradients behind"


def test_probe_leaves_bn_statistics_untouched():
    model = build_model("resnet20")
    before = model.bn1.running_mean.clone()
    gradient_norms(model, *batch(0, 8))
    layer_responses(model, batch(0, 8)[0], train_mode=True)
    assert torch.equal(model.bn1.running_mean, before)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_plain56_first_layer_gradients_far_exceed_resnet56(seed):
    plain, residual = grad_ratio(probe("plain56", seed)), grad_ratio(probe("resnet56", seed))
    assert 3 < residual < 60, residual  # about 12 measured
    assert plain / residual > 30, (plain, residual)


def test_probe_is_deterministic():
    a, b = probe("resnet20", 5), probe("resnet20", 5)
    assert a["grad_norm"].tolist() == b["grad_norm"].tolist()


def test_layer_responses_one_row_per_bn():
    model = build_model("plain20")
    frame = layer_responses(model, batch(0, 16)[0])
    assert list(frame.columns) == ["index", "layer", "std"]
    assert len(frame) == sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    assert (frame["std"] > 0).all()
    assert model.training, "mode restored"
