"""The residual-block exercise: correct solutions in several styles pass, and each mistake
students make, planted into a correct solution, fails with its own explanation."""

from __future__ import annotations

import pytest
import torch.nn.functional as F
from torch import nn

from resnet_core.cli.main import main
from resnet_core.exercises import EXERCISES, check, get_exercise


# Correct solutions, written the ways students write them -------------------------------------
class Sequential(nn.Module):
    """nn.ReLU modules, an empty nn.Sequential as the identity shortcut, defined first."""

    def __init__(self, in_channels, out_channels, stride=1):
        super().__init__()
        self.shortcut = nn.Sequential()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False),
            nn.BatchNorm2d(out_channels),
        )
        self.act = nn.ReLU()

    def forward(self, x):
        return self.act(self.body(x) + self.shortcut(x))


class Functional(nn.Module):
    """F.relu, None for the identity, the shortcut computed first, its own names."""

    def __init__(self, in_channels, out_channels, stride=1, **mistakes):
        super().__init__()
        self.m = {"bias": False, "stride_second": False, "bn_on_projection": True,
                  "relu_before_add": False, "add": True, "always_project": False,
                  "never_project": False, **mistakes}  # fmt: skip
        changes = stride != 1 or in_channels != out_channels
        project = (changes or self.m["always_project"]) and not self.m["never_project"]
        first, second = (1, stride) if self.m["stride_second"] else (stride, 1)
        self.a = nn.Conv2d(in_channels, out_channels, 3, first, 1, bias=self.m["bias"])
        self.a_bn = nn.BatchNorm2d(out_channels)
        self.b = nn.Conv2d(out_channels, out_channels, 3, second, 1, bias=self.m["bias"])
        self.b_bn = nn.BatchNorm2d(out_channels)
        self.proj = None
        if project:
            parts = [nn.Conv2d(in_channels, out_channels, 1, stride, bias=False)]
            if self.m["bn_on_projection"]:
                parts.append(nn.BatchNorm2d(out_channels))
            self.proj = nn.Sequential(*parts)

    def forward(self, x):
        skip = x if self.proj is None else self.proj(x)
        out = F.relu(self.a_bn(self.a(x)))
        out = self.b_bn(self.b(out))
        if self.m["relu_before_add"]:
            return F.relu(out) + skip if self.m["add"] else F.relu(out)
        return F.relu(out + skip) if self.m["add"] else F.relu(out)


class Identity(nn.Module):
    """nn.Identity for the shortcut, the shortcut defined after the convs."""

    def __init__(self, in_channels, out_channels, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        fits = stride == 1 and in_channels == out_channels
        self.skip = (
            nn.Identity()
            if fits
            else nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )  # fmt: skip
        )

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(y)) + self.skip(x))


@pytest.mark.parametrize("solution", [Sequential, Functional, Identity])
def test_correct_solutions_in_every_style_pass(solution):
    report = check("residual_block", solution)
    assert report.passed, str(report)
    assert report.findings[-1].check == "same as the reference"


# Planted mistakes: each fails with its own explanation ---------------------------------------
def _with(**mistakes):
    class Planted(Functional):
        def __init__(self, in_channels, out_channels, stride=1):
            super().__init__(in_channels, out_channels, stride, **mistakes)

    return Planted


MISTAKES = [
    ({"relu_before_add": True}, "relu after the addition", "negative values"),
    ({"never_project": True}, "runs", "the shortcut must change them too"),
    ({"stride_second": True}, "stride", "on the second 3x3 conv"),
    ({"bn_on_projection": False}, "projection", "no BatchNorm after its 1x1"),
    ({"bias": True}, "conv bias", "use bias=False"),
    ({"add": False}, "shortcut added", "never added"),
    ({"always_project": True}, "identity", "a projection where the identity fits"),
]


def test_the_catalog_names_the_mistakes_these_tests_plant():
    """The catalog's `catches` (shown on the lecture's last slide) are the planted mistakes
    below, in order: each test is named by the mistake it plants."""
    from test_exercise_nets import NET_MISTAKES

    assert len(EXERCISES["residual_block"].catches) == len(MISTAKES)
    assert len(EXERCISES["simple_resnet"].catches) == len(NET_MISTAKES)
    assert len(EXERCISES["plain_block"].catches) == 2  # see the plain block's test
    assert len(EXERCISES["bottleneck"].catches) == len(BNECK_MISTAKES)


