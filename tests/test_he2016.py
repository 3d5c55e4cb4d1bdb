"""He et al. 2016 (Sec. 4.2, Table 6, Fig. 6) as an experiment: recipe, warm-up and slide."""

import pytest

from resnet_core.common.errors import ConfigError
from resnet_core.training.config import TrainConfig
from resnet_core.training.experiments import get_experiment, member_configs
from resnet_core.training.recipe import lr_multiplier
from resnet_core.training.trainer import fit

TRAIN_IMAGES = 50_000  # CIFAR-10's training set; He trained the final nets on it too


def _configs(name: str, device: str = "cuda") -> dict[str, dict]:
    _, members = member_configs(get_experiment(name), device)
    return {plan.label: config for plan, config in members}


def test_he2016_runs_the_nine_nets_of_table6_and_fig6():
    configs = _configs("he2016")
    assert list(configs) == [
        "plain20",
        "plain32",
        "plain44",
        "plain56",
        "resnet20",
        "resnet32",
        "resnet44",
        "resnet56",
        "resnet110",
    ]
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
        "model": "resnet20",
        "device": "cpu",
        "schedule": "constant",
        "lr": 0.1,
        "warmup": 0.5,
        "warmup_lr_factor": 0.1,
        "eval_batch_size": 256,
    }
    fit(config, on_event=lambda e: lrs.append(e["lr"]) if e["event"] == "step" else None)
    assert lrs == pytest.approx([0.01] * 4 + [0.1] * 4)
