"""Small argument checks that raise one clear ValueError line naming the field and what is allowed."""
from __future__ import annotations

import dataclasses
import typing


def check_choices(obj) -> None:
    """Every `Literal[...]` field of dataclass `obj` holds one of its allowed values."""
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        hint = hints[f.name]
        if typing.get_origin(hint) is typing.Literal:
            allowed = typing.get_args(hint)
            value = getattr(obj, f.name)
            if value not in allowed:
                raise ValueError(f"{f.name} must be one of {', '.join(map(str, allowed))}; got {value!r}")


def check(condition: bool, field: str, allowed: str, value) -> None:
    """Raise `ValueError("field must be <allowed>; got value")` unless `condition`."""
    if not condition:
        raise ValueError(f"{field} must be {allowed}; got {value!r}")
