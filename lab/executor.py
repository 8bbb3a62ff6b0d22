"""One executor for every group of trainings (a sweep, the trainings of an experiment): Ray core tasks.

Each trial is an ordinary run folder trained by `lab.train`, which checkpoints and resumes itself. What is asked of
the engine is placement (one trial per core by default, GPUs requested per trial), a retry when a worker dies
(Ray's `max_retries`: the retry finds the folder's checkpoint and resumes from it), and results as they finish
(`ray.wait`). That is Ray core tasks. Ray Tune would add its own trial checkpoints and storage beside the run folder
(two records of one run that can disagree), schedulers (ASHA, PBT) that no lab workflow asks for, and pandas and
pyarrow as dependencies; so the lab uses core tasks.

With no address, `ray.init()` starts an embedded local cluster sized to this machine and stops it afterwards; with
`address` ("auto", "HOST:PORT" or "ray://HOST:PORT") the same trials run on an existing cluster, whose workers must
see the run folders at the same paths (a shared file system) and have the lab installed.
"""
from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
import os
import re
import signal
import socket
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from .config import ConfigError, machine_memory, make_config
from .processes import Reaper, descendants, marked_as_owned, owner_token, watch_owner
from .runlock import holder
from .runs import CONFIG, METRICS, Run, RunFileError, read_metrics

MAX_PACK = 256  # the most trials one ensemble packs (and fewer where memory is short: pack_limit)
MAX_RETRIES = 3  # a trial whose worker process dies (killed, out of memory) is run again this many times


@dataclass
class Trial:
    """One training: a run folder and its resolved config. `group` names the trial without its seed (the name its
    packs take); `label` is what the trial stands for (its swept overrides, its seed), carried into the results."""

    out: Path
    config: dict
    group: str = ""
    label: dict = field(default_factory=dict)

    @property
    def seed(self) -> int:
        return int(self.config["train"]["seed"])


@dataclass
class Job:
    """What one Ray task trains: one trial, or trials that differ only in seed (and lr) packed into one ensemble."""

    out: Path
    config: dict
    trials: list[Trial]

    @property
    def packed(self) -> bool:
        return self.config["ensemble"]["size"] > 1


def trial(out, preset, overrides=None, group: str = "", label: dict | None = None) -> Trial:
    """A Trial from a preset and overrides (checked now: a bad key stops here, with one line)."""
    return Trial(Path(out).absolute(), make_config(preset, overrides).to_dict(), group, dict(label or {}))


def _pack_key(t: Trial, pack_lr: bool) -> str:
    """Trials with one key can train as one ensemble: the same parent folder, group and config but for the seed.
    With `pack_lr` the lr may differ too, and the group (which names the lr) is left out of the key."""
    cfg = copy.deepcopy(t.config)
    cfg["train"].pop("seed"), cfg["train"].pop("threads", None), cfg.pop("preset", None)
    if pack_lr:
        cfg["train"].pop("lr")
    return json.dumps([str(t.out.parent), "" if pack_lr else t.group, cfg], sort_keys=True)


def _seeds_text(seeds: list[int]) -> str:
    if seeds == list(range(seeds[0], seeds[0] + len(seeds))):
        return f"seeds{seeds[0]}-{seeds[-1]}"
    return "seeds" + ".".join(map(str, seeds))


def pack_trials(trials: list[Trial]) -> Job:
    """One ensemble job whose member i is trials[i] (ensemble.seeds and, if they differ, ensemble.lrs)."""
    first = trials[0]
    cfg = copy.deepcopy(first.config)
    seeds, lrs = [t.seed for t in trials], [t.config["train"]["lr"] for t in trials]
    cfg["ensemble"] = {"size": len(trials), "seeds": seeds, "lrs": lrs if len(set(lrs)) > 1 else []}
    name = f"{first.group or first.out.name}_{_seeds_text(seeds)}"
    if len(set(lrs)) > 1:  # packed across settings (--pack-lr): named by what it holds
        name = f"lrs-{hashlib.sha1(json.dumps([lrs, seeds]).encode()).hexdigest()[:10]}_{_seeds_text(seeds)}"
    make_config(cfg)  # ConfigError where this model cannot be stacked
    return Job(first.out.parent / name, cfg, list(trials))


