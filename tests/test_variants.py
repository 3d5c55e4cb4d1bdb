"""Block variants after ResNet: pre-activation blocks (He et al. 2016b) build, trace, size,
draw, train a step and export to ONNX, and compute what the paper describes."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch
from app_helpers import QUICK_CPU_RUN
from torch import nn

from resnet_core.analysis.trace import trace_blocks
from resnet_core.nets.block_kinds import block_kind
from resnet_core.nets.model import build_model
from resnet_core.nets.onnx_export import to_onnx
from resnet_core.nets.preact import PreActBlock, PreActBottleneck
from resnet_core.nets.size import estimate_params
from resnet_core.nets.spec import get_preset
from resnet_core.training.fitting import fit
from resnet_core.views.diagram import block_diagram

PREACT = {"preact-resnet20": 20, "preact-resnet56": 56, "preact-resnet110": 110, "preact-resnet164": 164}  # fmt: skip


@pytest.mark.parametrize("name", PREACT)
def test_preact_presets_build_with_their_depth_and_size(name):
    spec = get_preset(name)
    model = build_model(spec)
    assert spec.num_layers() == PREACT[name]
    assert estimate_params(spec) == sum(p.numel() for p in model.parameters() if p.dim() > 1)
    assert isinstance(model.bn1, nn.Identity) and isinstance(model.final_norm[0], nn.BatchNorm2d)
    blocks = trace_blocks(model)
    kind = "preact" if spec.block == "preact" else "preact_bottleneck"
    assert set(blocks.loc[blocks["stage"].between(1, 3), "kind"]) == {kind}
    assert "out + conv1x1(relu(BN(x)))" in set(blocks["add"])
    assert "pre-activation" in block_diagram(blocks)


@pytest.mark.parametrize("cls", [PreActBlock, PreActBottleneck])
def test_a_preact_block_adds_with_nothing_after(cls):
    """Nothing follows the addition: the output goes negative, and with the branch's last conv
    at zero an identity block passes x through unchanged (not relu(x))."""
    torch.manual_seed(0)
    width = 16 // cls.expansion
    block = cls(16, width).eval()
    x = torch.randn(2, 16, 8, 8)
    with torch.no_grad():
        assert float(block(x).min()) < 0
        last = block.conv3 if cls is PreActBottleneck else block.conv2
        last.weight.zero_()
        assert torch.equal(block(x), x)


def test_a_preact_projection_reads_the_activated_input_and_has_no_norm():
    block = PreActBlock(16, 32, stride=2).eval()
    assert [type(m) for m in block.downsample] == [nn.Conv2d]
    x = torch.randn(2, 16, 8, 8)
    with torch.no_grad():
        block.conv2.weight.zero_()
        expected = block.downsample(torch.relu(block.bn1(x)))
        assert torch.allclose(block(x), expected)


def test_a_preact_net_trains_a_step_and_exports(tmp_path):
    result = fit(
        {**QUICK_CPU_RUN, "model": "preact-resnet20", "subset": 100}, run_dir=tmp_path / "run"
    )
    assert result.state == "done"
    model = build_model("preact-resnet20").eval()
    images = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    session = ort.InferenceSession(to_onnx(model), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"images": images.numpy()})
    with torch.no_grad():
        np.testing.assert_allclose(got, model(images).numpy(), rtol=0, atol=1e-4)


# Zero-initialised residual branches (Goyal et al. 2017) -----------------------------------------
@pytest.mark.parametrize("depth", [18, 50])
def test_zero_init_equals_torchvisions_zero_init_residual(depth):
    import torchvision

    torch.manual_seed(0)
    ours = build_model(get_preset(f"resnet{depth}-imagenet").replace(zero_init=True))
    torch.manual_seed(0)
    theirs = getattr(torchvision.models, f"resnet{depth}")(zero_init_residual=True)
    mine, tv = ours.state_dict(), theirs.state_dict()
    assert set(mine) == set(tv) and all(torch.equal(mine[key], tv[key]) for key in mine)
    last = "bn2" if depth == 18 else "bn3"
    assert not ours.layer1[0].get_submodule(last).weight.any()


@pytest.mark.parametrize("name", ["resnet20-zeroinit", "resnet56-zeroinit", "resnet110-zeroinit"])
def test_a_zero_init_block_starts_as_the_identity(name):
    model = build_model(name).eval()
    block = model.layer2[1]  # an identity shortcut: the block passes relu(x) through
    x = torch.randn(2, 32, 16, 16)
    with torch.no_grad():
        assert torch.equal(block(x), torch.relu(x))
        assert not torch.equal(
            build_model(name.removesuffix("-zeroinit")).eval().layer2[1](x), torch.relu(x)
        )
    assert get_preset(name).num_layers() == int(name.split("-")[0].removeprefix("resnet"))


def test_zero_init_is_refused_where_there_is_no_branch_norm_to_zero():
    from resnet_core.nets.spec import SpecError

    with pytest.raises(SpecError, match="ends with a conv"):
        get_preset("preact-resnet20").replace(zero_init=True)
    with pytest.raises(SpecError, match="only a residual net"):
        get_preset("plain20").replace(zero_init=True)


# Without normalisation: SkipInit, Fixup, and the nets that need them ------------------------------
NO_NORM = ["resnet20-skipinit", "resnet56-fixup", "resnet110-nonorm", "plain56-nonorm"]


@pytest.mark.parametrize("name", NO_NORM)
def test_no_norm_presets_have_no_batchnorm_and_build_trace_and_size(name):
    spec = get_preset(name)
    model = build_model(spec)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert spec.num_layers() == int(name.split("-")[0].removeprefix("resnet").removeprefix("plain"))
    assert estimate_params(spec) == sum(p.numel() for p in model.parameters() if p.dim() > 1)
    blocks = trace_blocks(model)
    assert set(blocks.loc[blocks["stage"].between(1, 3), "kind"]) == {spec.block}
    assert block_kind(spec.block).label in block_diagram(blocks)


def test_skipinit_blocks_start_as_the_identity():
    model = build_model("resnet56-skipinit").eval()
    block = model.layer2[3]
    x = torch.randn(2, 32, 16, 16)
    with torch.no_grad():
        assert torch.equal(block(x), torch.relu(x)) and float(block.alpha.weight) == 0.0


def test_fixup_initialises_as_the_paper_says():
    model = build_model("resnet110-fixup")
    blocks = [m for stage in model.stages() for m in stage]
    assert len(blocks) == 54 and not model.fc.weight.any() and not model.fc.bias.any()
    assert all(not block.conv2.weight.any() for block in blocks)
    conv = blocks[10].conv1  # He-normal for its fan-out, times 54 ** -0.5
    expected = (2 / (conv.out_channels * 9)) ** 0.5 * 54**-0.5
    assert float(conv.weight.detach().std()) == pytest.approx(expected, rel=0.05)


@pytest.mark.parametrize("name", ["resnet20-skipinit", "resnet20-fixup", "plain20-nonorm"])
def test_a_no_norm_net_trains_a_step_and_exports(tmp_path, name):
    result = fit({**QUICK_CPU_RUN, "model": name, "subset": 100}, run_dir=tmp_path / "run")
    assert result.state == "done"
    torch.manual_seed(0)
    model = build_model(name).eval()
    with torch.no_grad():  # weights away from their zero start, so the export shows them
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.01)
    images = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    session = ort.InferenceSession(to_onnx(model), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"images": images.numpy()})
    with torch.no_grad():
        expected = model(images).numpy()
    np.testing.assert_allclose(
        got, expected, rtol=0, atol=1e-4 * max(1.0, float(np.abs(expected).max()))
    )


def test_the_diagram_names_each_kinds_projection():
    from resnet_core.views.diagram_svg import block_diagram_svg

    drawn = {name: block_diagram(trace_blocks(build_model(name))) for name in ("resnet18", "preact-resnet20", "resnet20-fixup")}  # fmt: skip
    assert "1x1 conv + BN" in drawn["resnet18"]
    assert (
        "1x1 conv of BN-ReLU(x)" in drawn["preact-resnet20"]
        and "1x1 conv + BN" not in drawn["preact-resnet20"]
    )
    assert "zero-pad" in drawn["resnet20-fixup"]  # option A: the CIFAR thin nets pad
    svg = block_diagram_svg(trace_blocks(build_model("preact-resnet20")))
    assert "1x1 conv of BN-ReLU(x)" in svg


# Lesions, landscapes and gradient flow accept every kind ------------------------------------
# The parameters that end each kind's branch: zeroed, the branch adds exactly 0.
BRANCH_END = {
    "resnet20": ("bn2.weight", "bn2.bias"),
    "preact-resnet20": ("conv2.weight",),
    "resnet20-nonorm": ("conv2.weight", "conv2.bias"),
    "resnet20-skipinit": ("alpha.weight",),
    "resnet20-fixup": ("scale.weight", "bias2b.weight"),
}


@pytest.mark.parametrize("name", list(BRANCH_END))
def test_a_lesion_deletes_a_block_the_way_its_kind_adds(name):
    from resnet_core.analysis.lesion import lesion_units, lesioned

    torch.manual_seed(0)
    model = build_model(name).eval()
    images = torch.randn(4, 3, 32, 32)
    intact = model(images)
    for unit in lesion_units(model)[:5]:  # the first block of stage 2 projects or pads
        block = dict(model.named_modules())[unit.path]
        with lesioned(model, [unit.name]):
            deleted = model(images)
        zeroed = build_model(name).eval()
        zeroed.load_state_dict(model.state_dict())
        with torch.no_grad():
            for parameter in BRANCH_END[name]:
                dict(zeroed.named_parameters())[f"{unit.path}.{parameter}"].zero_()
        torch.testing.assert_close(deleted, zeroed(images), msg=f"{name} {unit.name}")
        assert "dropped" not in block.__dict__
    assert torch.equal(model(images), intact)  # every block put back


@pytest.mark.parametrize("name", ["preact-resnet20", "resnet20-fixup", "resnet20-skipinit", "plain20-nonorm"])  # fmt: skip
def test_gradient_flow_and_a_landscape_slice_of_each_kind(name):
    from resnet_core.analysis.landscape import loss_slice, random_direction
    from resnet_core.analysis.probes import gradient_norms

    torch.manual_seed(0)
    model = build_model(name)
    images, labels = torch.randn(8, 3, 32, 32), torch.arange(8) % 10
    norms = gradient_norms(model, images, labels)
    convs = norms[norms["kind"] == "conv"]
    assert len(convs) >= 19 and np.isfinite(convs["grad_norm"]).all()  # 19 3x3, projections
    model.eval()
    direction = random_direction(model, torch.Generator().manual_seed(0))
    frame = loss_slice(model, images, labels, direction, [-0.5, 0.0, 0.5], bn_inputs=images)
    assert list(frame["alpha"]) == [-0.5, 0.0, 0.5] and np.isfinite(frame["loss"]).all()
