"""He et al. 2016 (Sec. 4.2, Table 6, Fig. 6) as an experiment: recipe, warm-up and slide."""

import json
import sys
from pathlib import Path

import pytest
import torch

from resnet_core.common.errors import ConfigError
from resnet_core.training.config import TrainConfig
from resnet_core.training.events import EpochEnd
from resnet_core.training.experiments import get_experiment, member_configs
from resnet_core.training.fitting import fit
from resnet_core.training.parts import lr_multiplier
from resnet_core.training.slimming import slim_run
from resnet_core.views import lecture, lecture_charts

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import he2016_plan  # noqa: E402

TRAIN_IMAGES = 50_000  # CIFAR-10's training set; He trained the final nets on it too


# Table 6's and Fig. 6's nets, in He et al.'s order
HE_RUNS = ("plain20", "plain32", "plain44", "plain56")
HE_RUNS += ("resnet20", "resnet32", "resnet44", "resnet56", "resnet110")


def _configs(name: str, device: str = "cuda") -> dict[str, dict]:
    _, members = member_configs(get_experiment(name), device)
    return {plan.label: config for plan, config in members}


def test_he2016_runs_the_nine_nets_of_table6_and_fig6():
    configs = _configs("he2016")
    assert list(configs) == list(HE_RUNS)
    assert all(config["model"] == label for label, config in configs.items())


@pytest.mark.parametrize("name, batch, lr", [("he2016", 128, 0.1), ("he2016_b512", 512, 0.4)])
def test_he2016_recipe_is_hes_in_epochs(name, batch, lr):
    steps_per_epoch = TRAIN_IMAGES // batch  # the loader drops the last partial batch
    images_per_he_iteration = 128
    for label, config in _configs(name).items():
        TrainConfig.from_dict(config)
        assert config["batch_size"] == batch and config["lr"] == pytest.approx(lr)
        assert config["optimizer"] == "sgd" and config["momentum"] == 0.9
        assert config["nesterov"] is False and config["label_smoothing"] == 0.0
        assert config["weight_decay"] == 1e-4 and config["schedule"] == "step"
        assert config["augment"] is True and config["crop_pad"] == "zeros"
        assert config["gamma"] == 0.1
        # each drop and the stop lie within one epoch of He's 32k, 48k and 64k iterations
        he_iterations = (32_000, 48_000, 64_000)
        for epoch, iterations in zip([*config["milestones"], config["epochs"]], he_iterations):
            images = epoch * steps_per_epoch * batch
            assert abs(images - iterations * images_per_he_iteration) < TRAIN_IMAGES, label
        if label != "resnet110":
            assert config["warmup"] == 0.0


@pytest.mark.parametrize("name", ["he2016", "he2016_b512"])
def test_resnet110_starts_at_a_tenth_of_the_rate_for_about_400_iterations(name):
    config = TrainConfig.from_dict(_configs(name)["resnet110"])
    steps_per_epoch = TRAIN_IMAGES // config.batch_size
    total = config.epochs * steps_per_epoch
    warm_images = round(config.warmup * total) * config.batch_size
    assert abs(warm_images - 400 * 128) <= config.batch_size
    factors = [
        lr_multiplier(
            config.schedule,
            step,
            total,
            config.warmup,
            milestones=config.milestones,
            steps_per_epoch=steps_per_epoch,
            warmup_factor=config.warmup_lr_factor,
        )
        for step in range(total)
    ]
    warm = round(config.warmup * total)
    assert set(factors[:warm]) == {0.1}
    assert factors[warm] == 1.0
    assert factors[-1] == pytest.approx(0.01)
    first_drop = factors.index(pytest.approx(0.1), warm)
    assert abs(first_drop * config.batch_size - 32_000 * 128) < TRAIN_IMAGES


def test_cpu_recipe_is_small():
    for config in _configs("he2016", "cpu").values():
        assert config["subset"] <= 5_000 and config["epochs"] <= 3


@pytest.mark.parametrize("schedule", ["cosine", "step", "onecycle", "constant"])
def test_constant_warmup_holds_the_factor_then_follows_the_schedule(schedule):
    total, warmup = 100, 0.1
    linear = [lr_multiplier(schedule, s, total, warmup) for s in range(total)]
    assert linear == [
        lr_multiplier(schedule, s, total, warmup, warmup_factor=0.0) for s in range(total)
    ]
    held = [lr_multiplier(schedule, s, total, warmup, warmup_factor=0.25) for s in range(total)]
    assert held[:10] == [0.25] * 10
    assert held[10:] == linear[10:]
    assert linear[:10] == pytest.approx([(s + 1) / 10 for s in range(10)])


