"""Chart builders, the projector theme, exports and run-metric tables."""

from __future__ import annotations

import pandas as pd

from resnet_core.training.events import EpochEnd, GradNorms, Step
from resnet_core.training.experiments import shipped_root
from resnet_core.training.runs import read_events
from resnet_core.views.charts import (
    PLAIN_COLOUR,
    RESIDUAL_COLOUR,
    epoch_chart,
    layer_norms_chart,
    metrics_frames,
    per_layer_long,
    shape_profile_chart,
    step_chart,
    theme_config,
    themed,
    to_csv,
    to_png,
    to_svg,
)
from resnet_core.views.lockstep import (
    layer_grad_frame,
    layer_grad_heatmap,
    lockstep_chart,
    lockstep_frames,
    lockstep_sentence,
    net_colours,
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


def _events(losses: list[float], accuracy: float, test_acc: float, ratio: float) -> list:
    steps = [Step(step=i, epoch=1, loss=v, accuracy=accuracy) for i, v in enumerate(losses, 1)]
    rows = [{"kind": "conv", "grad_norm": ratio}, {"kind": "conv", "grad_norm": 1.0}]
    return [
        *steps,
        GradNorms(step=2, epoch=1, rows=rows),
        EpochEnd(epoch=1, step=len(losses), train_acc=accuracy, test_acc=test_acc),
    ]


def test_lockstep_frames_sentence_and_colours():
    frames = lockstep_frames(
        {
            "plain20": _events([2.0, 1.8, 1.6], 0.5, 0.4, 300.0),
            "resnet20": _events([2.0, 1.4], 0.7, 0.6, 3.0),
        }
    )
    assert list(frames.epochs["test_acc"]) == [40.0, 60.0]  # percent
    assert list(frames.grads["ratio"]) == [300.0, 3.0]  # first conv over last
    assert frames.steps.groupby("net")["accuracy"].last().to_dict() == {
        "plain20": 50.0,
        "resnet20": 70.0,
    }
    # step 2 is the last both reached: (2.0 + 1.8) / 2 and (2.0 + 1.4) / 2
    assert lockstep_sentence(frames) == (
        "Averaged over steps 1-2, the training loss is 1.90 for plain20 and 1.70 for "
        "resnet20: resnet20 is lowest so far (one run each)."
    )
    residual = {"p1": False, "r1": True, "p2": False, "p3": False, "p4": False, "p5": False}
    colours = net_colours(residual).to_dict()["range"]
    assert colours[:2] == [PLAIN_COLOUR, RESIDUAL_COLOUR]
    assert colours[5] == colours[0]  # a fifth plain net reuses the first red
    spec = lockstep_chart(
        frames.grads, "step", "ratio", "t", "r", {"plain20": False, "resnet20": True}, log=True
    ).to_dict()
    assert spec["encoding"]["y"]["scale"]["type"] == "log"
    assert spec["encoding"]["color"]["scale"]["range"] == [PLAIN_COLOUR, RESIDUAL_COLOUR]
    assert spec["encoding"]["y"]["axis"]["format"] == ".3~g"  # no "23.377404" ticks


def test_layer_gradient_heat_map_shares_one_log_scale():
    def norms(step: int, first: float) -> GradNorms:
        rows = [
            {"index": 0, "layer": "conv1", "kind": "conv", "grad_norm": first},
            {"index": 1, "layer": "bn1", "kind": "bn", "grad_norm": 5.0},
            {"index": 2, "layer": "fc", "kind": "linear", "grad_norm": 1.0},
        ]
        return GradNorms(step=step, epoch=1, rows=rows)

    events = {
        "plain20": [norms(step, 100.0) for step in range(1, 201)],
        "resnet20": [norms(5, 2.0), Step(step=6, epoch=1, loss=1.0)],
    }
    frame = layer_grad_frame(events, max_steps=50)
    assert set(frame["layer"]) == {"conv1", "fc"}  # BatchNorm rows left out
    assert frame[frame["net"] == "plain20"]["step"].nunique() == 50  # thinned evenly
    spec = layer_grad_heatmap(frame).to_dict()
    scale = spec["spec"]["encoding"]["color"]["scale"]
    assert scale["type"] == "log" and scale["domain"] == [1.0, 100.0]
    assert spec["facet"]["column"]["field"] == "net"
    assert layer_grad_frame({"empty": []}).empty


def test_shipped_grad_flow_runs_draw_a_heat_map():
    folder = shipped_root() / "grad_flow"
    events = {name: read_events(folder / name) for name in ("plain20", "resnet20")}
    frame = layer_grad_frame(events)
    assert set(frame["net"]) == {"plain20", "resnet20"}
    assert (frame.groupby("net")["step"].nunique() >= 20).all()  # every 10 of 234 steps
    assert (frame.groupby("net")["index"].nunique() == 20).all()  # 19 convs and the fc layer


def _first_last_ratios(folder: str, nets: tuple[str, str]) -> dict[str, pd.Series]:
    events = {net: read_events(shipped_root() / folder / net) for net in nets}
    grads = lockstep_frames(events).grads
    return {net: grads[grads["net"] == net]["ratio"] for net in nets}


def test_shipped_56_layer_runs_show_the_input_end_starved_in_the_plain_net():
    # checkpoints/demo/README.md, "grad_flow56/": the figures it quotes
    ratios = _first_last_ratios("grad_flow56", ("plain56", "resnet56"))
    plain, residual = ratios["plain56"].median(), ratios["resnet56"].median()
    assert round(plain, 2) == 0.28 and round(residual, 2) == 1.82
    assert round(ratios["plain56"].min(), 2) == 0.08
    shallow = _first_last_ratios("grad_flow", ("plain20", "resnet20"))["plain20"].median()
    assert plain < 0.5 < 1 < residual and plain < shallow  # deeper plain: weaker input end
    best = {
        net: read_events(shipped_root() / "grad_flow56" / net)[-1].best_test_acc
        for net in ("plain56", "resnet56")
    }
    assert best["resnet56"] > best["plain56"] + 0.1
