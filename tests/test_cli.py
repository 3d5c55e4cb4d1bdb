"""The command line: tables, CSV/JSON, and one-line errors with exit code 2."""

import json
import subprocess
import sys

import pytest

from resnet_core.cli.main import main


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
    ],
)
def test_bad_arguments_one_line_exit_2(args, fragment):
    result = run(*args)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1, result.stderr
    assert fragment in result.stderr
    assert "Traceback" not in result.stderr
