"""Bad overrides, fuzzed (hypothesis): random keys, types, NaN/inf/huge/negative numbers, empty strings. Every one
the config check refuses gives exit 2 and one line, never a traceback, never a folder; every one it accepts
leaves a config whose numbers are all finite. Then bad command-line arguments, one by one."""
import dataclasses
import io
import math
import os
import tempfile
import typing
import uuid
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lab.cli import main
from lab.config import SECTIONS, ConfigError, make_config

KNOWN_KEYS = [f"{s}.{f.name}" for s, cls in SECTIONS.items() for f in dataclasses.fields(cls) if f.name != "params"]
TASK_KEYS = ["task.d", "task.noise_std", "task.x_cov", "task.sparsity", "task.w_std", "task.n", "task.fn",
             "task.n_vertices", "task.distribution", "task.lookahead", "ensemble"]
NUMBERS = st.one_of(st.sampled_from(["nan", "NaN", "inf", "-inf", "+inf", "1e999", "-1e999", "1e308", "0", "-0",
                                     "-1", "-1e-9", "1e-320", "9" * 30, "-" + "9" * 30, "0x10", "1_000", "2**40"]),
                    st.floats(allow_nan=True, allow_infinity=True).map(repr),
                    st.integers(min_value=-(10**40), max_value=10**40).map(str))
TEXT = st.one_of(st.just(""), st.just(" "), st.text(max_size=12), st.sampled_from(["true", "None", "[]", "{}", ","]))
KEYS = st.one_of(st.sampled_from(KNOWN_KEYS + TASK_KEYS), st.text(max_size=15),
                 st.builds(lambda a, b: f"{a}.{b}", st.sampled_from(list(SECTIONS) + ["x", ""]), st.text(max_size=8)))
FLOAT_KEYS = [f"{s}.{name}" for s, cls in SECTIONS.items() for name, hint in typing.get_type_hints(cls).items()
              if hint is float] + ["task.noise_std", "task.w_std", "ensemble.lrs"]
NON_FINITE = st.sampled_from(["nan", "inf", "-inf", "1e999", "NaN", "Infinity", "3.5e38", "1e39", "1e-3,nan"])
OVERRIDE = st.one_of(st.builds(lambda k, v: f"{k}={v}", KEYS, st.one_of(NUMBERS, TEXT)), TEXT,
                     st.builds(lambda k, v: f"{k}={v}", st.sampled_from(FLOAT_KEYS), NON_FINITE))
PRESETS = ["tiny-linreg", "boolean-tiny", "graph-search", "vo-lsa-1layer"]
FUZZ = settings(max_examples=int(os.environ.get("LAB_FUZZ_EXAMPLES", 400)), deadline=None,
                derandomize=bool(os.environ.get("CI")), suppress_health_check=[HealthCheck.too_slow])
WORK = Path(tempfile.mkdtemp(prefix="lab-fuzz-"))


def _floats(cfg) -> list[float]:
    """Every float in a config (its sections' fields, task params and lists)."""
    found = []
    for name in SECTIONS:
        for value in dataclasses.asdict(getattr(cfg, name)).values():
            items = value.values() if isinstance(value, dict) else value if isinstance(value, list) else [value]
            found += [v for v in items if isinstance(v, float)]
    return found


@FUZZ
@given(preset=st.sampled_from(PRESETS), overrides=st.lists(OVERRIDE, min_size=1, max_size=3))
def test_fuzzed_overrides_are_refused_in_one_line_or_accepted_finite(preset, overrides):
    from conftest import TALLY

    TALLY["bad inputs tried"] += 1
    try:
        cfg = make_config(preset, overrides)
    except ConfigError:
        cfg = None
    if cfg is not None:  # accepted: then it is a config that can work (not trained here: it may be huge)
        assert all(math.isfinite(x) for x in _floats(cfg)), overrides
        return
    out = WORK / uuid.uuid4().hex
    err = io.StringIO()
    with redirect_stdout(io.StringIO()), redirect_stderr(err):
        try:
            code = main(["train", preset, *overrides, "--out", str(out)])
        except SystemExit as e:  # an override that looks like an option ("-x=1") is argparse's to refuse
            code = e.code
    text = err.getvalue()
    assert code == 2, (overrides, text)
    assert text.startswith("lab: error:") and text.count("\n") == 1 and "Traceback" not in text, (overrides, text)
    assert not out.exists(), f"{overrides}: a refused config wrote {out}"


