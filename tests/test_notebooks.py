"""The seed notebooks' recipes, exactly: their SimpleCNN, MultiStepLR milestones, a constant
rate, torchvision's zero-padded crops, no augmentation, their normalisation constants, and
the ready-made recipes that put these together."""

from __future__ import annotations

import argparse
import json

import pytest
import torch
import torch.nn.functional as F
from app_helpers import QUICK_CPU_RUN
from torch import nn

from resnet_core import build_model
from resnet_core.cli import train as cli_train
from resnet_core.common.cifar import CIFAR10_MEAN, CIFAR10_STD, NOTEBOOK_STD
from resnet_core.common.errors import ConfigError
from resnet_core.nets.model import SimpleCNN, SmallCNN
from resnet_core.nets.size import estimate_params
from resnet_core.nets.spec import ArchSpec, resolve_spec
from resnet_core.training.callbacks import EventLog
from resnet_core.training.config import TrainConfig
from resnet_core.training.data import (
    Cifar10,
    synthetic_cifar10,
)
from resnet_core.training.events import Step
from resnet_core.training.experiments import shipped_root
from resnet_core.training.loader import DeviceLoader
from resnet_core.training.notebooks import NOTEBOOK_NOTES, NOTEBOOK_RECIPES
from resnet_core.training.parts import eval_loader, lr_multiplier, train_loader
from resnet_core.training.runs import load_run
from resnet_core.training.trainer import Trainer

SEED_PARAMS = 896 + 64 + 18_496 + 128 + 73_856 + 256 + 295_168 + 512 + 2_570  # 391,946


class NotebookSimpleCNN(nn.Module):
    """The seed notebook's SimpleCNN as a notebook writes it: the reference for ours."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 32, 3, padding=1), nn.BatchNorm2d(32)
        self.conv2, self.bn2 = nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64)
        self.conv3, self.bn3 = nn.Conv2d(64, 128, 3, padding=1), nn.BatchNorm2d(128)
        self.conv4, self.bn4 = nn.Conv2d(128, 256, 3, padding=1), nn.BatchNorm2d(256)
        self.pool = nn.MaxPool2d(2, 2)
        self.fc = nn.Linear(256, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(F.relu(self.bn1(self.conv1(x))))
        x = self.pool(F.relu(self.bn2(self.conv2(x))))
        x = self.pool(F.relu(self.bn3(self.conv3(x))))
        x = F.relu(self.bn4(self.conv4(x)))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


# The seed net --------------------------------------------------------------------------------
def test_simple_cnn_is_the_seed_notebooks_net():
    torch.manual_seed(0)
    model = build_model("simple_cnn")
    assert isinstance(model, SimpleCNN)
    assert sum(p.numel() for p in model.parameters()) == SEED_PARAMS == 391_946
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [32, 64, 128, 256]
    assert all(c.bias is not None and c.kernel_size == (3, 3) for c in convs)
    assert all(c.padding == (1, 1) and c.stride == (1, 1) for c in convs)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 4
    pools = [m for m in model.modules() if isinstance(m, nn.MaxPool2d)]
    assert len(pools) == 3 and all(p.kernel_size == 2 for p in pools)
    assert isinstance(model.avgpool, nn.AdaptiveAvgPool2d)
    assert (model.fc.in_features, model.fc.out_features) == (256, 10)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_simple_cnn_computes_what_the_notebooks_net_computes():
    """Same weights in, same logits out: the layers, their order and the pools all match."""
    torch.manual_seed(0)
    ours, theirs = build_model("simple_cnn").eval(), NotebookSimpleCNN().eval()
    ours_state, their_keys = ours.state_dict(), list(theirs.state_dict())
    assert [v.shape for v in ours_state.values()] == [
        theirs.state_dict()[k].shape for k in their_keys
    ]
    for value in ours_state.values():  # non-trivial BN statistics, so the BN order matters
        if value.is_floating_point():
            value.copy_(torch.rand_like(value) + 0.5)
    theirs.load_state_dict(dict(zip(their_keys, ours_state.values())))
    images = torch.randn(3, 3, 32, 32)
    torch.testing.assert_close(ours(images), theirs(images))
    assert list(ours_state)[:3] == ["block1.conv.weight", "block1.conv.bias", "block1.bn.weight"]


def test_simple_cnn_sizes_from_its_spec():
    spec = resolve_spec("simple_cnn")
    assert spec.family == "seed_cnn" and spec.num_layers() == 5
    assert 0.99 * SEED_PARAMS <= estimate_params(spec) <= SEED_PARAMS
    assert spec.downsample_factor() == spec.min_input_size() == 8  # three pools
    assert build_model("simple_cnn")(torch.randn(2, 3, 8, 8)).shape == (2, 10)
    wider = spec.replace(depths=(2, 1), widths=(16, 32), num_classes=7)
    model = build_model(wider)
    assert sum(p.numel() for p in model.parameters()) == (
        448 + 32 + 2_320 + 32 + 4_640 + 64 + 231  # two convs at 16, one pool, one at 32
    )
    assert model(torch.randn(2, 3, 6, 6)).shape == (2, 7)


def test_small_cnn_keeps_the_old_net_and_its_shipped_weights():
    model = build_model("small_cnn")
    assert isinstance(model, SmallCNN)
    assert sum(p.numel() for p in model.parameters()) == 261_834
    assert ArchSpec(family="simple_cnn", depths=(2, 2), widths=(64, 128)).family == "small_cnn"
    run_dir = shipped_root() / "cnn_vs_resnet" / "small_cnn"
    if not (run_dir / "best.pt").is_file():
        pytest.skip("no shipped small_cnn weights in this checkout")
    loaded, info = load_run(run_dir)
    assert isinstance(loaded, SmallCNN) and info.model == "small_cnn"
    assert sum(p.numel() for p in loaded.parameters()) == 261_834


# Learning-rate schedules -----------------------------------------------------------------------
def _torch_multistep(milestones: list[int], gamma: float, epochs: int, steps: int) -> list[float]:
    """Per-step lr factor of torch's MultiStepLR stepped once per epoch."""
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones, gamma)
    factors = []
    for _epoch in range(epochs):
        factors += [optimizer.param_groups[0]["lr"]] * steps
        optimizer.step()
        scheduler.step()
    return factors


