"""resnet_core: residual networks built from blocks, with probes that show why they work.

Layers, bottom to top (a module imports only from layers below its own):
``common`` (shared helpers) -> ``nets`` (specs, blocks, models) -> ``analysis`` (traces,
probes) -> ``exercises`` (a student's block, checked by what it computes) -> ``training`` (data, trainer, events, runs, jobs, experiments) -> ``studies``
(lesion and loss-landscape studies of trained runs, their result files) -> ``views``
(charts, diagrams, sentences, slides) -> ``cli``.

Public API::

    from resnet_core import (ArchSpec, SpecError, build_model, list_presets,
                             trace_shapes, gradient_norms, layer_responses)
"""

from __future__ import annotations

from resnet_core.analysis.probes import gradient_norms, layer_responses
from resnet_core.analysis.trace import trace_blocks, trace_shapes
from resnet_core.nets.model import BasicBlock, Bottleneck, build_model
from resnet_core.nets.spec import ArchSpec, SpecError, list_presets

__version__ = "0.1.0"

__all__ = [
    "ArchSpec",
    "SpecError",
    "BasicBlock",
    "Bottleneck",
    "build_model",
    "list_presets",
    "trace_shapes",
    "trace_blocks",
    "gradient_norms",
    "layer_responses",
    "__version__",
]
