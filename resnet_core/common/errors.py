"""Errors shared across layers and the one-line messages made from them."""

from __future__ import annotations

import os
import re

_ESCAPES = re.compile(r"\x1b\[[0-9;]*m")
MAX_MESSAGE = 200


class ConfigError(ValueError):
    """A setting is invalid; the message names the field, the value and what is allowed."""


def first_line(error: BaseException, telling: bool = False) -> str:
    """The first non-empty line of an error's message (at most 200 characters, terminal
    escapes removed), or the error's type name if it has no message.

    With `telling`, a line that names the problem ("error: ...", torch's "Unsupported
    global") is preferred over the first one: unpickling errors bury it below a preamble.
    """
    lines = [_ESCAPES.sub("", line).strip() for line in str(error).splitlines()]
    lines = [line for line in lines if line]
    chosen = [line for line in lines if "Unsupported global" in line or "error:" in line.lower()]
    text = ((chosen if telling else []) or lines or [type(error).__name__])[0]
    return text[:MAX_MESSAGE]


def page_message(error: Exception) -> str:
    """The one line a page shows for an error nothing else caught: this app's own messages
    (ValueError and its kinds, which name the file and the fix) as they are; a file problem
    by its reason and the file's name, not the server's path; anything else by its type."""
    if isinstance(error, OSError):
        name = os.path.basename(str(error.filename)) if error.filename else ""
        where = f" ({name})" if name else ""
        return f"This page stopped: {error.strerror or type(error).__name__}{where}."
    if isinstance(error, ValueError):
        return f"This page stopped: {first_line(error)}"
    return (
        f"This page stopped on an unexpected {type(error).__name__}; reload the page. The "
        "server's log has the details."
    )


def is_out_of_memory(text: str) -> bool:
    """Whether a message (or an error's type name) reports an out-of-memory failure."""
    text = text.lower()
    return "out of memory" in text or "outofmemory" in text


def failure_message(error: BaseException, batch_size: int, lr: float) -> str:
    """One line a user can act on, for an error raised while training."""
    text = first_line(error)
    if is_out_of_memory(type(error).__name__) or is_out_of_memory(text):
        smaller = max(batch_size // 2, 1)
        return (
            f"out of memory with batch size {batch_size}; try a smaller batch size "
            f"(--batch-size {smaller}) or a smaller model"
        )
    if "nan" in text.lower() and "loss" in text.lower():
        return f"{text}; try a lower learning rate (--lr {lr / 10:g})"
    return f"{type(error).__name__}: {text}"


def failure_advice(message: str) -> str:
    """What to try in the app after a failure, judged from its message."""
    text = message.lower()
    if is_out_of_memory(text):
        return "The device ran out of memory: lower the batch size, pick a smaller model, or use bf16/fp16 precision."
    if "cifar-10 not found" in text or "datasetnotfound" in text:
        return "Set the CIFAR-10 folder in the sidebar, or train on the synthetic set."
    if "cuda" in text and ("not available" in text or "no cuda" in text or "driver" in text):
        return "No usable GPU here: choose device 'cpu' (or 'auto')."
    if "compile" in text:
        return "torch.compile failed: switch 'compile' off."
    return "Check the settings in the form; the run's folder keeps everything it wrote so far."
