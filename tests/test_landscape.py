"""Loss landscape (Li et al. 2018): filter-normalised directions on tiny nets, the shipped
results and what they show, the CLI's errors, and the page."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
from app_helpers import app_test, no_exceptions, tiny_run
from torch import nn

from resnet_core.analysis.landscape import (
    across_directions,
    coefficients,
    evaluate_loss,
    filter_normalize,
    loss_slice,
    loss_surface,
    perturbed,
    perturbed_weights,
    random_directions,
    recompute_bn_stats,
    slice_point,
    surface_roughness,
)
from resnet_core.analysis.sampling import SAMPLE_FILE, classes_in
from resnet_core.cli.main import main
from resnet_core.nets.model import build_model
from resnet_core.nets.spec import ArchSpec
from resnet_core.studies.landscape import (
    check_run,
    point_loss,
    read_shipped,
    training_sample,
)
from resnet_core.training.data import load_cifar10
from resnet_core.training.experiments import shipped_root
from resnet_core.training.runs import load_run
from resnet_core.views.landscape import (
    artefact_sentence,
    roughness_sentence,
    roughness_verdict,
    slice_chart,
    slice_sentence,
    slice_verdict,
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


def test_recomputed_statistics_are_those_of_the_moved_net(net):
    """recompute_bn_stats sets the first BatchNorm's running mean to the mean of the first
    conv's output over the inputs (an equal-weight average over the batches), and an
    evaluation with bn_inputs puts every statistic back afterwards."""
    model, inputs, targets = net
    before = _state(model)
    direction = random_directions(model, 1, seed=0)[0]
    with perturbed(model, [direction], [0.8]):
        stale = evaluate_loss(model, inputs, targets)
        fresh = evaluate_loss(model, inputs, targets, batch_size=8, bn_inputs=inputs)
        assert all(
            torch.equal(before[k], v) for k, v in model.state_dict().items() if "running" in k
        )
        recompute_bn_stats(model, inputs, batch_size=8)
        first = (
            model.stem[0]
            if hasattr(model, "stem")
            else next(m for m in model.modules() if isinstance(m, nn.Conv2d))
        )
        with torch.no_grad():
            expected = first(inputs).mean(dim=(0, 2, 3))
        norm = next(m for m in model.modules() if isinstance(m, nn.BatchNorm2d))
        torch.testing.assert_close(norm.running_mean, expected, atol=1e-5, rtol=1e-4)
        assert norm.momentum == 0.1  # put back after the average
    assert stale != fresh


def test_recomputed_statistics_at_the_trained_weights_change_little(net):
    """At a = 0 with statistics recomputed on the inputs themselves, the loss is the loss in
    train mode on those inputs (batch statistics), not the stale one."""
    model, inputs, targets = net
    fresh, _ = evaluate_loss(model, inputs, targets, batch_size=24, bn_inputs=inputs)
    with torch.no_grad():
        model.train()
        train_mode = nn.functional.cross_entropy(model(inputs), targets).item()
        model.eval()
    assert fresh == pytest.approx(train_mode, rel=0.05)
    assert fresh != pytest.approx(evaluate_loss(model, inputs, targets)[0], rel=1e-3)


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
    smooth = surface_roughness(_bowl(9), chance=40.0)
    rough = surface_roughness(_bowl(9, dimples=5.0), chance=40.0)
    assert smooth["local_minima"] == 1 and rough["local_minima"] == 9
    assert rough["curvature"] > smooth["curvature"]
    assert smooth["centre_loss"] == pytest.approx(6.0) and smooth["max_loss"] == pytest.approx(16)
    fraction = surface_roughness(_bowl(9), chance=12.0)["below_chance"]
    assert fraction == pytest.approx(61 / 81)  # 5 (a^2 + b^2) < 6


def test_minima_at_chance_level_are_not_counted():
    """Dips in a plateau near chance are no basins: with chance 2.3 only points below 1.15
    count, and the egg crate's dimples sit at 1 or more."""
    assert surface_roughness(_bowl(9, dimples=5.0))["local_minima"] == 1  # the centre, at 1
    assert surface_roughness(_bowl(9, dimples=5.0), chance=1.5)["local_minima"] == 0


