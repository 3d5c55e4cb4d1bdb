"""Crafted text never defeats the parsers: JSON nested deep, numbers thousands of digits
long, huge or odd strings in a spec, a link, the paste box, a form field or a CLI flag come
out as one clear SpecError/usage error, shown inline in the app."""

from __future__ import annotations

import argparse
import json

import pytest
from app_helpers import app_test, no_exceptions
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from resnet_core.cli import train as cli_train
from resnet_core.common.errors import ConfigError
from resnet_core.nets.spec import ArchSpec, SpecError, parse_int_list, resolve_spec

DEEP = "[" * 1200 + "]" * 1200
CRAFTED = [
    DEEP,
    '{"depths": ' + DEEP + "}",
    '{"depths": [' + "9" * 5000 + "]}",
    '{"widths": [1e400, 1]}',
    '{"depths": [3, 3], "widths": [16, 32], "num_classes": ' + "7" * 400 + "}",
    '{"block": "' + "x" * 200_000 + '"}',
    '{"depths": [NaN], "widths": [Infinity]}',
    '{"depths": "3, 3, 3"}',
    "\x00\ud800",
    "{" * 40 + "}" * 40,
]


@pytest.mark.parametrize("text", CRAFTED, ids=range(len(CRAFTED)))
def test_crafted_json_is_one_spec_error(text):
    with pytest.raises(SpecError) as caught:
        ArchSpec.from_json(text)
    message = str(caught.value)
    assert "\n" not in message and len(message) < 300


@pytest.mark.parametrize(
    "name", ["x" * 1_000_000, "resnet" + "0" * 5000, "../../etc/passwd", "", " ", "\x00"]
)
def test_crafted_preset_names(name):
    with pytest.raises(SpecError) as caught:
        resolve_spec(name)
    assert len(str(caught.value)) < 300


@pytest.mark.parametrize("text", ["9" * 5000, "1," * 500, "-" + "9" * 20, "3; 3; x"])
def test_crafted_form_lists(text):
    with pytest.raises(SpecError):
        ArchSpec(depths=parse_int_list(text, "depths"), widths=(16,))


# Fuzz: only SpecError (or a usage error) ever comes out ------------------------------------
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=30,
)
FIELDS = ["stem", "block", "depths", "widths", "residual", "shortcut", "num_classes", "in_channels"]
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=8), JSON_VALUES, max_size=6))
def test_fuzz_spec_from_dict(data):
    try:
        ArchSpec.from_dict(data)
    except SpecError:
        pass


@FUZZ
@given(st.text(max_size=300) | JSON_VALUES.map(lambda value: json.dumps(value, allow_nan=True)))
def test_fuzz_spec_from_json_and_links(text):
    try:
        ArchSpec.from_json(text)
    except SpecError:
        pass
    try:
        resolve_spec(text)
    except SpecError:
        pass


TRAIN_FLAGS = ["--epochs", "--batch-size", "--lr", "--seed", "--subset", "--optimizer", "--warmup"]


@FUZZ
@given(st.sampled_from(TRAIN_FLAGS), st.text(max_size=40) | st.integers().map(str))
def test_fuzz_train_flags(flag, value):
    parser = argparse.ArgumentParser(exit_on_error=False)
    cli_train.register(parser.add_subparsers(dest="command"))
    try:
        args = parser.parse_args(["train", flag, value])
    except (argparse.ArgumentError, SystemExit):
        return
    try:
        cli_train.config_from_args(args)
    except (ConfigError, SpecError):
        pass


# The app shows each as an inline message ---------------------------------------------------
@pytest.mark.parametrize("net", [CRAFTED[0], CRAFTED[2], "x" * 100_000, '{"depths": [1e400]}'])
def test_crafted_link_is_a_warning(tmp_path, monkeypatch, net):
    monkeypatch.setenv("RESNET_EXPLORER_CHECKPOINTS", str(tmp_path))
    at = app_test()
    at.query_params["net"] = net
    at.run()
    assert no_exceptions(at) == []
    assert any("cannot be built" in w.value for w in at.warning)
    assert next(m.value for m in at.metric if m.label == "Weighted layers") == "20"  # default


@pytest.fixture()
def build_page(tmp_path, monkeypatch):
    monkeypatch.setenv("RESNET_EXPLORER_CHECKPOINTS", str(tmp_path))
    monkeypatch.setenv("RESNET_EXPLORER_DATA", str(tmp_path / "no-data"))
    at = app_test()
    at.run()
    at.segmented_control(key="build_mode").set_value("Custom").run()
    return at


@pytest.mark.parametrize("text", [CRAFTED[0], CRAFTED[2], CRAFTED[5][:90_000]])
def test_crafted_paste_is_an_inline_error(build_page, text):
    build_page.text_area(key="build_json").set_value(text)
    [b for b in build_page.button if b.label == "Load this spec"][0].click().run()
    assert no_exceptions(build_page) == [] and build_page.error


@pytest.mark.parametrize("depths", ["9" * 5000, "1," * 500, "3, 3, 99999999999999"])
def test_crafted_form_field_is_an_inline_error(build_page, depths):
    build_page.text_input(key="build_depths").set_value(depths)
    [b for b in build_page.button if b.label == "Build this net"][0].click().run()
    assert no_exceptions(build_page) == [] and build_page.error
    assert next(m.value for m in build_page.metric if m.label == "Parameters") == "270 k"


@pytest.mark.parametrize(
    "spec",
    [
        {"depths": [1] * 7, "widths": [8] * 7},
        {"depths": [1] * 8, "widths": [4] * 8, "block": "bottleneck"},
        {"depths": [1] * 8, "widths": [4] * 8, "stem": "imagenet"},
    ],
)
def test_valid_nets_that_downsample_below_32_pixels_render_everywhere(tmp_path, monkeypatch, spec):
    """Every page handles what ArchSpec accepts: the net is shown at the smallest input it
    can take."""
    monkeypatch.setenv("RESNET_EXPLORER_CHECKPOINTS", str(tmp_path))
    monkeypatch.setenv("RESNET_EXPLORER_DATA", str(tmp_path / "no-data"))
    at = app_test()
    at.query_params["net"] = json.dumps(spec)
    at.run()
    assert no_exceptions(at) == [] and not at.warning
    side = ArchSpec.from_dict(spec).min_input_size()
    assert next(m.value for m in at.metric if m.label == "Input").endswith(f"x{max(side, 32)}")
    for page in ("pages/shapes.py", "pages/gradients.py"):
        at.switch_page(page).run()
        assert no_exceptions(at) == []
