"""The weight average (ema), flip test-time augmentation (tta) and the torch.compile
fallback: what is evaluated, saved and resumed, and what a run says when it cannot compile."""

from __future__ import annotations

import json

import pytest
import torch
from app_helpers import QUICK_CPU_RUN
from torch import nn

from resnet_core.cli.main import main
from resnet_core.cli.train import evaluate_run
from resnet_core.training.averaging import WeightAverage
from resnet_core.training.callbacks import Callback
from resnet_core.training.events import Note, parse_event
from resnet_core.training.fitting import fit
from resnet_core.training.loader import DeviceLoader
from resnet_core.training.lockstep import fit_group
from resnet_core.training.parts import evaluate
from resnet_core.training.runs import load_checkpoint, read_events, read_metrics
from resnet_core.training.trainer import Trainer, TrainingFailed

TINY_NET = {"depths": [1, 1, 1], "widths": [8, 16, 32]}  # a narrow ResNet-8: quick on a CPU
TINY_RUN = {**QUICK_CPU_RUN, "model": TINY_NET}
EMA_RUN = {**TINY_RUN, "ema": 0.9}


def _params(model: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


def _hand_average(history: list[list[torch.Tensor]], decay: float) -> list[torch.Tensor]:
    """sum_i (1 - d) d^(t - i) w_i / (1 - d^t) over the weights after each step."""
    t = len(history)
    total = [torch.zeros_like(w) for w in history[0]]
    for i, weights in enumerate(history, start=1):
        for acc, w in zip(total, weights, strict=True):
            acc += (1 - decay) * decay ** (t - i) * w
    return [acc / (1 - decay**t) for acc in total]


def _assert_all_close(left, right) -> None:
    for a, b in zip(left, right, strict=True):
        torch.testing.assert_close(a, b)


def test_the_average_after_three_steps_matches_the_hand_computed_one():
    trainer = Trainer(EMA_RUN).setup()
    history = []
    for images, labels in list(trainer.state.train_loader) * 2:
        trainer.train_step(images, labels)
        history.append(_params(trainer.state.model))
        if len(history) == 3:
            break
    averaged = _params(trainer.state.average.model)
    _assert_all_close(averaged, _hand_average(history, 0.9))
    assert any(not torch.equal(a, w) for a, w in zip(averaged, history[-1]))


def test_the_first_step_sets_the_average_to_the_live_weights_not_the_initial_ones():
    torch.manual_seed(0)
    live = nn.Linear(4, 2)
    average = WeightAverage(live, 0.999)
    with torch.no_grad():
        live.weight.add_(1.0)
    average.update(1)
    _assert_all_close(_params(average.model), _params(live))


class _KeepCheckpoint(Callback):
    def __init__(self) -> None:
        self.state: dict = {}

    def on_checkpoint(self, trainer, state, improved):
        self.state = state


def test_ema_off_keeps_evaluation_and_checkpoints_on_the_live_model():
    trainer = Trainer(TINY_RUN).setup()
    trainer.train_epoch(1)
    assert trainer.state.average is None and trainer.evaluated_model() is trainer.state.model
    direct = evaluate(trainer.state.model, trainer.state.test_loader, "fp32")
    assert trainer.evaluate() == direct
    keep = _KeepCheckpoint()
    trainer.callbacks.append(keep)
    trainer.end_epoch(1, 0.0, 0.0, 0.0)
    assert "live_model" not in keep.state
    _assert_all_close(
        list(keep.state["model"].values()), list(trainer.state.model.state_dict().values())
    )


def test_evaluation_and_checkpoints_use_the_average(tmp_path):
    run_dir = tmp_path / "run"
    trainer = Trainer(EMA_RUN, run_dir=run_dir)
    result = trainer.fit()
    assert result.state == "done"
    averaged, live = trainer.state.average.model, trainer.state.model
    checkpoint = load_checkpoint(run_dir / "last.pt")
    _assert_all_close(list(checkpoint["model"].values()), list(averaged.state_dict().values()))
    _assert_all_close(list(checkpoint["live_model"].values()), list(live.state_dict().values()))
    assert any(not torch.equal(a, b) for a, b in zip(_params(averaged), _params(live)))
    for name, buffer in live.named_buffers():  # BatchNorm statistics: the live model's
        torch.testing.assert_close(checkpoint["model"][name], buffer)
    loss, accuracy = trainer.evaluate()
    assert (loss, accuracy) == evaluate(averaged, trainer.state.test_loader, "fp32")
    assert loss != evaluate(live, trainer.state.test_loader, "fp32")[0]
    assert result.final_test_acc == accuracy and result.model is averaged


def test_resume_restores_the_average_or_starts_it_from_the_weights(tmp_path):
    run_dir = tmp_path / "run"
    fit(EMA_RUN, run_dir=run_dir)
    saved = load_checkpoint(run_dir / "last.pt")
    longer = {**EMA_RUN, "epochs": 2}
    resumed = Trainer(longer, resume=run_dir).setup()
    _assert_all_close(
        list(resumed.state.average.model.state_dict().values()), list(saved["model"].values())
    )
    _assert_all_close(
        list(resumed.state.model.state_dict().values()), list(saved["live_model"].values())
    )

    without = {k: v for k, v in saved.items() if k != "live_model"}
    torch.save(without, run_dir / "last.pt")
    from_plain = Trainer(longer, resume=run_dir).setup()
    _assert_all_close(_params(from_plain.state.average.model), _params(from_plain.state.model))
    _assert_all_close(
        list(from_plain.state.model.state_dict().values()), list(saved["model"].values())
    )


def _test_loader(channels_last: bool) -> DeviceLoader:
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (40, 3, 32, 32), dtype=torch.uint8, generator=generator)
    labels = torch.randint(0, 10, (40,), generator=generator)
    return DeviceLoader(images, labels, 16, train=False, channels_last=channels_last)


