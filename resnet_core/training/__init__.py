"""Training: data, runs and the engine.

Data and settings: `data` loads CIFAR-10 (or a synthetic stand-in), `loader` batches it on
the training device, `config` validates one run's settings.
The engine: `trainer` trains (a `Trainer`; `state` builds what it trains with, `parts` the
precision, schedule, optimizer and evaluation it puts together, `averaging` the weight
average, `compiling` the fallback from torch.compile, `distributed` the data-parallel parts, `threads`
how many CPU threads a step uses on a busy machine),
`events` defines what a run reports and `callbacks` who hears it, `fitting` wraps the trainer
as `fit`/`iter_fit`, `lockstep` trains 2-4 nets in lockstep on the same batches, `gap` says when one net's
loss opened a gap below another's.
Run folders: `recording` writes them, `runs` reads them back, `tensorboard_export` writes a
run's metrics as TensorBoard files.
Jobs: `jobs` queues runs and `job_worker` trains each in a process of its own;
`class_rules` says what a class server's students may queue and change.
Recipes (a recipe is a set of TrainConfig settings that reproduces a result): `notebooks`
holds the course notebooks' recipes, `speedruns` the GPU speedruns', and `choices` the Train
page's ready choices made of them. `experiments` defines the lecture's groups of runs (each
with a GPU and a CPU recipe), `experiment_runner` trains them, `responses` measures their
Fig. 7, `slimming` makes their folders fit to ship, `experiment_results` reads them back.

May import: `resnet_core.common`, `resnet_core.nets`, `resnet_core.analysis`.
"""