def test_curvature_does_not_divide_by_the_range():
    """Scaling the loss by a constant shifts the log loss and leaves its second differences,
    hence the curvature, unchanged; a wider range no longer makes a surface look smoother."""
    bowl = _bowl(9)
    scaled = bowl.assign(loss=bowl["loss"] * 50)
    assert surface_roughness(scaled)["curvature"] == pytest.approx(
        surface_roughness(bowl)["curvature"]
    )
    steep = bowl.assign(loss=6 + 50 * (bowl["alpha"] ** 2 + bowl["beta"] ** 2))
    assert surface_roughness(steep)["curvature"] > surface_roughness(bowl)["curvature"]


def _slices(accuracies: dict[tuple[str, int], float]) -> pd.DataFrame:
    """Made-up slices: per (net, seed) the accuracy at a = +-1 (1.0 at a = 0)."""
    rows = []
    for (net, seed), far in accuracies.items():
        for bn, shift in (("recomputed", 0.0), ("stale", 5.0)):
            for alpha, accuracy in ((-1.0, far), (0.0, 1.0), (1.0, far)):
                loss = 0.2 if alpha == 0 else 2.0 - far + shift
                rows.append(
                    {"net": net, "residual": net.startswith("resnet"), "seed": seed, "bn": bn}
                    | {"alpha": alpha, "loss": loss, "accuracy": accuracy}
                )
    return pd.DataFrame(rows)


def test_slice_point_reads_both_sides_in_absolute_terms():
    frame = pd.DataFrame(
        {"alpha": coefficients(5), "loss": [9.0, 2.0, 0.5, 3.0, 11.0], "accuracy": [0.1] * 5}
    )
    point = slice_point(frame, 1.0)
    assert (point["centre_loss"], point["loss"], point["accuracy"]) == (0.5, 10.0, 0.1)
    assert slice_point(frame, 0.5)["loss"] == 2.5


def test_spread_over_directions_and_the_verdict():
    apart = _slices(
        {("plain56", 0): 0.2, ("plain56", 1): 0.3, ("resnet56", 0): 0.6, ("resnet56", 1): 0.7}
    )
    table = across_directions(apart, 1.0).set_index(["net", "bn"])
    row = table.loc[("resnet56", "recomputed")]
    assert (row["directions"], row["accuracy_min"], row["accuracy_max"]) == (2, 0.6, 0.7)
    text = slice_sentence(apart, 1.0)
    assert "resnet56 classifies 65 % (60-70 % over 2 directions)" in text
    assert "do not overlap" in slice_verdict(apart, 1.0)
    close = _slices(
        {("plain56", 0): 0.2, ("plain56", 1): 0.65, ("resnet56", 0): 0.6, ("resnet56", 1): 0.7}
    )
    assert "overlap: within the spread" in slice_verdict(close, 1.0)
    one = _slices({("plain56", 0): 0.2, ("resnet56", 0): 0.6})
    assert "(one direction" in slice_sentence(one, 1.0) and "one direction" in slice_verdict(
        one, 1.0
    )
    assert "stale" in artefact_sentence(
        apart, 1.0
    ) and "make most of that loss" in artefact_sentence(apart, 1.0)
    assert artefact_sentence(apart[apart["bn"] == "recomputed"], 1.0) == ""


def test_slice_charts_draw_the_band_and_both_statistics():
    frame = _slices(
        {("plain56", 0): 0.2, ("plain56", 1): 0.3, ("resnet56", 0): 0.6, ("resnet56", 1): 0.7}
    )
    for value in ("loss", "accuracy"):
        spec = slice_chart(frame, value).to_dict()
        marks = [
            layer["mark"]["type"] if isinstance(layer["mark"], dict) else layer["mark"]
            for layer in spec["layer"]
        ]
        assert marks[:2] == ["area", "line"]
        assert spec["layer"][1]["encoding"]["strokeDash"]["scale"]["domain"] == [
            "recomputed",
            "stale",
        ]


# The shipped results -------------------------------------------------------------------------
def _far(distance: float, bn: str = "recomputed"):
    table = across_directions(SHIPPED.slices, distance)
    return table[table["bn"] == bn].set_index("net")


