"""Lesion studies (Veit et al. 2016): what deleting a block does to a net, the shipped
results for the degradation nets, the CLI, and the Lesions page."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from app_helpers import app_test, no_exceptions, tiny_run
from torch import nn

from resnet_core.analysis.lesion import (
    LesionError,
    count_correct,
    lesion_units,
    lesioned,
    random_draws,
    single_lesions,
)
from resnet_core.analysis.sampling import SAMPLE_FILE, classes_in, stratified_indices
from resnet_core.cli.main import main
from resnet_core.nets.model import build_model
from resnet_core.nets.spec import ArchSpec
from resnet_core.studies import lesion as study
from resnet_core.training.data import NORMALIZATIONS, load_cifar10, load_dataset
from resnet_core.training.experiments import shipped_root
from resnet_core.training.runs import load_run
from resnet_core.views import lesion as views

PAGE = "pages/lesion.py"
MEAN, STD = NORMALIZATIONS["cifar10"]


def _tiny(block: str = "basic", residual: bool = True, shortcut: str = "projection") -> nn.Module:
    """Two stages of two blocks each: identity blocks and one stage change."""
    torch.manual_seed(0)
    spec = ArchSpec(block=block, depths=(2, 2), widths=(4, 8), residual=residual, shortcut=shortcut)
    model = build_model(spec).eval()
    for module in model.modules():  # running statistics that are not the identity
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    return model


def _block(model: nn.Module, name: str) -> nn.Module:
    unit = next(unit for unit in lesion_units(model) if unit.name == name)
    return model.get_submodule(unit.path)


def _io(model: nn.Module, block: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The block's input and output during one forward pass of the model."""
    seen = {}
    handle = block.register_forward_hook(
        lambda module, args, out: seen.update(input=args[0], output=out)
    )
    try:
        with torch.no_grad():
            model(x)
    finally:
        handle.remove()
    return seen["input"], seen["output"]


# The lesion itself -------------------------------------------------------------------------
@pytest.mark.parametrize("block_type", ["basic", "bottleneck"])
@pytest.mark.parametrize("shortcut", ["projection", "zero_pad"])
def test_a_deleted_residual_block_returns_its_shortcut(block_type, shortcut):
    model = _tiny(block_type, shortcut=shortcut)
    x = torch.randn(3, 3, 16, 16)
    units = {unit.name: unit for unit in lesion_units(model)}
    assert all(unit.deletable for unit in units.values())
    assert units["1.2"].replaced_by == "identity"
    for name in units:
        block = _block(model, name)
        with lesioned(model, [name]):
            inputs, output = _io(model, block, x)
        with torch.no_grad():
            if block.downsample is None:
                expected = inputs  # the identity shortcut, exactly
            else:
                expected = torch.relu(block.downsample(inputs))  # the join, branch removed
        assert torch.equal(output, expected), name
        _, intact = _io(model, block, x)
        assert not torch.equal(intact, output), f"{name}: deleting it changed nothing"
    kinds = {unit.replaced_by for unit in units.values()}
    if block_type == "basic":  # bottlenecks change channels in their first block too
        assert kinds == {"identity", f"{shortcut.replace('_', '-')} shortcut"}


def test_zero_pad_shortcut_output_is_the_shortcut_itself():
    model = _tiny(shortcut="zero_pad")
    block = _block(model, "2.1")
    with lesioned(model, ["2.1"]):
        inputs, output = _io(model, block, torch.randn(2, 3, 16, 16))
    assert torch.equal(output, block.downsample(inputs))  # inputs left a ReLU: no change


def test_the_model_is_exactly_restored():
    model = _tiny()
    x = torch.randn(4, 3, 16, 16)
    with torch.no_grad():
        before = model(x)
        state = {k: v.clone() for k, v in model.state_dict().items()}
        with lesioned(model, ["1.1", "2.1"]):
            during = model(x)
        after = model(x)
    assert not torch.equal(before, during)
    assert torch.equal(before, after)
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert not any("forward" in vars(module) for module in model.modules())
    with pytest.raises(RuntimeError), lesioned(model, ["1.2"]):
        raise RuntimeError("fails inside")
    with torch.no_grad():
        assert torch.equal(model(x), before)  # restored after an error too