def pack_limit(member: Trial, slots: int) -> int:
    """The most trials one ensemble may pack: at most MAX_PACK, and few enough that `slots` packs training at once
    keep (by the config check's lower bound, lab/config.py) at most half of this machine's memory."""
    member_bytes = make_config(member.config).memory_bytes()
    return max(1, min(MAX_PACK, machine_memory() // 2 // max(1, slots) // max(1, member_bytes)))


def plan_jobs(trials: list[Trial], pack: bool = True, pack_lr: bool = False, slots: int = 1,
              gpu: bool = False) -> list[Job]:
    """Jobs for `trials`: with `pack`, trials differing only in seed (and lr, with `pack_lr`) become ensembles. On a
    GPU a whole group is one ensemble (one batched computation); on CPUs, where an ensemble is about as fast as its
    members one after another, a group is split into as many packs as there are free slots per group, so the cores
    still all work. A config that cannot be an ensemble (an LSTM, say) is left unpacked."""
    if not pack:
        return [Job(t.out, t.config, [t]) for t in trials]
    groups: dict[str, list[Trial]] = {}
    for t in trials:
        groups.setdefault(_pack_key(t, pack_lr), []).append(t)
    per_group = 1 if gpu else max(1, slots // max(1, len(groups)))
    jobs = []
    for members in groups.values():
        if len(members) == 1:
            jobs.append(Job(members[0].out, members[0].config, members))
            continue
        n_packs = max(min(len(members), per_group), math.ceil(len(members) / pack_limit(members[0], slots)))
        size = math.ceil(len(members) / n_packs)
        for i in range(0, len(members), size):
            chunk = members[i:i + size]
            try:
                jobs.append(pack_trials(chunk) if len(chunk) > 1 else Job(chunk[0].out, chunk[0].config, chunk))
            except ConfigError:  # this model cannot be stacked: its trials train one by one
                jobs += [Job(t.out, t.config, [t]) for t in chunk]
    return jobs


def _finished(job: Job) -> bool:
    """Trained to its steps already (a finished run re-runs as a no-op, so it is not handed to Ray at all)."""
    try:
        status = Run(job.out).status
    except (FileNotFoundError, RunFileError):
        return False
    return status.get("status") == "done" and (status.get("step") or 0) >= job.config["train"]["steps"]


def check_jobs(jobs: list[Job]) -> None:
    """Before anything trains: a folder that holds a different run stops the whole group, with one line."""
    from .trainer import check_same_run

    for job in jobs:
        if (job.out / CONFIG).is_file():
            check_same_run(job.out, make_config(job.config))


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return text if type(e).__name__ in ("TrainingDiverged", "ConfigError", "RunFileError") \
        else f"{type(e).__name__}: {text}"


def run_job(job: Job, threads: int = 1, evaluate=None) -> list[dict]:
    """Train one job (in a Ray worker; a finished one is only read, here) and return one record per trial: run_dir,
    status (done, diverged, failed), error (one line), step, wall_s, metrics (evaluate(run), if given)."""
    from .trainer import TrainingDiverged, train

    watch_owner()  # in a worker of an embedded cluster: it dies with the process that started the cluster
    t0 = time.time()
    cfg = copy.deepcopy(job.config)
    cfg["train"]["threads"] = threads
    try:
        run = Run(job.out) if _finished(job) else train(cfg, out=job.out, quiet=True)  # a finished run is read
        runs = [run.member(i) for i in range(run.n_members)] if job.packed else [run]
    except TrainingDiverged as e:
        return [_record(t, job, "diverged", _one_line(e), t0) for t in job.trials]
    except Exception as e:  # noqa: BLE001 - any failure of one trial is reported and the others go on
        return [_record(t, job, "failed", _one_line(e), t0) for t in job.trials]
    records = []
    for t, r in zip(job.trials, runs):
        status = r.status
        rec = _record(t, job, status.get("status", "?"), status.get("message"), t0, r.path, status.get("step"))
        if evaluate is not None and rec["status"] == "done":
            try:
                rec["metrics"] = evaluate(r)
            except Exception as e:  # noqa: BLE001
                rec.update(status="failed", error=f"evaluating: {_one_line(e)}")
        records.append(rec)
    return records


def _record(t: Trial, job: Job, status: str, error, t0: float, run_dir=None, step=None) -> dict:
    member_dir = job.out / "members" / str(job.trials.index(t)) if job.packed else job.out
    return {"trial": str(t.out), "run_dir": str(run_dir or member_dir),
            "label": t.label, "status": status, "error": error, "step": step, "wall_s": time.time() - t0,
            "packed_in": str(job.out) if job.packed else None, "metrics": {}}


@contextmanager
def ray_cluster(address: str | None = None, cpus: int | None = None, gpus: int | None = None, quiet: bool = False):
    """Ray for the body: an existing connection as it is; else the cluster at `address`; else an embedded local
    cluster (cpus default: this machine's cores, listening on loopback only) that is stopped, with its workers,
    when the body ends. Ray's own messages (a worker died, ...) go to stderr, never stdout; none with `quiet`."""
    import ray

    if ray.is_initialized():
        with _ray_messages_to_stderr(quiet):
            yield ray
        return
    handlers = _python_signal_handlers()
    quiet = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.ERROR,
             "configure_logging": True}
    reaper = None
    if address:
        _check_reachable(address)
        ray.init(address=address, **({} if address.startswith("ray://") else quiet))
    else:
        token = owner_token()
        with loopback_only(), marked_as_owned(token):  # every process of the cluster, and its workers, marked
            ray.init(address="local", num_cpus=cpus or os.cpu_count() or 1,  # "local": always a new cluster
                     num_gpus=_local_gpus() if gpus is None else gpus, **quiet)
        reaper = Reaper(descendants(os.getpid()), token)  # the cluster's processes die with us, even by kill -9
    _restore_signal_handlers(handlers)
    try:
        with _ray_messages_to_stderr(quiet):
            yield ray
    finally:
        ray.shutdown()
        if reaper is not None:
            reaper.close()


ANSI = re.compile(r"\x1b\[[0-9;]*m")


@contextmanager
def _ray_messages_to_stderr(quiet: bool):
    """Ray's driver prints the raylet's error messages ("A worker died or was killed ...") on stdout, in colour,
    from a thread of its own: where a command's --json goes. For the body they go to stderr as plain text (the
    executor reports the trial's fate itself), or nowhere with `quiet`."""
    from ray._private import worker

    original = worker.print_to_stdstream

    def route(data, ignore_prefix: bool):
        if data.get("pid") != "raylet":
            return original(data, ignore_prefix)
        if not quiet:
            for line in data.get("lines", []):
                print(f"ray: {ANSI.sub('', str(line)).strip()}", file=sys.stderr)

    worker.print_to_stdstream = route
    try:
        yield
    finally:
        worker.print_to_stdstream = original


@contextmanager
def loopback_only():
    """An embedded cluster listens on 127.0.0.1 only. Ray resolves a node address of 127.0.0.1 to the machine's
    network address (to be reachable by other nodes) except where clusters are off (its macOS/Windows default);
    with them off for the start, GCS, raylet, object manager, runtime-env agent and every worker bind to loopback."""
    from ray._private import ray_constants

    before = ray_constants.ENABLE_RAY_CLUSTER
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = before


def _python_signal_handlers() -> dict:
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}


def _restore_signal_handlers(handlers: dict) -> None:
    """Ray's core worker installs its own SIGTERM handler (it logs and exits 1); put the process's back, so a
    SIGTERM stops the sweep like Ctrl-C (its workers stopped, each trial resumable)."""
    for sig, handler in handlers.items():
        if handler is not None:
            signal.signal(sig, handler)


def _check_reachable(address: str) -> None:
    """A HOST:PORT nobody listens on stops in one line at once (Ray itself retries for a minute or more)."""
    if address == "auto":
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"--address must be auto, HOST:PORT or ray://HOST:PORT; got {address!r}")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as e:
        raise ConnectionError(f"no Ray cluster answers at {address} ({e.strerror or e}); start one with "
                              f"`ray start --head`, or leave out --address for an embedded local cluster") from None


