"""Attention dispatch: sdpa against a plain softmax, backend selection and errors, the padding logic of the
flash-attn (varlen) and SageAttention paths with stand-in kernels, and the real kernels where they run."""

from __future__ import annotations

import importlib.util
import logging
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from hunyuanvideo_pack.hunyuan_model import attention as attn


def make_qkv(batch=2, length=20, heads=3, dim=32, dtype=torch.float32, device="cpu"):
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(batch, length, heads, dim, generator=g) * 2 for _ in range(3))
    mask = torch.ones(batch, length, dtype=torch.bool)
    mask[0, 13:] = False  # first sample: 13 real tokens, second: all 20
    return [t.to(device, dtype) for t in (q, k, v)], mask.to(device)


def naive(q, k, v, mask):
    scores = torch.einsum("bqhd,bkhd->bhqk", q.float(), k.float()) / q.shape[-1] ** 0.5
    scores = scores.masked_fill(~mask[:, None, None, :], float("-inf"))
    return torch.einsum("bhqk,bkhd->bqhd", scores.softmax(-1), v.float()).flatten(2)


def test_sdpa_matches_a_plain_softmax_and_ignores_padded_keys():
    (q, k, v), mask = make_qkv()
    out = attn.attention(q, k, v, mask)
    assert out.shape == (2, 20, 96)
    torch.testing.assert_close(out, naive(q, k, v, mask), rtol=1e-5, atol=1e-5)
    # Padding keys carry no weight: changing them changes no output.
    k2, v2 = k.clone(), v.clone()
    k2[0, 13:], v2[0, 13:] = 100.0, -100.0
    torch.testing.assert_close(attn.attention(q, k2, v2, mask), out)
    torch.testing.assert_close(attn.attention(q, k, v), naive(q, k, v, torch.ones_like(mask)), rtol=1e-5, atol=1e-5)


def test_unknown_and_missing_backends_say_what_to_do(monkeypatch):
    with pytest.raises(ValueError, match="choose one of sdpa, flash_attn, sageattention, auto"):
        attn.check_backend("xformers")
    monkeypatch.setattr(attn, "_installed", lambda name: name == "sdpa")
    with pytest.raises(ImportError, match=r"'flash-attn'.*pip install flash-attn.*alternatives: sdpa, auto"):
        attn.check_backend("flash_attn")
    with pytest.raises(ImportError, match="pip install sageattention"):
        attn.check_backend("sageattention")
    assert attn.installed_backends() == ["sdpa"]


def test_auto_and_unrunnable_backends_fall_back_to_sdpa_with_a_log(monkeypatch, caplog):
    (q, k, v), mask = make_qkv()
    reference = attn.attention(q, k, v, mask)
    monkeypatch.setattr(attn, "_logged", set())
    with caplog.at_level(logging.INFO, logger="HunyuanVideo.attention"):
        torch.testing.assert_close(attn.attention(q, k, v, mask, backend="auto"), reference)
    assert "attention 'auto' uses sdpa" in caplog.text
    monkeypatch.setattr(attn, "_installed", lambda name: True)  # installed, but these are CPU tensors
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="HunyuanVideo.attention"):
        torch.testing.assert_close(attn.attention(q, k, v, mask, backend="flash_attn"), reference)
        attn.attention(q, k, v, mask, backend="flash_attn")
    assert caplog.text.count("'flash_attn' falls back to sdpa: flash_attn runs on CUDA only") == 1


def test_kernels_that_cannot_run_on_the_gpu_fall_back_instead_of_raising(monkeypatch, caplog):
    # Stand-in for bf16 tensors on a GPU: only the device and dtype are read before a kernel is chosen.
    q = SimpleNamespace(device=torch.device("cuda", 0), dtype=torch.bfloat16)
    monkeypatch.setattr(attn, "_installed", lambda name: True)
    monkeypatch.setattr(attn, "_logged", set())
    monkeypatch.setattr(torch.version, "hip", None)
    capability = {"value": (7, 5)}  # Turing: flash-attn 2 and SageAttention raise there
    monkeypatch.setattr(attn, "_capability", lambda index: capability["value"])
    with caplog.at_level(logging.INFO, logger="HunyuanVideo.attention"):
        assert attn._runnable_backend("auto", q) == "sdpa"
        assert attn._runnable_backend("flash_attn", q) == "sdpa"
    assert "needs an NVIDIA GPU of compute capability 8.0 or newer (RTX 30xx, A100 and later); this one is 7.5" in (
        caplog.text
    )
    capability["value"] = (8, 6)
    assert attn._runnable_backend("auto", q) == "sageattention"
    assert attn._runnable_backend("flash_attn", q) == "flash_attn"
    monkeypatch.setattr(torch.version, "hip", "6.2")  # ROCm: flash-attn has a build, SageAttention none
    assert attn._runnable_backend("auto", q) == "flash_attn"
    assert attn._runnable_backend("sageattention", q) == "sdpa"
    assert attn._runnable_backend("auto", SimpleNamespace(device=q.device, dtype=torch.float32)) == "sdpa"


