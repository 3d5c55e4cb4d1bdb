"""Running one of the lecture's experiments (`resnet_core.training.experiments`).

`run_experiment` checks every run's settings and folder before it writes anything, trains
the runs with the ordinary training engine (in worker processes with `jobs` > 1), slims
their folders to ship (`resnet_core.training.slimming`), or, for an analysis, measures the
runs of the experiment it analyses (`resnet_core.training.responses`). `sample.json` names
the images: those measured, or for trained runs the test split and the training images.
`experiment.json` holds the command, hardware, date, versions, wall time and the recipe that
produced the numbers, so that a result can be traced to what made it.
"""

from __future__ import annotations

import os
import shlex
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from resnet_core.analysis.sampling import SAMPLE_FILE, write_sample
from resnet_core.common.device import resolve_device
from resnet_core.common.env import provenance
from resnet_core.common.files import read_json, write_json_atomic
from resnet_core.training.config import TrainConfig
from resnet_core.training.data import load_dataset
from resnet_core.training.events import Failed
from resnet_core.training.experiments import (
    Experiment,
    ExperimentError,
    RunPlan,
    get_experiment,
    member_configs,
)
from resnet_core.training.responses import RESPONSES_FILE, measure_responses
from resnet_core.training.runs import claim_run_dir, is_run_folder, read_events, read_status
from resnet_core.training.slimming import slim_run
from resnet_core.training.trainer import Trainer

__all__ = ["run_experiment", "training_sample"]


def member_state(run_dir: Path) -> str:
    """What an experiment run's folder holds: "new" (missing or empty), "done" (a finished
    run), "resumable" (a run stopped after at least one epoch) or "unfinished" (a run stopped
    before its first epoch ended: nothing to continue from)."""
    if not run_dir.exists() or (run_dir.is_dir() and not any(run_dir.iterdir())):
        return "new"
    if not is_run_folder(run_dir):
        return "foreign"
    if read_status(run_dir).get("state") == "done":
        return "done"
    return "resumable" if (run_dir / "last.pt").is_file() else "unfinished"


def _check_members(
    experiment: Experiment,
    folder: Path,
    configs: list[tuple[RunPlan, dict[str, Any]]],
    resume: bool = False,
) -> dict[str, str]:
    """Validate every run's settings and folder before anything is written: a bad setting
    (e.g. epochs -1) or a folder holding an earlier run stops the whole experiment, unless
    `resume` continues it (finished runs kept, stopped ones resumed). Returns each run's
    `member_state`."""
    if folder.exists() and not folder.is_dir():
        raise ExperimentError(f"{folder}: is a file, not a folder; choose another --out")
    states = {}
    for plan, config in configs:
        where = f"{experiment.name}, run {plan.label}"
        try:
            TrainConfig.from_dict(config)
            state = member_state(folder / plan.label) if resume else "new"
            if state in ("new", "resumable"):  # a finished run is kept as it is
                claim_run_dir(folder / plan.label, resume=state == "resumable")
        except ValueError as error:
            there = (folder / plan.label).exists() and not resume
            hint = "; to go on with an interrupted experiment, add --resume" if there else ""
            raise ExperimentError(f"{where}: {error}{hint}") from None
        if state in ("foreign", "unfinished"):
            raise ExperimentError(
                f"{where}: {folder / plan.label} "
                + (
                    "holds files that are not a run"
                    if state == "foreign"
                    else "stopped before its first epoch ended; delete that folder and resume"
                )
            )
        states[plan.label] = state
    return states


