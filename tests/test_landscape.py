"""Loss landscape (Li et al. 2018): filter-normalised directions on tiny nets, the shipped
results and what they show, the CLI's errors, and the page."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from app_helpers import app_test, no_exceptions, tiny_run
from torch import nn

from resnet_core.analysis.landscape import (
    coefficients,
    evaluate_loss,
    filter_normalize,
    loss_slice,
    loss_surface,
    perturbed,
    perturbed_weights,
    random_directions,
    slice_rise,
    surface_roughness,
)
from resnet_core.cli.main import main
from resnet_core.nets.model import build_model
from resnet_core.nets.spec import ArchSpec
from resnet_core.training.data import load_cifar10
from resnet_core.training.experiments import shipped_root
from resnet_core.training.runs import load_run
from resnet_core.views.landscape import (
    check_run,
    point_loss,
    read_shipped,
    rise_sentence,
    rise_verdict,
    roughness_sentence,
    roughness_verdict,
    training_batch,
)

TINY = ArchSpec(depths=(1, 1), widths=(8, 16), shortcut="zero_pad")
PAGE = "pages/landscape.py"
SHIPPED = read_shipped()
needs_shipped = pytest.mark.skipif(SHIPPED is None, reason="no shipped landscape results")
RESNET20 = shipped_root() / "degradation" / "resnet20"
needs_weights = pytest.mark.skipif(
    not (RESNET20 / "best.pt").is_file(), reason="no shipped demo weights in this checkout"
)


@pytest.fixture()
def net():
    """A tiny trained-looking net: BN running statistics moved off their defaults."""
    torch.manual_seed(0)
    model = build_model(TINY)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
    generator = torch.Generator().manual_seed(1)
    inputs = torch.randn(24, 3, 32, 32, generator=generator)  # (24, 3, 32, 32)
    targets = torch.randint(0, 10, (24,), generator=generator)
    return model.eval(), inputs, targets


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {key: value.clone() for key, value in model.state_dict().items()}


# Directions --------------------------------------------------------------------------------
def test_directions_cover_exactly_the_conv_and_linear_weights(net):
    model = net[0]
    direction = random_directions(model, 1, seed=0)[0]
    layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert len(direction) == len(layers) and all(k.endswith(".weight") for k in direction)
    for name, weight in perturbed_weights(model).items():
        assert direction[name].shape == weight.shape


def test_each_direction_filter_has_its_weight_filters_norm(net):
    model = net[0]
    for direction in random_directions(model, 2, seed=3):
        for name, weight in perturbed_weights(model).items():
            dims = tuple(range(1, weight.dim()))
            want = torch.linalg.vector_norm(weight.detach(), dim=dims)
            got = torch.linalg.vector_norm(direction[name], dim=dims)
            torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
            assert not torch.allclose(direction[name], weight.detach())  # rescaled, not copied


def test_filter_normalize_rescales_each_output_channel_on_its_own():
    weight = torch.tensor([[3.0, 4.0], [0.0, 1.0]])  # filter norms 5 and 1
    direction = torch.tensor([[1.0, 0.0], [0.0, 10.0]])
    torch.testing.assert_close(
        filter_normalize(direction, weight), torch.tensor([[5.0, 0], [0, 1]])
    )


def test_same_seed_same_directions_other_seed_other_directions(net):
    model = net[0]
    first, again, other = (random_directions(model, 2, s) for s in (7, 7, 8))
    for a, b, c in zip(first, again, other, strict=True):
        for name in a:
            assert torch.equal(a[name], b[name])
            assert not torch.allclose(a[name], c[name])
    assert not torch.allclose(first[0]["conv1.weight"], first[1]["conv1.weight"])  # d1 != d2
    one = random_directions(model, 1, 7)[0]  # a 1-D slice runs along the surface's first axis
    assert all(torch.equal(one[name], first[0][name]) for name in one)


# Perturbation and loss ---------------------------------------------------------------------
def test_zero_steps_give_exactly_the_unperturbed_loss(net):
    model, inputs, targets = net
    reference = evaluate_loss(model, inputs, targets)
    directions = random_directions(model, 2, seed=0)
    steps = coefficients(5)
    line = loss_slice(model, inputs, targets, directions[0], steps)
    assert line.loc[line["alpha"] == 0, "loss"].item() == reference[0]
    surface = loss_surface(model, inputs, targets, directions, steps)
    centre = surface[(surface["alpha"] == 0) & (surface["beta"] == 0)]
    assert centre["loss"].item() == reference[0]
    assert centre["accuracy"].item() == reference[1]
    assert (line.loc[line["alpha"] != 0, "loss"] != reference[0]).all()  # the steps do move it


def test_only_conv_and_linear_weights_move_and_everything_comes_back(net):
    model, inputs, targets = net
    before = _state(model)
    directions = random_directions(model, 2, seed=0)
    with perturbed(model, directions, [0.7, -0.3]):
        during = _state(model)
    moved = {key for key in before if not torch.equal(before[key], during[key])}
    assert moved == set(perturbed_weights(model))  # no BN parameter/buffer, no bias
    assert "fc.bias" in before and any("running_var" in key for key in before)
    loss_slice(model, inputs, targets, directions[0], coefficients(3))
    loss_surface(model, inputs, targets, directions, coefficients(3))
    after = _state(model)
    assert all(torch.equal(before[key], after[key]) for key in before)  # bit for bit
    assert not model.training


def test_weights_come_back_when_the_evaluation_fails(net):
    model, _, _ = net
    before = _state(model)
    direction = random_directions(model, 1, seed=0)[0]
    with pytest.raises(RuntimeError), perturbed(model, [direction], [1.0]):
        model(torch.randn(2, 5, 32, 32))  # wrong channel count
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_evaluation_uses_running_statistics_and_keeps_the_mode(net):
    model, inputs, targets = net
    model.train()
    loss, _ = evaluate_loss(model, inputs, targets, batch_size=5)  # batches of 5: same as eval
    assert model.training
    model.eval()
    assert loss == pytest.approx(evaluate_loss(model, inputs, targets, batch_size=24)[0], rel=1e-5)


def test_coefficients_include_zero_and_the_ends():
    assert coefficients(5) == [-1.0, -0.5, 0.0, 0.5, 1.0]
    assert 0.0 in coefficients(21) and len(coefficients(21)) == 21
    with pytest.raises(ValueError):
        coefficients(1)


# Summary measures on made-up surfaces --------------------------------------------------------
def _bowl(side: int, dimples: float = 0.0) -> pd.DataFrame:
    """A bowl of loss over the grid; `dimples` > 0 sinks every third point in both axes."""
    steps = coefficients(side)
    rows = []
    for i, a in enumerate(steps):
        for j, b in enumerate(steps):
            dip = dimples if i % 3 == 1 and j % 3 == 1 else 0.0
            rows.append({"alpha": a, "beta": b, "loss": 6 + 5 * (a * a + b * b) - dip})
    return pd.DataFrame(rows)


def test_roughness_tells_a_bowl_from_an_egg_crate():
    smooth, rough = surface_roughness(_bowl(9)), surface_roughness(_bowl(9, dimples=5.0))
    assert smooth["local_minima"] == 1 and rough["local_minima"] == 9
    assert rough["curvature"] > smooth["curvature"]
    assert smooth["centre_loss"] == pytest.approx(6.0) and smooth["max_loss"] == pytest.approx(16)
    fraction = surface_roughness(_bowl(9), chance=12.0)["below_chance"]
    assert fraction == pytest.approx(61 / 81)  # 5 (a^2 + b^2) < 6


def test_slice_rise_reads_both_sides():
    frame = pd.DataFrame({"alpha": coefficients(5), "loss": [9.0, 2.0, 0.5, 3.0, 11.0]})
    rise = slice_rise(frame, 1.0)
    assert (rise["centre"], rise["mean"], rise["ratio"]) == (0.5, 10.0, 20.0)
    assert slice_rise(frame, 0.5)["mean"] == 2.5


# The shipped results -------------------------------------------------------------------------
@needs_shipped
def test_shipped_files_cover_the_degradation_nets():
    slices, surfaces = SHIPPED.slices, SHIPPED.surfaces
    assert set(slices["net"]) == {"plain20", "plain56", "resnet20", "resnet56"}
    assert {"plain56", "resnet56"} <= set(surfaces["net"])
    settings = SHIPPED.surfaces_record["settings"]
    assert surfaces.groupby("net").size().eq(settings["grid"] ** 2).all()
    assert slices.groupby("net").size().eq(SHIPPED.slices_record["settings"]["grid"]).all()
    for record in (SHIPPED.slices_record, SHIPPED.surfaces_record):
        assert {"command", "hardware", "torch", "date", "seconds"} <= set(record)
        assert record["command"].startswith("python -m resnet_core landscape")
    assert (slices["loss"] > 0).all() and (surfaces["loss"] > 0).all()


@needs_shipped
def test_shipped_minimum_is_at_the_trained_weights():
    """Every slice is lowest at (or next to) a = 0: the checkpoint sits in its basin."""
    for net, frame in SHIPPED.slices.groupby("net"):
        lowest = frame.loc[frame["loss"].idxmin(), "alpha"]
        assert abs(lowest) <= 0.1 + 1e-9, net


def _rises(distance: float) -> tuple[dict, dict]:
    slices = SHIPPED.slices
    return (
        slice_rise(slices[slices["net"] == "plain56"], distance),
        slice_rise(slices[slices["net"] == "resnet56"], distance),
    )


@needs_shipped
def test_shipped_slices_plain56_is_steeper_only_near_its_minimum():
    """What the shipped 1-D slices show (mean of both sides): plain56 starts higher
    (degradation); within half a step its loss climbs more than resnet56's in absolute terms,
    as in Li et al.; one full step out it is the other way round, and relative to its
    starting value resnet56's loss climbs more at a = ±0.5 and ±1. The page says so."""
    for distance in (0.2, 0.5):
        plain, residual = _rises(distance)
        assert plain["mean"] - plain["centre"] > residual["mean"] - residual["centre"], distance
    assert plain["ratio"] < residual["ratio"]  # at 0.5
    plain, residual = _rises(1.0)
    assert plain["centre"] > 2 * residual["centre"]
    assert plain["mean"] - plain["centre"] < residual["mean"] - residual["centre"]
    assert plain["ratio"] < residual["ratio"]
    assert rise_verdict(SHIPPED.slices, 1.0).startswith("Unlike Li et al.")
    assert "but resnet56's climbs more relative" in rise_verdict(SHIPPED.slices, 0.5)


