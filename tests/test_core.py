"""Every preset builds, trains a step, counts right, and the -imagenet ones equal torchvision."""

import json

import pytest
import torch
import torchvision

from resnet_core import ArchSpec, SpecError, build_model, list_presets
from resnet_core.analysis.probes import parameterised_layers
from resnet_core.nets.model import ZeroPadShortcut
from resnet_core.nets.spec import PRESET_INFO, get_preset


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def preset_input(name: str, batch: int = 2) -> torch.Tensor:
    side = 32 if name.endswith("-imagenet") else 16  # small inputs keep the big nets quick
    return torch.randn(batch, 3, side, side)


@pytest.mark.parametrize("name", list_presets())
def test_preset_forward_backward_odd_classes(name):
    torch.manual_seed(0)
    model = build_model(name, num_classes=7)
    out = model(preset_input(name))
    assert out.shape == (2, 7)
    out.logsumexp(dim=1).sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, f"parameters without gradient: {missing[:5]}"
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
    assert torch.isfinite(out).all()


@pytest.mark.parametrize(
    "name, expected",
    [
        ("resnet18", 11_173_962),
        ("resnet20", 269_722),
        ("resnet56", 853_018),
        ("resnet110", 1_727_962),
    ],
)
def test_exact_parameter_counts(name, expected):
    assert n_params(build_model(name)) == expected


@pytest.mark.parametrize("depth", [20, 32, 44, 56, 110])
def test_plain_twin_has_same_parameters(depth):
    plain, residual = build_model(f"plain{depth}"), build_model(f"resnet{depth}")
    assert n_params(plain) == n_params(residual)
    assert [n for n, _ in plain.named_parameters()] == [n for n, _ in residual.named_parameters()]


@pytest.mark.parametrize("depth", [18, 34, 50, 101, 152])
def test_imagenet_presets_equal_torchvision(depth):
    torch.manual_seed(depth)
    reference = getattr(torchvision.models, f"resnet{depth}")(weights=None)
    ours = build_model(f"resnet{depth}-imagenet")
    assert n_params(ours) == n_params(reference)
    with torch.no_grad():  # random running stats, so eval mode exercises every buffer
        for buffer in reference.buffers():
            if buffer.dtype.is_floating_point:
                buffer.uniform_(0.5, 1.5)
    ours.load_state_dict(reference.state_dict(), strict=True)
    ours.eval(), reference.eval()
    x = torch.randn(2, 3, 48, 48)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x), rtol=1e-4, atol=1e-5)


def test_registration_order_is_forward_order():
    model = build_model("resnet18")
    order: list[str] = []
    handles = [
        m.register_forward_hook(lambda mod, i, o, name=name: order.append(name))
        for name, _, m in parameterised_layers(model)
    ]
    model(torch.randn(1, 3, 32, 32))
    for h in handles:
        h.remove()
    assert order == [name for name, _, _ in parameterised_layers(model)]


def test_zero_pad_shortcut_subsamples_and_pads():
    shortcut = ZeroPadShortcut(16, 32, stride=2)
    x = torch.arange(2 * 16 * 4 * 4, dtype=torch.float32).reshape(2, 16, 4, 4)
    y = shortcut(x)
    assert y.shape == (2, 32, 2, 2)
    torch.testing.assert_close(y[:, 8:24], x[:, :, ::2, ::2])
    assert y[:, :8].abs().sum() == 0 and y[:, 24:].abs().sum() == 0


def test_plain_twin_has_no_skip():
    """Zeroing every block's last BN makes a residual block the identity, a plain block zero."""
    torch.manual_seed(0)
    for name, expect_identity in (("resnet20", True), ("plain20", False)):
        block = build_model(name).layer1[0].eval()
        torch.nn.init.zeros_(block.bn2.weight)
        torch.nn.init.zeros_(block.bn2.bias)
        x = torch.rand(1, 16, 8, 8)
        out = block(x)
        assert torch.equal(out, x) is expect_identity
        if not expect_identity:
            assert out.abs().sum() == 0


def test_custom_spec_and_overrides():
    spec = ArchSpec(
        stem="imagenet", block="bottleneck", depths=(1, 2), widths=(8, 16), num_classes=5
    )
    model = build_model(spec)
    assert model(torch.randn(2, 3, 64, 64)).shape == (2, 5)
    assert build_model("resnet20", residual=False).spec == get_preset("plain20")


def test_spec_json_round_trip():
    for name in list_presets():
        spec = get_preset(name)
        assert ArchSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    assert set(PRESET_INFO) == set(list_presets())


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"depths": (2, 0), "widths": (8, 8)}, "depths[1]"),
        ({"depths": (2, -1), "widths": (8, 8)}, "depths[1]"),
        ({"depths": (2, 2), "widths": (8,)}, "depths and widths"),
        ({"depths": (2,), "widths": (8.5,)}, "widths[0]"),
        ({"block": "tripleneck"}, "block"),
        ({"stem": "mnist"}, "stem"),
        ({"shortcut": "dense"}, "shortcut"),
        ({"num_classes": 0}, "num_classes"),
        ({"residual": "yes"}, "residual"),
        ({"residual": 1}, "residual"),
        ({"depths": (), "widths": ()}, "depths"),
        ({"depths": "22", "widths": (8, 8)}, "depths"),
        ({"shortcut": "zero_pad", "widths": (64, 32, 256, 512)}, "shortcut"),
    ],
)
def test_bad_specs_raise_spec_error_naming_the_field(changes, field):
    with pytest.raises(SpecError) as info:
        ArchSpec(**changes)
    assert str(info.value).startswith(field)
    assert isinstance(info.value, ValueError)


def test_unknown_preset_lists_close_matches():
    with pytest.raises(SpecError, match="resnet20"):
        build_model("resnet2O")
    with pytest.raises(SpecError, match="unknown field"):
        build_model("resnet20", colour="red")
    with pytest.raises(SpecError, match="unknown field"):
        ArchSpec.from_dict({"depth": [2]})


def test_same_seed_same_weights():
    def weights(seed):
        torch.manual_seed(seed)
        return build_model("resnet20").state_dict()

    a, b = weights(3), weights(3)
    for key in a:
        torch.testing.assert_close(a[key], b[key])
    assert not torch.equal(weights(4)["conv1.weight"], a["conv1.weight"])
