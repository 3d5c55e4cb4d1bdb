"""The exercises: each an id, a title, the class a student writes, a starter file in our own
words (a skeleton with numbered TODOs), hints revealed one at a time, and its checks. A new
exercise is one entry here plus its checks and their tests."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from resnet_core.exercises.block_checks import check_plain_block, check_residual_block
from resnet_core.exercises.bottleneck_checks import check_bottleneck
from resnet_core.exercises.net_checks import check_simple_resnet
from resnet_core.exercises.report import Report

__all__ = ["Exercise", "EXERCISES", "get_exercise", "check"]


@dataclass(frozen=True)
class Exercise:
    """One exercise: what to write, how to start, how it is checked."""

    id: str
    title: str
    class_name: str
    starter: str
    hints: tuple[str, ...]
    checks: Callable[[type], Report]
    trains: bool = False  # its answer is a net that can be trained (`student_nets`)
    catches: tuple[str, ...] = ()  # the mistakes its checks name (each planted in a test)


RESIDUAL_BLOCK_STARTER = '''"""Exercise residual_block: write the basic block of a CIFAR ResNet (He et al. 2016).

Check it with:  python -m resnet_core exercise check residual_block THIS_FILE.py
"""

import torch
import torch.nn.functional as F
from torch import nn


class ResidualBlock(nn.Module):
    def __init__(self, in_channels, out_channels, stride=1):
        super().__init__()
        # TODO 1: the main path: a 3x3 conv (carrying `stride`, padding 1, no bias), BatchNorm,
        #         then a second 3x3 conv (stride 1) and BatchNorm.
        # TODO 2: the shortcut: nothing at all when the shapes match (stride 1 and
        #         in_channels == out_channels); otherwise a 1x1 conv with `stride` (no bias)
        #         followed by BatchNorm, so that it has the main path's shape.

    def forward(self, x):
        # TODO 3: conv, BN, ReLU, conv, BN; add the shortcut of x; then ReLU.
        raise NotImplementedError("write the forward pass")
'''

PLAIN_BLOCK_STARTER = '''"""Exercise plain_block: the residual block without its shortcut, to compare (He et al.'s
"plain" nets, which get worse as they get deeper).

Check it with:  python -m resnet_core exercise check plain_block THIS_FILE.py
"""

import torch
import torch.nn.functional as F
from torch import nn


class PlainBlock(nn.Module):
    def __init__(self, in_channels, out_channels, stride=1):
        super().__init__()
        # TODO 1: a 3x3 conv (carrying `stride`, padding 1, no bias), BatchNorm, then a second
        #         3x3 conv (stride 1) and BatchNorm: the same main path as the residual block.
        # TODO 2: nothing else: a plain block has no shortcut.

    def forward(self, x):
        # TODO 3: conv, BN, ReLU, conv, BN, ReLU. Nothing is added.
        raise NotImplementedError("write the forward pass")
'''

SIMPLE_RESNET_STARTER = '''"""Exercise simple_resnet: the 6n+2-layer CIFAR ResNet (He et al. 2016, section 4.2),
built from your own ResidualBlock. n_blocks=3 gives ResNet-20.

Check it with:  python -m resnet_core exercise check simple_resnet THIS_FILE.py
"""

import torch
import torch.nn.functional as F
from torch import nn


class ResidualBlock(nn.Module):
    # TODO 0: your ResidualBlock from the exercise residual_block goes here (it is checked
    #         first, with its own checks).
    def __init__(self, in_channels, out_channels, stride=1):
        super().__init__()

    def forward(self, x):
        raise NotImplementedError("paste your block")


class SimpleResNet(nn.Module):
    def __init__(self, n_blocks=3, num_classes=10):
        super().__init__()
        # TODO 1: the stem: a 3x3 conv from 3 to 16 channels (stride 1, padding 1, no bias),
        #         then BatchNorm.
        # TODO 2: three stages of n_blocks ResidualBlocks each, with 16, 32 and 64 channels.
        #         Stage 1 keeps the 32x32 image; the first block of stages 2 and 3 has
        #         stride 2 and halves it (to 16x16, then 8x8). An nn.Sequential holds a stage.
        # TODO 3: the head: average-pool each of the 64 channels to one number
        #         (nn.AdaptiveAvgPool2d(1)), then nn.Linear(64, num_classes).

    def forward(self, x):
        # TODO 4: stem (conv, BN, ReLU), the three stages, pool, flatten, linear.
        raise NotImplementedError("write the forward pass")
'''

BOTTLENECK_STARTER = '''"""Exercise bottleneck: the block of ResNet-50 and deeper (He et al. 2016, Fig. 5 right):
a 1x1 conv narrows the channels, a 3x3 conv works on the narrow tensor, a 1x1 conv widens it
to 4 x channels, so a deep net stays affordable.

