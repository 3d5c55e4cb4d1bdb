"""Dataclasses read back from JSON files: every value is checked against its field's
annotation, so a wrong-typed record is refused in one place instead of failing later."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

# Annotations as written (with `from __future__ import annotations`, "float | None", ...)
# -> the Python types a JSON value may have for them.
_ACCEPTED: dict[str, tuple[type, ...]] = {
    "int": (int,),
    "float": (int, float),
    "str": (str,),
    "bool": (bool,),
    "dict": (dict,),
    "list": (list, tuple),
    "Any": (object,),
}


def checked_value(what: str, name: str, annotation: str, value: Any) -> Any:
    """`value` if it fits `annotation` (floats as float, finite), else ValueError."""
    options = [part.strip() for part in str(annotation).split("|")]
    if value is None and "None" in options:
        return value
    for option in options:
        accepted = _ACCEPTED.get(option.split("[")[0])
        if accepted is None or (isinstance(value, bool) and bool not in accepted):
            continue  # JSON true is not a number
        if isinstance(value, accepted):
            if option == "float":
                if not math.isfinite(float(value)):
                    continue
                return float(value)
            return value
    raise ValueError(f"{what}: {name}={value!r} is not {annotation}")


def checked_fields(cls: type, data: Any, what: str) -> dict[str, Any]:
    """The values of `data` (a dict) for `cls`'s dataclass fields, each checked; keys that
    are not fields are ignored, missing ones left to the defaults."""
    if not isinstance(data, dict):
        raise ValueError(f"{what}: not a JSON object")
    return {
        item.name: checked_value(what, item.name, item.type, data[item.name])
        for item in dataclasses.fields(cls)
        if item.name in data
    }