def test_plain_blocks_at_a_shape_change_cannot_be_deleted():
    model = _tiny(residual=False)
    units = {unit.name: unit for unit in lesion_units(model)}
    assert not units["2.1"].deletable and units["2.1"].replaced_by == "cannot delete"
    assert units["1.2"].deletable and units["1.2"].replaced_by == "identity"
    with pytest.raises(LesionError, match="cannot be deleted"), lesioned(model, ["2.1"]):
        pass
    with pytest.raises(LesionError, match="no block"), lesioned(model, ["9.9"]):
        pass
    block = _block(model, "2.2")
    with lesioned(model, ["2.2"]):
        inputs, output = _io(model, block, torch.randn(2, 3, 16, 16))
    assert torch.equal(output, inputs)


def test_a_net_without_blocks_is_refused():
    with pytest.raises(LesionError, match="no ResNet blocks"):
        lesion_units(build_model("small_cnn"))


def test_random_draws_are_reproducible_and_only_deletable():
    model = build_model("plain56")
    units = lesion_units(model)
    deletable = {unit.name for unit in units if unit.deletable}
    assert len(deletable) == len(units) - 2  # 2.1 and 3.1 change shape
    for k in (1, 5, len(deletable)):
        draws = random_draws(units, k, draws=6, seed=3)
        assert draws == random_draws(units, k, draws=6, seed=3)
        assert all(len(set(names)) == k and set(names) <= deletable for names in draws)
    assert random_draws(units, 5, 6, seed=3) != random_draws(units, 5, 6, seed=4)
    with pytest.raises(LesionError):
        random_draws(units, len(deletable) + 1, 1, seed=0)


def test_lesion_sample_is_seeded_and_takes_each_class_equally():
    data = load_dataset("synthetic")
    sample = study.lesion_sample(data, 30, seed=4)
    labels = data.test_labels
    assert sample["indices"] == stratified_indices(labels, 30, 4).tolist()
    assert torch.bincount(labels[sample["indices"]]).tolist() == [3] * 10
    assert sample["how"] == "stratified, seed 4" and sample["split"] == "test"
    assert study.lesion_sample(data, 30, seed=5)["indices"] != sample["indices"]
    everything = study.lesion_sample(data, 10**6, seed=4)
    assert (
        everything["indices"] == list(range(len(labels))) and everything["how"] == "all test images"
    )


def test_single_lesions_count_what_the_lesioned_net_gets_right():
    model = _tiny()
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (40, 3, 16, 16), dtype=torch.uint8, generator=generator)
    labels = torch.randint(0, 10, (40,), generator=generator)
    calls = []
    frame = single_lesions(
        model, images, labels, MEAN, STD, batch_size=16, on_progress=lambda *a: calls.append(a)
    )
    assert list(frame["block"]) == ["1.1", "1.2", "2.1", "2.2"]
    assert [done for done, total, _ in calls] == [1, 2, 3, 4] and calls[-1][1] == 4
    intact = count_correct(model, images, labels, MEAN, STD)
    assert (frame["intact"] == intact / 40).all()
    with lesioned(model, ["2.1"]):
        assert frame.set_index("block").loc["2.1", "correct"] == count_correct(
            model, images, labels, MEAN, STD
        )


# The shipped results -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def shipped() -> study.LesionResult:
    result = study.shipped_results()
    return result


def _summary(shipped: study.LesionResult) -> dict:
    return study.single_summary(shipped.single).set_index("net").to_dict("index")


def test_shipped_results_cover_the_four_degradation_nets(shipped):
    assert set(shipped.nets) == {"plain20", "plain56", "resnet20", "resnet56"}
    record = shipped.record
    assert record["images"] > 0 and record["draws"] > 0
    assert {"command", "hardware", "torch", "date"} <= set(record)
    assert (shipped.single["images"] == record["images"]).all()


def test_deep_residual_net_loses_little_from_one_deletion(shipped):
    summary = _summary(shipped)
    assert summary["resnet56"]["median_drop"] < 5
    single = shipped.single[shipped.single["net"] == "resnet56"]
    assert (single["drop"] < 5).mean() > 0.5  # most single deletions within a few points


def test_plain_nets_fall_towards_chance_from_one_deletion(shipped):
    summary = _summary(shipped)
    for plain, residual in (("plain56", "resnet56"), ("plain20", "resnet20")):
        assert summary[plain]["median_accuracy"] < 30, plain
        assert summary[plain]["intact"] > 60, plain  # the intact net was good
        assert summary[residual]["median_accuracy"] > summary[plain]["median_accuracy"] + 30


