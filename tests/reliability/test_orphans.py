"""A killed sweep leaves nothing behind: what its embedded cluster starts carries its owner's mark
(lab.processes.marked_as_owned), the reaper kills every marked process once the owner is gone, however late it
started and wherever it was re-parented; a marked worker kills itself when its owner dies; and a run lock held by
an orphan is taken over at once, while a lock whose record lies about its holder is never a reason to kill."""
import json
import os
import socket
import subprocess
import sys
import textwrap
import time

import pytest

from lab import runlock
from lab.processes import OWNER_VAR, owner_alive, owner_token, start_time
from owned import alive, wait_for, wait_gone

PY = sys.executable

# The owner: starts a reaper, then (after its snapshot) a marked process that double-forks into a new session, so
# it is neither below the owner nor in the snapshot, and an unmarked one the same way; prints both pids, waits.
OWNER = textwrap.dedent("""
    import os, subprocess, sys, time
    from lab.processes import Reaper, descendants, marked_as_owned, owner_token
    token = owner_token()
    reaper = Reaper(descendants(os.getpid()), token)
    time.sleep(0.3)
    def orphan():  # a grandchild in a session of its own, re-parented away from us at once
        child = subprocess.run([sys.executable, "-c",
            "import subprocess, sys; p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'],"
            " start_new_session=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL);"
            " print(p.pid)"], capture_output=True, text=True)
        return int(child.stdout)
    with marked_as_owned(token):
        marked = orphan()
    print(marked, orphan(), flush=True)
    time.sleep(120)
""")


def _kill(*pids):
    for pid in pids:
        try:
            os.kill(pid, 9)
        except OSError:
            pass


def test_the_reaper_kills_a_marked_process_started_after_it_and_re_parented_away_and_spares_the_unmarked(tally):
    owner = subprocess.Popen([PY, "-c", OWNER], stdout=subprocess.PIPE, text=True)
    marked, unmarked = map(int, owner.stdout.readline().split())
    try:
        assert alive(marked) and alive(unmarked)
        assert os.getpid() not in (marked, unmarked)
        tally["faults injected"] += 1
        owner.kill()  # kill -9: no handler of the owner runs
        owner.wait()
        assert not wait_gone([marked], timeout=10)
        time.sleep(0.5)
        assert alive(unmarked)  # not ours to kill: no mark
    finally:
        owner.kill()
        owner.wait()
        _kill(marked, unmarked)


WATCHER = "from lab.processes import watch_owner; import time; watch_owner(0.05); print('watching', flush=True); " \
          "time.sleep(120)"


def test_a_marked_worker_kills_itself_once_its_owner_is_gone_and_not_before(tally):
    owner = subprocess.Popen([PY, "-c", "import time; time.sleep(120)"])
    assert wait_for(lambda: start_time(owner.pid) is not None)
    token = owner_token(owner.pid)
    worker = subprocess.Popen([PY, "-c", WATCHER], env={**os.environ, OWNER_VAR: token}, stdout=subprocess.PIPE,
                              text=True)
    try:
        assert worker.stdout.readline() == "watching\n"
        time.sleep(0.5)
        assert worker.poll() is None  # its owner lives: it goes on
        tally["faults injected"] += 1
        owner.kill()
        owner.wait()
        assert worker.wait(timeout=10) == -9  # as if killed with its owner: its run reads as interrupted
    finally:
        owner.kill()
        worker.kill()
        owner.wait()
        worker.wait()


def test_an_owner_token_names_one_process_not_a_pid():
    me = owner_token()
    assert owner_alive(me) and me.startswith(f"{os.getpid()}:")
    pid, _, started = me.partition(":")
    assert not owner_alive(f"{pid}:{int(started) + 1}")  # the same pid, started at another time: a reused pid
    for hostile in ("", ":", "abc:1", "-1:0", "99999999:1", "1"):
        assert not owner_alive(hostile)


# A trainer that holds a run lock, as a Ray worker of a sweep whose driver is `owner` would; it does not watch its
# owner (as a worker in the half second before its watcher looks, or a hung one), so only the lock can tell.
HOLDER = "import sys, time; from lab import runlock\nwith runlock.hold(sys.argv[1]):\n    print('held', flush=True)" \
         "\n    time.sleep(120)"


