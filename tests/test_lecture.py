"""Lecture material: slide order, numbers read from the shipped results, every slide renders."""

import json

import pytest
from app_helpers import app_test, no_exceptions

from resnet_core.training.experiments import final_train_errors, load_experiment, shipped_root
from resnet_core.views import lecture


def test_slide_index_from_url():
    assert lecture.slide_index("3") == 2
    assert lecture.slide_index(None) == 0
    assert lecture.slide_index("banana") == 0
    assert lecture.slide_index("0") == 0
    assert lecture.slide_index("99") == len(lecture.SLIDES) - 1


def test_degradation_summary_matches_the_runs():
    summary = lecture.degradation_summary().set_index("network")
    errors = final_train_errors(shipped_root() / "degradation")
    for run, error in errors.items():
        assert summary.loc[run, "final train error (%)"] == pytest.approx(100 * error, abs=0.01)
    curves = lecture.degradation_curves()
    assert set(curves["split"]) == {"train", "test"}
    assert set(curves["family"]) == {"plain", "residual"}


def test_results_table_sits_beside_he_table6():
    table = lecture.results_table().set_index("network")
    assert table.loc["resnet56", "He et al. test error (%)"] == "6.97"
    assert table.loc["resnet20", "He et al. test error (%)"] == "8.75"
    assert table.loc["plain56", "He et al. test error (%)"].startswith("not in Table 6")
    assert (table["our best test error (%)"] > 0).all()


def test_comparison_table_and_gap():
    comparison = lecture.comparison_table("cnn_vs_resnet").set_index("network")
    assert comparison.loc["resnet18", "parameters"] == 11_173_962
    assert comparison.loc["small_cnn", "parameters"] == 261_834  # the run's own net, not the seed's
    assert comparison.loc["small_cnn", "parameters"] < comparison.loc["resnet18", "parameters"]
    gap = lecture.weight_decay_gap()
    assert set(gap["run"]) == {"wd5e-4", "wd1e-4"}
    assert gap["gap"].tolist() == pytest.approx((gap["train"] - gap["test"]).tolist())


def test_recipe_text_names_hardware_and_command():
    text = lecture.recipe_text("degradation")
    assert "epochs" in text and "Command:" in text and "python -m resnet_core experiment" in text
    assert lecture.recipe_text("layer_responses") == text


def test_block_dot_draws_the_skip_only_when_residual():
    assert "identity" in lecture.residual_block_dot(True)
    assert "identity" not in lecture.residual_block_dot(False)


@pytest.mark.parametrize("number", range(1, len(lecture.SLIDES) + 1))
def test_every_slide_renders(number):
    at = app_test()
    at.query_params["slide"] = str(number)
    at.switch_page("pages/lecture.py")
    at.run()
    assert not no_exceptions(at)
    assert at.title[0].value == lecture.SLIDES[number - 1].title
    assert not at.error


def test_recipe_text_gives_each_run_its_own_differing_setting():
    """The weight-decay comparison states both decays, read from each run's config.json."""
    text = lecture.recipe_text("weight_decay")
    folder = shipped_root() / "weight_decay"
    record = json.loads((folder / "experiment.json").read_text())
    decays = {}
    for member in record["runs"]:
        config = json.loads((folder / member["run"] / "config.json").read_text())
        decays[member["label"]] = config["weight_decay"]
        assert f"{config['weight_decay']} ({member['label']})" in text
    assert len(set(decays.values())) == 2
    assert "(" not in lecture.recipe_text("degradation").split("weight decay ")[1].split(",")[0]


def test_slide_sentences_are_computed_from_the_shipped_files():
    results = lecture.results_table()
    ours = results.set_index("network")["our best test error (%)"]
    text = lecture.results_sentence(results)
    assert f"resnet56: {ours['resnet56']:.2f}% (He et al. 6.97%)" in text
    deeper = "beats the 20-layer" in text
    assert deeper == (ours["resnet56"] < ours["resnet20"])
    long = lecture.results_long(results)
    assert set(long["source"]) == {"ours", "He et al."}
    assert len(long[long["source"] == "He et al."]) == 2  # Table 6 has the two ResNets only
    comparison = lecture.comparison_table("cnn_vs_resnet")
    assert "resnet18" in lecture.comparison_sentence(comparison).split(";")[0]  # best first
    gap = lecture.weight_decay_gap()
    sentence = lecture.weight_decay_sentence(gap)
    spread = gap.groupby("run")["test"].max()
    assert f"{spread.max() - spread.min():.1f}-point difference" in sentence
    # "one run per setting": the shipped experiment has no repeated seeds to compare with
    record = load_experiment(shipped_root() / "weight_decay")["record"]
    models = [run["model"] for run in record["runs"]]
    assert len(record["runs"]) == len(set(run["label"] for run in record["runs"])) == 2
    assert len(set(models)) == 1


def test_fig7_slide_title_holds_on_the_shipped_responses():
    """Slide 5's title says trained residual layers respond less: check it on the files."""
    responses = lecture.trained_responses()
    medians = responses.groupby("net")["std"].median()
    assert medians["resnet20"] < medians["plain20"] and medians["resnet56"] < medians["plain56"]