def test_random_deletions_hurt_the_residual_net_gradually(shipped):
    curve = study.random_summary(shipped.random).set_index(["net", "k"])["mean"]
    assert curve["resnet56", 1] > curve["plain56", 1] + 30
    assert curve["resnet56", 3] > 50  # three blocks gone, still far above chance
    assert curve["resnet56", 1] >= curve["resnet56", 10] - 1  # more deletions, no better


def test_one_shipped_deletion_recomputes(shipped, cifar_root):
    """Block by block the shipped CSV is what the checkpoint gives on the same images."""
    rows = shipped.single[(shipped.single["net"] == "resnet20")].set_index("block")
    block = rows["drop"].idxmax()  # the most telling one
    model, _ = load_run(shipped_root() / "degradation" / "resnet20")
    data = load_cifar10(cifar_root)
    picks = torch.tensor(shipped.sample["indices"])  # the images sample.json records
    assert len(picks) == int(rows["images"].iloc[0]) and classes_in(data.test_labels, picks) == 10
    images, labels = data.test_images[picks], data.test_labels[picks]
    tolerance = 0.005 * len(picks)  # another CPU may round a borderline image differently
    intact = count_correct(model, images, labels, MEAN, STD)
    assert abs(intact - rows["intact"].iloc[0] * len(picks)) <= tolerance
    with lesioned(model, [block]):
        correct = count_correct(model, images, labels, MEAN, STD)
    assert abs(correct - int(rows.loc[block, "correct"])) <= tolerance, block


def test_shipped_sample_is_what_the_record_says(shipped, cifar_root):
    """The shipped lesions were measured on a seeded stratified pick: sample.json holds exactly
    the images `stratified_indices` draws for the record's seed and image count."""
    data = load_cifar10(cifar_root)
    seed, images = shipped.record["seed"], shipped.record["images"]
    assert shipped.sample["indices"] == stratified_indices(data.test_labels, images, seed).tolist()
    assert shipped.sample["dataset"] == data.source
    assert shipped.sample["how"] == f"stratified, seed {seed}"
    assert classes_in(data.test_labels, shipped.sample["indices"]) == 10


def test_readme_states_the_shipped_median_drop(shipped):
    drop = _summary(shipped)["resnet56"]["median_drop"]
    text = Path("README.md").read_text()
    assert f"loses a median {drop:.1f} points" in text


def test_shipped_sentences_come_from_the_numbers(shipped):
    text = views.single_story(study.select(shipped, ["plain56", "resnet56"]).single)
    worst = _summary(shipped)["resnet56"]
    assert f"costs {worst['mean_drop']:.1f} points on average" in text
    assert f"block {worst['worst_block']}" in text
    assert "plain56" in text and "near chance" in text
    curve = study.random_summary(shipped.random).set_index(["net", "k"])["mean"]
    story = views.random_story(shipped.random)
    assert "resnet56 with 1, 6 and 13 of its 27 deletable blocks" in story
    spread = study.random_summary(shipped.random).set_index(["net", "k"])
    low, high = spread.at[("resnet56", 6), "low"], spread.at[("resnet56", 6), "high"]
    assert f"{curve['resnet56', 6]:.0f} % ({low:.0f}-{high:.0f})" in story
    assert "(mean and range of 5 draws)" in story
    assert text.endswith(views.ONE_RUN)


# Files and the CLI --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_checkpoints(tmp_path_factory) -> Path:
    """A checkpoints folder holding one briefly trained resnet20 on the synthetic set."""
    checkpoints = tmp_path_factory.mktemp("lesion") / "checkpoints"
    tiny_run(checkpoints)
    return checkpoints


def _tiny_run(checkpoints: Path) -> Path:
    return next((checkpoints / "runs").iterdir())


def test_results_round_trip(tiny_checkpoints, tmp_path):
    run = _tiny_run(tiny_checkpoints)
    result = study.run_lesion(run, images=30, draws=1, seed=1)
    paths = study.write_results(result, tmp_path / "out" / "x.csv")
    assert [p.name for p in paths] == ["x.csv", "x-random.csv", "x.json", SAMPLE_FILE]
    assert paths[-1].parent == paths[0].parent  # beside the results
    assert result.sample == study.lesion_sample(study.lesion_test_set(run), 30, seed=1)
    back = study.read_results(tmp_path / "out" / "x.csv")
    assert back.single.equals(result.single) or back.single.astype(str).equals(
        result.single.astype(str)
    )
    assert list(back.random["blocks"]) == list(result.random["blocks"])
    assert back.record["images"] == 30 and back.record["runs"][0]["run"] == run.name
    assert back.sample == result.sample and len(back.sample["indices"]) == 30
    assert "3 test images of each class, picked with seed 1" in back.record["sample"]


