"""Every run-folder file truncated, emptied, filled with garbage or replaced by a malicious pickle: `lab runs`,
`lab eval`, `lab probe` and every dashboard page answer in one line (never a traceback), change nothing on disk
when they refuse, and never run what a pickle holds (its marker file never appears)."""
import hashlib
import io
import os
import pickle
import shutil
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
import torch

import lab
from lab.cli import main

SMALL = ["task.d=3", "task.n_points=5", "model.n_layers=1", "model.d_model=16", "train.batch_size=8",
         "train.steps=20", "train.checkpoint_every=10", "train.log_every=5"]
FILES = ["config.json", "status.json", "metrics.jsonl", "checkpoint.pt", "model.safetensors", "eval/icl_curve.json",
         "eval/match.json"]
KINDS = ["truncated", "emptied", "garbage", "malicious-pickle", "malicious-torch-file"]
MAIN = str(Path(__file__).parents[2] / "app" / "main.py")
PAGES = ["views/runs.py", "views/icl_curve.py", "views/inside.py", "views/algorithm.py", "views/tour.py",
         "views/boolean.py", "views/graph_search.py", "views/attention_svm.py"]


class _Payload:
    """Unpickling this would create the marker file: it must never happen."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def corrupt(path: Path, kind: str, marker: Path) -> None:
    data = path.read_bytes()
    if kind == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif kind == "emptied":
        path.write_bytes(b"")
    elif kind == "garbage":
        path.write_bytes(os.urandom(max(64, len(data))))
    elif kind == "malicious-pickle":
        path.write_bytes(pickle.dumps(_Payload(marker)))
    else:  # a torch zip file whose pickle calls os.system
        buf = io.BytesIO()
        torch.save({"step": 10, "model": _Payload(marker)}, buf)
        path.write_bytes(buf.getvalue())


def snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    run = tmp_path_factory.mktemp("template") / "run"
    lab.train("tiny-linreg", SMALL, out=run, quiet=True)
    with redirect_stdout(io.StringIO()):
        assert main(["eval", str(run), "--n-prompts", "32"]) == 0
        assert main(["probe", str(run), "match", "--n-prompts", "32"]) == 0
    return run


@pytest.fixture
def broken(template, tmp_path, request):
    """(run folder with one file corrupted, the marker path, the file) for request.param = (file, kind)."""
    name, kind = request.param
    root = tmp_path / "runs"
    run = root / "broken"
    shutil.copytree(template, run)
    marker = tmp_path / "marker"
    corrupt(run / name, kind, marker)
    os.environ["LAB_RUNS"] = str(root)  # the autouse fixture restores it
    return run, marker, name


def _cli(args):
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(args)
    return code, out.getvalue(), err.getvalue()


CASES = [(f, k) for f in FILES for k in KINDS if k != "malicious-torch-file" or f == "checkpoint.pt"]


@pytest.mark.parametrize("broken", CASES, ids=[f"{f}-{k}" for f, k in CASES], indirect=True)
def test_cli_answers_in_one_line_and_changes_nothing_it_refuses(broken, tally):
    run, marker, name = broken
    tally["faults injected"] += 1
    before = snapshot(run)
    for args in (["runs"], ["runs", "--json"], ["eval", str(run), "--n-prompts", "32"],
                 ["probe", str(run), "match", "--n-prompts", "32"]):
        code, out, err = _cli(args)
        assert "Traceback" not in out + err and "Warning" not in err, (args, err)
        after = snapshot(run)
        if code != 0:
            assert code == 2 and len(err.strip().splitlines()) == 1 and err.startswith("lab: error:"), (args, err)
            assert str(run / name) in err, f"{args}: the message names the bad file: {err}"
            assert after == before, f"{args} refused but changed the run folder"
        else:  # it could do its work without that file: only its own outputs (eval/, figures/) changed
            assert {k for k in after if after[k] != before.get(k)} <= {k for k in after
                                                                       if k.startswith(("eval/", "figures/"))}
        before = after
    code, out, _ = _cli(["runs"])
    needed = name in ("config.json", "status.json")  # lab runs reads these two
    assert ("skipped: " + str(run / name) in out) == needed, out
    if name in ("config.json", "checkpoint.pt"):  # eval and probe cannot do without these
        assert _cli(["eval", str(run), "--n-prompts", "32"])[0] == 2
    assert not marker.exists(), "a pickle in a run folder was executed"


CONSOLE_CASES = [("checkpoint.pt", "malicious-pickle"), ("checkpoint.pt", "truncated"), ("status.json", "garbage"),
                 ("config.json", "emptied")]


@pytest.mark.parametrize("broken", CONSOLE_CASES, ids=[f"{f}-{k}" for f, k in CONSOLE_CASES], indirect=True)
def test_the_console_command_shows_one_line_and_no_warning(broken, tally):
    """The same through the real console script: what a user's terminal shows (warnings included)."""
    run, marker, name = broken
    tally["faults injected"] += 1
    for args in (["runs"], ["eval", str(run), "--n-prompts", "32"]):
        proc = subprocess.run([sys.executable, "-m", "lab.cli", *args], capture_output=True, text=True, timeout=120)
        assert "Traceback" not in proc.stderr and "Warning" not in proc.stderr, proc.stderr
        if proc.returncode:
            assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not marker.exists()


DASHBOARD_CASES = [(f, k) for f in FILES for k in ("truncated", "garbage")] + \
    [("checkpoint.pt", k) for k in ("emptied", "malicious-pickle", "malicious-torch-file")]


@pytest.mark.parametrize("broken", DASHBOARD_CASES, ids=[f"{f}-{k}" for f, k in DASHBOARD_CASES], indirect=True)
def test_every_dashboard_page_shows_one_line_and_changes_nothing(broken, tally):
    from streamlit.testing.v1 import AppTest

    run, marker, name = broken
    tally["faults injected"] += 1
    before = snapshot(run)
    at = AppTest.from_file(MAIN, default_timeout=120)
    at.run()
    for page in PAGES:
        at.switch_page(page)
        at.run()
        assert not at.exception, (page, [e.value for e in at.exception])
        for box in list(at.error) + list(at.warning):
            assert "\n" not in box.value.strip() and "Traceback" not in box.value, (page, box.value)
        shown = " ".join(str(e.value) for kind in ("error", "warning", "caption", "info") for e in getattr(at, kind))
        if name in ("config.json", "status.json"):
            assert f"Skipped broken: {run / name}" in " ".join(c.value for c in at.sidebar.caption), page
        elif name == "checkpoint.pt" and page in ("views/icl_curve.py", "views/inside.py", "views/algorithm.py"):
            assert f"broken cannot be loaded: {run / name}" in shown, (page, shown)
    assert snapshot(run) == before, "a dashboard page changed the run folder"
    assert not marker.exists(), "a pickle in a run folder was executed"