@needs_shipped
def test_shipped_surfaces_plain56_is_rougher_and_resnet56_a_single_bowl():
    """As in Li et al. Fig. 5: plain56's surface has several local minima and more curvature;
    resnet56's has one minimum (at the trained weights) and steeper far walls."""
    surfaces = SHIPPED.surfaces
    plain = surface_roughness(surfaces[surfaces["net"] == "plain56"])
    residual = surface_roughness(surfaces[surfaces["net"] == "resnet56"])
    assert plain["local_minima"] > residual["local_minima"] == 1
    assert plain["curvature"] > 1.5 * residual["curvature"]
    assert residual["max_loss"] > plain["max_loss"]
    grid = surfaces[surfaces["net"] == "resnet56"]
    assert grid.loc[grid["loss"].idxmin(), ["alpha", "beta"]].tolist() == [0.0, 0.0]
    assert roughness_verdict(surfaces).startswith("As in Li et al. Fig. 5")


@needs_shipped
def test_shipped_sentences_state_the_numbers():
    slices = SHIPPED.slices
    text = rise_sentence(slices)
    plain, residual = _rises(1.0)
    assert text.startswith("One filter-normalised step away (a = ±1, mean of both sides), plain20")
    assert f"plain56's from {plain['centre']:.2g} to {plain['mean']:.2g}" in text
    assert f"resnet56's from {residual['centre']:.2g} to {residual['mean']:.2g}" in text
    surfaces = SHIPPED.surfaces
    minima = surface_roughness(surfaces[surfaces["net"] == "plain56"])["local_minima"]
    assert f"plain56: {minima} local minima" in roughness_sentence(surfaces)


