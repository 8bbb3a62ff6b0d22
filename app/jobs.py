"""Long work started from the dashboard (training runs, tour demos) runs as a separate `lab` process, so pages
stay responsive; its output goes to $LAB_RUNS/.dashboard/NAME.log. A job can be stopped (Ctrl-C semantics: the
trainer keeps its last checkpoint and the same command resumes)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from lab.processes import stop_group
from lab.runs import atomic_write_json, runs_root

_PROCESSES: dict[str, subprocess.Popen] = {}  # started by this server process, by job name
OWNER_ENV = "LAB_DASHBOARD_PID"  # set by `lab dashboard` for its server: the jobs it starts are that command's


def jobs_dir() -> Path:
    return runs_root() / ".dashboard"


def start(name: str, args: list[str]) -> None:
    """Run `lab ARGS...` in the background as job `name`."""
    folder = jobs_dir()
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / f"{name}.log"
    cmd = [sys.executable, "-m", "lab.cli", *args]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "LAB_RUNS": str(runs_root())}
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env=env)
    _PROCESSES[name] = proc
    atomic_write_json(folder / f"{name}.json", {"pid": proc.pid, "cmd": cmd, "started": time.time(),
                                                "owner": os.environ.get(OWNER_ENV)})


def _meta(name: str) -> dict | None:
    """Job `name`'s record (pid, cmd, started, owner), or None when there is none or it cannot be read."""
    try:
        return json.loads((jobs_dir() / f"{name}.json").read_text())
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def state(name: str) -> dict | None:
    """{"running", "returncode" (None while running or unknown), "log" (its last lines), "progress" (the last line:
    a progress bar's latest state, with its step, loss and time left), "cmd"} or None."""
    meta = _meta(name)
    if meta is None:
        return None
    proc = _PROCESSES.get(name)
    if proc is not None:
        code = proc.poll()
        running = code is None
    else:  # started by an earlier server process
        code, running = None, _alive(meta["pid"])
    log_path = jobs_dir() / f"{name}.log"
    lines = log_path.read_text(errors="replace").replace("\r", "\n").splitlines() if log_path.is_file() else []
    shown = [l for l in lines if l.strip()]
    return {"running": running, "returncode": code, "log": "\n".join(shown[-12:]),
            "progress": shown[-1] if shown else "", "cmd": " ".join(meta["cmd"][2:])}


def error_line(job: dict) -> str | None:
    """The `lab: error: ...` line of a failed job, if it wrote one."""
    for line in reversed(job["log"].splitlines()):
        if line.startswith("lab: error:"):
            return line[len("lab: error:"):].strip()
    return None


def stop(name: str) -> None:
    """Interrupt the job (SIGINT to its process group): training keeps its last checkpoint."""
    meta = _meta(name)
    if meta is not None:
        try:
            os.killpg(meta["pid"], signal.SIGINT)
        except OSError:
            pass


def stop_owned(owner: int, grace_s: float = 10.0) -> list[str]:
    """Stop every job still running that the dashboard of `lab dashboard` process `owner` started (SIGINT first:
    a training keeps its last checkpoint and resumes with the same command); returns their names."""
    stopped = []
    for name in names():
        meta = _meta(name)
        if meta is not None and str(meta.get("owner")) == str(owner) and _alive(meta["pid"]):
            stop_group(meta["pid"], first=signal.SIGINT, grace_s=grace_s, proc=_PROCESSES.get(name))
            stopped.append(name)
    return stopped


def names() -> list[str]:
    folder = jobs_dir()
    return sorted(p.stem for p in folder.glob("*.json")) if folder.is_dir() else []
