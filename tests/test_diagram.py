"""Diagram DOT, stage summary and shape-change marks, on real traces."""

from __future__ import annotations

import pytest

from resnet_core import ArchSpec, SpecError, build_model, list_presets, trace_blocks, trace_shapes
from resnet_core.nets.size import check_buildable, estimate_params
from resnet_core.views.diagram import (
    block_diagram,
    fmt_shape,
    mark_shape_changes,
    shape_profile,
    stage_summary,
)


@pytest.fixture(scope="module")
def resnet20_blocks():
    return trace_blocks(build_model("resnet20"))


def test_fmt_shape():
    assert fmt_shape([1, 16, 32, 32]) == "16x32x32"
    assert fmt_shape([1, 10]) == "10"


def test_every_residual_block_gets_an_add_node(resnet20_blocks):
    dot = block_diagram(resnet20_blocks, "resnet20", keep=None)
    assert dot.startswith("digraph") and dot.rstrip().endswith("}")
    assert dot.count('label="+"') == 9  # 3 stages x 3 basic blocks
    assert dot.count("zero-pad") == 2 and dot.count('label="identity"') == 7
    assert (
        "\n" not in dot.split("label=")[2].split(",")[0]
    )  # labels use \\n escapes, not raw newlines


def test_plain_net_has_no_adds():
    dot = block_diagram(trace_blocks(build_model("plain20")), keep=None)
    assert 'label="+"' not in dot


def test_long_stages_collapse():
    blocks = trace_blocks(build_model("resnet56"))
    dot = block_diagram(blocks, keep=2)
    assert dot.count("6 more basic blocks") == 3
    assert dot.count('label="+"') == 9  # 3 shown per stage
    assert dot.count('label="+"') < block_diagram(blocks, keep=None).count('label="+"')


def test_expanded_view_draws_layers(resnet20_blocks):
    layers = trace_shapes(build_model("resnet20"))
    dot = block_diagram(resnet20_blocks, layers=layers, keep=None, direction="TB")
    assert "cluster_" in dot and "conv1: Conv2d" in dot and "rankdir=TB" in dot


def test_quotes_in_title_are_escaped(resnet20_blocks):
    assert 'label="a \\"quoted\\" net"' in block_diagram(resnet20_blocks, 'a "quoted" net')


def test_stage_summary_adds_up(resnet20_blocks):
    stages = stage_summary(resnet20_blocks)
    assert list(stages["part"]) == ["stem", "stage 1", "stage 2", "stage 3", "head"]
    assert list(stages["blocks"])[1:4] == [3, 3, 3]
    assert stages["params"].sum() == sum(p.numel() for p in build_model("resnet20").parameters())
    assert stages["output"].iloc[3] == "64x8x8"


def test_marks_where_shapes_change():
    marked = mark_shape_changes(trace_shapes(build_model("resnet18")))
    projects = marked[marked["change"].str.contains("shortcut projects")]
    assert list(projects["layer"]) == [
        "layer2.0.downsample.0",
        "layer3.0.downsample.0",
        "layer4.0.downsample.0",
    ]
    halves = marked[marked["change"].str.contains("spatial halves")]
    assert "layer2.0.conv1" in set(halves["layer"])
    assert marked.loc[marked["layer"] == "layer1.0.conv1", "change"].item() == ""
    zero = mark_shape_changes(trace_shapes(build_model("resnet20")))
    assert zero["change"].str.contains("shortcut zero-pads").sum() == 2


def test_shape_profile_follows_main_path():
    profile = shape_profile(trace_shapes(build_model("resnet20")))
    assert profile["channels"].iloc[0] == 16 and profile["channels"].iloc[-1] == 64
    assert profile["side"].iloc[0] == 32 and profile["side"].iloc[-1] == 1  # after avgpool
    assert not profile["layer"].str.contains("downsample").any()


def test_estimate_params_matches_every_preset():
    for name in list_presets():
        model = build_model(name)
        real = sum(p.numel() for p in model.parameters())
        # BN weights are left out: under 1 %, 1.4 % in preact-resnet164, whose thin
        # bottlenecks normalise their four-times-wider inputs
        assert 0.98 * real <= estimate_params(model.spec) <= real, name


def test_too_big_nets_are_refused_before_building():
    huge = ArchSpec(depths=(64, 64, 64, 64), widths=(2048, 2048, 4096, 8192))
    with pytest.raises(SpecError, match="too big to build"):
        check_buildable(huge)
    check_buildable(build_model("resnet152-imagenet").spec)  # the biggest preset is fine
