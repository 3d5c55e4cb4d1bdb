"""The simple_resnet exercise: a net built from the student's own ResidualBlock. Correct nets in
two styles pass; each mistake planted into a correct net fails with its own explanation."""

from __future__ import annotations

import textwrap

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from resnet_core.cli.main import main
from resnet_core.exercises import EXERCISES, check
from resnet_core.nets.model import BasicBlock


class ResidualBlock(nn.Module):
    """A correct block: the checks find it beside the net, in this module."""

    def __init__(self, in_channels, out_channels, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x):
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(out + self.shortcut(x))


class Flat(nn.Module):
    """One nn.Sequential of every block, F.relu in forward; mistakes planted by keyword."""

    def __init__(self, n_blocks=3, num_classes=10, **mistakes):
        super().__init__()
        m = {"count": None, "strides": (1, 2, 2), "widths": (16, 32, 64), "stem_relu": True,
             "stem_bias": False, "pool": True, "block": ResidualBlock, **mistakes}  # fmt: skip
        self.m = m
        self.conv = nn.Conv2d(3, 16, 3, 1, 1, bias=m["stem_bias"])
        self.bn = nn.BatchNorm2d(16)
        layers, channels = [], 16
        for width, stride in zip(m["widths"], m["strides"]):
            for i in range(m["count"] or n_blocks):
                layers.append(m["block"](channels, width, stride if i == 0 else 1))
                channels = width
        self.blocks = nn.Sequential(*layers)
        self.fc = nn.Linear(channels * (1 if m["pool"] else 64), num_classes)

    def forward(self, x):
        x = self.bn(self.conv(x))
        x = self.blocks(F.relu(x) if self.m["stem_relu"] else x)
        x = F.adaptive_avg_pool2d(x, 1) if self.m["pool"] else x
        return self.fc(torch.flatten(x, 1))


class Stages(nn.Module):
    """Three named stages made by a helper, nn.ReLU, a fixed 8x8 average pool and view."""

    def __init__(self, n_blocks=3, num_classes=10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16))
        self.relu = nn.ReLU(inplace=True)
        self.in_channels = 16
        self.layer1 = self._stage(16, n_blocks, 1)
        self.layer2 = self._stage(32, n_blocks, 2)
        self.layer3 = self._stage(64, n_blocks, 2)
        self.pool = nn.AvgPool2d(8)
        self.linear = nn.Linear(64, num_classes)

    def _stage(self, channels, n_blocks, stride):
        blocks = []
        for s in [stride] + [1] * (n_blocks - 1):
            blocks.append(ResidualBlock(self.in_channels, channels, s))
            self.in_channels = channels
        return nn.Sequential(*blocks)

    def forward(self, x):
        x = self.layer3(self.layer2(self.layer1(self.relu(self.stem(x)))))
        return self.linear(self.pool(x).view(x.size(0), -1))


@pytest.mark.parametrize("solution", [Flat, Stages])
def test_correct_nets_in_two_styles_pass(solution):
    report = check("simple_resnet", solution)
    assert report.passed, str(report)
    assert report.findings[-1].check == "same as the reference"


def _net(**mistakes):
    class SimpleResNet(Flat):
        def __init__(self, n_blocks=3, num_classes=10):
            super().__init__(n_blocks, num_classes, **mistakes)

    return SimpleResNet


NET_MISTAKES = [
    ({"count": 3}, "blocks per stage", "is a number written where n_blocks belongs"),
    ({"strides": (1, 1, 2)}, "stage halves the image", "stage 2 (32 channels) keeps the image"),
    ({"strides": (2, 2, 2)}, "stage halves the image", "stage 1 (16 channels) halves the image"),
    ({"widths": (16, 32, 32)}, "stage widths", "the three stages have 16, 32 and 64"),
    ({"stem_relu": False}, "stem", "a ReLU belongs after the stem's BatchNorm"),
    ({"stem_bias": True}, "stem", "and a bias"),
    ({"pool": False}, "head", "linear layers are [(4096, 10)]"),
    ({"block": lambda i, o, s: BasicBlock(i, o, s)}, "built from blocks", "never calls a"),
]