@needs_shipped
def test_one_shipped_point_recomputes(cifar_root):
    """One point of resnet20's shipped slice, recomputed from the shipped checkpoint with the
    recorded images and seed, matches the CSV."""
    settings = SHIPPED.slices_record["settings"]
    model, _ = load_run(RESNET20)
    data = load_cifar10(cifar_root)
    inputs, targets = training_batch(
        data, check_run(RESNET20), settings["images"], settings["seed"]
    )
    shipped = SHIPPED.slices[SHIPPED.slices["net"] == "resnet20"].set_index("alpha")
    loss, accuracy = point_loss(
        model.spec, model.state_dict(), inputs, targets, settings["seed"], (0.5,)
    )
    assert loss == pytest.approx(shipped.loc[0.5, "loss"], rel=1e-4)
    assert accuracy == pytest.approx(shipped.loc[0.5, "accuracy"], abs=1e-9)


# CLI -----------------------------------------------------------------------------------------
def test_cli_refuses_a_run_without_weights_in_one_line(tmp_path, capsys):
    run = tmp_path / "empty-run"
    run.mkdir()
    assert main(["landscape", str(run)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "no best.pt" in err and "\n" not in err


def test_cli_refuses_a_synthetic_run_and_missing_cifar10(tmp_path, capsys):
    run = tiny_run(tmp_path / "checkpoints")
    assert main(["landscape", str(run)]) == 2
    assert "synthetic" in capsys.readouterr().err
    if (RESNET20 / "best.pt").is_file():
        code = main(["landscape", str(RESNET20), "--data-dir", str(tmp_path / "no-data")])
        err = capsys.readouterr().err.strip()
        assert code == 2 and "CIFAR-10 not found" in err and "\n" not in err


@needs_weights
def test_cli_writes_a_slice_with_its_record(cifar_root, tmp_path, capsys):
    run = RESNET20
    out = tmp_path / "slice.csv"
    args = ["landscape", str(run), "--grid", "3", "--images", "16", "--format", "json"]
    assert main([*args, "--data-dir", str(cifar_root), "--out", str(out)]) == 0
    frame = pd.read_csv(out)
    assert list(frame["alpha"]) == [-1.0, 0.0, 1.0] and set(frame["net"]) == {"resnet20"}
    assert frame["loss"].iloc[1] < frame["loss"].iloc[[0, 2]].min()
    assert '"settings"' in (tmp_path / "slice.json").read_text()
    assert '"alpha":0.0' in capsys.readouterr().out.replace(" ", "")


# The page ------------------------------------------------------------------------------------
def _texts(at) -> str:
    return " ".join(e.value for kind in (at.markdown, at.caption, at.info) for e in kind)


@needs_shipped
def test_page_shows_the_shipped_results(tmp_path, monkeypatch):
    monkeypatch.setenv("RESNET_EXPLORER_CHECKPOINTS", str(tmp_path / "checkpoints"))
    monkeypatch.setenv("RESNET_EXPLORER_DATA", str(tmp_path / "no-data"))
    at = app_test()
    at.run()
    at.switch_page(PAGE).run()
    assert no_exceptions(at) == []
    assert at.title[0].value == "Loss landscape"
    text = _texts(at)
    assert "arxiv.org/abs/1712.09913" in text
    assert "One filter-normalised step away" in text and "local minim" in text
    assert rise_sentence(SHIPPED.slices) in text
    charts = at.get("vega_lite_chart")
    assert len(charts) == 2  # the slices, the side-by-side heat maps
    assert "CIFAR-10, which is not available here" in text  # the live part says why it waits


def test_page_measures_a_run_live_and_explains_runs_it_cannot(cifar_root, tmp_path, monkeypatch):
    checkpoints = tmp_path / "checkpoints"
    synthetic = tiny_run(checkpoints)
    monkeypatch.setenv("RESNET_EXPLORER_CHECKPOINTS", str(checkpoints))
    monkeypatch.setenv("RESNET_EXPLORER_DATA", str(cifar_root))
    at = app_test()
    at.run()
    at.switch_page(PAGE).run()
    assert no_exceptions(at) == []
    at.selectbox(key="landscape_run").set_value(str(synthetic)).run()
    assert "synthetic" in _texts(at) and not [b for b in at.button if b.label == "Measure"]
    no_weights = shipped_root() / "cnn_vs_resnet" / "resnet18"
    if (no_weights / "spec.json").is_file() and not (no_weights / "best.pt").exists():
        at.selectbox(key="landscape_run").set_value(str(no_weights)).run()
        assert no_exceptions(at) == [] and "no best.pt" in _texts(at)
    shipped = str(RESNET20)
    charts = len(at.get("vega_lite_chart"))
    at.selectbox(key="landscape_run").set_value(shipped).run()
    at.selectbox(key="landscape_points").set_value(5)
    at.selectbox(key="landscape_images").set_value(32).run()
    next(b for b in at.button if b.label == "Measure").click().run()
    assert no_exceptions(at) == []
    assert len(at.get("vega_lite_chart")) == charts + 1
    assert "resnet20's training loss rises from" in _texts(at)
