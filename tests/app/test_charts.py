"""The dashboard's chart helpers (app/charts.py) on curves whose answer is known by construction."""
import numpy as np
import pytest

from app.charts import clipped_top, curve_chart
from fresh import fresh_seeds


def _curve(rng, n=16, d=5):
    """A model falling from 1 towards 0.05, least squares with its interpolation spike at k = d, averaging far above."""
    k = np.arange(n)
    model = 0.05 + 0.95 * np.exp(-k / 3) * rng.uniform(0.9, 1.0, n)
    ols = np.where(k < d, 1.0, 0.0) * rng.uniform(0.8, 1.2, n)
    ols[d] = rng.uniform(100, 80_000)  # the spike that flattened every line
    averaging = 7.0 / (k + 1) + 0.5
    curves = {name: {"mean": list(v), "lo": list(0.9 * v), "hi": list(1.1 * v)}
              for name, v in (("model", model), ("ols", ols), ("averaging", averaging))}
    return {"k": list(k), "d": d, "curves": curves}, model


def test_a_clipped_axis_shows_the_whole_model_band_and_cuts_the_spike_and_the_far_baseline():
    curve, model = _curve(np.random.default_rng(fresh_seeds(1, __name__)[0]))
    top = clipped_top(curve)
    assert 1.1 * model.max() < top <= 1.2 * 1.1 * model.max() + 1e-9  # the model's band and a margin, no more
    assert top < max(curve["curves"]["ols"]["mean"]) and top < curve["curves"]["averaging"]["mean"][0]
    spec = curve_chart(curve, "clipped").to_dict()
    domains = [layer["encoding"]["y"]["scale"]["domain"] for layer in spec["layer"] if "y" in layer["encoding"]]
    assert domains and all(dom[1] == top for dom in domains)


def test_a_clipped_axis_reaches_a_baseline_that_is_typically_above_the_model():
    curve, model = _curve(np.random.default_rng(fresh_seeds(2, __name__)[1]))
    curve["curves"]["ridge-x"] = {"mean": [3.0 * model.max()] * len(curve["k"]), "lo": [0.0] * len(curve["k"]),
                                  "hi": [9.0] * len(curve["k"])}
    assert clipped_top(curve) == pytest.approx(1.2 * 3.0 * model.max())
