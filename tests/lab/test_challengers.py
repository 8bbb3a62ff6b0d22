"""LSTM and Hyena challengers: causal, the FFT and Toeplitz convolutions equal the direct sum, the short
convolution equals PyTorch's, and they train on the same trainer and read through the same formats."""
import pytest
import torch

import lab
from lab.challengers import FFT_FROM, causal_conv, causal_fft_conv, causal_short_conv, causal_toeplitz_conv
from lab.config import ConfigError, ModelConfig, make_config
from lab.model import build_model


@pytest.mark.parametrize("T", [17, FFT_FROM + 3])
def test_fft_and_toeplitz_convolutions_equal_the_direct_causal_sum(T):
    g = torch.Generator().manual_seed(T)
    u, h = torch.randn(2, 3, T, generator=g, dtype=torch.float64), torch.randn(3, T, generator=g, dtype=torch.float64)
    direct = torch.zeros_like(u)
    for t in range(T):
        for s in range(t + 1):
            direct[..., t] += h[:, s] * u[..., t - s]
    for conv in (causal_fft_conv, causal_toeplitz_conv, causal_conv):
        torch.testing.assert_close(conv(u, h), direct, rtol=0, atol=1e-10)


def test_short_convolution_equals_pytorchs_trimmed_to_causal():
    g = torch.Generator().manual_seed(3)
    conv = torch.nn.Conv1d(6, 6, kernel_size=3, groups=6, padding=2).double()
    with torch.no_grad():
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=g))
        conv.bias.copy_(torch.randn(6, generator=g))
    x = torch.randn(4, 6, 11, generator=g, dtype=torch.float64)
    torch.testing.assert_close(causal_short_conv(conv, x), conv(x)[..., :11], rtol=0, atol=1e-12)


@pytest.mark.parametrize("arch", ["lstm", "hyena"])
def test_outputs_never_depend_on_later_tokens(arch):
    model = build_model(ModelConfig(arch=arch, n_layers=2, d_model=16, d_in=5, max_len=32), seed=1).double()
    g = torch.Generator().manual_seed(2)
    x = torch.randn(3, 20, 5, generator=g, dtype=torch.float64)
    changed = x.clone()
    changed[:, 12:] = torch.randn(3, 8, 5, generator=g, dtype=torch.float64)
    a, b = model(x), model(changed)
    torch.testing.assert_close(a[:, :12], b[:, :12], rtol=0, atol=1e-12)
    assert (a[:, 12:] - b[:, 12:]).abs().max() > 1e-3


@pytest.mark.parametrize("arch", ["lstm", "hyena"])
def test_challengers_train_on_the_same_trainer_and_keep_hook_names(tmp_path, arch):
    run = lab.train("boolean-tiny", {"model.arch": arch, "train.steps": 30, "train.log_every": 10,
                                     "task.n": 6, "task.n_points": 10, "model.d_model": 32},
                    out=tmp_path / arch, quiet=True)
    losses = [r["loss"] for r in run.metrics]
    assert losses[-1] < losses[0]
    p = run.task.sample(4, 10, seed=0)
    assert lab.load_run(run.path).predict(p).shape == (4, 10)
    _, cache = run.model.run_with_cache(run.format.encode(p), names_filter=["hook_embed", "blocks.0.hook_resid_post"])
    assert cache["blocks.0.hook_resid_post"].shape == (4, 20, 32)


def test_ensembles_are_for_transformers():
    with pytest.raises(ConfigError, match="ensemble.size must be 1 for model.arch = lstm"):
        make_config("boolean-tiny", ["model.arch=lstm", "ensemble=2"])