@pytest.mark.parametrize(
    "mistakes, check_name, phrase", MISTAKES, ids=EXERCISES["residual_block"].catches
)
def test_each_planted_mistake_is_named(mistakes, check_name, phrase):
    report = check("residual_block", _with(**mistakes))
    assert not report.passed
    failed = {f.check: f.message for f in report.failures}
    assert check_name in failed, str(report)
    assert phrase in failed[check_name], failed[check_name]
    others = {name for name in failed if name != check_name}
    assert not others - {"same as the reference"}, f"{mistakes} also failed {others}"


def test_a_class_that_is_not_a_block_is_told_so():
    class Broken(nn.Module):
        def __init__(self, in_channels, out_channels):  # no stride argument
            super().__init__()

    report = check("residual_block", Broken)
    assert [f.check for f in report.failures] == ["builds"]
    assert "stride" in report.failures[0].message


def test_the_report_reads_as_text_and_as_html():
    report = check("residual_block", _with(bias=True))
    assert "FAIL conv bias" in str(report) and "<table>" in report._repr_html_()
    with pytest.raises(ValueError, match="residual_block"):
        get_exercise("no_such_exercise")
    assert EXERCISES["residual_block"].starter.count("TODO") == 3


# The command line: the student's file runs in a limited process of its own -----------------
SOLUTION = """
import torch.nn.functional as F
from torch import nn


class ResidualBlock(nn.Module):
    def __init__(self, in_channels, out_channels, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut = None
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + (x if self.shortcut is None else self.shortcut(x)))
"""


def _check_file(tmp_path, capsys, name, text, *more):
    path = tmp_path / name
    path.write_text(text)
    code = main(["exercise", "check", "residual_block", str(path), *more])
    return code, capsys.readouterr()


def test_start_writes_the_starter_and_never_over_a_file(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["exercise", "start", "residual_block"]) == 0
    assert (tmp_path / "residual_block.py").read_text() == EXERCISES["residual_block"].starter
    (tmp_path / "residual_block.py").write_text("# my work\n")
    assert main(["exercise", "start", "residual_block"]) == 2
    assert (tmp_path / "residual_block.py").read_text() == "# my work\n"
    assert main(["exercise", "list"]) == 0 and "residual_block" in capsys.readouterr().out


def test_a_correct_file_passes_and_a_mistake_is_explained(tmp_path, capsys):
    code, out = _check_file(tmp_path, capsys, "good.py", SOLUTION)
    assert code == 0, out
    assert "every check passes" in out.out
    wrong = SOLUTION.replace("return F.relu(out + (", "return F.relu(out) + ((")
    code, out = _check_file(tmp_path, capsys, "wrong.py", wrong)
    assert code == 1 and "FAIL relu after the addition" in out.out and "negative" in out.out


@pytest.mark.parametrize(
    "name, text, more, said",
    [
        ("loop.py", "while True:\n    pass\n", ["--seconds", "3"], "time limit"),
        ("huge.py", "import torch\nx = torch.zeros(10**11)\n", [], "memory limit"),
        ("syntax.py", "class ResidualBlock(:\n", [], "line 1: syntax error"),
        ("missing.py", "class Other:\n    pass\n", [], "no class ResidualBlock"),
        ("raises.py", "raise SystemExit(3)\n", [], "raised SystemExit"),
    ],
    ids=["endless loop", "huge allocation", "syntax error", "no class", "exits"],
)
def test_a_file_that_cannot_be_judged_is_one_line(tmp_path, capsys, name, text, more, said):
    code, out = _check_file(tmp_path, capsys, name, text, *more)
    assert code == 2, out
    assert out.err.count("\n") == 1 and said in out.err and "Traceback" not in out.err, out.err


def test_the_students_code_runs_in_an_empty_folder_of_its_own(tmp_path, capsys):
    spy = "import os\nprint('cwd', os.getcwd(), sorted(os.listdir('.')))\n" + SOLUTION
    code, out = _check_file(tmp_path, capsys, "spy.py", spy)
    assert code == 0
    assert f"cwd {tmp_path}" not in out.out and "['student.py']" in out.out