@needs_shipped
def test_shipped_files_cover_the_degradation_nets_both_statistics_and_three_directions():
    slices, surfaces = SHIPPED.slices, SHIPPED.surfaces
    assert set(slices["net"]) == {"plain20", "plain56", "resnet20", "resnet56"}
    assert set(slices["bn"]) == {"recomputed", "stale"} and set(slices["seed"]) == {0, 1, 2}
    assert {"plain56", "resnet56"} <= set(surfaces["net"]) and set(surfaces["bn"]) == {"recomputed"}
    grid = SHIPPED.surfaces_record["settings"]["grid"]
    assert surfaces.groupby("net").size().eq(grid**2).all()
    per_curve = slices.groupby(["net", "seed", "bn"]).size()
    assert per_curve.eq(SHIPPED.slices_record["settings"]["grid"]).all() and len(per_curve) == 24
    for record, frame in ((SHIPPED.slices_record, slices), (SHIPPED.surfaces_record, surfaces)):
        assert {"command", "hardware", "torch", "date", "seconds", "curves"} <= set(record)
        assert record["command"].startswith("python -m resnet_core landscape")
        curves = {(c["net"], c["seed"], c["bn_stats"]) for c in record["curves"]}
        assert curves == set(frame[["net", "seed", "bn"]].itertuples(index=False, name=None))
    assert (slices["loss"] > 0).all() and (surfaces["loss"] > 0).all()


@needs_shipped
def test_shipped_minimum_is_at_the_trained_weights():
    """Every recomputed-statistics slice is lowest at (or next to) a = 0."""
    recomputed = SHIPPED.slices[SHIPPED.slices["bn"] == "recomputed"]
    for key, frame in recomputed.groupby(["net", "seed"]):
        assert abs(frame.loc[frame["loss"].idxmin(), "alpha"]) <= 0.1 + 1e-9, key


@needs_shipped
def test_shipped_half_a_step_out_resnet56_keeps_more_accuracy_in_every_direction():
    """What the page and the slide say: half a step out (statistics recomputed) resnet56
    classifies more training images than plain56 in each of the three directions (the
    ranges do not overlap); one step out both are near chance and the ranges overlap."""
    half, full = _far(0.5), _far(1.0)
    assert half.loc["resnet56", "accuracy_min"] > half.loc["plain56", "accuracy_max"]
    assert half.loc["resnet56", "directions"] == half.loc["plain56", "directions"] == 3
    spans = {
        net: (
            round(half.loc[net, "accuracy_min"] * 100),
            round(half.loc[net, "accuracy_max"] * 100),
        )
        for net in ("resnet56", "plain56")
    }
    assert spans == {"resnet56": (75, 77), "plain56": (52, 57)}  # as checkpoints/demo/README.md
    assert "do not overlap" in slice_verdict(SHIPPED.slices, 0.5)
    assert full.loc["resnet56", "accuracy_min"] <= full.loc["plain56", "accuracy_max"]
    assert "within the spread" in slice_verdict(SHIPPED.slices, 1.0)
    assert (full["accuracy_mean"] < 0.4).all()  # near chance (10 %), all four nets


@needs_shipped
def test_shipped_stale_statistics_are_the_artefact():
    """With stale statistics every net's loss one step out is several times the recomputed
    one, and resnet56's more so than plain56's: the old 1-D contrast came from them."""
    stale, fresh = _far(1.0, "stale"), _far(1.0)
    assert (stale["loss_mean"] > 2 * fresh["loss_mean"]).all()
    assert stale.loc["resnet56", "loss_mean"] > stale.loc["plain56", "loss_mean"]
    assert "the stale statistics, not the landscape" in artefact_sentence(SHIPPED.slices, 1.0)


@needs_shipped
def test_shipped_surfaces_plain56_is_not_rougher():
    """Recomputed statistics, curvature not divided by the loss range, minima only well
    below chance: plain56's surface has no more minima and less curvature than resnet56's;
    the page says so instead of repeating Li et al. Fig. 5."""
    surfaces = SHIPPED.surfaces
    plain = surface_roughness(surfaces[surfaces["net"] == "plain56"])
    residual = surface_roughness(surfaces[surfaces["net"] == "resnet56"])
    assert plain["local_minima"] <= residual["local_minima"]
    assert plain["curvature"] < residual["curvature"]
    assert roughness_verdict(surfaces).startswith("On this grid plain56's surface is not rougher")
    text = roughness_sentence(surfaces)
    assert f"plain56: {plain['local_minima']} local minim" in text
    assert f"curvature {plain['curvature']:.3f}" in text


@needs_shipped
def test_shipped_sentences_state_the_numbers():
    half = _far(0.5)
    text = slice_sentence(SHIPPED.slices, 0.5)
    row = half.loc["resnet56"]
    low, high = round(row["accuracy_min"] * 100), round(row["accuracy_max"] * 100)
    assert f"resnet56 classifies {row['accuracy_mean'] * 100:.0f} % ({low}-{high} % over 3" in text