def test_warmup_lr_factor_is_validated():
    assert TrainConfig(warmup_lr_factor=0.5).warmup_lr_factor == 0.5
    assert TrainConfig().warmup_lr_factor == 0.0
    for bad in (-0.1, 1.5, "a", float("nan")):
        with pytest.raises(ConfigError, match="warmup_lr_factor"):
            TrainConfig(warmup_lr_factor=bad)


def test_trainer_holds_the_warmup_rate():
    lrs = []
    config = {
        "dataset": "synthetic",
        "subset": 128,
        "epochs": 1,
        "batch_size": 16,
        "model": "small_cnn",
        "device": "cpu",
        "schedule": "constant",
        "lr": 0.1,
        "warmup": 0.5,
        "warmup_lr_factor": 0.1,
        "eval_batch_size": 256,
    }
    fit(config, on_event=lambda e: lrs.append(e["lr"]) if e["event"] == "step" else None)
    assert lrs == pytest.approx([0.01] * 4 + [0.1] * 4)


# The slide, from experiment folders in the shipped format -------------------------------------
RECIPE = {"batch_size": 128, "epochs": 164, "lr": 0.1, "milestones": [82, 123], "precision": "fp32"}


def write_experiment(root, name, finals, recipe=RECIPE, epochs=3):
    """An experiment folder as `run_experiment` writes it: experiment.json, and per run a
    config.json and a metrics.jsonl whose errors fall linearly from 90 % to `finals[run]`,
    (final train error %, final test error %)."""
    folder = root / name
    for label, (train, test) in finals.items():
        run = folder / label
        run.mkdir(parents=True)
        (run / "config.json").write_text(json.dumps({**recipe, "model": setting(label)}))
        lines = []
        for epoch in range(1, epochs + 1):
            share = epoch / epochs
            train_acc = 1 - (90 + share * (train - 90)) / 100
            test_acc = 1 - (90 + share * (test - 90)) / 100
            event = EpochEnd(epoch=epoch, train_acc=train_acc, test_acc=test_acc, seconds=1.0)
            lines.append(json.dumps(event.to_dict()))
        (run / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    record = {
        "name": name,
        "recipe_name": "gpu-full",
        "recipe": recipe,
        "command": "test",
        "hardware": {"device": "cuda", "gpu": "test GPU"},
        "runs": [{"label": label, "run": label, "model": setting(label)} for label in finals],
    }
    (folder / "experiment.json").write_text(json.dumps(record))
    return folder


def setting(label):
    return label.rsplit("_seed", 1)[0]


# plain nets: deeper is worse; ResNets: deeper is better (He et al. Fig. 6)
PAPER_LIKE = {
    "plain20": (6.0, 10.0),
    "plain32": (7.0, 11.0),
    "plain44": (8.0, 12.0),
    "plain56": (9.0, 13.0),
    "resnet20": (4.0, 9.0),
    "resnet32": (3.0, 8.0),
    "resnet44": (2.0, 7.5),
    "resnet56": (1.0, 7.0),
    "resnet110": (0.5, 6.5),
}


def test_the_slide_is_shown_only_when_a_reproduction_is_shipped(tmp_path):
    *shipped, last = lecture.lecture_slides(tmp_path)
    assert tuple(shipped) == lecture.SLIDES and last.key == "your_turn"
    assert lecture.he2016_name(tmp_path) is None
    write_experiment(tmp_path, "he2016_b512", PAPER_LIKE)
    assert lecture.he2016_name(tmp_path) == "he2016_b512"
    write_experiment(tmp_path, "he2016", PAPER_LIKE)
    assert lecture.he2016_name(tmp_path) == "he2016"
    slides = lecture.lecture_slides(tmp_path)
    assert slides[:-2] == lecture.SLIDES and slides[-2] == lecture.HE2016_SLIDE
    assert slides[-1].key == "your_turn" and slides[-1].title.startswith(f"{len(slides)}. ")
    assert lecture.slide_index("99", len(slides)) == len(slides) - 1
    assert lecture.HE2016_SLIDE not in lecture.lecture_slides()  # nothing shipped yet


def test_table_sets_ours_beside_table6_row_by_row(tmp_path):
    write_experiment(tmp_path, "he2016", PAPER_LIKE)
    curves = lecture.he2016_curves("he2016", tmp_path)
    table = lecture.he2016_table(curves).set_index("network")
    assert list(table.index) == list(HE_RUNS)
    for run, (train, test) in PAPER_LIKE.items():
        assert table.loc[run, "our final train error (%)"] == pytest.approx(train)
        assert table.loc[run, "our final test error (%)"] == pytest.approx(test)
        if run.startswith("plain"):
            assert table.loc[run, "He et al. Table 6 (%)"] == "—"
            assert table.loc[run, "difference (points)"] == "—"
        else:
            he = lecture.HE_TABLE6[run]
            assert table.loc[run, "He et al. Table 6 (%)"] == f"{he:.2f}"
            assert float(table.loc[run, "difference (points)"]) == pytest.approx(test - he)
    assert lecture.HE_TABLE6 == {
        "resnet20": 8.75,
        "resnet32": 7.51,
        "resnet44": 7.17,
        "resnet56": 6.97,
        "resnet110": 6.43,
    }
    assert set(curves["split"]) == {"train", "test"} and curves["epoch"].max() == 3


def test_caption_is_computed_from_the_files(tmp_path):
    write_experiment(tmp_path, "he2016", PAPER_LIKE)
    table = lecture.he2016_table(lecture.he2016_curves("he2016", tmp_path))
    text = lecture.he2016_sentence(table, RECIPE)
    assert "plain nets rises with every step in depth" in text
    assert "ResNets falls with every step in depth" in text
    gaps = [abs(PAPER_LIKE[r][1] - he) for r, he in lecture.HE_TABLE6.items()]
    assert f"on average {sum(gaps) / len(gaps):.2f} points" in text
    assert "over 5 ResNets" in text
    assert "batch 128, 164 epochs" in text and "epochs 82, 123" in text

    flipped = {**PAPER_LIKE, "plain56": (5.0, 10.0), "resnet110": (3.5, 9.5)}
    other = write_experiment(tmp_path / "b", "he2016_b512", flipped, {**RECIPE, "batch_size": 512})
    table = lecture.he2016_table(lecture.he2016_curves("he2016_b512", other.parent))
    text = lecture.he2016_sentence(table, {**RECIPE, "batch_size": 512})
    assert "plain nets does not change steadily with depth" in text
    assert "ResNets does not change steadily with depth" in text
    assert "batch 512" in text
    gaps = [abs(flipped[r][1] - he) for r, he in lecture.HE_TABLE6.items()]
    assert f"on average {sum(gaps) / len(gaps):.2f} points" in text


def test_fig6_charts_draw_each_family_from_the_files(tmp_path):
    write_experiment(tmp_path, "he2016", PAPER_LIKE)
    curves = lecture.he2016_curves("he2016", tmp_path)
    for family, runs in (("plain", HE_RUNS[:4]), ("residual", HE_RUNS[4:])):
        spec = lecture_charts.fig6_chart(curves, family).to_dict()
        data = next(iter(spec["datasets"].values()))
        assert sorted({row["run"] for row in data}) == sorted(runs)
        assert spec["encoding"]["color"]["scale"]["domain"] == list(runs)


def test_the_reproduction_ships_metrics_only(tmp_path):
    assert get_experiment("he2016").ship_weights is False
    run = tmp_path / "resnet20"
    run.mkdir()
    for name in ("best.pt", "last.pt"):
        torch.save({"model": {"w": torch.zeros(2)}}, run / name)
    slim_run(run, keep_weights=False)
    assert not list(run.glob("*.pt"))


def test_the_timing_run_decides_between_batch_128_and_512(tmp_path):
    """Real 1-epoch runs stand in for the GPU timing run; the slowest net decides."""
    timing = tmp_path / "he2016"
    tiny = dict(dataset="synthetic", subset=256, batch_size=64, epochs=1, device="cpu")
    fit(TrainConfig(model={"depths": [1, 1, 1], "widths": [4, 8, 8]}, **tiny),
        run_dir=timing / "plain20")  # fmt: skip
    fit(TrainConfig(model="resnet20", **tiny), run_dir=timing / "resnet110")
    epochs = get_experiment("he2016").gpu_recipe["epochs"]
    first = [e for e in _events(timing / "resnet110") if e["event"] == "epoch"][0]
    one = first["seconds"] + first["eval_seconds"]
    expected = first["elapsed"] - one + epochs * one
    assert he2016_plan.estimate(timing / "resnet110", epochs) == pytest.approx(expected)
    assert he2016_plan.estimate(timing / "resnet110", epochs) > he2016_plan.estimate(
        timing / "plain20", epochs
    )
    name, why = he2016_plan.plan(timing, cap=expected + 1)
    assert name == "he2016" and "resnet110 the slowest" in why and "within" in why
    name, why = he2016_plan.plan(timing, cap=expected - 1)
    assert name == "he2016_b512" and "over the" in why
    (timing / "resnet32").mkdir()  # a net whose timing run ended before its first epoch
    assert he2016_plan.plan(timing, cap=1e9) == (
        "he2016_b512",
        "the timing run finished no epoch of resnet32",
    )
    assert he2016_plan.plan(tmp_path / "missing", cap=1e9)[0] == "he2016_b512"


def _events(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").open()]