# Who may run code on the app's server, and the Exercises page ---------------------------------
def test_code_runs_when_the_app_listens_on_this_machine_or_when_the_teacher_says():
    from resnet_core.exercises.sandbox import may_run

    assert may_run("localhost", None) == (True, "")
    assert may_run("127.0.0.1", "") == (True, "")
    allowed, why = may_run("0.0.0.0", None)
    assert not allowed and "RESNET_EXPLORER_EXERCISES=on" in why
    assert may_run(None, None)[0] is False  # unset: every interface, others can reach it
    assert may_run("0.0.0.0", "on") == (True, "")
    assert may_run("localhost", "off")[0] is False


def _page(tmp_path, monkeypatch, setting):
    from app_helpers import app_test

    monkeypatch.setenv("RESNET_EXPLORER_CHECKPOINTS", str(tmp_path))
    monkeypatch.setenv("RESNET_EXPLORER_DATA", str(tmp_path / "no-data"))
    if setting is None:
        monkeypatch.delenv("RESNET_EXPLORER_EXERCISES", raising=False)
    else:
        monkeypatch.setenv("RESNET_EXPLORER_EXERCISES", setting)
    at = app_test()
    at.run()
    at.switch_page("pages/exercises.py").run()
    assert [e.value for e in at.exception] == []
    return at


def test_the_page_checks_a_students_block_and_says_what_is_wrong(tmp_path, monkeypatch):
    at = _page(tmp_path, monkeypatch, "on")
    assert at.text_area(key="ex_code_residual_block").value == EXERCISES["residual_block"].starter
    wrong = SOLUTION.replace("return F.relu(out + (", "return F.relu(out) + ((")
    at.text_area(key="ex_code_residual_block").set_value(wrong).run()
    at.button(key="ex_check").click().run()
    texts = " ".join(m.value for m in at.markdown)
    assert any("checks fail" in e.value for e in at.error)
    assert "relu after the addition" in texts and "negative values" in texts
    at.text_area(key="ex_code_residual_block").set_value(SOLUTION).run()
    at.button(key="ex_check").click().run()
    assert any("Every check passes" in s.value for s in at.success)
    at.button(key="ex_hint").click().run()
    assert any(m.value.startswith("**Hint 1.**") for m in at.markdown)


def test_turned_off_the_page_runs_no_code_and_says_why(tmp_path, monkeypatch):
    at = _page(tmp_path, monkeypatch, "off")
    assert at.button(key="ex_check").disabled
    assert any("RESNET_EXPLORER_EXERCISES=off" in i.value for i in at.info)


# A second exercise is one entry in the catalog: the plain block ------------------------------
class Plain(nn.Module):
    """The residual block's main path, nothing added."""

    def __init__(self, in_channels, out_channels, stride=1, shortcut=False, relu_last=True):
        super().__init__()
        self.body = Functional(in_channels, out_channels, stride)
        self.shortcut, self.relu_last = shortcut, relu_last

    def forward(self, x):
        body = self.body
        out = body.b_bn(body.b(F.relu(body.a_bn(body.a(x)))))
        if self.shortcut:
            out = out + (x if body.proj is None else body.proj(x))
        return F.relu(out) if self.relu_last else out


def _plain(**changes):
    class PlainBlock(Plain):
        def __init__(self, in_channels, out_channels, stride=1):
            super().__init__(in_channels, out_channels, stride, **changes)

    return PlainBlock


def test_a_plain_block_passes_and_its_mistakes_are_named():
    assert check("plain_block", _plain()).passed, str(check("plain_block", _plain()))
    shortcut_added, no_last_relu = EXERCISES["plain_block"].catches
    assert "shortcut" in shortcut_added and "ReLU" in no_last_relu
    added = check("plain_block", _plain(shortcut=True))
    assert [f.check for f in added.failures] == ["no shortcut"], str(added)
    assert "runs 1 1x1 conv(s), a shortcut" in added.failures[0].message
    no_relu = check("plain_block", _plain(relu_last=False))
    assert [f.check for f in no_relu.failures] == ["relu last"], str(no_relu)
    assert not check("residual_block", _plain()).passed  # the plain block is no residual block
    assert EXERCISES["plain_block"].starter.count("TODO") == 3
    assert "class PlainBlock" in EXERCISES["plain_block"].starter


