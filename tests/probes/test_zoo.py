"""The zoo (lab/zoo/, probes/zoo.py): what is shipped is small, current, opens read-only, and its claims recompute
from the weights as the manifest says."""
import hashlib
import json
import subprocess
import sys

import pytest
import torch
from safetensors import safe_open

import lab
from lab import zoo
from lab.cli import main
from lab.config import make_config
from probes.experiments import names
from probes.zoo import SEEDS, config_differences, stale_configs, verify

SHIPPED = zoo.manifest()["experiments"]
MB = 1e6


def zoo_files():
    return sorted(p for p in zoo.ROOT.rglob("*") if p.is_file() and "__pycache__" not in p.parts
                  and p.name != "__init__.py")


def tree_hash() -> str:
    h = hashlib.sha256()
    for p in zoo_files():
        h.update(p.relative_to(zoo.ROOT).as_posix().encode() + p.read_bytes())
    return h.hexdigest()


def test_every_experiment_is_shipped_with_its_seeds():
    """The zoo is complete: every experiment of `lab reproduce` has its models and result shipped, over the seeds its
    recipe names (a new experiment without a zoo entry fails here, not on a user's empty page)."""
    assert list(SEEDS) != [] and set(SEEDS) == set(names())
    assert {name: e["seeds"] for name, e in SHIPPED.items()} == SEEDS


def test_the_zoo_is_small_and_holds_what_the_manifest_says():
    sizes = {p: p.stat().st_size for p in zoo_files()}
    assert sum(sizes.values()) <= 25 * MB
    assert max(sizes.values(), default=0) <= 5 * MB
    models = zoo.models()
    folders = {p.parent.relative_to(zoo.ROOT).as_posix() for p in sizes if p.name == "config.json"}
    assert folders == set(models)  # no model folder without a manifest entry, no entry without its folder
    for name, m in models.items():
        with safe_open(str(zoo.ROOT / name / "model.safetensors"), framework="pt") as f:
            assert all(f.get_tensor(k).dtype == torch.float32 for k in f.keys())
        assert {"command", "preset", "overrides", "seed", "steps", "threads", "train_s", "device",
                "config_hash"} <= set(m)
        assert m["command"].startswith(f"lab train {m['preset']} ")
    for name, e in SHIPPED.items():
        assert (zoo.ROOT / name / "result.json").is_file()
        assert e["command"].startswith(f"lab reproduce {name} --scale zoo --seeds {e['seeds']}")
        assert len(e["claims"]) == e["seeds"] and all(e["claims"])
        assert {m for m in e["uses"]} <= set(models)
        replicas = [int(f.name.removeprefix("seed-")) for f in (zoo.ROOT / name / "figures").glob("seed-*")]
        assert all(0 < k < e["seeds"] for k in replicas), f"{name}: figures of seed replicas it does not ship"


@pytest.mark.parametrize("name", list(SHIPPED))
def test_shipped_configs_are_what_their_commands_resolve_to_today(name):
    assert stale_configs(name) == []


def test_config_differences_name_changed_keys_and_ignore_new_ones():
    today = make_config("tiny-linreg").to_dict()
    shipped = json.loads(json.dumps(today))
    del shipped["train"]["grad_clip"]  # a key the lab added after the model was shipped: no difference
    assert config_differences(shipped, today) == []
    shipped["model"]["n_layers"] = today["model"]["n_layers"] + 1
    shipped["preset"] = "elsewhere"
    found = config_differences(shipped, today)
    assert len(found) == 2 and found[0].startswith("model.n_layers is") and found[1].startswith("preset is")


def test_a_zoo_model_opens_read_only_and_its_analyses_go_to_the_run_store(tmp_path, capsys):
    name = next(iter(zoo.models()))
    experiment = name.split("/")[0]
    before = tree_hash()
    run = lab.load_run(zoo.PREFIX + name)
    assert run.zoo_name == name and run.path == zoo.ROOT / name
    assert lab.load_run(zoo.ROOT / name).zoo_name == name  # a path into the zoo is a zoo model too
    assert lab.load_run(zoo.PREFIX + experiment).zoo_name.startswith(experiment + "/")
    assert all(torch.isfinite(p).all() for p in run.model.parameters())
    assert main(["eval", zoo.PREFIX + name, "--n-prompts", "64", "--json"]) == 0
    out = lab.runs_root() / "zoo" / name
    assert json.loads((out / "eval" / "icl_curve.json").read_text())["k"]
    assert (out / "figures" / "icl_curve.png").is_file()
    assert main(["export", zoo.PREFIX + name, "--to", "safetensors"]) == 0
    assert lab.load_run(out / "export" / "shared").config == run.config
    assert tree_hash() == before


def test_an_unknown_zoo_model_is_one_line_and_exit_2(capsys):
    assert main(["eval", "zoo:no-such-model"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("lab: error: no zoo model zoo:no-such-model") and "\n" not in err
    for args in (["zoo", "show", "no-such-experiment"], ["zoo", "verify", "no-such-experiment"],
                 ["zoo", "build", "no-such-experiment"], ["reproduce", "vo-1layer", "--zoo", "--seeds", "2"],
                 ["zoo", "verify", "vo-1layer", "--seeds", "0"]):
        capsys.readouterr()
        assert main(args) == 2, args
        err = capsys.readouterr().err.strip()
        assert err.startswith("lab: error: ") and "\n" not in err, err


def test_zoo_list_json_names_every_shipped_experiment(capsys):
    assert main(["zoo", "list", "--json"]) == 0
    assert set(json.loads(capsys.readouterr().out)) == set(SHIPPED)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(SHIPPED))
def test_zoo_verify_recomputes_every_claim_from_the_shipped_weights(name):
    """`lab zoo verify --seeds 1`, one experiment per test (so the workers share the zoo out): its models reload and
    the claims of its first seed replica recompute from the weights as the manifest says (every config is checked);
    nothing in the zoo is written. The first replica only, to keep the suite's share of it short (every replica of
    the SVM studies takes minutes); `lab zoo verify` checks every replica."""
    before = tree_hash()
    assert verify([name], seeds=1) == []
    assert tree_hash() == before


@pytest.mark.slow
def test_lab_zoo_verify_as_a_user_runs_it():
    done = subprocess.run([sys.executable, "-m", "lab.cli", "zoo", "verify", "vo-1layer", "--json", "--seeds", "2"],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"ok": True, "problems": []}


@pytest.mark.slow
def test_verify_names_a_claim_the_weights_no_longer_give(monkeypatch):
    """A manifest whose number for one claim of seed replica 1 differs from what the weights give is caught, naming
    the claim, when replica 1 is recomputed (--seeds 2), and not when only replica 0 is."""
    tampered = json.loads(zoo.MANIFEST.read_text())
    claim = tampered["experiments"]["vo-1layer"]["claims"][1][0]
    claim["ours"] = claim["ours"] * 1.01 + 0.01
    monkeypatch.setattr(zoo, "manifest", lambda: tampered)
    assert verify(["vo-1layer"], seeds=1) == []
    problems = verify(["vo-1layer"], seeds=2)
    assert len(problems) == 1 and problems[0].startswith("vo-1layer seed 1: " + repr(claim["claim"]))
