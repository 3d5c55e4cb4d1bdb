"""CIFAR-10's normalisation constants, defined once for every layer that normalises images."""

from __future__ import annotations

__all__ = ["CIFAR10_MEAN", "CIFAR10_STD", "NOTEBOOK_MEAN", "NOTEBOOK_STD"]

# Per-channel statistics of the CIFAR-10 training set, as fractions of 255.
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
# The constants most CIFAR-10 notebooks copy (and the seed notebooks use): the same mean, but
# a std about 0.8x the per-pixel one, so inputs are spread about 1.25x wider.
NOTEBOOK_MEAN = CIFAR10_MEAN
NOTEBOOK_STD = (0.2023, 0.1994, 0.2010)
