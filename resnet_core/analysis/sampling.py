"""Which images a measurement looks at: seeded picks drawn across every class.

An image-folder copy of CIFAR-10 lists each split sorted by class, so "the first N images"
of a split are all airplanes; a measurement on them says nothing about the other nine
classes. Every shipped result instead picks its images here, the same number from each
class, and records the pick beside its numbers as `sample.json` (`sample_record`), so that
anyone can re-measure on exactly the same images.
"""

from __future__ import annotations

import json
import os

import torch

from resnet_core.common.files import write_bytes_atomic

__all__ = ["SAMPLE_FILE", "stratified_indices", "sample_record", "classes_in", "write_sample"]

SAMPLE_FILE = "sample.json"


def stratified_indices(
    labels: torch.Tensor, count: int, seed: int, exclude: torch.Tensor | None = None
) -> torch.Tensor:
    """`count` indices into `labels`, as even across classes as `count` allows (the remainder
    goes to classes chosen by the seed), each class's images picked at random with `seed`;
    sorted. `exclude` names indices never to pick (e.g. a sample already taken).

    Raises:
        ValueError: count is not positive, or some class has too few images left.
    """
    if count <= 0:
        raise ValueError(f"count: {count} must be positive")
    generator = torch.Generator().manual_seed(seed)
    labels = labels.cpu()
    classes = torch.unique(labels)
    allowed = torch.ones(len(labels), dtype=torch.bool)
    if exclude is not None:
        allowed[exclude.cpu()] = False
    base, extra = divmod(count, len(classes))
    more = set(torch.randperm(len(classes), generator=generator)[:extra].tolist())
    picks = []
    for position, label in enumerate(classes.tolist()):
        pool = torch.nonzero((labels == label) & allowed).flatten()
        wanted = base + (1 if position in more else 0)
        if wanted > len(pool):
            raise ValueError(f"class {label}: {wanted} images wanted, {len(pool)} available")
        picks.append(pool[torch.randperm(len(pool), generator=generator)[:wanted]])
    return torch.sort(torch.cat(picks)).values


def sample_record(split: str, indices: torch.Tensor, seed: int, **more: object) -> dict:
    """What `sample.json` holds: the split, the indices into it, and how they were drawn."""
    return {
        "split": split,
        "indices": [int(i) for i in indices.tolist()],
        "how": f"stratified, seed {seed}",
        **more,
    }


def classes_in(labels: torch.Tensor, indices: list[int] | torch.Tensor) -> int:
    """How many distinct classes the picked images cover."""
    return int(torch.unique(labels.cpu()[torch.as_tensor(indices, dtype=torch.long)]).numel())


def sample_text(record: dict) -> str:
    """The text of `sample.json`: one key per line, each value on its line (a whole test split
    is 10,000 indices; one per line would make the shipped folder needlessly large)."""
    lines = [f"  {json.dumps(key)}: {json.dumps(value)}" for key, value in record.items()]
    return "{\n" + ",\n".join(lines) + "\n}\n"


def write_sample(path: str | os.PathLike, record: dict) -> None:
    """Write a sample record atomically as `sample_text` lays it out."""
    write_bytes_atomic(path, sample_text(record).encode("utf-8"))
