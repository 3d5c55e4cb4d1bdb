"""The command line (`python -m resnet_core`): `main` parses the subcommands; `train` adds
train/eval/runs, `export` export and runs export, and `experiments` the lecture's experiments.

May import: every other layer; nothing imports it except `resnet_core.__main__`.
"""