BAD_ARGS = [["train"], ["train", "tiny-linreg", "--out"], ["nosuch"], [], ["eval"], ["eval", "/no/such/run"],
            ["eval", ".", "--n-prompts", "0"], ["eval", ".", "--n-prompts", "x"], ["probe", ".", "nosuch"],
            ["reproduce", "nosuch"], ["reproduce", "vo-1layer", "--scale", "huge"], ["bench", "nosuch"],
            ["bench", "train", "--sizes", "0"], ["bench", "train", "--steps", "-5"], ["dashboard", "--port", "x"],
            ["dashboard", "--json"], ["train", "tiny-linreg", "=3"], ["train", "tiny-linreg", "train.steps"],
            ["train", "no-such-preset"], ["train", "/no/such/file.toml"], ["runs", "--member", "1"]]


@pytest.mark.parametrize("args", BAD_ARGS, ids=[" ".join(a) or "(none)" for a in BAD_ARGS])
def test_bad_arguments_exit_2_with_one_line(args, tmp_path, tally):
    tally["bad inputs tried"] += 1
    err = io.StringIO()
    with redirect_stdout(io.StringIO()), redirect_stderr(err):
        try:
            code = main(args)
        except SystemExit as e:  # argparse's usage errors
            code = e.code
    text = err.getvalue()
    assert code == 2 and text.startswith("lab: error:") and text.count("\n") == 1 and "Traceback" not in text, text


PLAUSIBLE = st.one_of(NUMBERS, st.sampled_from(
    ["0", "1", "2", "3", "true", "false", "sdpa", "reference", "rotary", "none", "query", "cosine", "linear", "context",
     "relu", "classes", "tokens", "identity", "lstm", "hyena", "disjoint", "paired", "stacked", "skewed", "parity",
     "star", "naive", "-1"]))


@settings(FUZZ, max_examples=int(os.environ.get("LAB_FUZZ_EXAMPLES", 400)) // 2)
@given(preset=st.sampled_from(PRESETS),
       pairs=st.lists(st.tuples(st.sampled_from(KNOWN_KEYS + TASK_KEYS), PLAUSIBLE), min_size=1, max_size=3))
def test_what_the_config_check_accepts_can_train(preset, pairs):
    """A value that passes the check must work: small accepted configs train two steps, ending done (0) or with the
    divergence message (1), never an internal error or a late refusal. Configs that could fill the machine's memory
    are the size check's to refuse (tests/lab/test_config.py), not trained here."""
    from conftest import TALLY

    overrides = ["train.steps=2", "train.batch_size=4", *(f"{k}={v}" for k, v in pairs)]
    try:
        cfg = make_config(preset, overrides)
    except ConfigError:
        TALLY["bad inputs tried"] += 1
        return
    small = cfg.train.steps <= 3 and cfg.train.batch_size <= 64 and cfg.model.d_model <= 256 and \
        cfg.model.n_layers <= 8 and cfg.ensemble.size <= 8 and cfg.task.n_points <= 200 and cfg.model.d_in <= 101 \
        and cfg.model.mlp_width <= 1024 and cfg.model.max_len <= 4096 and cfg.model.n_classes <= 4096
    if not small:
        return
    err = io.StringIO()
    with redirect_stdout(io.StringIO()), redirect_stderr(err):
        code = main(["train", preset, *overrides, "--out", str(WORK / uuid.uuid4().hex), "--quiet"])
    assert code in (0, 1) and "internal error" not in err.getvalue(), (overrides, err.getvalue())