def _by_hand(model: nn.Module, loader: DeviceLoader) -> tuple[float, float]:
    loss, correct = 0.0, 0
    with torch.no_grad():
        for images, labels in loader:
            logits = (model(images) + model(torch.flip(images, dims=[3]))) / 2
            loss += float(nn.functional.cross_entropy(logits, labels, reduction="sum"))
            correct += int((logits.argmax(1) == labels).sum())
    return loss / len(loader.labels), correct / len(loader.labels)


@pytest.mark.parametrize("channels_last", [False, True])
def test_flip_tta_averages_the_logits_of_each_image_and_its_mirror(channels_last):
    torch.manual_seed(0)
    lopsided = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 10))
    loader = _test_loader(channels_last)
    flipped = evaluate(lopsided, loader, tta="flip")
    expected = _by_hand(lopsided, loader)
    assert flipped[0] == pytest.approx(expected[0], rel=1e-5) and flipped[1] == expected[1]
    assert flipped[0] != pytest.approx(evaluate(lopsided, loader)[0], rel=1e-5)


def test_flip_tta_changes_nothing_for_a_mirror_symmetric_model():
    torch.manual_seed(0)
    pooled = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 10))
    loader = _test_loader(True)
    with_tta, without = evaluate(pooled, loader, tta="flip"), evaluate(pooled, loader)
    assert with_tta[0] == pytest.approx(without[0], rel=1e-5) and with_tta[1] == without[1]


def test_a_tiny_run_with_ema_and_flip_tta_finishes(tmp_path):
    config = {**EMA_RUN, "tta": "flip", "ema": 0.99, "channels_last": True, "precision": "bf16"}
    result = fit(config, run_dir=tmp_path / "run")
    assert result.state == "done" and result.final_test_acc is not None
    assert 0 <= result.final_test_acc <= 1