def sdpa_kernel(q, k, v):
    """A stand-in for a dense ``[B, L, H, D]`` kernel."""
    return F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)).transpose(1, 2)


def varlen_kernel(q, k, v, cu_q, cu_k, max_q, max_k):
    """A stand-in for flash_attn_varlen_func: packed ``[total, H, D]`` sequences delimited by cu_seqlens."""
    assert cu_q.dtype == torch.int32 and torch.equal(cu_q, cu_k) and max_q == max_k
    assert max_q == int((cu_q[1:] - cu_q[:-1]).max())
    parts = [sdpa_kernel(*(t[None, s:e] for t in (q, k, v)))[0] for s, e in zip(cu_q[:-1], cu_q[1:])]
    return torch.cat(parts)


@pytest.mark.parametrize("backend", ["flash_attn", "sageattention"])
def test_kernel_paths_pack_padding_away(monkeypatch, backend):
    (q, k, v), mask = make_qkv()
    monkeypatch.setattr(attn, "_unsupported_reason", lambda name, q: None)
    monkeypatch.setattr(attn, "_installed", lambda name: True)
    monkeypatch.setattr(attn, "_flash_kernels", lambda: (sdpa_kernel, varlen_kernel))
    monkeypatch.setattr(attn, "_sage_kernel", lambda: lambda q, k, v, tensor_layout, is_causal: sdpa_kernel(q, k, v))
    reference = attn.attention(q, k, v, mask, backend="sdpa")
    out = attn.attention(q, k, v, mask, backend=backend)
    torch.testing.assert_close(out[mask], reference[mask], rtol=1e-5, atol=1e-5)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(attn.attention(q, k, v, backend=backend), attn.attention(q, k, v), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("backend", ["flash_attn", "sageattention"])
def test_real_kernels_match_sdpa(backend):
    if importlib.util.find_spec(backend) is None:
        pytest.skip(f"{backend} is not installed here (pip install {attn._PIP_PACKAGE[backend]})")
    if not torch.cuda.is_available():
        pytest.skip(f"{backend} needs a CUDA GPU and none is available")
    (q, k, v), mask = make_qkv(heads=2, dim=128, dtype=torch.bfloat16, device="cuda")
    reference = attn.attention(q, k, v, mask, backend="sdpa").float()
    out = attn.attention(q, k, v, mask, backend=backend).float()
    tolerance = 0.05 if backend == "sageattention" else 0.01  # SageAttention quantizes Q and K to 8 bits
    assert ((out - reference)[mask].abs().max() / reference[mask].abs().max()).item() < tolerance


def test_the_model_checks_its_backend_and_gives_the_same_velocity_through_each_path(monkeypatch):
    from hunyuanvideo_pack.hunyuan_model.dit import DiTConfig, HunyuanVideoTransformer, init_random_weights

    monkeypatch.setattr(attn, "_installed", lambda name: name == "sdpa")
    with pytest.raises(ImportError, match="pip install flash-attn"):
        HunyuanVideoTransformer(DiTConfig.tiny(), device="meta", attention="flash_attn")
    model = init_random_weights(HunyuanVideoTransformer(DiTConfig.tiny(), dtype=torch.float32))
    g = torch.Generator().manual_seed(0)
    mask = (torch.arange(9) < torch.tensor([[5], [9]])).long()  # two prompt lengths: the masked path
    args = (torch.randn(2, 16, 2, 4, 4, generator=g), torch.tensor([500.0, 20.0]), torch.randn(2, 9, 64, generator=g))
    args += (mask, torch.randn(2, 32, generator=g), 6.0)
    reference = model(*args)
    monkeypatch.setattr(attn, "_installed", lambda name: True)
    monkeypatch.setattr(attn, "_unsupported_reason", lambda name, q: None)
    monkeypatch.setattr(attn, "_flash_kernels", lambda: (sdpa_kernel, varlen_kernel))
    monkeypatch.setattr(attn, "_sage_kernel", lambda: lambda q, k, v, tensor_layout, is_causal: sdpa_kernel(q, k, v))
    for backend in ("flash_attn", "sageattention", "auto"):
        model.attention_backend = backend
        torch.testing.assert_close(model(*args), reference, rtol=1e-5, atol=1e-5)
