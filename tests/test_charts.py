"""Chart builders, the projector theme, exports and run-metric tables."""

from __future__ import annotations

import pandas as pd

from resnet_core.views.charts import (
    epoch_chart,
    layer_norms_chart,
    metrics_frames,
    per_layer_long,
    runs_compare_chart,
    shape_profile_chart,
    step_chart,
    theme_config,
    themed,
    to_csv,
    to_png,
    to_svg,
)


def _norms() -> pd.DataFrame:
    frames = {
        "plain20": pd.DataFrame({"layer": ["a", "b", "c"], "grad_norm": [100.0, 10.0, 1.0]}),
        "resnet20": pd.DataFrame({"layer": ["a", "b"], "grad_norm": [2.0, 1.0]}),
    }
    return per_layer_long(frames, "grad_norm")


def test_per_layer_long_puts_nets_on_one_axis():
    long = _norms()
    assert list(long.columns) == ["net", "layer", "grad_norm", "position"]
    assert long.groupby("net")["position"].agg(["min", "max"]).values.tolist() == [
        [0.0, 1.0],
        [0.0, 1.0],
    ]


def test_plain_red_residual_blue_and_log_scale():
    spec = layer_norms_chart(
        _norms(), "grad_norm", "t", "y", residual={"plain20": False, "resnet20": True}
    ).to_dict()
    assert spec["encoding"]["y"]["scale"]["type"] == "log"
    assert spec["encoding"]["color"]["scale"]["range"] == ["#d62728", "#1f77b4"]


def test_large_theme_is_bigger_and_per_chart():
    small, large = theme_config(False), theme_config(True)
    assert large["axis"]["labelFontSize"] > small["axis"]["labelFontSize"]
    chart = step_chart(pd.DataFrame({"step": [1, 2], "loss": [2.0, 1.0]}), "loss", "Loss", "loss")
    big = themed(chart, large=True).to_dict()
    assert big["config"]["axis"]["labelFontSize"] == large["axis"]["labelFontSize"]
    assert big["height"] > chart.to_dict()["height"]
    assert (
        "config" not in chart.to_dict() or "axis" not in chart.to_dict()["config"]
    )  # original untouched


def test_exports():
    chart = themed(
        shape_profile_chart(
            pd.DataFrame(
                {"position": [0, 1], "layer": ["a", "b"], "channels": [16, 32], "side": [32, 16]}
            )
        )
    )
    assert to_png(chart).startswith(b"\x89PNG")
    assert to_svg(chart).lstrip().startswith("<svg")
    csv = to_csv(pd.DataFrame({"layer": ["conv1"], "output_shape": [[1, 16, 32, 32]]})).decode()
    assert csv.splitlines() == ["layer,output_shape", "conv1,1x16x32x32"]


def test_metrics_frames_from_events():
    events = [
        {"event": "start", "total_steps": 4},
        {"event": "step", "step": 1, "loss": 2.3, "lr": 0.1},
        {"event": "step", "step": 2, "loss": 2.0, "lr": 0.1},
        {"event": "epoch", "epoch": 1, "train_acc": 0.25, "test_acc": 0.3},
        {"event": "epoch", "epoch": 2, "train_acc": 0.5, "test_acc": None},
    ]
    steps, epochs = metrics_frames(events)
    assert list(steps["step"]) == [1, 2]
    assert epochs.to_dict("records") == [
        {"epoch": 1, "split": "train", "accuracy": 25.0},
        {"epoch": 2, "split": "train", "accuracy": 50.0},
        {"epoch": 1, "split": "test", "accuracy": 30.0},
    ]
    assert epoch_chart(epochs).to_dict()["encoding"]["y"]["scale"]["domain"] == [0, 100]
    assert metrics_frames([])[1].empty


def test_runs_compare_chart_colours_by_run():
    frame = pd.DataFrame({"run": ["a", "b"], "epoch": [1, 1], "test_acc": [50.0, 60.0]})
    assert runs_compare_chart(frame).to_dict()["encoding"]["color"]["field"] == "run"
