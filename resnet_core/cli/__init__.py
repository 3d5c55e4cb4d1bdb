"""The command line (`python -m resnet_core`): `main` parses the subcommands and adds
presets/trace/gradients; `train` adds train/eval/runs, `export` export and runs export,
`experiments` the lecture's experiments, `lesion` and `landscape` their studies of a trained
run, `exercises` a student's exercises (list, start, check, train), `mechanisms` three
mechanisms measured on nets at init, and `app` starts the app.

May import: every other layer; nothing imports it except `resnet_core.__main__`.
"""
