"""Lecture material: slide order, numbers read from the shipped results, every slide renders."""

import json

import pytest
from app_helpers import app_test, no_exceptions
from test_he2016 import PAPER_LIKE, write_experiment

from resnet_core.training import experiments
from resnet_core.training.experiment_results import final_train_errors, load_experiment
from resnet_core.training.experiments import shipped_root
from resnet_core.views import lecture
from resnet_core.views.explain import EFFECT_WORDS, effect_word, sample_text


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


@pytest.mark.parametrize("number", range(1, len(lecture.lecture_slides()) + 1))
def test_every_slide_renders(number):
    at = app_test()
    at.query_params["slide"] = str(number)
    at.switch_page("pages/lecture.py")
    at.run()
    assert not no_exceptions(at)
    assert at.title[0].value == lecture.lecture_slides()[number - 1].title
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


def test_fig7_slide_states_the_size_of_the_effect_and_its_sample():
    """The slide says by how much (in percent, and in words chosen by that percent) each
    ResNet's median response is below its plain twin's, and which images were measured."""
    medians = lecture.trained_responses().groupby("net")["std"].median()
    at = app_test()
    at.query_params["slide"] = str([slide.key for slide in lecture.SLIDES].index("responses") + 1)
    at.switch_page("pages/lecture.py")
    at.run()
    assert not no_exceptions(at)
    text = " ".join(m.value for m in at.markdown)
    for depth in (20, 56):
        gap = 1 - medians[f"resnet{depth}"] / medians[f"plain{depth}"]
        side = "smaller" if gap > 0 else "larger"
        stated = f"resnet{depth}'s median is {100 * abs(gap):.1f} % {side} than plain{depth}'s"
        assert f"{stated} ({effect_word(gap)})" in text
    least = min(1 - medians[f"resnet{d}"] / medians[f"plain{d}"] for d in (20, 56))
    slight = least < EFFECT_WORDS[1][0]  # a slight or negligible difference is called so
    assert ("but for resnet" in text) == slight and ("do not respond less" in text) == (least <= 0)
    title = json.loads(at.get("vega_lite_chart")[0].proto.spec)["title"]
    title = title["text"] if isinstance(title, dict) else title
    assert "500 CIFAR-10 test images, 50 of each class, picked with seed 0" in str(title)
    assert sample_text(lecture.responses_sample()) in str(title)


def _seeded(accuracies: dict[str, list[float]]) -> dict[str, tuple[float, float]]:
    """Fixture finals (train error %, test error %) for runs <setting>_seed<i>, with the
    given final test accuracies (%) and a training accuracy 5 points above each."""
    return {
        f"{name}_seed{seed}": (100 - acc - 5, 100 - acc)
        for name, values in accuracies.items()
        for seed, acc in enumerate(values)
    }


def test_weight_decay_sentence_sets_the_difference_against_the_seed_spread(tmp_path):
    write_experiment(
        tmp_path, "weight_decay", _seeded({"wd5e-4": [90, 91, 92], "wd1e-4": [87, 88, 88.5]})
    )
    gap = lecture.weight_decay_gap(tmp_path)
    assert set(gap["setting"]) == {"wd5e-4", "wd1e-4"}
    text = lecture.weight_decay_sentence(gap)
    assert "wd5e-4 mean 91.0% over 3 seeds (min-max 90.0-92.0)" in text
    assert "wd1e-4 mean 87.8% over 3 seeds (min-max 87.0-88.5)" in text
    assert "The 3.2-point difference between the means exceeds the seed-to-seed spread" in text
    assert "up to 2.0 points" in text and "One run per setting" not in text

    close = tmp_path / "close"
    write_experiment(
        close, "weight_decay", _seeded({"wd5e-4": [88, 91, 92], "wd1e-4": [87, 88, 90]})
    )
    text = lecture.weight_decay_sentence(lecture.weight_decay_gap(close))
    assert "difference between the means does not exceed the seed-to-seed spread" in text


def test_comparison_sentence_with_seeds(tmp_path):
    finals = _seeded({"simple_cnn": [80, 81, 82], "resnet18": [93, 93.5, 94]})
    write_experiment(tmp_path, "cnn_vs_resnet", finals)
    comparison = lecture.comparison_table("cnn_vs_resnet", tmp_path)
    text = lecture.comparison_sentence(comparison)
    assert "resnet18 mean 93.5% over 3 seeds" in text and "simple_cnn mean 81.0%" in text
    assert "12.5-point difference between the means exceeds" in text


def test_one_seed_keeps_the_one_run_sentences():
    gap = lecture.weight_decay_gap()
    assert "setting" not in gap
    assert "One run per setting" in lecture.weight_decay_sentence(gap)
    assert "seeds" not in lecture.comparison_sentence(lecture.comparison_table("cnn_vs_resnet"))


@pytest.fixture
def shipped_here(tmp_path, monkeypatch):
    """The lecture reads its shipped results from tmp_path; no slide data cached either side."""
    import streamlit as st

    monkeypatch.setattr(experiments, "SHIPPED_ROOT", tmp_path)
    st.cache_data.clear()
    yield tmp_path
    st.cache_data.clear()


def _render(number):
    at = app_test()
    at.query_params["slide"] = str(number)
    at.switch_page("pages/lecture.py")
    at.run()
    assert not no_exceptions(at) and not at.error
    return at


def test_the_weight_decay_slide_shows_three_seeds(shipped_here):
    finals = _seeded({"wd5e-4": [90, 91, 92], "wd1e-4": [87, 88, 88.5]})
    write_experiment(shipped_here, "weight_decay", finals)
    number = 1 + [slide.key for slide in lecture.SLIDES].index("weight_decay")
    at = _render(number)
    assert "over 3 seeds" in " ".join(m.value for m in at.markdown)


def test_the_reproduction_slide_renders_from_shipped_files(shipped_here):
    write_experiment(shipped_here, "he2016", PAPER_LIKE)
    number = len(lecture.SLIDES) + 1
    at = _render(number)
    assert at.title[0].value == lecture.HE2016_SLIDE.title
    text = " ".join(m.value for m in at.markdown)
    assert "plain nets rises with every step in depth" in text
    assert f"Slide {number} of {number + 1}" in text  # Your turn comes last
    shown = at.dataframe[0].value.set_index("network")
    assert shown.loc["resnet56", "He et al. Table 6 (%)"] == "6.97"


def test_gradient_slide_states_the_spread_over_three_seeds():
    at = app_test()
    at.query_params["slide"] = "4"
    at.switch_page("pages/lecture.py")
    at.run(timeout=120)
    assert not no_exceptions(at)
    captions = " ".join(c.value for c in at.caption)
    assert "Over seeds 0-2 the first/last ratio is" in captions
    assert "in plain56 and" in captions and "the ranges" in captions


def test_the_last_slide_is_your_turn_from_the_catalog():
    from resnet_core.exercises import EXERCISES

    slides = lecture.lecture_slides()
    assert slides[-1].key == "your_turn" and slides[-1].title.startswith(f"{len(slides)}. ")
    at = _render(len(slides))
    assert not no_exceptions(at) and not at.error
    commands = at.code[0].value
    for exercise in EXERCISES.values():
        assert f"exercise check {exercise.id} {exercise.id}.py" in commands
    assert "exercise train simple_resnet simple_resnet.py" in commands
    shown = " ".join(m.value for m in at.markdown)
    caught = [catch for exercise in EXERCISES.values() for catch in exercise.catches]
    assert "a ReLU before the addition" in caught
    assert all(f"- {catch}" in shown for catch in caught), shown
