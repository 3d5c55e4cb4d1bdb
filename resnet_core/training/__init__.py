"""Training: data, runs and the engine. `data` loads CIFAR-10 (or a synthetic stand-in) into a
device-resident loader, `config` validates one run's settings, `events` defines what a run
reports, `trainer` trains (a `Trainer` with callbacks, `fit`/`iter_fit` around it), `group` trains
2-4 nets in lockstep on the same batches, `runs` writes and reads run folders, `jobs` queues
runs in worker processes, `seeds` holds the seed notebooks' recipes, `experiments` trains the
lecture's groups of runs, `tensorboard_export` writes a run's metrics as TensorBoard files.

May import: `resnet_core.common`, `resnet_core.nets`, `resnet_core.analysis`.
"""
