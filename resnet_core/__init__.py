"""resnet_core: residual networks built from blocks, with probes that show why they work.

Public API::

    from resnet_core import (ArchSpec, SpecError, build_model, list_presets,
                             trace_shapes, gradient_norms, layer_responses)
"""

from __future__ import annotations

from .model import BasicBlock, Bottleneck, build_model
from .probes import gradient_norms, layer_responses
from .spec import ArchSpec, SpecError, list_presets
from .trace import trace_blocks, trace_shapes

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