def _local_gpus() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def cluster_slots(ray, threads: int) -> int:
    return max(1, int(ray.cluster_resources().get("CPU", 1) // threads))


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"


def job_progress(job: Job) -> str | None:
    """A training job's progress, read from its folder while its process holds the run lock: "NAME step/steps, loss
    L, T left" (its logged throughput); None when it is not training now (queued, or not logged yet)."""
    if holder(job.out) is None:
        return None
    rows = read_metrics(job.out / METRICS)
    if not rows:
        return f"{job.out.name} starting"
    last, steps = rows[-1], job.config["train"]["steps"]
    losses = last.get("losses") or [last.get("loss")]
    losses = [x for x in losses if isinstance(x, (int, float))]
    loss = f", loss {sum(losses) / len(losses):.3g}" if losses else ""
    rate = last.get("steps_per_s")
    left = f", {_minutes((steps - last['step']) / rate)} left" if rate else ""
    return f"{job.out.name} {last['step']}/{steps}{loss}{left}"


def execute(jobs: list[Job], *, ray=None, threads: int = 1, gpus_per_trial: float = 0, evaluate=None,
            quiet: bool = False, desc: str = "trials", on_record=None) -> list[dict]:
    """Run `jobs` on Ray (already connected: `ray`), finished ones here without Ray; returns every trial's
    record, in the order of the jobs' trials. `on_record(record)` sees each record as it arrives (results.jsonl)."""
    records: dict[int, list[dict]] = {}
    todo = []
    for i, job in enumerate(jobs):
        if _finished(job):
            records[i] = run_job(job, threads, evaluate)
            for r in records[i]:
                on_record and on_record(r)
        else:
            todo.append(i)
    n_trials = sum(len(j.trials) for j in jobs)
    bar = tqdm(total=n_trials, initial=n_trials - sum(len(jobs[i].trials) for i in todo), desc=desc, unit="trial",
               disable=quiet, dynamic_ncols=True, file=sys.stderr)
    failed = sum(r["status"] != "done" for recs in records.values() for r in recs)
    if todo:
        task = ray.remote(run_job).options(num_cpus=threads, num_gpus=gpus_per_trial, max_retries=MAX_RETRIES,
                                           retry_exceptions=False)
        refs = {task.remote(jobs[i], threads, evaluate): i for i in todo}
        slots = cluster_slots(ray, threads)
        for i in todo:
            for t in jobs[i].trials:
                on_record and on_record(_record(t, jobs[i], "pending", None, time.time()))
        try:
            while refs:
                running = [p for p in (job_progress(jobs[i]) for i in refs.values()) if p]
                bar.set_postfix_str(f"running {min(slots, len(refs))}, queued {max(0, len(refs) - slots)}, "
                                    f"failed {failed}" + "".join(f"; {p}" for p in running), refresh=True)
                done, _ = ray.wait(list(refs), num_returns=1, timeout=None if quiet else 5.0)
                if not done:
                    continue  # the bar's line again, with each running trial's step, loss and time left
                i = refs.pop(done[0])
                try:
                    records[i] = ray.get(done[0])
                except Exception as e:  # noqa: BLE001 - the worker died more than MAX_RETRIES times
                    records[i] = [_record(t, jobs[i], "failed", f"worker lost: {_one_line(e)}", time.time())
                                  for t in jobs[i].trials]
                for r in records[i]:
                    failed += r["status"] != "done"
                    if r["status"] != "done" and not quiet:
                        tqdm.write(f"{r['run_dir']}: {r['status']}: {r['error']}", file=sys.stderr)
                    on_record and on_record(r)
                bar.update(len(records[i]))
        except KeyboardInterrupt:
            for ref in refs:
                ray.cancel(ref, force=True)
            raise
        finally:
            bar.set_postfix_str(f"failed {failed}", refresh=True)
            bar.close()
    else:
        bar.close()
    return [r for i in range(len(jobs)) for r in records[i]]


def run_trials(trials: list[Trial], *, address: str | None = None, cpus: int | None = None, threads: int = 1,
               gpus_per_trial: float | None = None, pack: bool = True, pack_lr: bool = False, evaluate=None,
               quiet: bool = False, desc: str = "trials", on_record=None) -> list[dict]:
    """Train `trials` on Ray (see the module docstring) and return one record per trial, in their order (a packed
    trial's run_dir is its member folder, RUN/members/i). Ray is started only if some trial still needs training."""
    if threads < 1:
        raise ValueError(f"threads per trial must be an integer >= 1; got {threads}")
    cores = cpus or os.cpu_count() or 1
    if not address and threads > cores:  # Ray would queue every trial for good: none fits on the cluster
        raise ValueError(f"--threads {threads} is more than the {cores} cores of the embedded cluster: no trial "
                         f"could start; give --threads 1..{cores}")
    if gpus_per_trial is not None and not 0 <= gpus_per_trial <= 64:
        raise ValueError(f"--gpus-per-trial must be a number of GPUs in 0..64 (a fraction shares one); got "
                         f"{gpus_per_trial}")
    gpu = _local_gpus() > 0 and all(t.config["train"]["device"] != "cpu" for t in trials)
    gpus_per_trial = (1 if gpu else 0) if gpus_per_trial is None else gpus_per_trial
    slots = max(1, cores // threads)
    jobs = plan_jobs(trials, pack, pack_lr, slots, gpu=gpus_per_trial > 0) if not address else None
    if jobs is not None:
        check_jobs(jobs)
        if all(_finished(j) for j in jobs):
            records = execute(jobs, threads=threads, evaluate=evaluate, quiet=quiet, desc=desc, on_record=on_record)
            return _in_trial_order(trials, records)
    with ray_cluster(address, cpus, quiet=quiet) as ray:
        if jobs is None:  # a cluster: pack for its size
            if threads > ray.cluster_resources().get("CPU", 0):
                raise ValueError(f"--threads {threads} is more than the cluster at {address} has cores "
                                 f"({ray.cluster_resources().get('CPU', 0):g}): no trial could start")
            jobs = plan_jobs(trials, pack, pack_lr, cluster_slots(ray, threads), gpu=gpus_per_trial > 0)
            check_jobs(jobs)
        records = execute(jobs, ray=ray, threads=threads, gpus_per_trial=gpus_per_trial, evaluate=evaluate,
                          quiet=quiet, desc=desc, on_record=on_record)
    return _in_trial_order(trials, records)


def _in_trial_order(trials: list[Trial], records: list[dict]) -> list[dict]:
    by_trial = {r["trial"]: r for r in records}
    return [by_trial[str(t.out)] for t in trials]
