"""CIFAR-10 as tensors: decode once, cache as uint8, keep on the training device.

The data path follows cifar10-airbench (Keller Jordan, https://github.com/KellerJordan/cifar10-airbench):
the whole dataset is decoded once and cached as a uint8 tensor file, moved to the device
once, and shuffling, flips and crops run on the device in batches, with no worker
processes. CIFAR-10 itself: Krizhevsky 2009, https://www.cs.toronto.edu/~kriz/cifar.html.

Measured here (2-core AMD EPYC, Pillow 13): decoding the 60,000-image JPEG tree takes about
4 s on one core; loading the cached tensor file afterwards takes about 0.2 s.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from resnet_core.common.cifar import CIFAR10_MEAN, CIFAR10_STD, NOTEBOOK_MEAN, NOTEBOOK_STD
from resnet_core.common.env import DATA_ENV, default_data_dir
from resnet_core.common.errors import first_line
from resnet_core.common.files import read_regular_bytes, write_atomic
from resnet_core.common.text import plain_label
from resnet_core.common.weights import SavedFileError, load_saved

__all__ = [
    "CIFAR10_CLASSES",
    "NORMALIZATIONS",
    "normalization",
    "PAD_MODES",
    "DATA_ENV",
    "Cifar10",
    "DatasetNotFound",
    "default_data_dir",
    "load_cifar10",
    "load_dataset",
    "stratified_subset",
    "subset_indices",
    "synthetic_cifar10",
]

CACHE_NAME = "cifar10_uint8.pt"
CACHE_VERSION = 1
CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
NORMALIZATIONS = {"cifar10": (CIFAR10_MEAN, CIFAR10_STD), "notebook": (NOTEBOOK_MEAN, NOTEBOOK_STD)}


def normalization(name: Any) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) of a config's `normalize` value; CIFAR-10's for None or an unknown name
    (runs recorded before the option existed)."""
    return NORMALIZATIONS.get(name, NORMALIZATIONS["cifar10"])


# How the random crop pads: "reflect" mirrors the border; "zeros" pads black pixels, as
# torchvision's RandomCrop(32, padding=4) does on the unnormalised image.
PAD_MODES = ("reflect", "zeros")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
MAX_IMAGE_BYTES = 4 * 2**20  # a CIFAR image is a few kB; a bigger file is refused unread
BATCH_FILES = tuple(f"data_batch_{i}" for i in range(1, 6)) + (
    "test_batch",
)  # cifar-10-batches-py: 5 train, 1 test
SYNTHETIC_TRAIN_IMAGES = 5000  # the synthetic set's default sizes
SYNTHETIC_TEST_IMAGES = 1000
TARBALL_HINT = "tar -xzf cifar10-jpeg.tar.gz -C DIR"


class DatasetNotFound(ValueError):
    """CIFAR-10 is not where we looked; the message says how to provide it."""


@dataclass(frozen=True, eq=False)
class Cifar10:
    """The decoded dataset.

    Attributes:
        train_images: uint8 (N, 3, 32, 32).
        train_labels: int64 (N,).
        test_images: uint8 (M, 3, 32, 32).
        test_labels: int64 (M,).
        classes: class names; label i is classes[i].
        source: where the data came from ("cifar-10-batches-py", "image-folder", "synthetic").
        synthetic: True for the generated stand-in dataset; anything trained on it must say so.
        root: the folder it was read from ("" for synthetic data).
    """

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    classes: tuple[str, ...]
    source: str
    synthetic: bool = False
    root: str = ""

    @property
    def num_classes(self) -> int:
        return len(self.classes)


# Readers -----------------------------------------------------------------------------------
class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler for CIFAR's python batches that refuses anything but numpy arrays."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
    }

    def find_class(self, module: str, name: str):  # noqa: ANN201 - pickle protocol
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def _read_batch(path: Path) -> dict:
    """One CIFAR-10 python batch file as a dict with str keys."""
    try:
        data = _NumpyOnlyUnpickler(io.BytesIO(read_regular_bytes(path)), encoding="latin1").load()
    except (OSError, EOFError, pickle.UnpicklingError, ValueError, TypeError) as error:
        raise DatasetNotFound(
            f"{path}: not a readable CIFAR-10 batch ({error}); delete the folder and "
            "download again (download=True / --download)"
        ) from None
    if not isinstance(data, dict):
        raise DatasetNotFound(f"{path}: not a CIFAR-10 batch (expected a dict)")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in data.items()}