def _train_member(config: dict[str, Any], run_dir: str, state: str = "new") -> dict[str, Any]:
    """Train one run (in this process or a worker), continue it (`state` "resumable") or keep
    it ("done"); return its last event as a dict.

    A run that fails is reported as its "failed" event rather than raised, so one broken
    run does not lose the others' results.
    """
    if state == "done":
        return _last_event(Path(run_dir))
    if state == "resumable":
        trainer = Trainer(TrainConfig.from_dict(config), resume=run_dir)
    else:
        trainer = Trainer(TrainConfig.from_dict(config), run_dir=run_dir)
    try:
        trainer.fit()
    except Exception as error:  # noqa: BLE001 - recorded in experiment.json instead
        if not isinstance(trainer.outcome, Failed):
            return {"event": "failed", "message": f"{type(error).__name__}: {error}"}
    return _scalars(trainer.outcome.to_dict())


def _scalars(event: dict[str, Any]) -> dict[str, Any]:
    scalars = (str, int, float, bool, type(None))
    return {k: v for k, v in event.items() if isinstance(v, scalars)}


def _last_event(run_dir: Path) -> dict[str, Any]:
    """The last event of a finished run, as `_train_member` reports it."""
    recorded = read_events(run_dir)
    return _scalars(recorded[-1].to_dict()) if recorded else {"event": "done"}


def _train_members(
    configs: list[tuple[RunPlan, dict[str, Any]]],
    folder: Path,
    jobs: int,
    states: dict[str, str],
) -> list[tuple[RunPlan, dict[str, Any]]]:
    """Train (or continue, or keep, as `states` says) every run into `folder`, `jobs` at once
    in worker processes; (plan, last event)."""
    work = [
        (plan, (config, str(folder / plan.label), states.get(plan.label, "new")))
        for plan, config in configs
    ]
    if jobs > 1:
        with ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn")) as pool:
            futures = [(plan, pool.submit(_train_member, *args)) for plan, args in work]
            return [(plan, future.result()) for plan, future in futures]
    return [(plan, _train_member(*args)) for plan, args in work]


def _train(
    configs: list[tuple[RunPlan, dict[str, Any]]],
    folder: Path,
    jobs: int,
    on_event: Callable[[dict[str, Any]], None] | None,
    ship_weights: bool = True,
    states: dict[str, str] | None = None,
) -> list[dict[str, Any]]:
    """Train, report and slim every run; the experiment record's entry for each."""
    members = []
    for plan, last in _train_members(configs, folder, jobs, states or {}):
        member = {"label": plan.label, "run": plan.label, "model": plan.model, "result": last}
        members.append(member)
        if on_event:
            on_event({"event": "member", **member, "done": len(members), "total": len(configs)})
    for plan, _ in configs:
        slim_run(folder / plan.label, keep_weights=ship_weights)
    return members


