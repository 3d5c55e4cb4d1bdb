"""The measurements the gradient page plots: a seeded probe batch and one net's gradient
norms and layer responses."""

from __future__ import annotations

import pandas as pd
import torch
import torch.nn.functional as F

from resnet_core.analysis.probes import gradient_norms, layer_responses
from resnet_core.common.cifar import CIFAR10_MEAN, CIFAR10_STD
from resnet_core.nets.model import build_model
from resnet_core.nets.spec import ArchSpec


def sample_batch(
    images: torch.Tensor | None,
    labels: torch.Tensor | None,
    size: int,
    seed: int,
    mean: tuple[float, ...] = CIFAR10_MEAN,
    std: tuple[float, ...] = CIFAR10_STD,
) -> tuple[torch.Tensor, torch.Tensor]:
    """A normalised batch of `size` images picked with `seed` from uint8 images, or, when
    `images` is None, standard-normal noise with random labels (no dataset needed)."""
    generator = torch.Generator().manual_seed(seed)
    if images is None or labels is None:
        inputs = torch.randn(size, 3, 32, 32, generator=generator)  # (N, 3, 32, 32)
        return inputs, torch.randint(0, 10, (size,), generator=generator)
    pick = torch.randperm(len(images), generator=generator)[:size]
    batch = images[pick].float() / 255  # (N, 3, 32, 32) in [0, 1]
    batch = (batch - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    return batch, labels[pick]


IMAGENET_MEAN = (0.485, 0.456, 0.406)  # torchvision's ImageNet normalisation
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGENET_CLASSES = 1000
IMAGENET_SIDE = 224  # the input side torchvision's ImageNet weights were trained at


def imagenet_batch(
    images: torch.Tensor | None,
    labels: torch.Tensor | None,
    size: int,
    seed: int,
    side: int = IMAGENET_SIDE,
) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch for an ImageNet-trained net: the images `sample_batch` picks with `seed`,
    normalised with ImageNet's statistics and upscaled bilinearly to `side` (or, when
    `images` is None, standard-normal noise at `side`), with targets drawn at random from
    the 1000 ImageNet classes (CIFAR-10's labels name no ImageNet class)."""
    generator = torch.Generator().manual_seed(seed)
    if images is None or labels is None:
        inputs = torch.randn(size, 3, side, side, generator=generator)  # (N, 3, side, side)
    else:
        small, _ = sample_batch(images, labels, size, seed, IMAGENET_MEAN, IMAGENET_STD)
        inputs = F.interpolate(small, size=(side, side), mode="bilinear", align_corners=False)
    return inputs, torch.randint(0, IMAGENET_CLASSES, (len(inputs),), generator=generator)


def imagenet_batch_note(source: str, size: int, side: int = IMAGENET_SIDE) -> str:
    """What `imagenet_batch` fed the nets, for a caption."""
    if source == "CIFAR-10":
        images = (
            f"{size} CIFAR-10 test images upscaled from 32x32 to {side}x{side} (bilinear), "
            "normalised with ImageNet's mean and std"
        )
    else:
        images = f"{size} standard-normal noise images of {side}x{side}"
    return f"{images}; targets drawn at random from the 1000 ImageNet classes"


def measure_net(
    spec: ArchSpec,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    seed: int,
    state_dict: dict | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """Gradient norms of a net freshly initialised with `seed` (or carrying `state_dict`,
    e.g. trained weights), with BatchNorm in training mode as during training; and, for
    trained weights only, its layer responses with BatchNorm in eval mode, as He et al.
    measured Fig. 7 (None at initialisation: see `explain.INIT_RESPONSES`)."""
    torch.manual_seed(seed)
    model = build_model(spec)
    if state_dict is not None:
        model.load_state_dict(state_dict)
    grads = gradient_norms(model, inputs, targets, train_mode=True)
    if state_dict is None:
        return grads, None
    return grads, layer_responses(model, inputs, train_mode=False)
