"""The block registry: spec, model, trace, size and diagram ask it instead of testing names,
so a new block kind is one module (its block and its `register_block`) plus its tests. A toy
kind, registered here, is built, traced, sized and drawn without any other change."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from resnet_core.analysis.trace import trace_blocks, trace_shapes
from resnet_core.nets.block_kinds import BLOCK_KINDS, BlockKind, Conv, block_kind, register_block
from resnet_core.nets.model import ResidualBlock, build_model, conv3x3
from resnet_core.nets.size import estimate_activation_values, estimate_mult_adds, estimate_params
from resnet_core.nets.spec import ArchSpec, SpecError
from resnet_core.views.diagram import block_diagram


class Triple(ResidualBlock):
    """Three 3x3 convs, the stride on the middle one: a block kind nobody ships."""

    def _build_main_path(self, in_channels, width, out_channels, stride):
        self.conv1, self.bn1 = conv3x3(in_channels, width), nn.BatchNorm2d(width)
        self.conv2, self.bn2 = conv3x3(width, width, stride), nn.BatchNorm2d(width)
        self.conv3, self.bn3 = conv3x3(width, out_channels), nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU()

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self._join(self.bn3(self.conv3(out)), x)


TRIPLE = BlockKind(
    "triple",
    Triple,
    1,
    (Conv(3, "in", "width"), Conv(3, "width", "width", strided=True), Conv(3, "width", "out")),
    "triple block",
    "three 3x3 convs",
)


@pytest.fixture()
def triple(monkeypatch):
    monkeypatch.setitem(BLOCK_KINDS, "triple", TRIPLE)  # gone again after the test
    return ArchSpec("cifar", "triple", (2, 1, 1), (8, 16, 32))


def test_a_registered_kind_builds_and_counts_its_layers(triple):
    model = build_model(triple)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert triple.num_layers() == 1 + 3 * 4 + 1
    weights = sum(p.numel() for p in model.parameters() if p.dim() > 1)  # conv and fc weights
    assert estimate_params(triple) == weights
    assert ArchSpec.from_dict(triple.to_dict()) == triple


def test_a_registered_kind_is_traced_sized_and_drawn(triple):
    model = build_model(triple)
    blocks = trace_blocks(model)
    kinds = blocks[blocks["stage"].between(1, 3)]
    assert list(kinds["kind"]) == ["triple"] * 4
    assert list(kinds["shortcut"]) == ["identity", "identity", "projection", "projection"]
    traced = trace_shapes(model, (1, 3, 32, 32))
    assert estimate_mult_adds(triple, 32) == pytest.approx(int(traced["mult_adds"].sum()), rel=1e-3)
    assert estimate_activation_values(triple, 32) > estimate_activation_values(
        triple.replace(block="basic"), 32
    )  # three conv outputs kept per block, not two
    assert "triple block" in block_diagram(blocks)
    drawn = block_diagram(blocks, layers=traced)  # opened up: the block's own layers
    assert drawn.count("conv3") >= 1 and "n4_add" in drawn


def test_the_spec_knows_only_registered_kinds():
    with pytest.raises(SpecError, match="block"):
        ArchSpec("cifar", "quadruple", (1, 1, 1), (8, 16, 32))
    with pytest.raises(ValueError, match="registered already"):
        register_block(BLOCK_KINDS["basic"])
    with pytest.raises(ValueError, match="one strided conv"):
        BlockKind("flat", Triple, 1, (Conv(3, "in", "out"),), "flat", "no stride")
    assert block_kind("bottleneck").expansion == 4 and len(block_kind("basic").convs) == 2


@pytest.mark.parametrize("name", ["resnet56", "resnet50", "resnet18-imagenet"])
def test_the_shipped_kinds_size_as_before(name):
    """The registry's sizes equal the traced and counted ones for the shipped kinds too."""
    from resnet_core.nets.spec import resolve_spec

    spec = resolve_spec(name)
    model = build_model(spec)
    weights = sum(p.numel() for p in model.parameters() if p.dim() > 1)
    assert estimate_params(spec) == weights
