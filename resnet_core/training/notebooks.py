"""The course's seed notebooks as ready-made recipes: what they train, set exactly.

`NOTEBOOK_RECIPES` maps a name that says what a recipe reproduces to one TrainConfig override
dict per net; a recipe of two nets is trained together, as the notebooks compare them.
`NOTEBOOK_NOTES` says in one sentence what each reproduces.

What the seeds do, and the field that does it here:
- augmentation: torchvision's RandomCrop(32, padding=4) then RandomHorizontalFlip ->
  augment true, crop_pad "zeros" (black padding, not the engine's default mirror);
- normalisation: Normalize((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)) ->
  normalize "notebook";
- MultiStepLR(milestones=[8, 12], gamma=0.1), stepped once per epoch -> schedule "step",
  milestones [8, 12], gamma 0.1 (the rate drops at the first step of epochs 9 and 13);
- a fixed Adam rate -> schedule "constant";
- plain fp32 cross-entropy: no label smoothing, no warm-up, no Nesterov momentum, no
  autocast.
"""

from __future__ import annotations

from typing import Any

__all__ = ["NOTEBOOK_NOTES", "NOTEBOOK_RECIPES"]

NOTEBOOK_EPOCHS = 15

# What every seed recipe shares: the notebooks' data pipeline and their plain fp32 loop.
_NOTEBOOK_COMMON: dict[str, Any] = {
    "epochs": NOTEBOOK_EPOCHS,
    "batch_size": 128,
    "augment": True,
    "crop_pad": "zeros",
    "normalize": "notebook",
    "precision": "fp32",
    "label_smoothing": 0.0,
    "warmup": 0.0,
    "nesterov": False,
}
_SGD_MULTISTEP: dict[str, Any] = {
    **_NOTEBOOK_COMMON,
    "optimizer": "sgd",
    "lr": 0.1,
    "momentum": 0.9,
    "weight_decay": 5e-4,
    "schedule": "step",
    "milestones": [8, 12],
    "gamma": 0.1,
}
_ADAM_CONSTANT: dict[str, Any] = {
    **_NOTEBOOK_COMMON,
    "optimizer": "adam",
    "lr": 1e-3,
    "momentum": 0.9,  # Adam's beta1, torch's default
    "weight_decay": 0.0,
    "schedule": "constant",
}

NOTEBOOK_RECIPES: dict[str, list[dict[str, Any]]] = {
    "Seed notebook: plain vs residual, 15 epochs, MultiStepLR [8, 12]": [
        {**_SGD_MULTISTEP, "model": "plain20"},
        {**_SGD_MULTISTEP, "model": "resnet20"},
    ],
    "Seed notebook: SimpleCNN vs ResNet-18, Adam 1e-3, 15 epochs": [
        {**_ADAM_CONSTANT, "model": "simple_cnn"},
        {**_ADAM_CONSTANT, "model": "resnet18"},
    ],
}

NOTEBOOK_NOTES: dict[str, str] = {
    "Seed notebook: plain vs residual, 15 epochs, MultiStepLR [8, 12]": (
        "The seeds' plain-versus-residual comparison: twin 20-layer nets trained with SGD "
        "(lr 0.1, momentum 0.9, weight decay 5e-4), the rate cut tenfold after epochs 8 and "
        "12, torchvision's crop-and-flip augmentation and the notebook normalisation."
    ),
    "Seed notebook: SimpleCNN vs ResNet-18, Adam 1e-3, 15 epochs": (
        "The seeds' baseline comparison: their 391,946-parameter SimpleCNN against ResNet-18, "
        "both trained with Adam at a constant 1e-3 and no weight decay, with torchvision's "
        "crop-and-flip augmentation and the notebook normalisation."
    ),
}
