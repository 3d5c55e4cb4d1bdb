"""torchvision ImageNet weights on the -imagenet presets: a torchvision state dict gives our
net torchvision's logits; a file that is not one gives one line; nothing is downloaded."""

from __future__ import annotations

import io
import json
import urllib.error
from pathlib import Path

import pandas as pd
import pytest
import torch
import torchvision

from resnet_core.analysis.measure import imagenet_batch
from resnet_core.analysis.probes import gradient_norms
from resnet_core.cli.main import main
from resnet_core.nets.pretrained import (
    IMAGENET,
    WeightsError,
    pretrained_model,
    torchvision_arch,
    torchvision_cache_path,
)


def random_torchvision(arch: str, seed: int = 0, **kwargs) -> torch.nn.Module:
    """torchvision's net with random weights and random BatchNorm running statistics, so
    that a wrong mapping of any tensor changes the eval-mode logits."""
    torch.manual_seed(seed)
    net = getattr(torchvision.models, arch)(weights=None, **kwargs)
    with torch.no_grad():
        for name, tensor in net.state_dict().items():
            if name.endswith(("running_var", "bn1.weight", "bn2.weight", "bn3.weight")):
                tensor.uniform_(0.5, 1.5)
            elif name.endswith(("running_mean", ".bias")):
                tensor.normal_(0, 0.1)
            elif name.endswith("downsample.1.weight"):
                tensor.uniform_(0.5, 1.5)
    return net.eval()


def save_state(net: torch.nn.Module, path: Path) -> Path:
    torch.save(net.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def resnet18_file(tmp_path_factory) -> tuple[torch.nn.Module, Path]:
    net = random_torchvision("resnet18", seed=7)  # not the page's seed: other conv weights
    return net, save_state(net, tmp_path_factory.mktemp("weights") / "resnet18.pth")


def assert_same_logits(ours: torch.nn.Module, reference: torch.nn.Module, side: int = 64):
    x = torch.randn(2, 3, side, side, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = reference(x)
        torch.testing.assert_close(ours(x), expected, rtol=1e-4, atol=1e-4 * expected.abs().max())


@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])
def test_weights_file_gives_torchvision_logits(arch, tmp_path):
    reference = random_torchvision(arch, seed=3)
    path = save_state(reference, tmp_path / f"{arch}.pth")
    ours = pretrained_model(f"{arch}-imagenet", path)
    assert not ours.training
    assert_same_logits(ours, reference)


def test_random_statistics_matter(resnet18_file):
    """The logits test can fail: a fresh net's defaults give other logits."""
    reference, _ = resnet18_file
    with pytest.raises(AssertionError):
        assert_same_logits(torchvision.models.resnet18(weights=None).eval(), reference)


def test_data_parallel_prefix_is_dropped(resnet18_file, tmp_path):
    reference, _ = resnet18_file
    path = tmp_path / "parallel.pth"
    torch.save({f"module.{k}": v for k, v in reference.state_dict().items()}, path)
    assert_same_logits(pretrained_model("resnet18-imagenet", path), reference)


def _error(source, preset: str = "resnet18-imagenet") -> str:
    with pytest.raises(WeightsError) as caught:
        pretrained_model(preset, source)
    message = str(caught.value)
    assert "\n" not in message and "Traceback" not in message
    return message


def test_a_training_checkpoint_nesting_the_weights(resnet18_file, tmp_path):
    reference, _ = resnet18_file
    for wrapper in ("state_dict", "model"):
        path = tmp_path / f"{wrapper}.pth"
        torch.save({"epoch": 3, wrapper: reference.state_dict()}, path)
        assert_same_logits(pretrained_model("resnet18-imagenet", path), reference)


def test_another_archs_weights_name_the_keys(tmp_path):
    path = save_state(random_torchvision("resnet34"), tmp_path / "resnet34.pth")
    message = _error(path)
    assert "not weights for resnet18-imagenet" in message
    assert "unexpected layer1.2.conv1.weight" in message and "more" in message
    message = _error(save_state(random_torchvision("resnet50"), tmp_path / "resnet50.pth"))
    assert "(unexpected layer1.0.conv3.weight" in message  # resnet50 has all resnet18's keys


def test_shape_mismatch_names_the_tensor(tmp_path):
    path = save_state(random_torchvision("resnet18", num_classes=10), tmp_path / "ten.pth")
    message = _error(path)
    assert "fc.weight has shape [10, 512], resnet18-imagenet needs [1000, 512]" in message


def test_files_that_are_no_state_dict(tmp_path):
    noise = tmp_path / "noise.pth"
    noise.write_bytes(bytes(range(256)) * 8)
    assert "not a readable weights file (its bytes are not a saved set of tensors)" in _error(noise)
    objects = tmp_path / "objects.pth"
    torch.save({"conv1.weight": Path("somewhere")}, objects)  # a pickled Python object
    assert "holds a Python object (pathlib.PosixPath)" in _error(objects)
    numbers = tmp_path / "numbers.pth"
    torch.save({"conv1.weight": 3, "fc.bias": "text"}, numbers)
    assert "conv1.weight, fc.bias hold no tensor" in _error(numbers)
    listed = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], listed)
    assert "not a state dict (a list)" in _error(listed)
    assert "no such file" in _error(tmp_path / "absent.pth")
    assert "a folder; give the path of a .pth state dict file" in _error(tmp_path)


def test_only_imagenet_presets_take_imagenet_weights(resnet18_file):
    assert torchvision_arch("resnet152-imagenet") == "resnet152"
    message = _error(resnet18_file[1], preset="resnet18")
    assert "only for the presets resnet18-imagenet" in message and "not for resnet18" in message


