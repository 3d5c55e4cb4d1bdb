"""What the Inspect page shows about a trained run: its predictions on the test set it
belongs to (`resnet_core.studies.datasets` says which), per-class and confusion charts,
sentences computed from them, and image grids (test images with their labels; training
images before and after the augmentation).

Images are drawn with Pillow into one PNG per grid, each 32x32 image enlarged with
nearest-neighbour pixels so that it stays sharp on a projector.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass

import altair as alt
import numpy as np
import pandas as pd
import torch

from resnet_core.analysis.inspect import predict
from resnet_core.training.data import Cifar10
from resnet_core.training.loader import DeviceLoader
from resnet_core.training.runs import RunError, load_run, run_normalization

__all__ = [
    "run_predictions",
    "augmented_samples",
    "confusion_frame",
    "confusion_chart",
    "per_class_chart",
    "accuracy_story",
    "gallery_story",
    "gallery_frame",
    "gallery_captions",
    "image_grid",
    "augmentation_grid",
    "WRONG_COLOUR",
    "RIGHT_COLOUR",
]

WRONG_COLOUR = "#c62828"
RIGHT_COLOUR = "#2e7d32"
TEXT_COLOUR = "#222222"


# Predictions -------------------------------------------------------------------------------
def run_predictions(
    run_path: str | os.PathLike, data: Cifar10, batch_size: int = 500
) -> torch.Tensor:
    """Class probabilities (N, C) of a run's best checkpoint on `data`'s test set, on the CPU.

    Normalised as training did (the run's `normalize` setting), in fp32. Raises RunError
    when the checkpoint is missing or unreadable, or its net answers a different number of
    classes.
    """
    mean, std = run_normalization(run_path)
    model, _ = load_run(run_path, which="best")
    if model.spec.num_classes != data.num_classes:
        raise RunError(
            f"{run_path}: the net answers {model.spec.num_classes} classes but the test set has "
            f"{data.num_classes}; it cannot be judged on it"
        )
    return predict(model, data.test_images, mean, std, batch_size)


def augmented_samples(
    images: torch.Tensor, seed: int, crop_padding: int = 4, flip: bool = True
) -> torch.Tensor:
    """The images as one training epoch shows them: random crop and flip, drawn by the
    training loader itself (`DeviceLoader`), turned back into uint8 pixels.

    Args:
        images: uint8 (N, C, H, W).
        seed: the draw; the same seed gives the same crops and flips.
        crop_padding: reflect padding before the random crop (training uses 4).
        flip: random horizontal flips (training uses them).

    Returns:
        uint8 (N, C, H, W), image i the augmented version of input image i.
    """
    if len(images) == 0:
        return images.clone()
    order = torch.arange(len(images))  # passed as labels: tells which image each output is
    loader = DeviceLoader(
        images, order, len(images), train=True, seed=seed, crop_padding=crop_padding, flip=flip
    )
    batch, index = next(iter(loader))
    pixels = (batch.float() / loader.scale + loader.mean).round().clamp(0, 255).to(torch.uint8)
    out = torch.empty_like(images)
    out[index] = pixels
    return out


# Tables and charts -------------------------------------------------------------------------
def confusion_frame(matrix: torch.Tensor, classes: Sequence[str]) -> pd.DataFrame:
    """Long table of a confusion matrix: true, predicted, count, share (percent of the row)."""
    totals = matrix.sum(1).clamp(min=1)
    return pd.DataFrame(
        [
            {
                "true": classes[t],
                "predicted": classes[p],
                "count": int(matrix[t, p]),
                "share": round(100 * float(matrix[t, p]) / float(totals[t]), 2),
            }
            for t in range(len(classes))
            for p in range(len(classes))
        ]
    )


def confusion_chart(frame: pd.DataFrame, normalised: bool, large: bool = False) -> alt.LayerChart:
    """Heatmap of a confusion matrix (rows: true class) with the number in every cell.

    Colour always follows the row share, so the two views look alike; the cells read
    counts or (normalised) percent of the row.
    """
    classes = list(dict.fromkeys(frame["true"]))
    side = 62 * len(classes) if large else 46 * len(classes)
    value = "share" if normalised else "count"
    title = "Confusion matrix, % of each true class" if normalised else "Confusion matrix, counts"
    base = alt.Chart(frame, title=title, width=side, height=side).encode(
        x=alt.X(
            "predicted:N", sort=classes, title="predicted class", axis=alt.Axis(labelAngle=-40)
        ),
        y=alt.Y("true:N", sort=classes, title="true class"),
    )
    cells = base.mark_rect().encode(
        color=alt.Color(
            "share:Q", scale=alt.Scale(scheme="blues", type="sqrt", domain=[0, 100]), legend=None
        ),
        tooltip=["true", "predicted", "count", alt.Tooltip("share:Q", title="% of row")],
    )
    text = base.mark_text(fontSize=17 if large else 12).encode(
        text=alt.Text(f"{value}:Q", format=".0f"),
        color=alt.condition(alt.datum.share > 50, alt.value("white"), alt.value(TEXT_COLOUR)),
    )
    return cells + text


def per_class_chart(frame: pd.DataFrame, large: bool = False) -> alt.LayerChart:
    """Horizontal bars: test accuracy (percent) per class, best on top, value at each bar."""
    data = frame.assign(percent=100 * frame["accuracy"])
    base = alt.Chart(data, title="Test accuracy per class", height=34 * len(frame)).encode(
        y=alt.Y("class:N", sort="-x", title=None),
        x=alt.X("percent:Q", title="correct (%)", scale=alt.Scale(domain=[0, 100])),
    )
    bars = base.mark_bar(color="#1f77b4").encode(
        tooltip=["class", "correct", "total", alt.Tooltip("percent:Q", format=".1f")]
    )
    size, label = 17 if large else 12, alt.Text("percent:Q", format=".1f")
    inside = base.transform_filter(alt.datum.percent >= 25).mark_text(
        align="right", dx=-6, color="white", fontSize=size
    )
    outside = base.transform_filter(alt.datum.percent < 25).mark_text(
        align="left", dx=6, color=TEXT_COLOUR, fontSize=size
    )
    return bars + inside.encode(text=label) + outside.encode(text=label)


# Sentences ---------------------------------------------------------------------------------
def _pct(value: float) -> str:
    return f"{100 * value:.0f} %"


def _sure(value: float) -> str:
    """A confidence in percent, with a decimal where it is close to certain (99.7 %)."""
    return f"{100 * value:.1f} %" if value > 0.99 else _pct(value)


def accuracy_story(frame: pd.DataFrame, matrix: torch.Tensor) -> str:
    """Overall accuracy, the hardest and easiest class and the commonest mistake, from the numbers."""
    total, correct = int(frame["total"].sum()), int(frame["correct"].sum())
    if total == 0:
        return "The test set is empty."
    text = f"Overall **{100 * correct / total:.1f} %** of the {total:,} test images are right."
    known = frame[frame["total"] > 0]
    hard = known.loc[known["accuracy"].idxmin()]
    easy = known.loc[known["accuracy"].idxmax()]
    text += (
        f" **{hard['class']}** is the hardest class: {_pct(hard['accuracy'])} of its images right"
    )
    if hard["most_confused_with"]:
        text += f", most often taken for **{hard['most_confused_with']}** ({_pct(hard['confused_share'])})"
    text += f"; **{easy['class']}** the easiest ({_pct(easy['accuracy'])})."
    off = matrix.clone()
    off.fill_diagonal_(-1)
    if int(off.max()) > 0:
        true, pred = divmod(int(off.argmax()), matrix.shape[1])
        names = list(frame["class"])
        text += (
            f" The commonest single mistake: {names[true]} taken for {names[pred]}, "
            f"{int(off.max()):,} times."
        )
    return text


def gallery_story(
    probs: torch.Tensor,
    labels: torch.Tensor,
    shown: torch.Tensor,
    kind: str,
    klass: int | None,
    classes: Sequence[str],
) -> str:
    """What a gallery shows, with the counts and confidences it was drawn from."""
    confidence, preds = probs.max(1)
    pool = labels == klass if klass is not None else torch.ones_like(labels, dtype=torch.bool)
    where = f"{classes[klass]} test images" if klass is not None else "test images"
    mistakes = kind == "confident_mistakes"
    matching = int((pool & ((preds != labels) if mistakes else (preds == labels))).sum())
    verdict = "wrong" if mistakes else "right"
    text = f"The net gets {matching:,} of the {int(pool.sum()):,} {where} {verdict}"
    if len(shown) == 0:
        return text + ", so there is nothing to show here."
    sure = confidence[shown]
    if mistakes:
        return (
            text + f"; here are the {len(shown)} mistakes it was surest of "
            f"(confidence {_sure(float(sure[0]))} down to {_sure(float(sure[-1]))})."
        )
    return (
        text + f"; here are the {len(shown)} right answers it was least sure of "
        f"(confidence {_sure(float(sure[0]))} up to {_sure(float(sure[-1]))})."
    )


def gallery_frame(
    probs: torch.Tensor, labels: torch.Tensor, shown: torch.Tensor, classes: Sequence[str]
) -> pd.DataFrame:
    """One row per gallery image: test index, true and predicted class, confidence (percent)."""
    confidence, preds = probs.max(1)
    return pd.DataFrame(
        {
            "test_index": shown.tolist(),
            "true": [classes[int(labels[i])] for i in shown],
            "predicted": [classes[int(preds[i])] for i in shown],
            "confidence": [round(100 * float(confidence[i]), 2) for i in shown],
        }
    )


def gallery_captions(
    probs: torch.Tensor, labels: torch.Tensor, shown: torch.Tensor, classes: Sequence[str]
) -> tuple[list[str], list[str]]:
    """Captions (predicted class, its probability, true class: "dog / 97 % / true: cat") and
    their colours (red wrong, green right)."""
    confidence, preds = probs.max(1)
    captions, colours = [], []
    for index in shown.tolist():
        pred, true = int(preds[index]), int(labels[index])
        captions.append(
            f"{classes[pred]}\n{_sure(float(confidence[index]))}\ntrue: {classes[true]}"
        )
        colours.append(RIGHT_COLOUR if pred == true else WRONG_COLOUR)
    return captions, colours


# Image grids -------------------------------------------------------------------------------
def _font(size: int):
    from PIL import ImageFont  # imported here: only grids need Pillow

    return ImageFont.load_default(size=size)


def _tiles(images: torch.Tensor, scale: int) -> np.ndarray:
    """uint8 (N, C, H, W) -> RGB (N, H*scale, W*scale, 3), enlarged with nearest pixels."""
    pixels = images.permute(0, 2, 3, 1).numpy()  # (N, H, W, C)
    if pixels.shape[-1] == 1:
        pixels = np.repeat(pixels, 3, axis=-1)
    return pixels.repeat(scale, axis=1).repeat(scale, axis=2)


def image_grid(
    images: torch.Tensor,
    columns: int = 8,
    scale: int = 4,
    captions: Sequence[str] | None = None,
    caption_colours: Sequence[str] | None = None,
    row_labels: Sequence[str] | None = None,
    column_labels: Sequence[str] | None = None,
    group: int = 0,
    font_size: int = 20,
) -> bytes:
    """PNG bytes of a grid of uint8 images, each enlarged `scale` times (nearest pixels).

    Args:
        images: uint8 (N, C, H, W) with C = 1 or 3, filled row by row.
        columns: images per row.
        scale: enlargement factor (4 turns 32x32 into 128x128).
        captions: one text per image (may hold newlines), drawn under it.
        caption_colours: one colour per caption (default dark grey).
        row_labels: one text per row, drawn to the left of it.
        column_labels: one text per column, drawn above it.
        group: put a wider gap after every `group` columns (0: none).
        font_size: text size in pixels.
    """
    from PIL import Image, ImageDraw  # imported here: only grids need Pillow

    tiles = _tiles(images, scale)
    height, width = tiles.shape[1:3] if len(tiles) else (32 * scale, 32 * scale)
    font = _font(font_size)
    texts = {"captions": captions, "rows": row_labels, "columns": column_labels}
    layout = _GridLayout.of((len(tiles), height, width), columns, group, (font, font_size), texts)
    canvas = Image.new("RGB", layout.size(columns), "white")
    draw = ImageDraw.Draw(canvas)
    for index, tile in enumerate(tiles):
        row, column = divmod(index, columns)
        x, y = layout.x_of(column), layout.top + row * layout.cell_h
        canvas.paste(Image.fromarray(tile), (x, y))
        if captions:
            colour = caption_colours[index] if caption_colours else TEXT_COLOUR
            draw.multiline_text((x, y + height + 2), captions[index], colour, font, spacing=4)
    for row, label in enumerate(row_labels or []):
        y = layout.top + row * layout.cell_h + height // 2
        draw.text((0, y), label, TEXT_COLOUR, font, anchor="lm")
    for column, label in enumerate(column_labels or []):
        draw.text((layout.x_of(column), 0), label, TEXT_COLOUR, font)
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG")
    return buffer.getvalue()


@dataclass(frozen=True)
class _GridLayout:
    """Where the cells of an image grid go: margins for the labels, cell size, group gaps."""

    left: int
    top: int
    cell_w: int
    cell_h: int
    rows: int
    gap: int
    group: int

    @classmethod
    def of(
        cls,
        shape: tuple[int, int, int],
        columns: int,
        group: int,
        font: tuple,
        texts: dict[str, Sequence[str] | None],
    ) -> _GridLayout:
        """The layout of `shape` = (count, height, width) tiles with their `texts`
        (captions, row and column labels, each None for none) in `font` = (font, size)."""
        from PIL import Image, ImageDraw

        count, height, width = shape
        font, font_size = font
        gap = max(6, font_size // 3)
        measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))

        def widest(lines_of: Sequence[str] | None) -> int:
            lines = (line for text in lines_of or [] for line in text.split("\n"))
            return int(max((measure.textlength(line, font=font) for line in lines), default=0))

        captions, rows, column_labels = texts["captions"], texts["rows"], texts["columns"]
        lines = max((c.count("\n") + 1 for c in captions), default=0) if captions else 0
        return cls(
            left=widest(rows) + 2 * gap if rows else 0,
            top=font_size + gap if column_labels else 0,
            cell_w=max(width, widest(captions), widest(column_labels)) + gap,
            cell_h=height + lines * (font_size + 4) + gap,
            rows=max(1, math.ceil(count / columns)),
            gap=gap,
            group=group,
        )

    def x_of(self, column: int) -> int:
        return (
            self.left
            + column * self.cell_w
            + (2 * self.gap * (column // self.group) if self.group else 0)
        )

    def size(self, columns: int) -> tuple[int, int]:
        return self.x_of(columns - 1) + self.cell_w, self.top + self.rows * self.cell_h


def augmentation_grid(
    originals: torch.Tensor,
    augmented: torch.Tensor,
    per_row: int,
    row_labels: Sequence[str],
    font_size: int = 20,
) -> bytes:
    """PNG of image pairs, each image beside its augmented version, `per_row` pairs a row."""
    pairs = torch.stack((originals, augmented), 1).flatten(0, 1)  # (2N, C, H, W): o1 a1 o2 a2
    return image_grid(
        pairs,
        columns=2 * per_row,
        scale=3,
        row_labels=row_labels,
        column_labels=["stored", "augmented"] * per_row,
        group=2,
        font_size=font_size,
    )
