"""The mechanisms study behind the Mechanisms page: what the shipped files show, that the
page's sentences are computed from them, the command that makes them, and the page."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from app_helpers import app_test, no_exceptions

from resnet_core.studies import mechanisms as study
from resnet_core.training.data import load_dataset
from resnet_core.training.experiments import shipped_root
from resnet_core.views import mechanisms as views

SHIPPED = study.read_study()
needs_shipped = pytest.mark.skipif(SHIPPED is None, reason="no shipped mechanisms study")
PAGE = "pages/mechanisms.py"


# What the shipped files show (the page's words rest on these) ------------------------------
@needs_shipped
def test_shipped_plain_nets_shatter_and_residual_ones_do_not_at_depth():
    shatter = SHIPPED.shatter
    assert shatter["seed"].nunique() >= 3 and set(shatter["depth"]) == set(study.DEPTHS)
    deep = shatter[shatter["depth"] == 110].groupby("variant")["correlation"]
    assert deep.max()["plain"] < deep.min()["ResNet"]  # on every seed
    assert deep.max()["plain"] < 0.1  # white noise, or near it
    plain = shatter[shatter["variant"] == "plain"].groupby("depth")["correlation"].mean()
    assert plain[20] > plain[110]  # the plain net shatters more as it deepens


@needs_shipped
def test_shipped_branch_variance_falls_with_batchnorm_and_is_zero_with_zero_init():
    variance = SHIPPED.variance
    ratio = variance.groupby(["variant", "block"])["ratio"].mean()
    resnet = ratio["ResNet"]
    assert resnet.iloc[-5:].mean() < 0.25 * resnet.iloc[:5].mean()
    for variant in ("zero-init", "SkipInit"):
        assert (variance[variance["variant"] == variant]["ratio"] == 0).all()
    bare = variance[variance["variant"] == "ResNet without norm"].groupby("block")["skip"].mean()
    assert bare.iloc[-1] > 1e3 * bare.iloc[0]


@needs_shipped
def test_shipped_paths_are_measured_trained_and_at_init_for_every_length():
    paths = SHIPPED.paths
    assert {"resnet56 at init", "resnet56 trained"} <= set(paths["net"])
    for _, frame in paths.groupby("net"):
        n = int(frame["blocks"].iloc[0])
        assert list(frame["k"]) == list(range(n + 1))
        assert list(frame["paths"]) == [math.comb(n, k) for k in range(n + 1)]
    trained = paths[paths["net"] == "resnet56 trained"]
    assert views.per_branch(trained) < 1  # in the trained net, each branch shrinks the gradient
    low, high, _ = views.effective_lengths(trained)
    assert high < int(trained["blocks"].iloc[0]) / 2 + 1  # short paths carry the gradient


@needs_shipped
def test_shipped_study_names_no_machine_paths():
    folder = study.mechanisms_root()
    for path in folder.iterdir():
        text = path.read_text()
        assert "/work/" not in text and "/home/" not in text and "/tmp/" not in text, path
    assert SHIPPED.record["command"].startswith("python -m resnet_core mechanisms study")


TRAINED = study.variant_training()
needs_trained = pytest.mark.skipif(TRAINED is None, reason="no shipped variants56 runs")


@needs_trained
def test_shipped_variants_trained_as_the_page_says():
    steps, epochs, record = TRAINED
    assert set(epochs["variant"]) == set(study.VARIANTS) - {"ResNet without norm"}
    best = epochs.groupby("variant")["test_acc"].max()
    assert best["ResNet"] > best["plain"] + 0.2  # the degradation gap at 56 layers
    assert best["plain without norm"] < views.TRAINED_ABOVE  # never leaves chance
    assert min(best["SkipInit"], best["Fixup"]) > best["plain without norm"] + 0.1
    said = views.training_sentence(epochs, record)
    assert "as He et al. found" in said and "trail ResNet" in said and "one seed each" in said
    assert record["command"] == "python -m resnet_core experiment variants56 --device cpu --out checkpoints/demo"  # fmt: skip


# Sentences from frames -----------------------------------------------------------------------
def _shatter(plain: list[float], residual: list[float], depth: int = 56) -> pd.DataFrame:
    rows = [
        {"variant": v, "depth": d, "residual": v == "ResNet", "seed": s, "correlation": c}
        for v, values in (("plain", plain), ("ResNet", residual))
        for d in (20, depth)
        for s, c in enumerate(values)
    ]
    return pd.DataFrame(rows)


def test_the_line_sentence_says_whether_the_seeds_separate_the_nets():
    apart = views.along_sentence(_shatter([0.01, 0.03], [0.5, 0.6]), 56)
    assert "0.02 in plain-56 and 0.55 in ResNet-56" in apart and "do not overlap" in apart
    assert "2 seeds" in apart
    overlap = views.along_sentence(_shatter([0.1, 0.5], [0.3, 0.6]), 56)
    assert "ranges overlap" in overlap and "do not overlap" not in overlap
    against = views.along_sentence(_shatter([0.7, 0.8], [0.1, 0.2]), 56)
    assert "against the paper" in against


def test_the_effective_path_lengths_are_the_shortest_range_that_carries_the_share():
    frame = pd.DataFrame({"k": range(6), "total": [0, 1, 8, 1, 0, 0]})
    assert views.effective_lengths(frame, share=0.8) == (2, 2, 0.8)
    assert views.effective_lengths(frame, share=0.9)[:2] in ((1, 2), (2, 3))
    shrinking = pd.DataFrame({"k": range(5), "gradient": [2.0**-k for k in range(5)]})
    assert views.per_branch(shrinking) == pytest.approx(0.5)


def test_the_variance_sentence_names_the_variants_that_start_at_zero():
    rows = []
    for variant, ratio in (("ResNet", [1.0, 0.5, 0.1]), ("zero-init", [0, 0, 0]), ("SkipInit", [0, 0, 0])):  # fmt: skip
        for block, value in enumerate(ratio, start=1):
            rows.append({"variant": variant, "seed": 0, "block": block, "ratio": value, "skip": 1.0})  # fmt: skip
    said = views.variance_sentence(pd.DataFrame(rows))
    assert "from 1.00 at block 1 to 0.100 at block 3" in said
    assert "With zero-init and SkipInit the branch is exactly 0" in said


# The study and its command -------------------------------------------------------------------
def test_a_small_study_writes_every_file_and_reads_back(tmp_path):
    data = load_dataset("synthetic", subset=200, seed=0)
    frames, seconds, sample = study.run_study(data, None, seeds=1, images=10, depths=(20,))
    assert set(frames) == set(study.FILES) and set(seconds) == {"shatter", "along", "variance", "paths"}  # fmt: skip
    assert len(frames["shatter.csv"]) == len(study.VARIANTS)
    assert set(frames["paths.csv"]["net"]) == {"resnet56 at init"}
    record = study.study_record("python -m resnet_core mechanisms study", {}, seconds)
    study.write_study(tmp_path / "m", frames, record, sample)
    back = study.read_study(tmp_path / "m")
    pd.testing.assert_frame_equal(back.shatter, frames["shatter.csv"], check_dtype=False)
    with pytest.raises(FileExistsError):  # nothing is written over
        study.write_study(tmp_path / "m", frames, record, sample)
    assert study.read_study(tmp_path / "missing") is None


def test_the_command_measures_a_trained_run_on_cifar(cifar_root, tmp_path, capsys):
    from resnet_core.cli.main import main

    run = shipped_root() / "degradation" / "resnet20"
    out = tmp_path / "study"
    argv = ["mechanisms", "study", str(run), "--out", str(out), "--depths", "20"]
    assert main([*argv, "--seeds", "1", "--images", "10", "--data-dir", str(cifar_root)]) == 0
    found = study.read_study(out)
    assert set(found.paths["net"]) == {"resnet20 at init", "resnet20 trained"}
    assert found.record["settings"] == {"seeds": 1, "images": 10, "depths": [20]}
    assert "ResNet" in capsys.readouterr().out


# The page ------------------------------------------------------------------------------------
def _texts(at) -> str:
    return " ".join(e.value for kind in (at.markdown, at.caption, at.info) for e in kind)


@needs_shipped
def test_page_shows_each_mechanism_with_its_computed_sentence(tmp_path, monkeypatch):
    monkeypatch.setenv("RESNET_EXPLORER_CHECKPOINTS", str(tmp_path / "checkpoints"))
    at = app_test()
    at.run()
    at.switch_page(PAGE).run()
    assert no_exceptions(at) == [] and at.title[0].value == "Mechanisms"
    text = _texts(at)
    assert views.along_sentence(SHIPPED.shatter, 56) in text
    assert views.depth_sentence(SHIPPED.shatter) in text and "1702.08591" in text
    at.segmented_control(key="shatter_depth").set_value(110).run()
    assert views.along_sentence(SHIPPED.shatter, 110) in _texts(at)
    at.segmented_control(key="mechanism").set_value("Short paths").run()
    net = list(dict.fromkeys(SHIPPED.paths["net"]))[-1]
    assert no_exceptions(at) == [] and views.paths_sentence(SHIPPED.paths, net) in _texts(at)
    at.segmented_control(key="mechanism").set_value("Pull toward the identity").run()
    assert no_exceptions(at) == [] and views.variance_sentence(SHIPPED.variance) in _texts(at)
    assert len(at.get("vega_lite_chart")) == 2
    at.segmented_control(key="mechanism").set_value("Do they train?").run()
    steps, epochs, record = TRAINED
    assert no_exceptions(at) == [] and views.training_sentence(epochs, record) in _texts(at)


def test_page_says_how_to_make_the_study_when_it_is_missing(tmp_path, monkeypatch):
    import streamlit as st

    monkeypatch.setattr(study, "mechanisms_root", lambda: tmp_path / "none")
    st.cache_data.clear()  # the page keeps the shipped study once read
    at = app_test()
    at.run()
    at.switch_page(PAGE).run()
    assert no_exceptions(at) == []
    assert "mechanisms study" in _texts(at)
