"""The GPU speedrun recipes: valid configs, switchable ingredients, honest labels."""

from __future__ import annotations

import dataclasses

import pytest

from resnet_core.common.errors import ConfigError
from resnet_core.nets.spec import PRESETS
from resnet_core.training.config import TrainConfig
from resnet_core.training.speedruns import SPEEDRUNS, Measured, get_speedrun


@pytest.mark.parametrize("name", sorted(SPEEDRUNS))
def test_recipe_is_a_valid_config_of_its_preset(name):
    recipe = get_speedrun(name)
    config = recipe.train_config()
    assert recipe.preset in PRESETS
    assert config.model == recipe.preset
    assert config.device == "cuda" and config.compile
    assert TrainConfig.from_dict(config.to_dict()) == config


@pytest.mark.parametrize("name", sorted(SPEEDRUNS))
def test_each_ingredient_changes_the_config_and_comes_out_alone(name):
    recipe = get_speedrun(name)
    full = recipe.train_config().to_dict()
    for ingredient in recipe.ingredients:
        without = recipe.train_config(without=[ingredient.name]).to_dict()
        changed = {key for key in full if full[key] != without[key]}
        assert changed == set(ingredient.off), ingredient.name
    everything = recipe.train_config(without=[i.name for i in recipe.ingredients])
    assert everything.ema == 0 and everything.tta == "none" and not everything.compile
    assert everything.label_smoothing == 0


def test_large_batch_scales_the_learning_rate_linearly():
    recipe = get_speedrun("resnet18")
    full, small = recipe.train_config(), recipe.train_config(without=["large batch"])
    assert full.lr / full.batch_size == pytest.approx(small.lr / small.batch_size)


def test_unknown_names_are_config_errors_that_list_the_choices():
    with pytest.raises(ConfigError, match="resnet18"):
        get_speedrun("resnet999")
    with pytest.raises(ConfigError, match="EMA"):
        get_speedrun("resnet18").train_config(without=["magic"])


def test_label_promises_the_target_only_beside_a_measurement():
    recipe = get_speedrun("resnet18")
    unmeasured = dataclasses.replace(recipe, measured=None).label()
    assert "not yet measured" in unmeasured and "94%" in unmeasured
    measured = dataclasses.replace(
        recipe, measured=Measured(0.9312, 17.4, 3, "NVIDIA H200", "benchmarks/x.json")
    ).label()
    assert "93.1% in 17 s on NVIDIA H200, median of 3" in measured
    assert "94" not in measured


def test_ema_and_tta_are_validated():
    with pytest.raises(ConfigError, match="ema"):
        TrainConfig(ema=1.0)
    with pytest.raises(ConfigError, match="tta"):
        TrainConfig(tta="rotate")
    assert TrainConfig(ema=0.99, tta="flip").to_dict()["tta"] == "flip"
