"""Nets: what a network is. `spec` holds `ArchSpec` (a net as data) and the preset table,
`block_kinds` the registry of block kinds (what spec, model, size, trace and diagram know of
each), `model` the blocks and `build_model`, `preact` the pre-activation blocks, `nonorm` blocks without
normalisation (SkipInit, Fixup), `size` the estimates that refuse a net too big to build,
`onnx_export` a net as an ONNX file,
`pretrained` torchvision's ImageNet weights for the `-imagenet` presets.

May import: `resnet_core.common` only. Everything else in the package builds on this.
"""
