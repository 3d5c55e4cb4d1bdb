"""Look inside a trained net: its predictions on a test set, per-class accuracy, the
confusion matrix, and galleries of its most telling mistakes and hits.

Everything here works on plain tensors (uint8 images, int64 labels, a model), so it runs
for any classifier `build_model` makes; where the data comes from is the caller's choice.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext

import pandas as pd
import torch
from torch import nn

from resnet_core.common.modes import model_mode

__all__ = [
    "GALLERY_KINDS",
    "predict",
    "confusion_matrix",
    "row_normalised",
    "per_class_accuracy",
    "gallery",
    "class_samples",
]

# What a gallery can show: "confident_mistakes" (wrong, most sure first) and
# "unsure_hits" (right, least sure first).
GALLERY_KINDS = ("confident_mistakes", "unsure_hits")


@torch.inference_mode()
def predict(
    model: nn.Module,
    images: torch.Tensor,
    mean: Sequence[float],
    std: Sequence[float],
    batch_size: int = 500,
    device: str | torch.device = "cpu",
    autocast_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Class probabilities of a model for a stack of uint8 images, in eval mode.

    Args:
        model: a classifier; it is put in eval mode for the call and its mode restored.
        images: uint8 (N, C, H, W).
        mean: per-channel mean as a fraction of 255 (the training normalisation).
        std: per-channel standard deviation as a fraction of 255.
        batch_size: images per forward pass.
        device: where to run; the model must already be there.
        autocast_dtype: run under autocast to this dtype (e.g. torch.bfloat16); None: fp32.

    Returns:
        float32 (N, num_classes) softmax probabilities, on the CPU.
    """
    if images.dtype != torch.uint8 or images.ndim != 4:
        raise ValueError(
            f"images: expected uint8 (N, C, H, W), got {images.dtype} {tuple(images.shape)}"
        )
    device = torch.device(device)
    channels = images.shape[1]
    shift = torch.tensor(mean[:channels], device=device).view(1, -1, 1, 1) * 255
    scale = 1 / (torch.tensor(std[:channels], device=device).view(1, -1, 1, 1) * 255)
    outputs = []
    with model_mode(model, train=False):
        for start in range(0, len(images), batch_size):
            batch = (images[start : start + batch_size].to(device).float() - shift) * scale
            context = (
                torch.autocast(device.type, autocast_dtype) if autocast_dtype else nullcontext()
            )
            with context:
                logits = model(batch)  # (B, num_classes)
            outputs.append(logits.float().softmax(1).cpu())
    return torch.cat(outputs) if outputs else torch.empty(0, 0)


def confusion_matrix(labels: torch.Tensor, preds: torch.Tensor, num_classes: int) -> torch.Tensor:
    """int64 (C, C) counts: row = true class, column = predicted class."""
    if labels.shape != preds.shape:
        raise ValueError(f"labels {tuple(labels.shape)} and preds {tuple(preds.shape)} differ")
    flat = labels.long() * num_classes + preds.long()
    return torch.bincount(flat, minlength=num_classes * num_classes).view(num_classes, num_classes)


def row_normalised(matrix: torch.Tensor) -> torch.Tensor:
    """Each row divided by its sum (the share of a true class given each answer); empty rows stay 0."""
    totals = matrix.sum(1, keepdim=True).clamp(min=1)
    return matrix.double() / totals


def per_class_accuracy(matrix: torch.Tensor, classes: Sequence[str]) -> pd.DataFrame:
    """One row per class: class, correct, total, accuracy (a fraction; NaN for an absent class),
    plus the class it is most often taken for and that share of its images."""
    rows = []
    for index, name in enumerate(classes):
        row = matrix[index].clone()
        total, correct = int(row.sum()), int(row[index])
        row[index] = -1  # the most common wrong answer
        confused = int(row.argmax())
        rows.append(
            {
                "class": name,
                "correct": correct,
                "total": total,
                "accuracy": correct / total if total else float("nan"),
                "most_confused_with": classes[confused] if total > correct else "",
                "confused_share": int(matrix[index, confused]) / total if total else 0.0,
            }
        )
    return pd.DataFrame(rows)


def gallery(
    probs: torch.Tensor,
    labels: torch.Tensor,
    kind: str = "confident_mistakes",
    klass: int | None = None,
    count: int = 16,
) -> torch.Tensor:
    """Indices of the test images that show a net at its most wrong or least sure.

    Args:
        probs: (N, C) class probabilities.
        labels: (N,) true labels.
        kind: "confident_mistakes" (wrong answers, most confident first) or "unsure_hits"
            (right answers, least confident first).
        klass: keep only images whose true label is this class; None keeps all.
        count: at most this many indices.

    Returns:
        int64 indices into probs/labels, in gallery order.
    """
    if kind not in GALLERY_KINDS:
        raise ValueError(f"kind: {kind!r} is not allowed; choose one of {', '.join(GALLERY_KINDS)}")
    confidence, preds = probs.max(1)
    keep = preds != labels if kind == "confident_mistakes" else preds == labels
    if klass is not None:
        keep &= labels == klass
    candidates = torch.nonzero(keep).flatten()
    order = torch.argsort(
        confidence[candidates], descending=kind == "confident_mistakes", stable=True
    )
    return candidates[order][:count]


def class_samples(
    labels: torch.Tensor, per_class: int, seed: int, num_classes: int
) -> tuple[torch.Tensor, list[int]]:
    """Random indices, the same number of each class, class by class (for a grid with one
    row per class).

    Takes `per_class` of each class that is present, fewer if the smallest present class has
    fewer. The same seed gives the same draw.

    Returns:
        (int64 indices, the classes they show, in order).
    """
    generator = torch.Generator().manual_seed(seed)
    members = [torch.nonzero(labels == label).flatten() for label in range(num_classes)]
    present = [label for label in range(num_classes) if len(members[label])]
    take = min([per_class, *(len(members[label]) for label in present)])
    picks = [
        members[label][torch.randperm(len(members[label]), generator=generator)[:take]]
        for label in present
    ]
    return (torch.cat(picks) if picks else torch.empty(0, dtype=torch.int64)), present
