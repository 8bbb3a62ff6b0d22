"""A small hook machinery with TransformerLens names: HookPoint modules, caching and patching."""
from __future__ import annotations

import contextlib
from typing import Callable, Iterable

import torch
from torch import nn

HookFn = Callable[..., "torch.Tensor | None"]  # fn(tensor, *, hook) -> replacement or None


class HookPoint(nn.Module):
    """An identity module where hook functions can read or replace the activation passing through."""

    def __init__(self):
        super().__init__()
        self.name = ""
        self.fns: list[HookFn] = []

    @property
    def active(self) -> bool:
        return bool(self.fns)

    def forward(self, x):
        for fn in self.fns:
            out = fn(x, hook=self)
            if out is not None:
                x = out
        return x


def _select(names: list[str], selector) -> list[str]:
    """Hook names matching a name, a list of names, or a predicate; unknown names raise ValueError."""
    if selector is None:
        return names
    if callable(selector):
        return [n for n in names if selector(n)]
    wanted = [selector] if isinstance(selector, str) else list(selector)
    for w in wanted:
        if w not in names:
            shown = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
            raise ValueError(f"unknown hook {w!r}; hooks are: {shown}")
    return wanted


class HookedModule(nn.Module):
    """Mixin for a model whose HookPoints are named by their module path (e.g. blocks.0.attn.hook_pattern)."""

    def setup_hooks(self):
        self.hook_dict: dict[str, HookPoint] = {}
        for name, module in self.named_modules():
            if isinstance(module, HookPoint):
                module.name = name
                self.hook_dict[name] = module

    @property
    def hook_names(self) -> list[str]:
        return list(self.hook_dict)

    @contextlib.contextmanager
    def hooks(self, fwd_hooks: Iterable[tuple[object, HookFn]]):
        """Attach (name-or-filter, fn) pairs for the duration of the `with` block."""
        added = []
        try:
            for selector, fn in fwd_hooks:
                for name in _select(self.hook_names, selector):
                    self.hook_dict[name].fns.append(fn)
                    added.append((name, fn))
            yield self
        finally:
            for name, fn in added:
                self.hook_dict[name].fns.remove(fn)

    def run_with_hooks(self, inputs, fwd_hooks=(), **kwargs):
        """Forward pass with hooks attached; a hook that returns a tensor replaces the activation. kwargs go to
        forward (e.g. key_padding)."""
        with self.hooks(fwd_hooks):
            return self(inputs, **kwargs)

    def run_with_cache(self, inputs, names_filter=None, detach: bool = True, **kwargs):
        """Forward pass that also returns {hook name: activation} for the hooks `names_filter` selects."""
        cache: dict[str, torch.Tensor] = {}

        def store(x, *, hook):
            cache[hook.name] = x.detach() if detach else x

        with self.hooks([(name, store) for name in _select(self.hook_names, names_filter)]):
            out = self(inputs, **kwargs)
        return out, cache