def _train_all(
    experiment: Experiment,
    folder: Path,
    configs: list[tuple[RunPlan, dict[str, Any]]],
    jobs: int,
    on_event: Callable[[dict[str, Any]], None] | None,
    states: dict[str, str],
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Train the experiment's runs and write its sample.json: (recipe, members)."""
    # where the data lay on this machine is no part of the recipe
    recipe = {k: v for k, v in configs[0][1].items() if k not in ("model", "device", "data_dir")}
    members = _train(configs, folder, jobs, on_event, experiment.ship_weights, states)
    write_sample(folder / SAMPLE_FILE, training_sample(configs[0][1]))
    return recipe, members


def _analyse(
    experiment: Experiment, folder: Path, source: Path, data_dir: str | None, device: str
) -> tuple[str, dict[str, Any], list[dict[str, Any]]]:
    """Measure the trained runs of `source` into `folder`: recipe name, recipe and members."""
    record = read_json(source / "experiment.json")
    if not isinstance(record, dict) or not isinstance(record.get("recipe_name"), str):
        raise ExperimentError(f"{source / 'experiment.json'}: missing or not an experiment record")
    recipe_name = record["recipe_name"]
    recipe = {"analysis_of": experiment.analysis_of}
    frame, sample = measure_responses(source, experiment.runs, data_dir, device)
    frame.to_csv(folder / RESPONSES_FILE, index=False)
    write_sample(folder / SAMPLE_FILE, sample)
    members: list[dict[str, Any]] = [
        {"label": plan.label, "run": f"../{experiment.analysis_of}/{plan.label}"}
        for plan in experiment.runs
    ]
    return recipe_name, recipe, members


def training_sample(config: dict[str, Any]) -> dict[str, Any]:
    """What `sample.json` holds for trained runs: every run is judged on the whole test split
    and trained on the whole training split or, with a subset, the first images of each class
    (`resnet_core.training.data.stratified_subset`)."""
    data = load_dataset(
        config.get("dataset", "cifar10"),
        config.get("data_dir"),
        subset=config.get("subset"),
        seed=config.get("seed", 0),
    )
    subset = config.get("subset") if config.get("dataset", "cifar10") == "cifar10" else None
    train = (
        f"the first {subset // data.num_classes} training images of each class "
        f"({data.source} order), not seeded"
        if subset
        else "the whole training split"
    )
    return {
        "split": "test",
        "indices": list(range(len(data.test_labels))),
        "how": "the whole test split: every run's test accuracy",
        "dataset": data.source,
        "train": {"images": len(data.train_labels), "how": train},
    }


def _record(
    experiment: Experiment,
    command: str | None,
    device: str,
    started: float,
    recipe_name: str,
    recipe: dict[str, Any],
    members: list[dict[str, Any]],
) -> dict[str, Any]:
    """The contents of `experiment.json`."""
    return {
        "name": experiment.name,
        "title": experiment.title,
        "claim": experiment.claim,
        **provenance(
            command or " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv]), device
        ),
        "wall_seconds": round(time.time() - started, 1),
        "recipe_name": recipe_name,
        "recipe": recipe,
        "runs": members,
    }


def run_experiment(
    name: str,
    out_dir: str | os.PathLike,
    epochs: int | None = None,
    device: str = "auto",
    data_dir: str | None = None,
    jobs: int = 1,
    on_event: Callable[[dict[str, Any]], None] | None = None,
    command: str | None = None,
    overrides: dict[str, Any] | None = None,
    resume: bool = False,
) -> Path:
    """Run an experiment and write its folder.

    Args:
        name: an experiment from `list_experiments()`.
        out_dir: the folder that receives `<name>/` with one run directory per run.
        epochs: override the recipe's epochs.
        device: "auto", "cpu", "cuda" ...; picks the GPU or the reduced CPU recipe.
        data_dir: CIFAR-10 folder (see `resnet_core.training.data.load_cifar10`).
        jobs: runs trained at once in worker processes (useful on a GPU).
        on_event: called with {"event": "member", ...} as each run finishes ("done" of
            "total" runs so far).
        command: the command line to record (defaults to this process's argv).
        overrides: TrainConfig fields applied to every run (e.g. a synthetic dataset in tests).
        resume: go on with an interrupted run of the same experiment in `out_dir`: finished
            runs are kept, runs stopped after an epoch continue from their last.pt, missing
            ones are trained.

    Returns:
        The experiment folder.
    """
    experiment = get_experiment(name)
    folder = Path(out_dir) / name
    device = str(resolve_device(device))  # 'auto' becomes the device it picks
    recipe_name, configs = member_configs(experiment, device, epochs, data_dir, overrides)
    states: dict[str, str] = {}
    if not experiment.analysis_of:
        states = _check_members(experiment, folder, configs, resume)
    folder.mkdir(parents=True, exist_ok=True)
    started = time.time()
    if experiment.analysis_of:
        source = Path(out_dir) / experiment.analysis_of
        if not (source / "experiment.json").is_file():  # the runs it measures come first
            run_experiment(
                experiment.analysis_of, out_dir, epochs, device, data_dir, jobs, on_event,
                command, overrides,
            )  # fmt: skip
        recipe_name, recipe, members = _analyse(experiment, folder, source, data_dir, device)
    else:
        recipe, members = _train_all(experiment, folder, configs, jobs, on_event, states)
    record = _record(experiment, command, device, started, recipe_name, recipe, members)
    write_json_atomic(folder / "experiment.json", record)
    return folder