def test_a_lock_held_by_a_killed_sweeps_orphan_is_taken_over_at_once_and_a_live_sweeps_is_refused(tmp_path, tally):
    owner = subprocess.Popen([PY, "-c", "import time; time.sleep(120)"])
    assert wait_for(lambda: start_time(owner.pid) is not None)
    holder = subprocess.Popen([PY, "-c", HOLDER, str(tmp_path)], env={**os.environ, OWNER_VAR: owner_token(owner.pid)},
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        with pytest.raises(runlock.RunLocked, match=f"process {holder.pid}"):  # its sweep still runs
            with runlock.hold(tmp_path):
                pass
        assert holder.poll() is None
        tally["faults injected"] += 1
        owner.kill()
        owner.wait()
        t0 = time.monotonic()
        with runlock.hold(tmp_path):  # the sweep is gone: its orphan is stopped and the lock is ours
            assert runlock.holder(tmp_path) == {**json.loads((tmp_path / runlock.LOCK).read_text())}
            assert runlock.holder(tmp_path)["pid"] == os.getpid()
        assert time.monotonic() - t0 < 5
        assert holder.wait(timeout=5) == -9
    finally:
        owner.kill()
        holder.kill()
        owner.wait()
        holder.wait()


# A process that holds the lock and writes a record of its own choosing (a lying or hostile record).
LIAR = "import fcntl, os, sys, time\nfd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)\n" \
       "fcntl.flock(fd, fcntl.LOCK_EX)\nos.pwrite(fd, sys.argv[2].encode(), 0)\nprint('held', flush=True)\n" \
       "time.sleep(120)"


@pytest.mark.parametrize("lie", ["names a bystander, wrong start time", "names a bystander, no owner",
                                 "names a bystander on another host", "pid is not a number", "not JSON",
                                 "started is huge"])
def test_a_lock_record_that_lies_never_gets_a_bystander_killed(tmp_path, lie, tally):
    bystander = subprocess.Popen([PY, "-c", "import time; time.sleep(120)"])
    assert wait_for(lambda: start_time(bystander.pid) is not None)
    host, pid, started = socket.gethostname(), bystander.pid, start_time(bystander.pid)
    record = {"names a bystander, wrong start time": {"pid": pid, "host": host, "pid_start": str(int(started) + 7),
                                                     "owner": "1:0"},
              "names a bystander, no owner": {"pid": pid, "host": host, "pid_start": started},
              "names a bystander on another host": {"pid": pid, "host": host + "-elsewhere", "pid_start": started,
                                                    "owner": "1:0"},
              "pid is not a number": {"pid": str(pid), "host": host, "pid_start": started, "owner": "1:0"},
              "not JSON": None,
              "started is huge": {"pid": pid, "host": host, "started": 1e300, "owner": "1:0"}}[lie]
    text = "{{{ not json" if record is None else json.dumps(record)
    liar = subprocess.Popen([PY, "-c", LIAR, str(tmp_path / runlock.LOCK), text], stdout=subprocess.PIPE, text=True)
    try:
        assert liar.stdout.readline() == "held\n"
        tally["faults injected"] += 1
        with pytest.raises(runlock.RunLocked) as refused:
            with runlock.hold(tmp_path):
                pass
        assert "\n" not in str(refused.value)
        time.sleep(0.2)
        assert bystander.poll() is None and liar.poll() is None
    finally:
        for p in (bystander, liar):
            p.kill()
            p.wait()


# A holder whose main thread has exited (it reads as a zombie) while another of its threads still runs, as a killed
# trainer's last threads do for a moment: its files, the lock among them, are open until the last thread ends.
EXITING = textwrap.dedent("""
    import ctypes, os, sys, threading, time
    from lab import runlock
    held = runlock.hold(sys.argv[1])
    held.__enter__()
    def last_thread():
        time.sleep(float(sys.argv[2]))
        os._exit(0)
    threading.Thread(target=last_thread).start()
    print("held", flush=True)
    ctypes.CDLL(None).pthread_exit(None)  # the main thread ends: the process reads as dead, its lock still held
""")


def test_a_lock_held_by_a_process_still_exiting_is_taken_over_once_it_lets_go(tmp_path, tally):
    holder = subprocess.Popen([PY, "-c", EXITING, str(tmp_path), "2"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        assert wait_for(lambda: start_time(holder.pid) is None, timeout=10)  # a zombie to /proc, holding the lock
        assert runlock.holder(tmp_path) is not None
        tally["faults injected"] += 1
        t0 = time.monotonic()
        with runlock.hold(tmp_path):  # before: refused at once, naming a process that reads as dead
            assert runlock.holder(tmp_path)["pid"] == os.getpid()
        assert time.monotonic() - t0 < 10
    finally:
        holder.kill()
        holder.wait()
