"""Small helpers every layer shares: `env` the environment's folders and a result's
provenance, `device` device choice and naming, `files` every file read and written (regular
files only, range-checked JSON, atomic and never-replacing writes) and process liveness,
`weights` every load of saved tensors (weights_only, refusals by type), `errors` one-line
error messages, `modes` model-mode context managers, `records` JSON
records checked field by field, `cifar` CIFAR-10's normalisation constants, `text` user text
made safe to show, `classroom` who a class server's teacher and students are.

The bottom of the package: nothing here imports from any other part of `resnet_core`.
"""
