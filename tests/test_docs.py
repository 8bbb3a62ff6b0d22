"""The worked examples of docs/ARCHITECTURE.md run as written (in a child process, so the task and experiment they
register stay out of this one): a new task, a new probe, a new experiment."""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

DOC = Path(__file__).parents[1] / "docs" / "ARCHITECTURE.md"

SCRIPT = textwrap.dedent('''
    import re, sys, torch, tasks, lab
    blocks = re.findall(r"```python\\n(.*?)```", open(sys.argv[1]).read(), re.S)
    task_code, probe_code, register_code, experiment_code = blocks[1:5]
    exec(re.sub(r"from \\.(\\w+)", r"from tasks.\\1", task_code), {})
    task = tasks.get("quadratic", d=3)
    p = task.sample(200_000, 1, seed=0, dtype=torch.float64)
    assert abs((p.ys ** 2).mean().item() / task.y_variance() - 1) < 0.05, "E[y^2] formula"
    probe = {}
    exec(probe_code, probe)
    run = lab.train("tiny-linreg", {"train.steps": 10, "model.n_layers": 2}, out=sys.argv[2] + "/run", quiet=True)
    res = probe["resid_norms"](run, 50)
    assert len(res["norms"]) == 3 and probe["format_resid_norms"](res).startswith("layer 0")
    from probes.inspect import PROBES, Probe
    exec(register_code, {"PROBES": PROBES, "Probe": Probe, **probe})
    from probes.inspect import probe_run
    assert probe_run(run, "resid_norm", 50)["norms"] == res["norms"]
    exec(re.sub(r"from \\.\\.(\\w+)", r"from probes.\\1", experiment_code.replace("from .common",
         "from probes.experiments.common")), {})
    from probes.experiments import reproduce
    out = reproduce("lens-depth", "smoke", out=sys.argv[2] + "/exp", quiet=True)
    assert len(out["claims"]) == 1 and out["claims"][0]["paper"] == "late"
    print("examples ok")
''')


def test_architecture_examples_run_as_written(tmp_path):
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(DOC), str(tmp_path)], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "LAB_RUNS": str(tmp_path), "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0 and "examples ok" in proc.stdout, proc.stderr[-3000:]
