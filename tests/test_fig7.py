"""He et al. Fig. 7 done right: layer responses of trained nets, BatchNorm in eval mode, on
test images; nothing of the kind at initialisation, where it would mean nothing."""

from __future__ import annotations

import pandas as pd
import torch
from app_helpers import app_test, no_exceptions

from resnet_core.analysis.probes import layer_responses
from resnet_core.nets.model import build_model
from resnet_core.training.data import DeviceLoader, load_cifar10
from resnet_core.training.experiments import shipped_root
from resnet_core.training.runs import load_run
from resnet_core.views.explain import INIT_RESPONSES
from resnet_core.views.lecture import trained_responses


def test_shipped_responses_are_eval_mode_on_the_first_256_test_images(cifar_root):
    """What the Gradient flow page says of the shipped Fig. 7, checked on its files."""
    data = load_cifar10(cifar_root)
    images = next(
        iter(DeviceLoader(data.test_images[:256], data.test_labels[:256], 256, train=False))
    )[0]
    model, _ = load_run(shipped_root() / "degradation" / "resnet20", which="best")
    measured = layer_responses(model, images, train_mode=False)
    shipped = trained_responses()
    shipped = shipped[shipped["net"] == "resnet20"].reset_index(drop=True)
    assert list(measured["layer"]) == list(shipped["layer"])
    pd.testing.assert_series_equal(measured["std"], shipped["std"], rtol=2e-2, check_names=False)
    in_train_mode = layer_responses(model, images, train_mode=True)["std"]
    assert (in_train_mode - shipped["std"]).abs().max() > 0.01  # not batch statistics


def test_at_init_responses_only_echo_batchnorm(cifar_root):
    """The page's reason for showing no Fig. 7 of untrained nets, checked."""
    data = load_cifar10(cifar_root)
    images = next(
        iter(DeviceLoader(data.test_images[:256], data.test_labels[:256], 256, train=False))
    )[0]
    fresh = build_model("resnet56")
    in_train_mode = layer_responses(fresh, images, train_mode=True)["std"]
    assert (in_train_mode - 1).abs().max() < 1e-3  # std 1 by construction
    bn = next(m for m in fresh.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert float(bn.running_mean.abs().max()) == 0 and float((bn.running_var - 1).abs().max()) == 0


def test_gradient_page_shows_fig7_of_trained_nets_only(tmp_path, monkeypatch):
    monkeypatch.setenv("RESNET_EXPLORER_CHECKPOINTS", str(tmp_path / "checkpoints"))
    monkeypatch.setenv("RESNET_EXPLORER_DATA", str(tmp_path / "no-data"))
    at = app_test()
    at.run()
    at.switch_page("pages/gradients.py").run()
    assert no_exceptions(at) == []
    captions = " ".join(c.value for c in at.caption)
    assert INIT_RESPONSES in captions
    assert "shipped trained plain56 and resnet56" in captions
    assert "BatchNorm in training mode" in captions  # the gradients' mode, said once
    text = " ".join(m.value for m in at.markdown)
    assert "in resnet56" in text and "in plain56" in text  # the shipped pair's medians