@needs_shipped
def test_one_shipped_point_recomputes_on_the_shipped_sample(cifar_root):
    """One point of resnet20's shipped slice (recomputed statistics, first direction seed),
    recomputed from the shipped checkpoint on the images sample.json names, matches the CSV."""
    settings = SHIPPED.slices_record["settings"]
    model, _ = load_run(RESNET20)
    data = load_cifar10(cifar_root)
    sample = training_sample(
        data, check_run(RESNET20), settings["images"], settings["seed"], settings["bn_images"]
    )
    shipped_sample = json.loads((shipped_root() / "landscape" / SAMPLE_FILE).read_text())
    assert sample.record() == shipped_sample
    assert classes_in(data.train_labels, shipped_sample["indices"]) == 10
    curve = SHIPPED.slices.query("net == 'resnet20' and bn == 'recomputed' and seed == 0")
    shipped = curve.set_index("alpha")
    loss, accuracy = point_loss(model.spec, model.state_dict(), sample, settings["seed"], (0.5,))
    assert loss == pytest.approx(shipped.loc[0.5, "loss"], rel=1e-3)
    assert accuracy == pytest.approx(shipped.loc[0.5, "accuracy"], abs=1 / 256 + 1e-9)


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
def test_cli_writes_a_slice_with_its_record_and_sample(cifar_root, tmp_path, capsys):
    run = RESNET20
    out = tmp_path / "slice.csv"
    args = ["landscape", str(run), "--grid", "3", "--images", "20", "--bn-images", "20"]
    args += ["--seeds", "2", "--bn", "both", "--format", "json", "--data-dir", str(cifar_root)]
    assert main([*args, "--out", str(out)]) == 0
    frame = pd.read_csv(out)
    assert set(frame["net"]) == {"resnet20"} and set(frame["seed"]) == {0, 1}
    assert set(frame["bn"]) == {"recomputed", "stale"} and len(frame) == 3 * 2 * 2
    for _, curve in frame.groupby(["seed", "bn"]):
        assert list(curve["alpha"]) == [-1.0, 0.0, 1.0]
        assert curve["loss"].iloc[1] < curve["loss"].iloc[[0, 2]].min()
    record = json.loads((tmp_path / "slice.json").read_text())
    assert record["settings"]["bn"] == "both" and record["settings"]["seeds"] == 2
    assert {(c["seed"], c["bn_stats"]) for c in record["curves"]} == {
        (0, "recomputed"),
        (0, "stale"),
        (1, "recomputed"),
        (1, "stale"),
    }
    sample = json.loads((tmp_path / SAMPLE_FILE).read_text())
    assert sample["split"] == "train" and sample["how"] == "stratified, seed 0"
    assert len(sample["indices"]) == 20 and not set(sample["indices"]) & set(sample["bn_indices"])
    labels = load_cifar10(cifar_root).train_labels
    assert classes_in(labels, sample["indices"]) == classes_in(labels, sample["bn_indices"]) == 10
    assert '"alpha":0.0' in capsys.readouterr().out.replace(" ", "")
    # another sample into the same folder is refused before anything is written over
    before = out.read_bytes()
    assert main([*args, "--seed", "5", "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err and out.read_bytes() == before
    other = tmp_path / "other.csv"  # a new file name, but the folder's sample is another
    assert main([*args, "--seed", "5", "--out", str(other)]) == 2
    assert "another sample" in capsys.readouterr().err and not other.exists()


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
    deepest = SHIPPED.slices[SHIPPED.slices["net"].str.endswith("56")]
    for distance in (0.5, 1.0):
        assert slice_sentence(deepest, distance) in text
        assert slice_verdict(deepest, distance) in text
    assert artefact_sentence(deepest, 1.0) in text and "local minim" in text
    assert "BatchNorm statistics are recomputed" in text
    charts = at.get("vega_lite_chart")
    assert len(charts) == 3  # accuracy and loss slices, the side-by-side heat maps
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
    assert len(at.get("vega_lite_chart")) == charts + 2  # accuracy and loss
    text = _texts(at)
    assert "resnet20 classifies" in text and "(one direction)" in text
    assert "Evaluated with the stale BatchNorm statistics" in text
