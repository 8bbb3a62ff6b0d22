"""The Triton attention kernels against the float64 reference: outputs and every input gradient, every variant.

On CPU they run under TRITON_INTERPRET=1 (set in conftest) in fp32; on a CUDA machine the same tests run on the
GPU, plus bf16 with a bf16-sized tolerance.
"""
import pytest
import torch

from lab import kernels
from lab.config import ModelConfig
from lab.model import build_model

pytestmark = pytest.mark.skipif(not kernels.triton_available(), reason="triton is not installed")
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
# 130 tokens: three 64-token tiles with a ragged last one (3 s a case in the interpreter; `make check` leaves it out)
LENGTHS, HEAD_DIMS = (1, 7, 41, pytest.param(130, marks=pytest.mark.slow)), (8, 16, 32)


def _qkv(Z, T, H, dh, seed, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(Z, T, H, dh, generator=g).to(DEVICE, dtype) for _ in range(3)]


def _padding(Z, T, seed):
    """A random key-padding mask [Z, T] with the first key always real (a prompt is never empty)."""
    real = torch.rand(Z, T, generator=torch.Generator().manual_seed(seed)) > 0.3
    real[:, 0] = True
    return real.to(DEVICE)


def _max_rel_err(ours, ref):
    """Largest absolute error over the reference's scale (at least 1: exactly-zero gradients stay comparable)."""
    return ((ours.double() - ref).abs().max() / ref.abs().max().clamp(min=1.0)).item()


def _check_against_reference(kind, mask, T, dh, padded, dtype=torch.float32, tol=1e-4, seed=0):
    Z, H = 3, 2
    q, k, v = _qkv(Z, T, H, dh, seed, dtype)
    key_padding = _padding(Z, T, seed + 1) if padded else None
    ours_in = [t.clone().requires_grad_() for t in (q, k, v)]
    ref_in = [t.double().clone().requires_grad_() for t in (q, k, v)]
    out = kernels.attention(*ours_in, kind=kind, mask=mask, key_padding=key_padding)
    ref = kernels.reference_attention(*ref_in, kind=kind, mask=mask, key_padding=key_padding)
    grad = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed + 2)).to(DEVICE)
    out.backward(grad.to(dtype))
    ref.backward(grad.double())
    assert out.dtype == dtype and out.shape == ref.shape
    errors = {"out": _max_rel_err(out.detach(), ref.detach())}
    errors.update({f"d{n}": _max_rel_err(a.grad, b.grad) for n, a, b in zip("qkv", ours_in, ref_in)})
    assert max(errors.values()) < tol, errors


@pytest.mark.parametrize("kind", kernels.KINDS)
@pytest.mark.parametrize("mask", kernels.MASKS)
@pytest.mark.parametrize("T", LENGTHS)
@pytest.mark.parametrize("dh", HEAD_DIMS)
def test_kernel_matches_float64_reference(kind, mask, T, dh):
    _check_against_reference(kind, mask, T, dh, padded=False, seed=T * 100 + dh)


@pytest.mark.parametrize("kind", kernels.KINDS)
@pytest.mark.parametrize("mask", kernels.MASKS)
@pytest.mark.parametrize("T", LENGTHS)
def test_kernel_with_key_padding_matches_reference(kind, mask, T):
    _check_against_reference(kind, mask, T, 16, padded=True, seed=T)


@pytest.mark.skipif(DEVICE != "cuda", reason="bf16 arithmetic is not emulated by the Triton interpreter")
@pytest.mark.parametrize("kind", kernels.KINDS)
@pytest.mark.parametrize("T", (7, 41, 130))
def test_bf16_kernel_matches_reference_to_bf16_precision(kind, T):
    _check_against_reference(kind, "causal", T, 32, padded=False, dtype=torch.bfloat16, tol=3e-2)


@pytest.mark.parametrize("kind", kernels.KINDS)
@pytest.mark.parametrize("mask", kernels.MASKS)
def test_padding_never_changes_real_positions(kind, mask):
    """Prompts of different lengths padded to 41 tokens: what fills the padding changes nothing real."""
    Z, T, H, dh = 4, 41, 2, 16
    lengths = torch.tensor([41, 30, 17, 5], device=DEVICE)
    real = torch.arange(T, device=DEVICE)[None, :] < lengths[:, None]  # [Z, T]
    outs, grads = [], []
    for fill_seed in (1, 2):
        q, k, v = _qkv(Z, T, H, dh, seed=0)
        noise = _qkv(Z, T, H, dh, seed=fill_seed)
        inputs = [torch.where(real[:, :, None, None], t, n).requires_grad_() for t, n in zip((q, k, v), noise)]
        out = kernels.attention(*inputs, kind=kind, mask=mask, key_padding=real)
        (out * real[:, :, None, None]).sum().backward()  # a loss over real positions only
        outs.append(out.detach()[real])
        grads.append([t.grad[real] for t in inputs])
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=1e-5)
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


@pytest.mark.parametrize("attn,mask", [("softmax", "causal"), ("linear", "context"), ("softmax", "none")])
def test_model_triton_backend_matches_reference_backend(attn, mask):
    """The whole model (outputs and parameter gradients) is the same with the kernel as with the materialised
    scores; with key padding too."""
    cfg = dict(n_layers=2, n_heads=2, d_model=32, d_mlp=64, d_in=5, max_len=32, attn=attn, mask=mask)
    fast = build_model(ModelConfig(**cfg, backend="triton"), seed=3).to(DEVICE)
    slow = build_model(ModelConfig(**cfg, backend="reference"), seed=3).to(DEVICE)
    x = torch.randn(4, 23, 5, generator=torch.Generator().manual_seed(4)).to(DEVICE)
    padding = _padding(4, 23, seed=5)
    for key_padding in (None, padding):
        out_fast, out_slow = fast(x, key_padding), slow(x, key_padding)
        torch.testing.assert_close(out_fast, out_slow, rtol=1e-4, atol=1e-5)
        fast.zero_grad(), slow.zero_grad()
        out_fast.square().sum().backward()
        out_slow.square().sum().backward()
        for (name, a), b in zip(fast.named_parameters(), slow.parameters()):
            torch.testing.assert_close(a.grad, b.grad, rtol=1e-3, atol=1e-5, msg=name)


def test_triton_backend_refuses_plain_cpu_with_one_line(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    q, k, v = (torch.randn(2, 5, 1, 8) for _ in range(3))
    with pytest.raises(RuntimeError, match="needs a CUDA device"):
        kernels.attention(q, k, v)
