import pytest

from lab.config import ConfigError, RunConfig, make_config, preset_names


def test_presets_exist_and_resolve():
    assert {"tiny-linreg", "garg-linreg", "vo-lsa-1layer"} <= set(preset_names())
    for name in preset_names():
        cfg = make_config(name)
        assert (cfg.model.d_in > 0 or cfg.model.input == "tokens") and cfg.model.d_mlp >= 0
    garg = make_config("garg-linreg")
    assert (garg.task.params["d"], garg.model.n_layers, garg.model.d_model, garg.train.steps) == (20, 12, 256, 500000)
    assert garg.curriculum.enabled and garg.curriculum.at(0) == (5, 11) and garg.curriculum.at(4000) == (7, 15)
    assert garg.curriculum.at(10**6) == (20, 41)
    vo = make_config("vo-lsa-1layer")
    assert vo.model.attn == "linear" and vo.model.mask == "context" and vo.model.d_in == 11


def test_overrides_are_type_checked_and_applied():
    cfg = make_config("tiny-linreg", ["train.steps=1_000", "train.lr=3e-4", "model.layernorm=false",
                                      "task.noise_std=0.5", "model.attn=linear"])
    assert cfg.train.steps == 1000 and cfg.train.lr == 3e-4 and cfg.model.layernorm is False
    assert cfg.task.params["noise_std"] == 0.5 and cfg.model.attn == "linear"
    assert make_config("tiny-linreg", {"train.steps": 7}).train.steps == 7


@pytest.mark.parametrize("override, message", [
    ("train.steps=abc", "train.steps must be an integer"),
    ("train.steps=0", "train.steps must be an integer >= 1"),
    ("train.lr=-1", "train.lr must be > 0"),
    ("train.lr=fast", "train.lr must be a number"),
    ("model.attn=cosine", "model.attn must be one of softmax, linear"),
    ("model.layernorm=maybe", "model.layernorm must be true or false"),
    ("model.d_model=33", "model.d_model must be a multiple of model.n_heads"),
    ("train.stepz=3", "unknown key 'train.stepz'; train keys: steps, "),
    ("optim.lr=3", "unknown key 'optim.lr'"),
    ("task.noise_std=-0.1", "task.noise_std must be >= 0"),
    ("task.dims=3", "unknown key 'task.dims'; task keys: name, format, n_points, d, "),
    ("task.n_points=200", "model.max_len must be >= the longest sequence"),
    ("steps", "must look like key=value"),
    ("model.output=classes", "model.output must be scalar or minus_last for task linear_regression"),
])
def test_bad_values_are_refused_with_one_line_naming_the_key(override, message):
    with pytest.raises(ConfigError) as err:
        make_config("tiny-linreg", [override])
    assert message in str(err.value) and "\n" not in str(err.value)


def test_unknown_preset_lists_presets():
    with pytest.raises(ConfigError, match="tiny-linreg"):
        make_config("tiny-linreg-typo")


def test_config_round_trips_through_dict(tmp_path):
    cfg = make_config("garg-linreg", ["task.noise_std=0.1"])
    again = RunConfig.from_dict(cfg.to_dict()).resolved()
    assert again == cfg
    path = tmp_path / "mine.json"
    import json

    path.write_text(json.dumps(cfg.to_dict()))
    assert make_config(str(path)) == cfg


@pytest.mark.parametrize("name", ["tiny-linreg", "graph-search", "vo-lsa-1layer", "boolean-tiny"])
def test_weight_count_is_a_tight_lower_bound_on_the_built_models_parameters(name):
    from lab.model import model_class

    cfg = make_config(name, ["ensemble.size=3"] if name == "tiny-linreg" else [])
    built = sum(p.numel() for p in model_class(cfg.model)(cfg.model, n_models=cfg.ensemble.size).parameters())
    counted = cfg.weight_count(cfg.task.build(), cfg.model.d_in)
    assert counted <= built <= 1.03 * counted, (counted, built)


@pytest.mark.parametrize("key", ["model.max_len", "model.d_mlp", "train.batch_size"])
def test_a_config_larger_than_this_machines_memory_is_refused_in_one_line(key, tmp_path, capsys):
    """A learned position table of 64-wide rows needs 28 bytes per weight (weight, gradient, Adam's moments, the
    copies a checkpoint is written from); rows to fill the machine's memory are refused before anything is allocated,
    as are an MLP or a batch that large."""
    from lab.cli import main
    from lab.config import machine_memory

    size = machine_memory() // (28 * 64) + 1
    refused = f"more than this machine's .* of memory can hold for a training; lower .*{key}"
    with pytest.raises(ConfigError, match=refused) as err:
        make_config("tiny-linreg", [f"{key}={size}"])
    assert "\n" not in str(err.value)
    out = tmp_path / "run"
    assert main(["train", "tiny-linreg", f"{key}={size}", "--out", str(out)]) == 2 and not out.exists()
    assert capsys.readouterr().err.count("\n") == 1
    make_config("tiny-linreg", [f"{key}={size // 1000}"])  # a thousandth of it passes the check
