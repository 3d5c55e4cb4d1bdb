"""Reading an experiment folder: its record, each run's metrics per epoch, its responses.

What the lecture and the app show of an experiment comes from here, from the files
`resnet_core.training.experiment_runner` wrote; nothing is trained or recomputed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd

from resnet_core.common.files import read_json
from resnet_core.training.events import EpochEnd
from resnet_core.training.experiments import ExperimentError
from resnet_core.training.responses import RESPONSES_FILE
from resnet_core.training.runs import read_events

__all__ = ["final_train_errors", "load_experiment"]


def load_experiment(folder: str | os.PathLike) -> dict[str, Any]:
    """Read an experiment folder: its record plus each run's metrics as DataFrames.

    Returns:
        {"record": experiment.json, "epochs": DataFrame (run, epoch, train_loss, train_acc,
        test_loss, test_acc, seconds), "responses": DataFrame or None}

    Raises:
        ExperimentError: the folder or a file in it is missing or unreadable.
    """
    folder = Path(folder)
    path = folder / "experiment.json"
    record = read_json(path)
    if not isinstance(record, dict) or not isinstance(record.get("runs"), list):
        raise ExperimentError(f"{path}: missing or not an experiment record")
    rows = []
    for member in record["runs"]:
        run_dir = (folder / member["run"]).resolve()
        if not (run_dir / "metrics.jsonl").is_file():
            raise ExperimentError(f"{run_dir / 'metrics.jsonl'}: missing")
        for event in read_events(run_dir):
            if isinstance(event, EpochEnd):
                fields = event.to_dict()
                del fields["event"]
                rows.append({"run": member["label"], **fields})
    epochs = pd.DataFrame(rows)
    responses_path = folder / RESPONSES_FILE
    responses = pd.read_csv(responses_path) if responses_path.is_file() else None
    return {"record": record, "epochs": epochs, "responses": responses}


def final_train_errors(folder: str | os.PathLike) -> dict[str, float]:
    """Final-epoch training error (1 - train_acc) of each run in an experiment folder."""
    epochs = load_experiment(folder)["epochs"]
    last = epochs.sort_values("epoch").groupby("run").tail(1).set_index("run")
    return {run: float(1 - acc) for run, acc in last["train_acc"].items()}