def test_a_lockstep_group_evaluates_each_member_with_its_own_average(tmp_path):
    nets = [{**EMA_RUN, "model": {**TINY_NET, "residual": False}}, {**EMA_RUN, "tta": "flip"}]
    results = fit_group(nets, [tmp_path / "a", tmp_path / "b"])
    assert [r.state for r in results] == ["done", "done"]
    for folder in ("a", "b"):
        assert "live_model" in load_checkpoint(tmp_path / folder / "last.pt")


# The compile fallback ------------------------------------------------------------------------
COMPILED_RUN = {**TINY_RUN, "compile": True}


def _notes(run_dir) -> list[str]:
    return [e.message for e in read_events(run_dir) if isinstance(e, Note)]


def test_a_compile_refused_at_setup_trains_uncompiled_and_says_why(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise RuntimeError("no C compiler found\nmore detail")

    monkeypatch.setattr(torch, "compile", refuse)
    result = fit(COMPILED_RUN, run_dir=tmp_path / "run")
    assert result.state == "done"
    [note] = _notes(tmp_path / "run")
    assert "torch.compile is off" in note and "RuntimeError: no C compiler found" in note
    kinds = [record["event"] for record in read_metrics(tmp_path / "run")]
    assert kinds[:2] == ["start", "note"]


def test_a_compile_that_breaks_at_the_first_step_falls_back_once(tmp_path, monkeypatch):
    calls = []

    def broken(model, **kwargs):
        def forward(images):
            calls.append(len(images))
            raise RuntimeError("InductorError: triton not found")

        return forward

    monkeypatch.setattr(torch, "compile", broken)
    result = fit({**COMPILED_RUN, "epochs": 2}, run_dir=tmp_path / "run")
    assert result.state == "done" and result.steps == 4 and result.final_test_acc is not None
    [note] = _notes(tmp_path / "run")
    assert "first compiled training step" in note and "triton not found" in note
    assert calls == [50]  # tried once, then never again


def test_running_out_of_memory_is_a_failure_not_a_reason_to_stop_compiling(tmp_path, monkeypatch):
    def short_of_memory(model, **kwargs):
        def forward(images):
            raise torch.OutOfMemoryError("CUDA out of memory")

        return forward

    monkeypatch.setattr(torch, "compile", short_of_memory)
    with pytest.raises(TrainingFailed, match="out of memory"):
        fit(COMPILED_RUN, run_dir=tmp_path / "run")
    assert _notes(tmp_path / "run") == []


def test_cuda_graphs_off_a_gpu_are_not_compiled_and_the_run_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr(torch, "compile", lambda *a, **k: pytest.fail("compiled"))
    config = {**COMPILED_RUN, "compile_mode": "reduce-overhead"}
    assert fit(config, run_dir=tmp_path / "run").state == "done"
    [note] = _notes(tmp_path / "run")
    assert "CUDA graphs" in note and "cpu" in note


def test_a_note_reads_back_from_its_record():
    record = {"event": "note", "step": 3, "epoch": 1, "message": "why", "time": 1.0}
    assert parse_event(record) == Note(step=3, epoch=1, message="why")


def test_the_cli_prints_the_note_and_evaluates_a_run_as_it_trained(tmp_path, capsys):
    run_dir, net = tmp_path / "run", tmp_path / "net.json"
    net.write_text(json.dumps(TINY_NET), encoding="utf-8")
    args = [
        "--arch",
        str(net),
        "--dataset",
        "synthetic",
        "--subset",
        "100",
        "--batch-size",
        "50",
        "--epochs",
        "1",
    ]
    args += ["--device", "cpu", "--precision", "fp32", "--eval-batch-size", "500"]
    args += ["--ema", "0.9", "--tta", "flip", "--compile-mode", "reduce-overhead"]
    assert main(["train", *args, "--no-progress", "--run-dir", str(run_dir)]) == 0
    assert "note: torch.compile is off for this run" in capsys.readouterr().err
    result = evaluate_run(str(run_dir), which="last")
    assert result["test_acc"] == result["recorded_test_acc"]
