"""Shape traces: rows in forward order, totals that add up, clear errors on bad inputs."""

import pytest
import torch

from resnet_core import SpecError, build_model, list_presets, trace_blocks, trace_shapes
from resnet_core.nets.spec import PRESET_INFO


def test_resnet18_trace_shapes():
    frame = trace_shapes(build_model("resnet18"))
    assert list(frame.columns) == [
        "layer",
        "type",
        "depth",
        "input_shape",
        "output_shape",
        "params",
        "mult_adds",
    ]
    assert [1, 512, 4, 4] in frame["output_shape"].tolist()
    assert frame["output_shape"].iloc[-1] == [1, 10]
    assert frame["layer"].iloc[0] == "conv1" and frame["layer"].iloc[-1] == "fc"
    assert frame["params"].sum() == sum(p.numel() for p in build_model("resnet18").parameters())


@pytest.mark.parametrize("name", list_presets())
def test_every_preset_traces_with_matching_totals(name):
    model = build_model(name)
    side = PRESET_INFO[name]["input_size"]
    layers = trace_shapes(model, (1, 3, side, side))
    blocks = trace_blocks(model, (1, 3, side, side))
    assert layers["params"].sum() == sum(p.numel() for p in model.parameters())
    assert blocks["params"].sum() == layers["params"].sum()
    assert blocks["mult_adds"].sum() == layers["mult_adds"].sum()
    assert blocks["name"].iloc[-1] == "head"
    first = {"small_cnn": "features.0", "simple_cnn": "block1"}.get(name, "stem")
    assert blocks["name"].iloc[0] == first
    assert blocks["output_shape"].iloc[-1] == [1, model.spec.num_classes]
    # consecutive blocks chain: each block's input is the previous block's output
    shapes = blocks["output_shape"].tolist()
    assert blocks["input_shape"].tolist()[1:] == shapes[:-1]


def test_trace_leaves_model_state_alone():
    model = build_model("resnet20").train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trace_shapes(model)
    assert model.training
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_block_view_shows_shortcuts_and_downsampling():
    blocks = trace_blocks(build_model("resnet20")).set_index("name")
    assert blocks.loc["layer1.0", "shortcut"] == "identity"
    assert (
        blocks.loc["layer2.0", "shortcut"] == "zero_pad" and blocks.loc["layer2.0", "downsamples"]
    )
    assert blocks.loc["layer2.0", "output_shape"] == [1, 32, 16, 16]
    assert not blocks.loc["layer2.1", "downsamples"]
    assert (trace_blocks(build_model("plain20"))["shortcut"].iloc[1:-1] == "none").all()
    projection = trace_blocks(build_model("resnet18")).set_index("name")
    assert projection.loc["layer2.0", "shortcut"] == "projection"
    assert projection.loc["layer2.0", "add"] == "out + BN(conv1x1(x))"


def test_input_size_forms_and_errors():
    model = build_model("resnet18-imagenet")
    assert trace_shapes(model, "3x64x64")["output_shape"].iloc[-1] == [1, 1000]
    assert trace_shapes(model, (3, 64, 64))["output_shape"].iloc[-1] == [1, 1000]
    with pytest.raises(SpecError, match="too small"):
        trace_shapes(model, (1, 3, 16, 16))
    with pytest.raises(SpecError, match="channels"):
        trace_shapes(model, (1, 1, 64, 64))
    with pytest.raises(SpecError, match="CxHxW|channels x height"):
        trace_shapes(model, "3 by 32")
    with pytest.raises(SpecError):
        trace_shapes(model, (1, 3, 64))