@pytest.mark.parametrize(
    "mistakes, check_name, phrase", NET_MISTAKES, ids=[m[2][:30] for m in NET_MISTAKES]
)
def test_each_planted_net_mistake_is_named(mistakes, check_name, phrase):
    report = check("simple_resnet", _net(**mistakes))
    failed = {f.check: f.message for f in report.failures}
    also = ["head"] if check_name == "stage widths" else []  # a 32-channel end: Linear(32, 10)
    assert list(failed) == [check_name, *also], str(report)
    assert phrase in failed[check_name], failed[check_name]


def test_the_net_needs_the_students_own_block_beside_it():
    namespace: dict = {}
    exec(  # a net defined where no ResidualBlock is
        "from torch import nn\nclass SimpleResNet(nn.Module):\n"
        "    def __init__(self, n_blocks=3):\n        super().__init__()\n",
        namespace,
    )
    report = check("simple_resnet", namespace["SimpleResNet"])
    assert [f.check for f in report.failures] == ["ResidualBlock"]
    assert "no class ResidualBlock beside SimpleResNet" in report.failures[0].message


NET_FILE = textwrap.dedent(
    """
    import torch.nn.functional as F
    from torch import nn


    class ResidualBlock(nn.Module):
        def __init__(self, in_channels, out_channels, stride=1):
            super().__init__()
            self.a = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
            self.a_bn = nn.BatchNorm2d(out_channels)
            self.b = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
            self.b_bn = nn.BatchNorm2d(out_channels)
            self.skip = None
            if stride != 1 or in_channels != out_channels:
                self.skip = nn.Sequential(
                    nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                    nn.BatchNorm2d(out_channels),
                )

        def forward(self, x):
            out = self.b_bn(self.b(F.relu(self.a_bn(self.a(x)))))
            return F.relu(out + (x if self.skip is None else self.skip(x)))


    class SimpleResNet(nn.Module):
        def __init__(self, n_blocks=3, num_classes=10):
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16))
            blocks, channels = [], 16
            for width, stride in ((16, 1), (32, 2), (64, 2)):
                for i in range(n_blocks):
                    blocks.append(ResidualBlock(channels, width, stride if i == 0 else 1))
                    channels = width
            self.blocks = nn.Sequential(*blocks)
            self.fc = nn.Linear(64, num_classes)

        def forward(self, x):
            x = self.blocks(F.relu(self.stem(x)))
            return self.fc(x.mean((2, 3)))
    """
)


def test_a_net_file_is_checked_with_its_block(tmp_path, capsys):
    good = tmp_path / "net.py"
    good.write_text(NET_FILE)
    assert main(["exercise", "check", "simple_resnet", str(good)]) == 0, capsys.readouterr()
    assert "FAIL" not in capsys.readouterr().out
    wrong = tmp_path / "wrong.py"
    wrong.write_text(NET_FILE.replace("return F.relu(out + (", "return F.relu(out) + (("))
    assert main(["exercise", "check", "simple_resnet", str(wrong)]) == 1
    out = capsys.readouterr().out
    assert "FAIL ResidualBlock: fix the block first (relu after the addition" in out, out


def test_the_starter_names_the_block_and_the_net():
    starter = EXERCISES["simple_resnet"].starter
    assert "class ResidualBlock" in starter and "class SimpleResNet" in starter
    assert "n_blocks=3" in starter
    namespace: dict = {}
    exec(compile(starter, "simple_resnet.py", "exec"), namespace)
    report = check("simple_resnet", namespace["SimpleResNet"])  # the block comes first
    assert [f.check for f in report.failures] == ["ResidualBlock"], str(report)
    assert "fix the block first" in report.failures[0].message