def _batch_arrays(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """The images (N, 3072) and labels (N,) of one batch file, checked; DatasetNotFound
    naming the file and what is wrong otherwise."""
    batch = _read_batch(path)
    if "data" not in batch or "labels" not in batch:
        missing = [key for key in ("data", "labels") if key not in batch]
        raise DatasetNotFound(f"{path}: not a CIFAR-10 batch (no {' or '.join(missing)} entry)")
    try:
        data = torch.as_tensor(batch["data"], dtype=torch.uint8)
        labels = torch.as_tensor(list(batch["labels"]), dtype=torch.int64)
    except (TypeError, ValueError, RuntimeError) as error:
        raise DatasetNotFound(f"{path}: not a CIFAR-10 batch ({first_line(error)})") from None
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(labels) != len(data):
        raise DatasetNotFound(
            f"{path}: not a CIFAR-10 batch (data has shape {tuple(data.shape)} and "
            f"{len(labels)} labels; expected (N, 3072) and N labels)"
        )
    if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= len(CIFAR10_CLASSES)):
        raise DatasetNotFound(f"{path}: labels outside 0..{len(CIFAR10_CLASSES) - 1}")
    return data, labels


def _read_batches_py(folder: Path) -> dict:
    """Read torchvision's `cifar-10-batches-py` folder into uint8/int64 tensors."""

    def read(names: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        images, labels = [], []
        for name in names:
            data, batch_labels = _batch_arrays(folder / name)
            images.append(data.reshape(-1, 3, 32, 32))  # stored as (N, 3072), channel-major
            labels.append(batch_labels)
        return torch.cat(images), torch.cat(labels)

    missing = [name for name in BATCH_FILES if not (folder / name).is_file()]
    if missing:
        raise DatasetNotFound(
            f"{folder}: missing {', '.join(missing)}; delete the folder and download again "
            "(download=True / --download)"
        )
    classes = CIFAR10_CLASSES
    if (folder / "batches.meta").is_file():
        meta = _read_batch(folder / "batches.meta")
        names = meta.get("label_names", CIFAR10_CLASSES)
        classes = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names)
    train_images, train_labels = read(list(BATCH_FILES[:-1]))
    test_images, test_labels = read([BATCH_FILES[-1]])
    return {
        "train_images": train_images,
        "train_labels": train_labels,
        "test_images": test_images,
        "test_labels": test_labels,
        "classes": list(classes),
    }


def _has_image(split_dir: Path) -> bool:
    """Whether any class folder of a split holds an image (stops at the first one)."""
    try:
        for entry in os.scandir(split_dir):
            if entry.is_dir() and any(
                name.lower().endswith(IMAGE_SUFFIXES) for name in os.listdir(entry.path)
            ):
                return True
    except OSError:
        return False
    return False


def cifar10_layout(root: str | os.PathLike) -> str | None:
    """Which CIFAR-10 layout `root` holds, checked without decoding: "cifar-10-batches-py"
    (all six batch files present) or "image-folder" (images under train/<class>/ and
    test/<class>/), else None. The two places `load_cifar10` reads."""
    root = Path(root)
    batches = root / "cifar-10-batches-py"
    if batches.is_dir() and all((batches / name).is_file() for name in BATCH_FILES):
        return "cifar-10-batches-py"
    if _has_image(root / "train") and _has_image(root / "test"):
        return "image-folder"
    return None


def _list_image_folder(split_dir: Path) -> tuple[list[str], list[tuple[Path, int]]]:
    """Class names (sorted, as ImageFolder) and (file, label) pairs of one split."""
    classes = sorted(entry.name for entry in os.scandir(split_dir) if entry.is_dir())
    files = []
    for label, name in enumerate(classes):
        names = sorted(
            entry.name
            for entry in os.scandir(split_dir / name)
            if entry.name.lower().endswith(IMAGE_SUFFIXES)
        )
        files.extend((split_dir / name / file, label) for file in names)
    return classes, files