# The bottleneck block: 1x1, 3x3, 1x1, expansion 4 ----------------------------------------------
class Bneck(nn.Module):
    """A correct bottleneck (nn.Sequential main path, None for the identity), or one with a
    mistake planted by keyword."""

    def __init__(self, in_channels, channels, stride=1, **mistakes):
        super().__init__()
        m = {"bias": False, "stride_first": False, "bn_on_projection": True, "expansion": 4,
             "relu_before_add": False, "add": True, "always_project": False,
             "never_project": False, **mistakes}  # fmt: skip
        self.m = m
        out = channels * m["expansion"]
        first, middle = (stride, 1) if m["stride_first"] else (1, stride)
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, channels, 1, first, bias=m["bias"]),
            nn.BatchNorm2d(channels),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 3, middle, 1, bias=m["bias"]),
            nn.BatchNorm2d(channels),
            nn.ReLU(),
            nn.Conv2d(channels, out, 1, bias=m["bias"]),
            nn.BatchNorm2d(out),
        )
        changes = stride != 1 or in_channels != out
        self.proj = None
        if (changes or m["always_project"]) and not m["never_project"]:
            parts = [nn.Conv2d(in_channels, out, 1, stride, bias=False)]
            parts += [nn.BatchNorm2d(out)] if m["bn_on_projection"] else []
            self.proj = nn.Sequential(*parts)

    def forward(self, x):
        out = self.body(x)
        skip = x if self.proj is None else self.proj(x)
        if not self.m["add"]:
            return F.relu(out)
        return F.relu(out) + skip if self.m["relu_before_add"] else F.relu(out + skip)


def _bneck(**mistakes):
    class Bottleneck(Bneck):
        def __init__(self, in_channels, channels, stride=1):
            super().__init__(in_channels, channels, stride, **mistakes)

    return Bottleneck


BNECK_MISTAKES = [
    ({"relu_before_add": True}, "relu after the addition", "negative values"),
    ({"never_project": True}, "runs", "the shortcut must change them too"),
    ({"stride_first": True}, "stride", "on the first 1x1 conv"),
    ({"bn_on_projection": False}, "projection", "no BatchNorm after its 1x1"),
    ({"bias": True}, "conv bias", "use bias=False"),
    ({"add": False}, "shortcut added", "never added"),
    ({"always_project": True}, "identity", "a projection where the identity fits"),
    ({"expansion": 1}, "shape", "widens the channels to 4 x channels"),
]


def test_a_correct_bottleneck_passes():
    report = check("bottleneck", _bneck())
    assert report.passed, str(report)
    assert report.findings[-1].check == "same as the reference"


@pytest.mark.parametrize(
    "mistakes, check_name, phrase", BNECK_MISTAKES, ids=EXERCISES["bottleneck"].catches
)
def test_each_planted_bottleneck_mistake_is_named(mistakes, check_name, phrase):
    report = check("bottleneck", _bneck(**mistakes))
    failed = {f.check: f.message for f in report.failures}
    assert check_name in failed, str(report)
    assert phrase in failed[check_name], failed[check_name]
    assert not set(failed) - {check_name, "same as the reference"}, str(report)


def test_the_bottleneck_starter_compiles_and_is_not_yet_a_block():
    namespace: dict = {}
    exec(compile(EXERCISES["bottleneck"].starter, "bottleneck.py", "exec"), namespace)
    report = check("bottleneck", namespace["Bottleneck"])
    assert [f.check for f in report.failures] == ["runs"], str(report)
    assert EXERCISES["bottleneck"].starter.count("TODO") == 3


def test_a_report_printed_by_the_students_code_is_not_taken_for_ours(tmp_path, capsys):
    from resnet_core.exercises.sandbox import MARKER

    fake = {"exercise": "residual_block", "passed": True, "findings": [], "text": "all good"}
    wrong = SOLUTION.replace("return F.relu(out + (", "return F.relu(out) + ((")
    forged = (  # printed at exit, after the checker's own report
        f"import atexit, json\natexit.register(print, {MARKER!r} + json.dumps({fake!r}))\n" + wrong
    )
    code, out = _check_file(tmp_path, capsys, "forged.py", forged)
    assert code == 1, out  # the real report: the ReLU is misplaced
    assert "FAIL relu after the addition" in out.out and MARKER in out.out  # theirs: output
