"""Batches from a dataset that lives on the training device: normalised, shuffled, cropped
and flipped there in whole batches, with no worker processes (after cifar10-airbench,
https://github.com/KellerJordan/cifar10-airbench)."""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F

from resnet_core.common.cifar import CIFAR10_MEAN, CIFAR10_STD
from resnet_core.training.data import PAD_MODES

__all__ = ["DeviceLoader"]


class DeviceLoader:
    """Batches from a dataset that lives on the training device.

    Normalises on the device (CIFAR-10 mean/std by default), and for training applies a
    per-image random crop (reflect or zero padding) and a horizontal flip with probability
    1/2, in whole batches.
    The order and augmentation of epoch e depend only on (seed, e), so a resumed run sees
    the same batches as an uninterrupted one.

    Args:
        images: uint8 (N, 3, H, W) on any device.
        labels: int64 (N,).
        batch_size: images per batch.
        device: where batches are produced (the data is copied there once).
        train: shuffle and augment (True) or keep order, no augmentation (False).
        seed: seed of the torch.Generator behind shuffling and augmentation.
        crop_padding: pixels of padding for the random crop (0 turns cropping off).
        pad_mode: "reflect", or "zeros" (black pixels, as torchvision's RandomCrop).
        flip: random horizontal flips.
        channels_last: return batches in channels_last memory format.
        drop_last: drop the last partial batch in training (kept if it is the only one).
        dtype: float dtype of the batches.
        mean, std: per-channel statistics (fractions of 255) that normalisation removes.
        shard: (rank, world_size) of a data-parallel run: every rank draws the same epoch
            order and takes its own contiguous part of each batch of `batch_size` (the
            global batch), so the ranks together see what one process would. Training only.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        device: str | torch.device = "cpu",
        train: bool = True,
        seed: int = 0,
        crop_padding: int = 4,
        flip: bool = True,
        pad_mode: str = "reflect",
        channels_last: bool = False,
        drop_last: bool = True,
        dtype: torch.dtype = torch.float32,
        mean: tuple[float, ...] = CIFAR10_MEAN,
        std: tuple[float, ...] = CIFAR10_STD,
        shard: tuple[int, int] = (0, 1),
    ) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError(
                f"images: expected uint8 (N, C, H, W), got {images.dtype} {tuple(images.shape)}"
            )
        if batch_size < 1:
            raise ValueError(f"batch_size: {batch_size} must be >= 1")
        if pad_mode not in PAD_MODES:
            raise ValueError(f"pad_mode: {pad_mode!r} is not allowed; choose reflect or zeros")
        self.device = torch.device(device)
        self.images = images.to(self.device)
        self.labels = labels.to(self.device)
        self.batch_size = batch_size
        self.train = train
        self.seed = seed
        self.crop_padding = crop_padding if train else 0
        self.pad_mode = pad_mode
        self.flip = flip and train
        self.channels_last = channels_last
        self.drop_last = drop_last and train and len(images) >= batch_size
        self.dtype = dtype
        self.epoch = 0
        rank, world_size = shard
        if not 0 <= rank < world_size:
            raise ValueError(f"shard: rank {rank} is not in 0 .. {world_size - 1}")
        self.shard = (rank, world_size) if train else (0, 1)
        channels = images.shape[1]
        self.mean = torch.tensor(mean[:channels], device=self.device).view(1, -1, 1, 1) * 255
        self.scale = 1 / (torch.tensor(std[:channels], device=self.device).view(1, -1, 1, 1) * 255)

    def __len__(self) -> int:
        count = len(self.images)
        return count // self.batch_size if self.drop_last else math.ceil(count / self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose order and augmentation the next iteration uses."""
        self.epoch = epoch

    def _epoch_randomness(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Order, flip flags and crop shifts for the whole epoch, drawn on the CPU, moved once."""
        count = len(self.images)
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(count, generator=generator)
        flips = torch.rand(count, generator=generator) < 0.5
        pad = self.crop_padding
        shifts = torch.randint(0, 2 * pad + 1, (count, 2), generator=generator)
        return order.to(self.device), flips.to(self.device), shifts.to(self.device)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (N, C, H, W) -> normalised float batch of `dtype`."""
        return ((images.float() - self.mean) * self.scale).to(self.dtype)

    def _pad(self, batch: torch.Tensor) -> torch.Tensor:
        """The normalised batch padded by `crop_padding` on every side: mirrored, or with the
        normalised value of a black pixel (what zero padding before normalising gives)."""
        pad = self.crop_padding
        if self.pad_mode == "reflect":
            return F.pad(batch, (pad, pad, pad, pad), mode="reflect")
        count, channels, height, width = batch.shape
        black = (-self.mean * self.scale).to(batch.dtype)  # (1, C, 1, 1)
        padded = black.expand(count, channels, height + 2 * pad, width + 2 * pad).clone()
        padded[:, :, pad : pad + height, pad : pad + width] = batch
        return padded

    def _crop(self, batch: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
        """Per-image random crop of the padded batch, as one gather (no host sync)."""
        count, _channels, height, width = batch.shape
        padded = self._pad(batch)  # (N, C, H+2p, W+2p)
        rows = shifts[:, :1] + torch.arange(height, device=batch.device)  # (N, H)
        cols = shifts[:, 1:] + torch.arange(width, device=batch.device)  # (N, W)
        images = torch.arange(count, device=batch.device).view(-1, 1, 1)
        out = padded[images, :, rows[:, :, None], cols[:, None, :]]  # (N, H, W, C)
        return out.permute(0, 3, 1, 2)  # (N, C, H, W), stored channels-last

    def _my_part(self, start: int, stop: int) -> tuple[int, int]:
        """This rank's contiguous part of the global batch [start, stop)."""
        rank, world_size = self.shard
        size = stop - start
        return start + size * rank // world_size, start + size * (rank + 1) // world_size

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        count = len(self.images)
        if self.train:
            order, flips, shifts = self._epoch_randomness()
        for batch_index in range(len(self)):
            start = batch_index * self.batch_size
            stop = min(start + self.batch_size, count)
            if self.train:
                start, stop = self._my_part(start, stop)
                index = order[start:stop]
                batch = self.normalize(self.images[index])
                if self.flip:
                    flip = flips[start:stop].view(-1, 1, 1, 1)
                    batch = torch.where(flip, batch.flip(-1), batch)
                if self.crop_padding:
                    batch = self._crop(batch, shifts[start:stop])
                labels = self.labels[index]
            else:
                batch = self.normalize(self.images[start:stop])
                labels = self.labels[start:stop]
            if self.channels_last:
                batch = batch.contiguous(memory_format=torch.channels_last)
            else:
                batch = batch.contiguous()
            yield batch, labels