def test_cli_prints_a_table_and_fails_in_one_line(tiny_checkpoints, tmp_path, capsys):
    run = Path(shutil.copytree(_tiny_run(tiny_checkpoints), tmp_path / "run"))
    assert main(["lesion", str(run), "--images", "30", "--draws", "0"]) == 0
    out = capsys.readouterr().out
    assert "replaced_by" in out and "2.1" in out and "zero-pad shortcut" in out
    (run / "best.pt").unlink()
    assert main(["lesion", str(run)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "best.pt" in err[0]


def test_cli_writes_no_one_sample_for_different_test_sets(tiny_checkpoints, tmp_path, capsys):
    synthetic, cifar = _tiny_run(tiny_checkpoints), shipped_root() / "degradation" / "resnet20"
    out = tmp_path / "x.csv"
    assert main(["lesion", str(synthetic), str(cifar), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "different test sets" in err[0]
    assert not tmp_path.joinpath(SAMPLE_FILE).exists() and not out.exists()


def test_cli_says_when_cifar10_is_missing(tmp_path, capsys):
    run = shipped_root() / "degradation" / "resnet20"
    code = main(["lesion", str(run), "--data-dir", str(tmp_path / "no-data")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "CIFAR-10 not found" in err[0]


# The page -----------------------------------------------------------------------------------
def _texts(at) -> str:
    return " ".join(e.value for kind in (at.markdown, at.caption, at.info) for e in kind)


def test_page_shows_the_shipped_lesions_at_once(shipped, tmp_path, monkeypatch):
    monkeypatch.setenv("RESNET_EXPLORER_CHECKPOINTS", str(tmp_path / "checkpoints"))
    monkeypatch.setenv("RESNET_EXPLORER_DATA", str(tmp_path / "no-data"))
    at = app_test()
    at.run()
    at.switch_page(PAGE).run()
    assert no_exceptions(at) == []
    assert len(at.get("vega_lite_chart")) == 2  # one block deleted; k blocks at random
    text = _texts(at)
    assert views.single_story(study.select(shipped, ["plain56", "resnet56"]).single) in text
    assert views.random_story(study.select(shipped, ["plain56", "resnet56"]).random) in text
    assert "arxiv.org/abs/1605.06431" in text
    at.segmented_control(key="lesion_depth").set_value("20 layers").run()
    assert no_exceptions(at) == [] and "resnet20" in _texts(at)
    runs = at.selectbox(key="lesion_run")
    runs.set_value(str(shipped_root() / "cnn_vs_resnet" / "resnet18")).run()
    assert "saved no weights" in _texts(at)
    runs.set_value(str(shipped_root() / "degradation" / "resnet20")).run()
    next(b for b in at.button if b.label == "Delete blocks").click().run()
    assert no_exceptions(at) == [] and "CIFAR-10, which is not available here" in _texts(at)


def test_page_lesions_a_synthetic_run_on_demand(tiny_checkpoints, tmp_path, monkeypatch):
    run = _tiny_run(tiny_checkpoints)
    monkeypatch.setenv("RESNET_EXPLORER_CHECKPOINTS", str(tiny_checkpoints))
    monkeypatch.setenv("RESNET_EXPLORER_DATA", str(tmp_path / "no-data"))
    at = app_test()
    at.run()
    at.switch_page(PAGE).run()
    assert at.selectbox(key="lesion_run").value == str(run)  # your newest run first
    charts = len(at.get("vega_lite_chart"))
    at.segmented_control(key="lesion_draws").set_value(0).run()
    next(b for b in at.button if b.label == "Delete blocks").click().run()
    assert no_exceptions(at) == []
    assert "trained on the **synthetic** stand-in set" in _texts(at)
    assert len(at.get("vega_lite_chart")) == charts + 1  # single deletions only (0 draws)
    at.run()  # a rerun shows the kept result (its progress bar replayed), no button needed
    assert no_exceptions(at) == [] and len(at.get("vega_lite_chart")) == charts + 1
    assert "Deleting one block of resnet20" in _texts(at) or "For resnet20" in _texts(at)
