"""A small hook machinery with TransformerLens names: HookPoint modules, caching, patching, persistent and
backward hooks. The calls follow TransformerLens (`run_with_hooks`, `run_with_cache`, `hooks(...)`, `add_hook`,
`reset_hooks`) so its users find what they know; the model stays ours."""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable

import torch
from torch import nn

HookFn = Callable[..., "torch.Tensor | None"]  # fn(tensor, *, hook) -> replacement or None


class HookPoint(nn.Module):
    """An identity module where hook functions can read or replace the activation passing through (forward
    hooks, `fns`), or read or replace its gradient on the way back (backward hooks, `bwd_fns`)."""

    def __init__(self):
        super().__init__()
        self.name = ""
        self.fns: list[HookFn] = []
        self.bwd_fns: list[HookFn] = []

    @property
    def active(self) -> bool:
        return bool(self.fns)

    def forward(self, x):
        for fn in self.fns:
            out = fn(x, hook=self)
            if out is not None:
                x = out
        if self.bwd_fns and x.requires_grad:
            x.register_hook(self._backward)
        return x

    def _backward(self, grad):
        for fn in list(self.bwd_fns):
            out = fn(grad, hook=self)
            if out is not None:
                grad = out
        return grad


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

    def add_hook(self, name, fn: HookFn, dir: str = "fwd") -> list[tuple[str, HookFn]]:
        """Attach fn to the hooks `name` selects (a name, a list, or a filter function) until `reset_hooks`;
        dir is "fwd" (fn sees the activation) or "bwd" (fn sees its gradient). Returns what was added."""
        if dir not in ("fwd", "bwd"):
            raise ValueError(f"hook direction must be 'fwd' or 'bwd'; got {dir!r}")
        added = []
        for hook_name in _select(self.hook_names, name):
            point = self.hook_dict[hook_name]
            (point.fns if dir == "fwd" else point.bwd_fns).append(fn)
            added.append((hook_name, fn, dir))
        return added

    def _remove(self, added) -> None:
        for hook_name, fn, dir in added:
            fns = self.hook_dict[hook_name].fns if dir == "fwd" else self.hook_dict[hook_name].bwd_fns
            if fn in fns:
                fns.remove(fn)

    def reset_hooks(self) -> None:
        """Remove every forward and backward hook."""
        for point in self.hook_dict.values():
            point.fns.clear()
            point.bwd_fns.clear()

    @contextlib.contextmanager
    def hooks(self, fwd_hooks: Iterable[tuple[object, HookFn]] = (), bwd_hooks: Iterable[tuple[object, HookFn]] = (),
              reset_hooks_end: bool = True):
        """Attach (name-or-filter, fn) pairs for the `with` block; they stay when reset_hooks_end is False (so a
        backward pass after the block still meets the bwd_hooks)."""
        added = []
        try:
            for selector, fn in fwd_hooks:
                added += self.add_hook(selector, fn, "fwd")
            for selector, fn in bwd_hooks:
                added += self.add_hook(selector, fn, "bwd")
            yield self
        finally:
            if reset_hooks_end:
                self._remove(added)

    def run_with_hooks(self, inputs, fwd_hooks=(), bwd_hooks=(), reset_hooks_end: bool = True, **kwargs):
        """Forward pass with hooks attached; a hook that returns a tensor replaces the activation. kwargs go to
        forward (e.g. key_padding). With bwd_hooks, pass reset_hooks_end=False and call reset_hooks() after the
        backward pass."""
        with self.hooks(fwd_hooks, bwd_hooks, reset_hooks_end):
            return self(inputs, **kwargs)

    def run_with_cache(self, inputs, names_filter=None, detach: bool = True, **kwargs):
        """Forward pass that also returns an ActivationCache of the hooks `names_filter` selects."""
        from .cache import ActivationCache

        store: dict[str, torch.Tensor] = {}

        def keep(x, *, hook):
            store[hook.name] = x.detach() if detach else x

        with self.hooks([(name, keep) for name in _select(self.hook_names, names_filter)]):
            out = self(inputs, **kwargs)
        return out, ActivationCache(store, self)
