"""The simple_resnet exercise: a net built from the student's own ResidualBlock. Correct nets in
two styles pass; each mistake planted into a correct net fails with its own explanation."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from test_exercises import SOLUTION
from torch import nn

from resnet_core.cli.main import main
from resnet_core.exercises import EXERCISES, check
from resnet_core.nets.model import BasicBlock
from resnet_core.training.config import TrainConfig

REPO = Path(__file__).resolve().parents[1]


class ResidualBlock(nn.Module):
    """A correct block: the checks find it beside the net, in this module."""

    def __init__(self, in_channels, out_channels, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x):
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(out + self.shortcut(x))


class Flat(nn.Module):
    """One nn.Sequential of every block, F.relu in forward; mistakes planted by keyword."""

    def __init__(self, n_blocks=3, num_classes=10, **mistakes):
        super().__init__()
        m = {"count": None, "strides": (1, 2, 2), "widths": (16, 32, 64), "stem_relu": True,
             "stem_bias": False, "pool": True, "block": ResidualBlock, **mistakes}  # fmt: skip
        self.m = m
        self.conv = nn.Conv2d(3, 16, 3, 1, 1, bias=m["stem_bias"])
        self.bn = nn.BatchNorm2d(16)
        layers, channels = [], 16
        for width, stride in zip(m["widths"], m["strides"]):
            for i in range(m["count"] or n_blocks):
                layers.append(m["block"](channels, width, stride if i == 0 else 1))
                channels = width
        self.blocks = nn.Sequential(*layers)
        self.fc = nn.Linear(channels * (1 if m["pool"] else 64), num_classes)

    def forward(self, x):
        x = self.bn(self.conv(x))
        x = self.blocks(F.relu(x) if self.m["stem_relu"] else x)
        x = F.adaptive_avg_pool2d(x, 1) if self.m["pool"] else x
        return self.fc(torch.flatten(x, 1))


class Stages(nn.Module):
    """Three named stages made by a helper, nn.ReLU, a fixed 8x8 average pool and view."""

    def __init__(self, n_blocks=3, num_classes=10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16))
        self.relu = nn.ReLU(inplace=True)
        self.in_channels = 16
        self.layer1 = self._stage(16, n_blocks, 1)
        self.layer2 = self._stage(32, n_blocks, 2)
        self.layer3 = self._stage(64, n_blocks, 2)
        self.pool = nn.AvgPool2d(8)
        self.linear = nn.Linear(64, num_classes)

    def _stage(self, channels, n_blocks, stride):
        blocks = []
        for s in [stride] + [1] * (n_blocks - 1):
            blocks.append(ResidualBlock(self.in_channels, channels, s))
            self.in_channels = channels
        return nn.Sequential(*blocks)

    def forward(self, x):
        x = self.layer3(self.layer2(self.layer1(self.relu(self.stem(x)))))
        return self.linear(self.pool(x).view(x.size(0), -1))


@pytest.mark.parametrize("solution", [Flat, Stages])
def test_correct_nets_in_two_styles_pass(solution):
    report = check("simple_resnet", solution)
    assert report.passed, str(report)
    assert report.findings[-1].check == "same as the reference"


def _net(**mistakes):
    class SimpleResNet(Flat):
        def __init__(self, n_blocks=3, num_classes=10):
            super().__init__(n_blocks, num_classes, **mistakes)

    return SimpleResNet


NET_MISTAKES = [
    ({"count": 3}, "blocks per stage", "is a number written where n_blocks belongs"),
    ({"strides": (1, 1, 2)}, "stage halves the image", "stage 2 (32 channels) keeps the image"),
    ({"strides": (2, 2, 2)}, "stage halves the image", "stage 1 (16 channels) halves the image"),
    ({"widths": (16, 32, 32)}, "stage widths", "the three stages have 16, 32 and 64"),
    ({"stem_relu": False}, "stem", "a ReLU belongs after the stem's BatchNorm"),
    ({"stem_bias": True}, "stem", "and a bias"),
    ({"pool": False}, "head", "linear layers are [(4096, 10)]"),
    ({"block": lambda i, o, s: BasicBlock(i, o, s)}, "built from blocks", "never calls a"),
]


@pytest.mark.parametrize(
    "mistakes, check_name, phrase", NET_MISTAKES, ids=EXERCISES["simple_resnet"].catches
)
def test_each_planted_net_mistake_is_named(mistakes, check_name, phrase):
    report = check("simple_resnet", _net(**mistakes))
    failed = {f.check: f.message for f in report.failures}
    also = ["head"] if check_name == "stage widths" else []  # a 32-channel end: Linear(32, 10)
    assert list(failed) == [check_name, *also], str(report)
    assert phrase in failed[check_name], failed[check_name]


def test_the_net_needs_the_students_own_block_beside_it():
    namespace: dict = {}
    exec(  # a net defined where no ResidualBlock is
        "from torch import nn\nclass SimpleResNet(nn.Module):\n"
        "    def __init__(self, n_blocks=3):\n        super().__init__()\n",
        namespace,
    )
    report = check("simple_resnet", namespace["SimpleResNet"])
    assert [f.check for f in report.failures] == ["ResidualBlock"]
    assert "no class ResidualBlock beside SimpleResNet" in report.failures[0].message


NET_FILE = SOLUTION + textwrap.dedent(  # the block of test_exercises, then the net
    """


    class SimpleResNet(nn.Module):
        def __init__(self, n_blocks=3, num_classes=10):
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16))
            blocks, channels = [], 16
            for width, stride in ((16, 1), (32, 2), (64, 2)):
                for i in range(n_blocks):
                    blocks.append(ResidualBlock(channels, width, stride if i == 0 else 1))
                    channels = width
            self.blocks = nn.Sequential(*blocks)
            self.fc = nn.Linear(64, num_classes)

        def forward(self, x):
            x = self.blocks(F.relu(self.stem(x)))
            return self.fc(x.mean((2, 3)))
    """
)


def test_a_net_file_is_checked_with_its_block(tmp_path, capsys):
    good = tmp_path / "net.py"
    good.write_text(NET_FILE)
    assert main(["exercise", "check", "simple_resnet", str(good)]) == 0, capsys.readouterr()
    assert "FAIL" not in capsys.readouterr().out
    wrong = tmp_path / "wrong.py"
    wrong.write_text(NET_FILE.replace("return F.relu(out + (", "return F.relu(out) + (("))
    assert main(["exercise", "check", "simple_resnet", str(wrong)]) == 1
    out = capsys.readouterr().out
    assert "FAIL ResidualBlock: fix the block first (relu after the addition" in out, out


def test_the_starter_names_the_block_and_the_net():
    starter = EXERCISES["simple_resnet"].starter
    assert "class ResidualBlock" in starter and "class SimpleResNet" in starter
    assert "n_blocks=3" in starter
    namespace: dict = {}
    exec(compile(starter, "simple_resnet.py", "exec"), namespace)
    report = check("simple_resnet", namespace["SimpleResNet"])  # the block comes first
    assert [f.check for f in report.failures] == ["ResidualBlock"], str(report)
    assert "fix the block first" in report.failures[0].message


# Then train it: the student's net beside the plain net and the reference ResNet ---------------
def _group_settings(**more):
    return {"dataset": "synthetic", "subset": 100, "epochs": 1, "batch_size": 50,
            "precision": "fp32", "channels_last": False, "device": "cpu", "log_every": 1,
            **more}  # fmt: skip


def test_a_passing_net_trains_in_a_job_as_the_reference_does(tmp_path, monkeypatch):
    from resnet_core.exercises.sandbox import save_for_training
    from resnet_core.exercises.student_nets import student_files, student_group
    from resnet_core.nets.model import build_model
    from resnet_core.training.jobs import JobQueue
    from resnet_core.training.runs import load_checkpoint, read_events, run_info

    queue = JobQueue(tmp_path)
    path = save_for_training(NET_FILE, student_files(queue.runs_dir))
    again = save_for_training(NET_FILE, student_files(queue.runs_dir))
    assert again == path  # the same code, the same file
    job = queue.submit_group(student_group(path, 1, _group_settings()))
    assert job.label == "your SimpleResNet-8 vs plain-8 vs reference ResNet-8"
    deadline = time.time() + 180
    while queue.get(job.job_id).active and time.time() < deadline:
        queue.pump()
        time.sleep(0.2)
    assert queue.get(job.job_id).state == "done", queue.get(job.job_id)
    folders = [queue.runs_dir / run_id for run_id in job.run_ids]
    assert [run_info(folder).state for folder in folders] == ["done"] * 3
    losses = [
        [e.loss for e in read_events(folder) if type(e).__name__ == "Step"] for folder in folders
    ]
    assert len(losses[0]) == 2 and losses[0] == pytest.approx(losses[2], abs=1e-4)
    assert losses[1] != pytest.approx(losses[2], abs=1e-3)  # the plain net is another net
    saved = load_checkpoint(folders[0] / "best.pt")  # saved under the reference's names
    assert saved["config"]["student"] == str(path)
    build_model(saved["spec"]).load_state_dict(saved["model"])

    from app_helpers import app_test  # the Train page says how closely the curves agree

    monkeypatch.setenv("RESNET_EXPLORER_CHECKPOINTS", str(tmp_path))
    at = app_test()
    at.switch_page("pages/train.py").run()
    said = " ".join(c.value for c in at.caption)
    assert "your SimpleResNet-8 and reference ResNet-8 started from the same weights" in said
    assert "at each of 2 logged steps their training losses agree to within" in said


def test_a_file_that_fails_its_checks_is_never_trained(tmp_path):
    from resnet_core.common.errors import ConfigError
    from resnet_core.exercises.student_nets import student_group
    from resnet_core.training.lockstep import fit_group

    wrong = tmp_path / "wrong.py"
    wrong.write_text(NET_FILE.replace("for i in range(n_blocks)", "for i in range(2)"))
    with pytest.raises(ConfigError, match="does not pass its checks .blocks per stage"):
        fit_group(student_group(wrong, 1, _group_settings()))
    with pytest.raises(ConfigError, match="student: a SimpleResNet computes"):
        TrainConfig(model="resnet20", student=str(wrong))


def test_the_command_line_checks_then_trains_and_compares(tmp_path, cifar_root, capsys):
    good, wrong = tmp_path / "net.py", tmp_path / "wrong.py"
    good.write_text(NET_FILE)
    wrong.write_text(NET_FILE.replace("F.relu(self.stem(x))", "self.stem(x)"))
    assert main(["exercise", "train", "simple_resnet", str(wrong)]) == 1  # checked, not trained
    assert "only a file that passes every check is trained" in capsys.readouterr().err
    args = ["--n-blocks", "1", "--subset", "128", "--batch-size", "64", "--device", "cpu"]
    done = subprocess.run(  # a process of its own: training sets the exercise's memory limit
        [sys.executable, "-m", "resnet_core", "exercise", "train", "simple_resnet", str(good),
         *args, "--data-dir", str(cifar_root), "--runs-root", str(tmp_path / "runs")],
        capture_output=True, text=True, timeout=300, cwd=REPO,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count(": done, recorded in") == 3, done.stdout
    assert "at each of 2 logged steps their training losses agree to within" in done.stdout
    assert len(list((tmp_path / "runs").iterdir())) == 3


def test_the_page_trains_a_net_that_passed_and_only_that_code(tmp_path, monkeypatch):
    from app_helpers import app_test

    from resnet_core.training.jobs import JobQueue

    monkeypatch.setenv("RESNET_EXPLORER_CHECKPOINTS", str(tmp_path))
    monkeypatch.setenv("RESNET_EXPLORER_DATA", str(tmp_path / "no-data"))
    monkeypatch.setenv("RESNET_EXPLORER_EXERCISES", "on")
    at = app_test()
    at.run()
    at.switch_page("pages/exercises.py").run()
    at.selectbox(key="ex_id").set_value("simple_resnet").run()
    at.text_area(key="ex_code_simple_resnet").set_value(NET_FILE).run()
    assert not any(b.label == "Train in lockstep" for b in at.button)  # not checked yet
    at.button(key="ex_check").click().run()
    assert any("Every check passes" in s.value for s in at.success), [e.value for e in at.error]
    at.text_area(key="ex_code_simple_resnet").set_value(NET_FILE + "\n# edited\n").run()
    assert any("changed since it passed" in i.value for i in at.info)
    at.text_area(key="ex_code_simple_resnet").set_value(NET_FILE).run()
    at.number_input[-1].set_value(500)
    [train] = [b for b in at.button if b.label == "Train in lockstep"]
    train.click().run()
    assert [e.value for e in at.exception] == []
    queued = [s.value for s in at.success if s.value.startswith("Queued")]
    assert queued == [
        "Queued your SimpleResNet-20 vs plain-20 vs reference ResNet-20 on the synthetic "
        "stand-in set (CIFAR-10 was not found)."
    ]
    queue = JobQueue(tmp_path)
    [job] = queue.jobs()
    assert Path(job.members[0]["config"]["student"]).read_text() == NET_FILE
    queue.cancel(job.job_id)
    deadline = time.time() + 120
    while queue.get(job.job_id).active and time.time() < deadline:
        queue.pump()
        time.sleep(0.2)
    assert not queue.get(job.job_id).active
