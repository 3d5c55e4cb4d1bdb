"""Small helpers every layer shares: the environment's folders, device choice and naming,
atomic file writes, process liveness, error messages, and model-mode context managers.

The bottom of the package: nothing here imports from any other part of `resnet_core`.
"""
