"""The command line: tables, CSV/JSON, and one-line errors with exit code 2."""

import argparse
import dataclasses
import json
import subprocess
import sys

import pytest

from resnet_core.cli import train as cli_train
from resnet_core.cli.main import main
from resnet_core.training.config import TrainConfig, field_help

FIELDS = dataclasses.fields(TrainConfig)
FLAG_FIELDS = [f for f in FIELDS if f.name != "student"]  # `exercise train` sets student
DEFAULTS = TrainConfig().to_dict()
# Valid non-default values for str fields without a fixed list of choices.
STR_SAMPLES = {"model": "resnet32", "device": "cpu", "data_dir": "elsewhere"}


def run(*args):
    return subprocess.run(
        [sys.executable, "-m", "resnet_core", *args], capture_output=True, text=True
    )


def test_presets_json(capsys):
    assert main(["presets", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    by_name = {row["name"]: row for row in rows}
    assert by_name["resnet20"]["params"] == 269_722
    assert by_name["resnet50-imagenet"]["mult_adds"] > 4e9


def test_trace_csv_and_spec_file(tmp_path, capsys):
    spec = tmp_path / "net.json"
    spec.write_text(json.dumps({"depths": [1, 1], "widths": [8, 16], "num_classes": 3}))
    assert main(["trace", str(spec), "--input", "3x16x16", "--format", "csv"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[0] == "layer,type,depth,input_shape,output_shape,params,mult_adds"
    assert out[-1].startswith("fc,Linear")


def test_gradients_table(capsys):
    assert main(["gradients", "plain20", "resnet20", "--batch", "8"]) == 0
    out = capsys.readouterr().out
    assert "plain20: first conv / last conv gradient norm" in out


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["trace", "resnet2"], "did you mean"),
        (["trace", "resnet20", "--input", "1x32x32"], "channels"),
        (["trace", "resnet20", "--input", "32"], "CxHxW"),
        (["trace", "missing.json"], "cannot read spec file"),
        (["gradients", "resnet20", "--batch", "0"], ">= 1"),
        (["nonsense"], "invalid choice"),
        (["train", "--optimizer", "rmsprop"], "invalid choice"),
        (["train", "--epochs", "two"], "invalid int value"),
        (["train", "--arch", "missing.json"], "cannot read missing.json"),
    ],
)
def test_bad_arguments_one_line_exit_2(args, fragment):
    result = run(*args)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1, result.stderr
    assert fragment in result.stderr
    assert "Traceback" not in result.stderr


def _train_parser() -> argparse.ArgumentParser:
    subparsers = argparse.ArgumentParser().add_subparsers(dest="command")
    cli_train.register(subparsers)
    return subparsers.choices["train"]


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _config(*argv: str) -> TrainConfig:
    return cli_train.config_from_args(_train_parser().parse_args(list(argv)))


def _sample(item: dataclasses.Field):
    """A valid value of a TrainConfig field that is not its default, and its CLI arguments."""
    default = DEFAULTS[item.name]
    choices = item.metadata.get("choices")
    if item.name == "milestones":  # text on the command line, a list in the config
        return [8, 12], [_flag(item.name), "8,12"]
    if isinstance(default, bool):
        return not default, [_flag(item.name) if not default else "--no-" + _flag(item.name)[2:]]
    if choices:
        value = next(choice for choice in choices if choice != default)
    elif isinstance(default, float):
        value = default / 2 or 0.5
    elif isinstance(default, int) or item.name == "subset":
        value = (default or 19) + 1
    elif item.name in STR_SAMPLES:
        value = STR_SAMPLES[item.name]
    else:
        pytest.fail(f"add a valid non-default value for TrainConfig.{item.name} to STR_SAMPLES")
    return value, [_flag(item.name), str(value)]


def test_every_config_field_has_a_help_text():
    for item in FIELDS:
        assert isinstance(item.metadata.get("help"), str) and item.metadata["help"], item.name
        assert field_help(item.name) == item.metadata["help"]
        for choice in item.metadata.get("choices", ()):
            TrainConfig(**{item.name: choice})  # the listed choices pass validation


def test_every_config_field_has_a_flag_with_its_help():
    actions = {
        option: action for action in _train_parser()._actions for option in action.option_strings
    }
    from resnet_core.cli.train import NOT_FLAGS

    assert NOT_FLAGS == ("student",)  # trained by `exercise train`, which checks the file first
    assert _flag("student") not in actions
    for item in (item for item in FIELDS if item.name not in NOT_FLAGS):
        action = actions[_flag(item.name)]
        assert action.dest == item.name and action.default is None
        assert action.help.replace("%%", "%").startswith(field_help(item.name)), item.name
        assert action.choices == item.metadata.get("choices"), item.name
        if isinstance(DEFAULTS[item.name], bool):
            assert isinstance(action, argparse.BooleanOptionalAction), item.name
    assert actions["--arch"] is actions["--model"]


def test_no_flags_keep_every_default():
    assert _config() == TrainConfig()


@pytest.mark.parametrize("item", FLAG_FIELDS, ids=lambda item: item.name)
def test_each_flag_sets_its_field(item):
    value, argv = _sample(item)
    assert value != DEFAULTS[item.name]
    changed = _config(*argv).to_dict()
    expected = {**DEFAULTS, item.name: value}
    if item.name == "compile_mode":
        expected["compile"] = True  # --compile-mode implies --compile
    if item.name == "milestones":
        expected["schedule"] = "step"  # --milestones implies --schedule step
    assert changed == expected


@pytest.mark.parametrize(
    "name", [item.name for item in FIELDS if isinstance(DEFAULTS[item.name], bool)]
)
def test_bool_flags_have_a_no_form(name):
    assert getattr(_config(_flag(name)), name) is True
    assert getattr(_config("--no-" + _flag(name)[2:]), name) is False
    assert getattr(_config(), name) is DEFAULTS[name]


@pytest.mark.parametrize(
    "item", [item for item in FIELDS if "choices" in item.metadata], ids=lambda item: item.name
)
def test_invalid_choice_is_one_line_exit_2(item, capsys):
    assert main(["train", _flag(item.name), "not-a-choice"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "invalid choice" in err and _flag(item.name) in err


def test_train_help_lists_every_field():
    result = run("train", "--help")
    assert result.returncode == 0
    for item in FLAG_FIELDS:
        assert _flag(item.name) in result.stdout, item.name
    for flag in ("--arch", "--no-compile", "--run-dir", "--runs-root", "--resume", "--threads"):
        assert flag in result.stdout
