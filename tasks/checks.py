"""Small argument checks that raise one clear ValueError line naming the field and what is allowed."""
from __future__ import annotations

import dataclasses
import numbers
import typing

SHOWN_MAX = 80  # an echoed value longer than this is cut: a huge pasted value must not make a huge error line


def shown(value) -> str:
    """`value`'s repr for an error line, cut to SHOWN_MAX characters with how long it was."""
    text = repr(value)
    return text if len(text) <= SHOWN_MAX else f"{text[:SHOWN_MAX - 20]}... ({len(text)} characters)"


def check_choices(obj) -> None:
    """Every `Literal[...]` field of dataclass `obj` holds one of its allowed values."""
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        hint = hints[f.name]
        if typing.get_origin(hint) is typing.Literal:
            allowed = typing.get_args(hint)
            value = getattr(obj, f.name)
            if value not in allowed:
                raise ValueError(f"{f.name} must be one of {', '.join(map(str, allowed))}; got {shown(value)}")


def check(condition: bool, field: str, allowed: str, value) -> None:
    """Raise `ValueError("field must be <allowed>; got value")` unless `condition`."""
    if not condition:
        raise ValueError(f"{field} must be {allowed}; got {shown(value)}")


def whole(value) -> bool:
    """An integer (Python's or numpy's), not a bool and not a float that happens to be whole."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_counts(**counts) -> None:
    """Each count (batch, n_points, ...) is a whole number >= 1: 2.0 or True is refused, not silently used."""
    for name, value in counts.items():
        check(whole(value) and value >= 1, name, "an integer >= 1", value)


def check_seed(seed) -> int:
    """A seed is a whole number in 0..2^63 - 1 (what torch.Generator.manual_seed takes without wrapping around)."""
    check(whole(seed) and 0 <= seed < 2**63, "seed", "an integer in 0..2^63 - 1", seed)
    return int(seed)