@pytest.fixture()
def empty_hub(tmp_path, monkeypatch) -> Path:
    """torch's hub folder moved to an empty temp folder, and the network cut off."""
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))

    def offline(url, *args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    return tmp_path / "hub"


def test_torchvision_cache_is_read_and_never_downloaded_unasked(empty_hub, resnet18_file):
    assert "not downloaded yet" in _error(IMAGENET)
    with pytest.raises(WeightsError, match="are you offline"):
        pretrained_model("resnet18-imagenet", IMAGENET, download=True)
    reference, _ = resnet18_file
    cached = torchvision_cache_path("resnet18")
    assert cached.parent == empty_hub / "checkpoints"
    cached.parent.mkdir(parents=True, exist_ok=True)
    save_state(reference, cached)
    assert_same_logits(pretrained_model("resnet18-imagenet", IMAGENET), reference)


# Command line ------------------------------------------------------------------------------
def test_cli_gradients_with_a_weights_file(resnet18_file, capsys):
    reference, path = resnet18_file
    args = ["gradients", "resnet18-imagenet", "--weights", str(path), "--batch", "1"]
    assert main([*args, "--format", "csv"]) == 0
    frame = pd.read_csv(io.StringIO(capsys.readouterr().out))
    inputs, targets = imagenet_batch(None, None, 1, 0, 224)
    expected = gradient_norms(pretrained_model("resnet18-imagenet", path), inputs, targets)
    pd.testing.assert_series_equal(
        frame["grad_norm"], expected["grad_norm"], rtol=1e-4, check_names=False
    )
    assert main(args) == 0
    assert (
        f"with ImageNet weights ({path}), on 1 noise images of 224x224" in capsys.readouterr().out
    )


@pytest.mark.parametrize(
    ("model", "weights", "fragment"),
    [
        ("resnet20", "FILE", "ImageNet weights exist only for the presets"),
        ("resnet34-imagenet", "FILE", "not weights for resnet34-imagenet (missing"),
        ("resnet18-imagenet", "NOISE", "not a readable weights file"),
        ("resnet18-imagenet", IMAGENET, "are you offline"),
    ],
)
def test_cli_weights_errors_are_one_line_exit_2(
    model, weights, fragment, resnet18_file, empty_hub, tmp_path, capsys
):
    noise = tmp_path / "noise.pth"
    noise.write_bytes(b"\x80\x02not a pickle at all")
    source = {"FILE": str(resnet18_file[1]), "NOISE": str(noise)}.get(weights, weights)
    assert main(["gradients", model, "--weights", source, "--batch", "2"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0]


# The Gradient flow page ------------------------------------------------------------------
@pytest.fixture()
def imagenet_page(tmp_path, monkeypatch, empty_hub):
    """The Gradient flow page on resnet18-imagenet, ImageNet weights chosen, batch of 8."""
    from app_helpers import app_test, no_exceptions

    monkeypatch.setenv("RESNET_EXPLORER_CHECKPOINTS", str(tmp_path / "checkpoints"))
    monkeypatch.setenv("RESNET_EXPLORER_DATA", str(tmp_path / "no-data"))
    at = app_test(timeout=180)
    at.query_params["net"] = "resnet18-imagenet"
    at.run()
    at.switch_page("pages/gradients.py").run()
    at.radio(key="grad_mode").set_value("Current net: skips off vs on")
    at.selectbox(key="grad_batch").set_value(8).run()
    assert no_exceptions(at) == []
    at.radio(key="grad_weights").set_value("ImageNet weights (torchvision)").run()
    assert no_exceptions(at) == []
    return at


def test_page_measures_a_weights_file(imagenet_page, resnet18_file):
    at = imagenet_page
    at.text_input(key="grad_weights_file").set_value(str(resnet18_file[1])).run()
    assert [e.value for e in at.exception] == [] and not at.error
    titles = [json.loads(chart.proto.spec).get("title") for chart in at.get("vega_lite_chart")]
    assert "Layer responses of trained nets (He et al. Fig. 7)" in str(titles)
    captions = " ".join(c.value for c in at.caption)
    assert "Measured on resnet18-imagenet pretrained with BatchNorm in eval mode" in captions
    assert "8 standard-normal noise images of 224x224; targets drawn at random" in captions
    assert "Pretrained: the weights in resnet18.pth" in captions
    text = " ".join(m.value for m in at.markdown)
    assert "in resnet18-imagenet pretrained." in text  # the median response, measured


def test_page_says_in_one_line_what_is_wrong(imagenet_page, tmp_path, monkeypatch):
    at = imagenet_page
    assert any("not downloaded yet" in e.value for e in at.error)  # cache empty, no download
    fetch = [b for b in at.button if b.label == "Download from torchvision"][0]
    assert "Fetches 45 MB once into torchvision's cache" in fetch.help
    fetch.click().run()
    assert any("are you offline" in e.value for e in at.error)
    wrong = save_state(random_torchvision("resnet34"), tmp_path / "resnet34.pth")
    at.text_input(key="grad_weights_file").set_value(str(wrong)).run()
    assert [e.value for e in at.exception] == []
    assert any("not weights for resnet18-imagenet (unexpected" in e.value for e in at.error)
    monkeypatch.setattr("resnet_core.common.device.memory_budget", lambda *_: 1 << 20)
    at.run()
    assert [e.value for e in at.exception] == []
    assert any("224x224 needs about" in e.value for e in at.error)  # refused, not measured