def test_milestones_drop_the_rate_at_the_named_epochs():
    epochs, per_epoch = 15, 7
    total = epochs * per_epoch

    def factor(step: int) -> float:
        return lr_multiplier(
            "step", step, total, 0.0, milestones=(8, 12), gamma=0.1, steps_per_epoch=per_epoch
        )

    epoch9, epoch13 = 8 * per_epoch, 12 * per_epoch  # first steps of epochs 9 and 13
    assert factor(epoch9 - 1) == 1.0 and factor(epoch9) == pytest.approx(0.1)
    assert factor(epoch13 - 1) == pytest.approx(0.1) and factor(epoch13) == pytest.approx(0.01)
    expected = _torch_multistep([8, 12], 0.1, epochs, per_epoch)
    assert [factor(s) for s in range(total)] == pytest.approx(expected)


def test_constant_rate_and_the_default_step_schedule():
    assert {lr_multiplier("constant", s, 90, 0.0) for s in range(90)} == {1.0}
    assert lr_multiplier("constant", 0, 90, 0.1) < 1.0  # a warm-up when one is asked for
    assert lr_multiplier("constant", 9, 90, 0.1) == 1.0
    # "step" without milestones: x0.1 at 50 % and 75 % of the steps, as before
    default = [lr_multiplier("step", s, 100, 0.0) for s in (49, 50, 74, 75)]
    assert default == pytest.approx([1.0, 0.1, 0.1, 0.01])
    halved = [lr_multiplier("step", s, 100, 0.0, gamma=0.5) for s in (49, 50, 75)]
    assert halved == pytest.approx([1.0, 0.5, 0.25])


# Data options ----------------------------------------------------------------------------------
def _data(count: int = 96) -> Cifar10:
    """Synthetic images whose labels are their indices, so a batch names its images."""
    data = synthetic_cifar10(num_train=count, num_test=40)
    return Cifar10(
        data.train_images,
        torch.arange(count),
        data.test_images,
        torch.arange(40),
        data.classes,
        "synthetic",
        True,
    )


def _config(**changes) -> TrainConfig:
    return TrainConfig(batch_size=32, channels_last=False, **changes)


def test_no_augmentation_gives_the_stored_images_in_shuffled_order():
    data = _data()
    loader = train_loader(_config(augment=False), data, torch.device("cpu"))
    assert loader.crop_padding == 0 and not loader.flip
    seen = []
    for batch, index in loader:
        std = torch.tensor(CIFAR10_STD).view(1, 3, 1, 1) * 255
        mean = torch.tensor(CIFAR10_MEAN).view(1, 3, 1, 1) * 255
        restored = (batch * std + mean).round().to(torch.uint8)
        assert torch.equal(restored, data.train_images[index])
        assert torch.equal(batch, loader.normalize(data.train_images[index]))
        seen.append(index)
    assert not torch.equal(torch.cat(seen), torch.arange(96))  # shuffled, all of them
    assert sorted(torch.cat(seen).tolist()) == list(range(96))