def _decode(files: list[tuple[Path, int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode images with PIL into uint8 (N, 3, 32, 32) and int64 labels."""
    from PIL import Image  # imported here: only an image-folder dataset needs it

    images = np.empty((len(files), 32, 32, 3), dtype=np.uint8)
    for index, (path, _label) in enumerate(files):
        try:
            with Image.open(io.BytesIO(read_regular_bytes(path, MAX_IMAGE_BYTES))) as image:
                image = image.convert("RGB")
                if image.size != (32, 32):
                    image = image.resize((32, 32), Image.BILINEAR)
                images[index] = np.asarray(image)
        except (OSError, ValueError, Image.DecompressionBombError) as error:
            raise DatasetNotFound(
                f"{path}: not a readable image ({first_line(error)}); remove or replace it"
            ) from None
    labels = torch.tensor([label for _path, label in files], dtype=torch.int64)
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), labels  # (N, 3, 32, 32)


def _read_image_folder(root: Path) -> dict:
    """Decode `root/train/<class>/*` and `root/test/<class>/*`."""
    classes, train_files = _list_image_folder(root / "train")
    test_classes, test_files = _list_image_folder(root / "test")
    if classes != test_classes:
        raise DatasetNotFound(
            f"{root}: train/ has classes {classes} but test/ has {test_classes}; "
            "both splits need the same class folders"
        )
    if not train_files or not test_files:
        raise DatasetNotFound(
            f"{root}: no .png/.jpg images under train/<class>/ or test/<class>/; "
            f"unpack the dataset there, e.g. {TARBALL_HINT}"
        )
    train_images, train_labels = _decode(train_files)
    test_images, test_labels = _decode(test_files)
    return {
        "train_images": train_images,
        "train_labels": train_labels,
        "test_images": test_images,
        "test_labels": test_labels,
        "classes": classes,
    }


# Cache -------------------------------------------------------------------------------------
def _cache_paths(root: Path, source: str) -> list[Path]:
    """Where the decoded tensors may be cached: beside the data, else in the user cache."""
    digest = hashlib.sha1(f"{root.resolve()}|{source}".encode()).hexdigest()[:16]
    user_cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    name = CACHE_NAME if source == "image-folder" else "cifar10_batches_uint8.pt"
    return [root / name, user_cache / "resnet_explorer" / f"cifar10_{digest}.pt"]


def _load_cache(paths: list[Path], source: str) -> dict | None:
    for path in paths:
        try:
            data = load_saved(path)
        except (SavedFileError, OSError):  # a missing or broken cache is rebuilt, never fatal
            continue
        if (
            isinstance(data, dict)
            and data.get("version") == CACHE_VERSION
            and data.get("source") == source
            and all(isinstance(data.get(k), torch.Tensor) for k in _TENSOR_KEYS)
        ):
            return data
    return None


_TENSOR_KEYS = ("train_images", "train_labels", "test_images", "test_labels")


def _save_cache(paths: list[Path], data: dict, source: str) -> None:
    """Write the cache atomically to the first writable place; silently skip if none is."""
    payload = {**data, "version": CACHE_VERSION, "source": source}
    for path in paths:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(path, lambda stream: torch.save(payload, stream))
            return
        except OSError:
            continue


def _not_found(root: Path, download: bool) -> DatasetNotFound:
    where = root.resolve() if root.exists() else root
    looked = f"looked for {where}/cifar-10-batches-py and {where}/train/<class>/*.jpg"
    fixes = (
        f"pass --data-dir DIR (or set {DATA_ENV}=DIR, or TrainConfig(data_dir=...)) pointing at "
        f"a folder that has one of these, or unpack the image-folder tarball with "
        f"'{TARBALL_HINT}'"
    )
    if not download:
        fixes += ", or let torchvision download it (--download / download=True)"
    fixes += ", or use --dataset synthetic for a small stand-in"
    return DatasetNotFound(f"CIFAR-10 not found: {looked}; {fixes}")


def load_cifar10(
    root: str | os.PathLike | None = None, download: bool = False, subset: int | None = None
) -> Cifar10:
    """Load CIFAR-10 as uint8 tensors, decoding once and caching the result.

    Looks in `root` for, in order: torchvision's `cifar-10-batches-py` folder (downloaded
    there first by torchvision when `download` is True and it is missing), then an
    image-folder tree `train/<class>/*.{png,jpg}` + `test/<class>/...`. Decoded tensors
    are cached in `root/cifar10_uint8.pt` (or `~/.cache/resnet_explorer/` when root is
    read-only); delete that file after changing the images.

    Args:
        root: the data folder; None means `default_data_dir()`.
        download: fetch the binary set with torchvision's downloader if nothing is found.
        subset: keep only the first `subset` training images, stratified by class
            (subset / classes per class). The test set is always complete.

    Returns:
        A Cifar10 with uint8 (N, 3, 32, 32) images and int64 labels.

    Raises:
        DatasetNotFound: nothing readable in root; the message says how to fix it.
    """
    root = Path(root) if root is not None else default_data_dir()
    batches = root / "cifar-10-batches-py"
    if not batches.is_dir() and download and not (root / "train").is_dir():
        _download(root)
    if batches.is_dir():
        source, reader = "cifar-10-batches-py", lambda: _read_batches_py(batches)
    elif (root / "train").is_dir() and (root / "test").is_dir():
        source, reader = "image-folder", lambda: _read_image_folder(root)
    else:
        raise _not_found(root, download)
    paths = _cache_paths(root, source)
    data = _load_cache(paths, source)
    if data is None:
        data = reader()
        _save_cache(paths, data, source)
    dataset = Cifar10(
        train_images=data["train_images"],
        train_labels=data["train_labels"],
        test_images=data["test_images"],
        test_labels=data["test_labels"],
        classes=tuple(plain_label(name, 40) for name in data["classes"]),  # folder names
        source=source,
        synthetic=False,
        root=str(root),
    )
    return stratified_subset(dataset, subset) if subset else dataset


def _download(root: Path) -> None:
    """Fetch the binary CIFAR-10 set with torchvision (needs internet)."""
    from torchvision.datasets import CIFAR10  # imported here: optional, and slow to import

    try:
        CIFAR10(str(root), train=True, download=True)
    except Exception as error:  # noqa: BLE001 - network errors come in many types
        raise DatasetNotFound(
            f"could not download CIFAR-10 into {root} ({first_line(error)}); check the internet "
            f"connection, or pass --data-dir DIR with a copy ({TARBALL_HINT})"
        ) from None


def subset_indices(labels: torch.Tensor, subset: int, classes: int) -> torch.Tensor:
    """The training indices `stratified_subset` keeps: the first `subset` images, the same
    number per class (remainder to the first classes), sorted.

    Raises:
        ValueError: subset is not positive or exceeds the training set.
    """
    if subset <= 0 or subset > len(labels):
        raise ValueError(f"subset: {subset} must be between 1 and {len(labels)}")
    base, extra = divmod(subset, classes)
    picks = []
    for label in range(classes):
        wanted = base + (1 if label < extra else 0)
        picks.append(torch.nonzero(labels == label).flatten()[:wanted])
    return torch.sort(torch.cat(picks)).values


def stratified_subset(dataset: Cifar10, subset: int) -> Cifar10:
    """The first `subset` training images, the same number per class (remainder to the first).

    Raises:
        ValueError: subset is not positive or exceeds the training set.
    """
    index = subset_indices(dataset.train_labels, subset, dataset.num_classes)
    return Cifar10(
        dataset.train_images[index],
        dataset.train_labels[index],
        dataset.test_images,
        dataset.test_labels,
        dataset.classes,
        dataset.source,
        dataset.synthetic,
        dataset.root,
    )


def synthetic_cifar10(
    num_train: int = SYNTHETIC_TRAIN_IMAGES,
    num_test: int = SYNTHETIC_TEST_IMAGES,
    seed: int = 0,
    num_classes: int = 10,
) -> Cifar10:
    """A small learnable stand-in: each class is a smooth random colour pattern plus noise.

    Images are shifted by a few pixels and noisy, so a network has to learn the pattern
    rather than memorise pixels; a small ResNet reaches well above chance in one epoch.
    Anything trained on it is flagged `synthetic`.
    """
    generator = torch.Generator().manual_seed(10_007 + seed)
    templates = torch.rand(num_classes, 3, 4, 4, generator=generator)
    templates = F.interpolate(templates, size=(40, 40), mode="bilinear", align_corners=False)

    def make(count: int) -> tuple[torch.Tensor, torch.Tensor]:
        labels = torch.arange(count) % num_classes
        labels = labels[torch.randperm(count, generator=generator)]
        shifts = torch.randint(0, 9, (count, 2), generator=generator)
        images = torch.empty(count, 3, 32, 32)
        for index in range(count):
            dy, dx = int(shifts[index, 0]), int(shifts[index, 1])
            images[index] = templates[labels[index], :, dy : dy + 32, dx : dx + 32]
        images = images + 0.25 * torch.randn(images.shape, generator=generator)
        images = (images.clamp(0, 1) * 255).round().to(torch.uint8)  # (count, 3, 32, 32)
        return images, labels.to(torch.int64)

    train_images, train_labels = make(num_train)
    test_images, test_labels = make(num_test)
    classes = tuple(f"pattern{i}" for i in range(num_classes))
    return Cifar10(
        train_images, train_labels, test_images, test_labels, classes, "synthetic", True, ""
    )


def load_dataset(
    name: str,
    root: str | os.PathLike | None = None,
    download: bool = False,
    subset: int | None = None,
    seed: int = 0,
) -> Cifar10:
    """ "cifar10" via `load_cifar10`, or "synthetic" via `synthetic_cifar10` (subset = train size)."""
    if name == "synthetic":
        return synthetic_cifar10(num_train=subset or SYNTHETIC_TRAIN_IMAGES, seed=seed)
    if name == "cifar10":
        return load_cifar10(root, download=download, subset=subset)
    raise ValueError(f"dataset: {name!r} is not allowed; choose cifar10 or synthetic")
