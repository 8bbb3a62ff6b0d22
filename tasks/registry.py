"""The task registry: `tasks.get(name, **kwargs)` builds a task by name with checked arguments."""
from __future__ import annotations

import dataclasses

_TASKS: dict[str, type] = {}


def register(name: str):
    """Class decorator: make a task dataclass available as `tasks.get(name, ...)`."""

    def deco(cls):
        cls.name = name
        _TASKS[name] = cls
        return cls

    return deco


def names() -> list[str]:
    return sorted(_TASKS)


def task_class(name: str) -> type:
    if name not in _TASKS:
        raise ValueError(f"unknown task {name!r}; choose one of: {', '.join(names())}")
    return _TASKS[name]


def get(name: str, **kwargs):
    """Build the task `name`. Unknown names or arguments raise ValueError naming the choices."""
    cls = task_class(name)
    allowed = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise ValueError(f"task {name!r} has no argument {unknown[0]!r}; allowed: {', '.join(allowed)}")
    return cls(**kwargs)
