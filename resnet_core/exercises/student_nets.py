"""Training a student's `SimpleResNet`: their own module, in the trainer's process, starting
from the reference net's weights and saving its weights under the reference net's names.

Once the `simple_resnet` checks pass, the student's net is known to compute what the
reference ResNet-(6n+2) with projection shortcuts computes, layer for layer. `StudentNet`
wraps it: forward runs the student's code; `state_dict` and `load_state_dict` speak the
reference net's names, so checkpoints, evaluation, the Runs and Inspect pages and ONNX export
treat the run as any other, and the student's net can start from exactly the weights the
reference net of the same seed starts from (then, fed the same batches, both curves should
lie on top of each other, and the plain net's beside them shows what the shortcuts do).
"""

from __future__ import annotations

import copy
import os
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from resnet_core.common.errors import ConfigError
from resnet_core.common.files import read_regular_text
from resnet_core.exercises.net_checks import (
    check_simple_resnet,
    reference_pairs_of_net,
    student_block,
    student_spec,
    watched_run,
)
from resnet_core.exercises.sandbox import MAX_SOURCE_BYTES
from resnet_core.nets.spec import ArchSpec

__all__ = [
    "StudentNet",
    "student_net",
    "student_n_blocks",
    "student_group",
    "student_files",
    "STUDENT_CLASS",
]

STUDENT_CLASS = "SimpleResNet"


def student_n_blocks(spec: ArchSpec) -> int | None:
    """n when `spec` is what a `SimpleResNet(n_blocks=n)` computes (else None)."""
    n = spec.depths[0] if spec.depths else 0
    return n if n >= 1 and spec == student_spec(n) else None


class StudentNet(nn.Module):
    """The student's net, seen from outside as the reference net: `spec` is the reference
    spec and the state dict uses the reference's names (`names` maps the student's module
    paths to the reference's)."""

    def __init__(self, net: nn.Module, names: dict[str, str], spec: ArchSpec) -> None:
        super().__init__()
        self.net = net
        self.spec = spec
        self._to_reference = dict(names)
        self._to_student = {ours: theirs for theirs, ours in names.items()}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def state_dict(self, *args: Any, destination=None, prefix: str = "", keep_vars: bool = False):  # noqa: ANN201 - nn.Module's signature
        own = self.net.state_dict(keep_vars=keep_vars)
        out = OrderedDict(
            (f"{prefix}{self._to_reference[path]}.{leaf}", value)
            for path, leaf, value in _split(own)
            if path in self._to_reference
        )
        if destination is not None:
            destination.update(out)
            return destination
        return out

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):  # noqa: ANN201
        mapped, unexpected = {}, []
        for path, leaf, value in _split(state_dict):
            if path in self._to_student:
                mapped[f"{self._to_student[path]}.{leaf}"] = value
            else:
                unexpected.append(f"{path}.{leaf}")
        missing = sorted(set(self.state_dict()) - set(state_dict))
        if strict and (missing or unexpected):
            raise RuntimeError(
                f"the student's net has no part for {unexpected[:3]} or lacks {missing[:3]}"
            )
        return self.net.load_state_dict(mapped, strict=False, assign=assign)


def _split(state: dict) -> list[tuple[str, str, Any]]:
    return [(*key.rpartition(".")[::2], value) for key, value in state.items()]


def _names(net: nn.Module, block_cls: type, reference: nn.Module) -> dict[str, str]:
    """The student's module paths and the reference's, paired on a traced copy in eval mode
    (so that tracing leaves the BatchNorm statistics of `net` alone)."""
    probe = copy.deepcopy(net).eval()
    run = watched_run(probe, block_cls, torch.zeros(2, 3, 32, 32))
    theirs = {id(module): path for path, module in probe.named_modules()}
    ours = {id(module): path for path, module in reference.named_modules()}
    return {theirs[id(a)]: ours[id(b)] for a, b in reference_pairs_of_net(run, reference)}


def student_net(path: str | os.PathLike, reference: nn.Module) -> StudentNet:
    """The `SimpleResNet` of the student's file `path`, checked, holding `reference`'s weights.

    `reference` is the reference net (built from `student_spec(n)`, seeded as any run).
    ConfigError when the file has no such class or does not pass the `simple_resnet` checks.
    The file's code runs in this process: call this only in a process that runs nothing
    else (a job worker), under the exercise's memory limit (`sandbox.limit_training`).
    """
    spec = reference.spec
    n_blocks = student_n_blocks(spec)
    if n_blocks is None:
        raise ConfigError(f"student: a SimpleResNet computes ResNet-(6n+2), not {spec}")
    source = read_regular_text(path, MAX_SOURCE_BYTES)  # a regular file of a sensible size
    namespace = {"__name__": "student", "__file__": str(path)}
    exec(compile(source, str(path), "exec"), namespace)  # noqa: S102 - the student's own file
    cls = namespace.get(STUDENT_CLASS)
    if not isinstance(cls, type) or student_block(cls) is None:
        raise ConfigError(f"student: {os.path.basename(path)} has no {STUDENT_CLASS} beside a ResidualBlock")  # fmt: skip
    report = check_simple_resnet(cls)
    if not report.passed:
        first = report.failures[0]
        raise ConfigError(f"student: the file does not pass its checks ({first.check}: {first.message})")  # fmt: skip
    model = cls(n_blocks=n_blocks)
    net = StudentNet(model, _names(model, student_block(cls), reference), spec)
    net.load_state_dict(reference.state_dict())
    return net.to(next(reference.parameters()).device)


def student_group(path: str | os.PathLike, n_blocks: int, settings: dict) -> list[dict]:
    """Configs of a lockstep group: the student's net, the plain net of the same depth and
    the reference ResNet, with the same `settings` (seed, epochs, data, ...): the student's
    net and the reference start from the same weights and see the same batches."""
    spec = student_spec(n_blocks).to_dict()
    return [
        {**settings, "model": spec, "student": str(path)},
        {**settings, "model": {**spec, "residual": False}},
        {**settings, "model": spec},
    ]


def student_files(runs_dir: str | os.PathLike) -> Path:
    """Where students' files wait for their training jobs: beside the runs folder."""
    return Path(runs_dir).parent / "student-files"
