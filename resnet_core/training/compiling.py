"""torch.compile with a way back: a run asked to compile trains compiled where it can, and on
the uncompiled model where it cannot, saying why once in a `Note`.

torch.compile may refuse at once (CUDA graphs off a GPU, an old torch), but most failures
(no C compiler, no triton, an operator it cannot lower) come at the first call of the
compiled model, because that is when it compiles. So the first compiled training step and
the first compiled evaluation are on trial: if either raises, compiling is off for the rest
of the run and the same work runs again on the eager model, which has changed nothing yet.

See https://pytorch.org/docs/stable/generated/torch.compile.html.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from resnet_core.common.errors import first_line
from resnet_core.training.callbacks import CancelRun
from resnet_core.training.config import TrainConfig

__all__ = ["CompileFallback", "compile_obstacle"]


def compile_obstacle(config: TrainConfig, device: torch.device) -> str | None:
    """Why torch.compile cannot be used for this run as configured, or None."""
    if config.compile_mode == "reduce-overhead" and device.type != "cuda":
        return (
            f"mode reduce-overhead replays CUDA graphs, which need a CUDA GPU, and this run "
            f"is on {device.type}"
        )
    return None


def _step_marker(config: TrainConfig) -> Callable[[], None]:
    """Called before every forward pass: a compiled model's CUDA graphs reuse their output
    buffers, and this tells torch that the previous step's outputs are no longer read."""
    if config.compile and hasattr(torch.compiler, "cudagraph_mark_step_begin"):
        return torch.compiler.cudagraph_mark_step_begin
    return lambda: None


def _off(reason: str) -> str:
    return f"torch.compile is off for this run, which trains the model uncompiled: {reason}"


class CompileFallback:
    """The forward pass a run trains and evaluates with: `eager` (the model, wrapped for
    data-parallel training where it is), or its torch.compile wrapper with `compile` on.

    Attributes:
        eager: the uncompiled model.
        forward: what to call: the compiled wrapper, or `eager` once compiling is off.
        mark_step: call before every forward pass (CUDA graphs reuse their output buffers).
        note: why compiling was off from the start (to say after the Start event), or None.

    Args:
        eager: the model to compile.
        config: the run's settings (`compile`, `compile_mode`).
        device: where the run trains.
    """

    def __init__(self, eager: nn.Module, config: TrainConfig, device: torch.device) -> None:
        self.eager = eager
        self.forward: Callable[..., torch.Tensor] = eager
        self.mark_step = _step_marker(config)
        self.note: str | None = None
        self.on_trial: set[str] = set()  # compiled phases that have not run once yet
        if config.compile:
            self._compile(config, device)

    def _compile(self, config: TrainConfig, device: torch.device) -> None:
        """Wrap `eager` in torch.compile, or say in `note` why it cannot be."""
        reason = compile_obstacle(config, device)
        if reason is None:
            try:
                self.forward = torch.compile(self.eager, mode=config.compile_mode)
            except Exception as error:  # noqa: BLE001 - any refusal means: train without it
                reason = f"torch.compile raised {type(error).__name__}: {first_line(error)}"
            else:
                self.on_trial = {"training step", "evaluation"}
                return
        self.note = _off(reason)

    def attempt(self, phase: str, run: Callable[[], Any], say: Callable[[str], Any]) -> Any:
        """Run `run()`, which calls `self.forward`. The first time `phase` runs compiled, a
        failure (no C compiler, no triton, ...) turns compiling off for the rest of the run,
        hands `say` a note saying why, and runs `run()` again on the eager model."""
        if phase not in self.on_trial:
            return run()
        try:
            result = run()
        except (CancelRun, KeyboardInterrupt, torch.OutOfMemoryError):
            raise  # not compiling's fault: the eager model would not do better
        except Exception as error:  # noqa: BLE001 - the eager model is tried next
            reason = f"the first compiled {phase} raised {type(error).__name__}: "
            self.on_trial = set()
            self.forward = self.eager
            say(_off(reason + first_line(error)))
            return run()
        self.on_trial.discard(phase)
        return result
