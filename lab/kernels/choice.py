"""Which attention path `backend="auto"` takes: the fastest one measured, per device and shape.

On the H100 of the kernels issue, SDPA's best backend beat the Triton softmax kernel (0.4-0.6x in bf16, 0.55-1.4x
in fp32), so auto takes SDPA for softmax attention unless `lab bench attention` measured Triton faster for that
shape on this device (its table, below). Triton where SDPA has no equivalent: linear attention, and the context
mask with key padding (SDPA returns NaN for a query with no key). Off CUDA: SDPA for softmax, the materialised
reference for linear attention.
"""
from __future__ import annotations

import functools
import json
import math
import os
import re
from pathlib import Path


def table_path(device_name: str) -> Path:
    """Where `lab bench attention` keeps its timings for `device_name`: $LAB_CACHE (default ~/.cache/icl-lab)."""
    root = Path(os.environ.get("LAB_CACHE", Path.home() / ".cache" / "icl-lab"))
    return root / f"attention-{re.sub(r'[^A-Za-z0-9._-]+', '_', device_name)}.json"


@functools.lru_cache(maxsize=8)
def measured(device_name: str) -> tuple[dict, ...]:
    """The table's rows ({"T", "dh", "dtype", "triton_s", "sdpa_s"}); none when there is no readable table."""
    try:
        rows = json.loads(table_path(device_name).read_text())["rows"]
        return tuple(r for r in rows if {"T", "dh", "dtype", "triton_s", "sdpa_s"} <= set(r))
    except (OSError, ValueError, KeyError, TypeError):
        return ()


def triton_measured_faster(rows, T: int, dh: int, dtype: str) -> bool:
    """Whether Triton beat SDPA at the measured shape nearest to (T, dh, dtype): same dtype and head size, the
    closest T on a log scale. No such measurement: False (SDPA)."""
    same = [r for r in rows if r["dtype"] == dtype and r["dh"] == dh]
    if not same:
        return False
    nearest = min(same, key=lambda r: abs(math.log(r["T"] / T)))
    return nearest["triton_s"] < nearest["sdpa_s"]


def choose(kind: str, mask: str, padded: bool, T: int, dh: int, dtype: str, cuda: bool, triton: bool,
           rows=()) -> str:
    """The path for backend=auto: "triton", "sdpa" or "reference" (see the module's docstring)."""
    if not (cuda and triton):
        return "sdpa" if kind == "softmax" else "reference"
    if kind != "softmax" or (mask == "context" and padded):
        return "triton"
    return "triton" if triton_measured_faster(rows, T, dh, dtype) else "sdpa"
