"""He et al. Fig. 7 done right: layer responses of trained nets, BatchNorm in eval mode, on
test images; nothing of the kind at initialisation, where it would mean nothing."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
from app_helpers import app_test, no_exceptions

from resnet_core.analysis.probes import PROBE_IMAGES, PROBE_SEED, layer_responses
from resnet_core.analysis.sampling import SAMPLE_FILE, classes_in, stratified_indices
from resnet_core.nets.model import build_model
from resnet_core.training.data import load_cifar10
from resnet_core.training.experiments import shipped_root
from resnet_core.training.loader import DeviceLoader
from resnet_core.training.runs import load_run
from resnet_core.views.explain import INIT_RESPONSES, response_sentence
from resnet_core.views.lecture import trained_responses

SHIPPED_SAMPLE = shipped_root() / "layer_responses" / SAMPLE_FILE


def _probe_images(cifar_root) -> torch.Tensor:
    """The test images the shipped responses.csv names in its sample.json, normalised as the
    experiment measures them."""
    data = load_cifar10(cifar_root)
    sample = json.loads(SHIPPED_SAMPLE.read_text())
    assert sample["split"] == "test" and sample["dataset"] == data.source  # same index order
    picks = torch.tensor(sample["indices"])
    test = (data.test_images[picks], data.test_labels[picks])
    return next(iter(DeviceLoader(*test, len(picks), train=False)))[0]


def test_shipped_sample_is_the_seeded_pick_across_classes(cifar_root):
    """The shipped Fig. 7 was measured on PROBE_IMAGES test images picked with PROBE_SEED,
    the same number of each class: not the first images of the split (all airplanes)."""
    labels = load_cifar10(cifar_root).test_labels
    sample = json.loads(SHIPPED_SAMPLE.read_text())
    assert sample["how"] == f"stratified, seed {PROBE_SEED}"
    assert sample["indices"] == stratified_indices(labels, PROBE_IMAGES, PROBE_SEED).tolist()
    assert torch.bincount(labels[sample["indices"]]).tolist() == [PROBE_IMAGES // 10] * 10
    assert classes_in(labels, range(PROBE_IMAGES)) == 1  # why "the first N" would not do


@pytest.mark.parametrize("net", ["plain20", "plain56", "resnet20", "resnet56"])
def test_shipped_responses_recompute_from_the_weights_on_the_sample(cifar_root, net):
    """Each net's row of the shipped Fig. 7, recomputed from its shipped weights on the
    images sample.json names: eval mode (running statistics), not batch statistics."""
    images = _probe_images(cifar_root)
    model, _ = load_run(shipped_root() / "degradation" / net, which="best")
    measured = layer_responses(model, images, train_mode=False)
    shipped = trained_responses()
    shipped = shipped[shipped["net"] == net].reset_index(drop=True)
    assert list(measured["layer"]) == list(shipped["layer"])
    pd.testing.assert_series_equal(measured["std"], shipped["std"], rtol=2e-3, check_names=False)
    in_train_mode = layer_responses(model, images, train_mode=True)["std"]
    assert (in_train_mode - shipped["std"]).abs().max() > 0.01  # not batch statistics


def test_the_sentence_states_the_gap_computed_from_the_shipped_file():
    """The percentage the slide and the Gradient flow page state is the shipped file's."""
    shipped = pd.read_csv(shipped_root() / "layer_responses" / "responses.csv")
    medians = shipped.groupby("model")["std"].median()
    frames = {net: part for net, part in shipped.groupby("model", sort=False)}
    text = response_sentence(frames, {net: net.startswith("resnet") for net in frames})
    for depth in (20, 56):
        gap = 100 * (1 - medians[f"resnet{depth}"] / medians[f"plain{depth}"])
        side = "smaller" if gap > 0 else "larger"
        assert f"resnet{depth}'s median is {abs(gap):.1f} % {side} than plain{depth}'s" in text


def test_at_init_responses_only_echo_batchnorm(cifar_root):
    """The page's reason for showing no Fig. 7 of untrained nets, checked."""
    images = _probe_images(cifar_root)
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
    assert f"on {PROBE_IMAGES} CIFAR-10 test images, {PROBE_IMAGES // 10} of each class" in captions
    assert "BatchNorm in training mode" in captions  # the gradients' mode, said once
    text = " ".join(m.value for m in at.markdown)
    assert "in resnet56" in text and "in plain56" in text  # the shipped pair's medians
