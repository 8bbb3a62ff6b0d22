"""The engine: model, hooks, configs and presets, training, the run store, sweeps on Ray, and the `lab` command."""
from .config import ConfigError, RunConfig, load_preset, make_config, preset_names
from .model import Transformer, build_model
from .runs import Run, list_runs, load_run, runs_root
from .sweeps import sweep
from .trainer import TrainingDiverged, train

__all__ = ["train", "sweep", "load_run", "list_runs", "runs_root", "Run", "RunConfig", "ConfigError",
           "TrainingDiverged", "Transformer", "build_model", "make_config", "load_preset", "preset_names"]