def test_default_loader_options_are_unchanged():
    data = _data()
    ours = train_loader(_config(), data, torch.device("cpu"))
    before = DeviceLoader(data.train_images, data.train_labels, 32, "cpu", train=True, seed=0)
    for (a, labels_a), (b, labels_b) in zip(ours, before, strict=True):
        assert torch.equal(a, b) and torch.equal(labels_a, labels_b)


def _crops(pad_mode: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Crops of constant grey images: a batch, and the normalised values of grey and black."""
    grey = torch.full((200, 3, 32, 32), 200, dtype=torch.uint8)
    labels = torch.zeros(200, dtype=torch.int64)
    loader = DeviceLoader(grey, labels, 200, flip=False, pad_mode=pad_mode)
    batch, _ = next(iter(loader))
    black = loader.normalize(torch.zeros(1, 3, 1, 1, dtype=torch.uint8))
    return batch, loader.normalize(grey[:1, :, :1, :1]), black


def test_zero_padding_shows_black_borders_and_reflect_does_not():
    zeros, grey, black = _crops("zeros")
    is_black = (zeros == black).all(1)  # (N, H, W)
    assert ((zeros == grey).all(1) | is_black).all()  # every pixel is the image or black
    shifted = is_black.flatten(1).any(1)
    assert shifted.float().mean() > 0.9  # 80 of 81 shifts move the image
    first = int(shifted.nonzero()[0])
    rows, cols = is_black[first].nonzero(as_tuple=True)
    assert bool((rows == 0).any() | (rows == 31).any() | (cols == 0).any() | (cols == 31).any())
    reflect, grey, black = _crops("reflect")
    assert (reflect == grey).all() and not (reflect == black).any()


def test_zero_padding_through_the_config():
    loader = train_loader(_config(crop_pad="zeros"), _data(), torch.device("cpu"))
    assert (loader.crop_padding, loader.flip, loader.pad_mode) == (4, True, "zeros")
    with pytest.raises(ValueError, match="pad_mode"):
        DeviceLoader(torch.zeros(4, 3, 8, 8, dtype=torch.uint8), torch.zeros(4), 2, pad_mode="edge")


def test_notebook_normalisation_uses_the_other_std():
    data = _data()
    cpu = torch.device("cpu")
    images = data.test_images[:1]
    for make in (train_loader, eval_loader):
        plain = make(_config(augment=False), data, cpu).normalize(images)
        notebook = make(_config(augment=False, normalize="notebook"), data, cpu).normalize(images)
        ratio = torch.tensor(CIFAR10_STD) / torch.tensor(NOTEBOOK_STD)
        torch.testing.assert_close(notebook, plain * ratio.view(1, 3, 1, 1))
        assert not torch.allclose(notebook, plain)
    test_batch, _ = next(iter(eval_loader(_config(normalize="notebook"), data, cpu)))
    expected = (data.test_images[:1].float() / 255 - torch.tensor(CIFAR10_MEAN).view(3, 1, 1)) / (
        torch.tensor(NOTEBOOK_STD).view(3, 1, 1)
    )
    torch.testing.assert_close(test_batch[:1], expected)


# Config fields ---------------------------------------------------------------------------------
def test_new_fields_default_to_todays_behaviour():
    config = TrainConfig()
    assert (config.augment, config.crop_pad, config.normalize) == (True, "reflect", "cifar10")
    assert config.milestones is None and config.gamma == 0.1


@pytest.mark.parametrize("text", ["8, 12", "8,12", "[8, 12]", " 8 ; 12 "])
def test_milestones_text_parses(text):
    assert TrainConfig(schedule="step", milestones=text).milestones == (8, 12)


def test_milestones_round_trip_through_json():
    config = TrainConfig(schedule="step", milestones=[8, 12], gamma=0.2, crop_pad="zeros")
    data = json.loads(json.dumps(config.to_dict()))
    assert data["milestones"] == [8, 12]
    assert TrainConfig.from_dict(data) == config
    assert TrainConfig(schedule="step", milestones="").milestones is None


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"milestones": "12, 8"}, "strictly increasing"),
        ({"milestones": [8, 8]}, "strictly increasing"),
        ({"milestones": "0"}, r"milestones\[0\]: 0 is out of range"),
        ({"milestones": "x"}, r"milestones\[0\]: 'x' is not a whole number"),
        ({"milestones": "8, 1.5"}, r"milestones\[1\]: '1.5' is not a whole number"),
        ({"milestones": 8}, "not a list of epochs"),
        ({"milestones": [8], "schedule": "cosine"}, "only schedule step uses them"),
        ({"gamma": 0.0}, "gamma: 0.0 must be > 0"),
        ({"gamma": 2.0}, "gamma: 2.0 is out of range"),
        ({"crop_pad": "edge"}, "crop_pad: 'edge' is not allowed"),
        ({"normalize": "imagenet"}, "normalize: 'imagenet' is not allowed"),
        ({"augment": "no"}, "augment: 'no' is not allowed"),
    ],
)
def test_bad_new_settings_are_clear_config_errors(changes, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**{"schedule": "step", **changes})


def test_cli_flags_for_the_new_fields():
    subparsers = argparse.ArgumentParser().add_subparsers()
    cli_train.register(subparsers)
    parser = subparsers.choices["train"]
    argv = ["--milestones", "8,12", "--no-augment", "--crop-pad", "zeros", "--gamma", "0.5"]
    config = cli_train.config_from_args(parser.parse_args([*argv, "--normalize", "notebook"]))
    assert config.schedule == "step" and config.milestones == (8, 12) and config.gamma == 0.5
    assert (config.augment, config.crop_pad, config.normalize) == (False, "zeros", "notebook")
    constant = parser.parse_args(["--schedule", "constant", "--lr", "0.001"])
    assert cli_train.config_from_args(constant).schedule == "constant"


# Ready-made recipes ----------------------------------------------------------------------------
def test_every_seed_recipe_is_a_valid_config_group():
    assert set(NOTEBOOK_NOTES) == set(NOTEBOOK_RECIPES) and len(NOTEBOOK_RECIPES) >= 2
    for name, group in NOTEBOOK_RECIPES.items():
        configs = [TrainConfig.from_dict(overrides) for overrides in group]
        assert len(configs) >= 2, name  # each compares nets
        shared = [{**c.to_dict(), "model": None} for c in configs]
        assert all(s == shared[0] for s in shared), f"{name}: members differ beyond the net"
        assert len({c.label() for c in configs}) == len(configs), name
        first = configs[0]
        assert f"{first.epochs} epochs" in name, name
        assert first.precision == "fp32" and first.label_smoothing == 0.0, name
        assert first.warmup == 0.0 and not first.nesterov, name
        assert first.normalize == "notebook" and first.crop_pad == "zeros", name
        assert NOTEBOOK_NOTES[name].endswith(".") and NOTEBOOK_NOTES[name].count(". ") == 0, name


def test_seed_recipes_reproduce_the_seeds_settings():
    multistep = NOTEBOOK_RECIPES["Seed notebook: plain vs residual, 15 epochs, MultiStepLR [8, 12]"]
    plain, residual = (TrainConfig.from_dict(o) for o in multistep)
    assert not plain.spec().residual and residual.spec().residual
    assert plain.spec().replace(residual=True) == residual.spec()  # twins
    assert (plain.optimizer, plain.lr, plain.momentum, plain.weight_decay) == (
        "sgd",
        0.1,
        0.9,
        5e-4,
    )
    assert (plain.schedule, plain.milestones, plain.gamma) == ("step", (8, 12), 0.1)
    adam = NOTEBOOK_RECIPES["Seed notebook: SimpleCNN vs ResNet-18, Adam 1e-3, 15 epochs"]
    cnn, resnet = (TrainConfig.from_dict(o) for o in adam)
    assert sum(p.numel() for p in build_model(cnn.spec()).parameters()) == SEED_PARAMS
    assert resnet.model == "resnet18"
    assert (cnn.optimizer, cnn.lr, cnn.weight_decay, cnn.schedule) == (
        "adam",
        1e-3,
        0.0,
        "constant",
    )


def test_training_follows_the_milestones_and_keeps_the_pipeline(tmp_path):
    """A short seed-style run: the lr of every step, and the loaders the trainer builds."""
    config = {
        **QUICK_CPU_RUN,
        "model": "simple_cnn",
        "epochs": 3,
        "lr": 0.1,
        "warmup": 0.0,
        "schedule": "step",
        "milestones": "1, 2",
        "gamma": 0.5,
        "crop_pad": "zeros",
        "normalize": "notebook",
    }
    log = EventLog()
    trainer = Trainer(TrainConfig.from_dict(config), [log], run_dir=tmp_path / "run").setup()
    assert trainer.state.train_loader.pad_mode == "zeros"
    assert trainer.state.test_loader.scale.flatten().tolist() == pytest.approx(
        [1 / (s * 255) for s in NOTEBOOK_STD]
    )
    trainer.fit()
    rates = {event.step: event.lr for event in log.events if isinstance(event, Step)}
    per_epoch = trainer.state.steps_per_epoch
    assert rates[1] == pytest.approx(0.1) and rates[per_epoch] == pytest.approx(0.1)
    assert rates[per_epoch + 1] == pytest.approx(0.05)  # first step of epoch 2
    assert rates[2 * per_epoch + 1] == pytest.approx(0.025)  # first step of epoch 3