Check it with:  python -m resnet_core exercise check bottleneck THIS_FILE.py
"""

import torch
import torch.nn.functional as F
from torch import nn


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, in_channels, channels, stride=1):
        super().__init__()
        out_channels = channels * self.expansion
        # TODO 1: the main path: a 1x1 conv from in_channels to channels, BatchNorm; a 3x3
        #         conv (channels to channels, carrying `stride`, padding 1), BatchNorm; a 1x1
        #         conv from channels to out_channels, BatchNorm. No conv has a bias.
        # TODO 2: the shortcut: nothing when stride is 1 and in_channels == out_channels;
        #         otherwise a 1x1 conv to out_channels with `stride`, then BatchNorm.

    def forward(self, x):
        # TODO 3: conv, BN, ReLU, conv, BN, ReLU, conv, BN; add the shortcut of x; then ReLU.
        raise NotImplementedError("write the forward pass")
'''

EXERCISES: dict[str, Exercise] = {
    exercise.id: exercise
    for exercise in (
        Exercise(
            id="residual_block",
            title="The residual block",
            class_name="ResidualBlock",
            starter=RESIDUAL_BLOCK_STARTER,
            hints=(
                "Build the layers in __init__ and only call them in forward; F.relu is fine.",
                "With bias=False on every conv: BatchNorm right after a conv cancels any bias.",
                "The stride sits on the first 3x3 conv, and on the 1x1 conv of the shortcut.",
                "Add the shortcut before the last ReLU: out = relu(bn2(conv2(...)) + shortcut).",
            ),
            checks=check_residual_block,
            catches=(
                "a ReLU before the addition",
                "no projection where channels or the stride change",
                "the stride on the second conv",
                "a projection without BatchNorm",
                "convs with a bias before BatchNorm",
                "a shortcut that is never added",
                "a projection where the identity fits",
            ),
        ),
        Exercise(
            id="plain_block",
            title="The plain block (no shortcut)",
            class_name="PlainBlock",
            starter=PLAIN_BLOCK_STARTER,
            hints=(
                "It is the residual block's main path and nothing more: no 1x1 conv, no add.",
                "The stride sits on the first 3x3 conv, where the image is halved.",
                "End with a ReLU, as the residual block does after its addition.",
            ),
            checks=check_plain_block,
            catches=("a shortcut added", "no ReLU at the end"),
        ),
        Exercise(
            id="simple_resnet",
            title="The small ResNet, from your blocks",
            class_name="SimpleResNet",
            starter=SIMPLE_RESNET_STARTER,
            hints=(
                "Keep track of the channels: each block's in_channels is the last one's "
                "out_channels, starting at 16 after the stem.",
                "A stage is nn.Sequential(*blocks): the first block gets the stride (1 in stage "
                "1, 2 in stages 2 and 3), the other n_blocks - 1 blocks stride 1.",
                "Use n_blocks wherever a count of blocks goes; the checks build the net with "
                "two different values.",
                "torch.flatten(pool(x), 1) turns (N, 64, 1, 1) into (N, 64) for the linear layer.",
            ),
            checks=check_simple_resnet,
            trains=True,
            catches=(
                "a count written where n_blocks belongs",
                "a stage that does not halve the image",
                "a stage that halves it too soon",
                "stage widths other than 16, 32, 64",
                "no ReLU after the stem",
                "a conv bias in the stem",
                "a head without the average pool",
                "a net not built from your own blocks",
            ),
        ),
        Exercise(
            id="bottleneck",
            title="The bottleneck block (1x1, 3x3, 1x1)",
            class_name="Bottleneck",
            starter=BOTTLENECK_STARTER,
            hints=(
                "Three convs, each followed by BatchNorm; a ReLU after the first two BatchNorms "
                "and one more after the addition.",
                "The widths: in_channels -> channels (1x1), channels -> channels (3x3), "
                "channels -> 4 * channels (1x1).",
                "The stride goes on the 3x3 conv (and on the shortcut's 1x1 conv), as in "
                "torchvision's ResNet-50.",
            ),
            checks=check_bottleneck,
            catches=(
                "a ReLU before the addition",
                "no projection where channels or the stride change",
                "the stride on the first 1x1 conv",
                "a projection without BatchNorm",
                "convs with a bias before BatchNorm",
                "a shortcut that is never added",
                "a projection where the identity fits",
                "no expansion to 4 x channels",
            ),
        ),
    )
}


def get_exercise(exercise_id: str) -> Exercise:
    """The exercise of that id; ValueError naming the ones there are."""
    if exercise_id not in EXERCISES:
        raise ValueError(
            f"exercise: {exercise_id!r} is not one; choose one of {', '.join(EXERCISES)}"
        )
    return EXERCISES[exercise_id]


def check(exercise_id: str, cls: type) -> Report:
    """Check a student's class (e.g. `check("residual_block", ResidualBlock)` in a notebook):
    a report that prints as text and renders as HTML."""
    return get_exercise(exercise_id).checks(cls)
