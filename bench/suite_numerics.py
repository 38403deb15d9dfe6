"""The suite's numerics: the tiny DiT in bf16 and FP8 on the device against fp32 on the CPU.

Relative L2 of the outputs, ``|a - b| / |b|``, against stated bounds. On the CPU the same checks measure
0.009 (bf16 vs fp32), 0.034 (scaled FP8 vs fp32) and 0.034 (``fp8_e4m3fn_fast`` vs scaled FP8), with a
5 x 16 x 16 latent and 24 text tokens; the bounds leave room for the GPU's different kernels. Each
installed attention backend other than sdpa is checked against sdpa (SageAttention quantizes Q and K
to 8 bits; flash-attn differs by rounding only).
"""

from __future__ import annotations

import torch
from common import import_pack

import_pack()
from hunyuanvideo_pack.hunyuan_model import DiTConfig  # noqa: E402
from hunyuanvideo_pack.hunyuan_model.dit import HunyuanVideoTransformer, init_random_weights  # noqa: E402
from hunyuanvideo_pack.hunyuan_model.quant import (  # noqa: E402
    StoredWeight,
    WeightStorage,
    quantizable_linears,
    scaled_mm_unsupported_reason,
    swap_linears,
)

BOUNDS = {
    "bf16_vs_fp32": 0.03,
    "fp8_scaled_vs_fp32": 0.08,
    "fp8_fast_vs_fp8_scaled": 0.10,
    "sageattention_vs_sdpa": 0.05,
    "flash_attn_vs_sdpa": 0.01,
}
GUIDANCE = 6.0
TEXT_TOKENS = 24


def numerics(device: torch.device, latent_shape: tuple[int, ...], backends: list[str]) -> tuple[list[dict], list[dict]]:
    """The checks (name, relative L2, bound, finite, ok) and the ones skipped with their reasons."""
    config = DiTConfig.tiny()
    reference = init_random_weights(HunyuanVideoTransformer(config, dtype=torch.float32), seed=0)
    generator = torch.Generator().manual_seed(1)
    latents = torch.randn(latent_shape, generator=generator)
    text = torch.randn(1, TEXT_TOKENS, config.text_dim, generator=generator)
    pooled = torch.randn(1, config.pooled_dim, generator=generator)
    timestep = torch.tensor([700.0])
    fp32 = reference(latents, timestep, text, None, pooled, GUIDANCE).float()

    def run(storage: WeightStorage | None, attention: str = "sdpa") -> torch.Tensor:
        model = HunyuanVideoTransformer(config, dtype=torch.bfloat16, attention=attention)
        model.load_state_dict(reference.state_dict())
        if storage is not None:
            names = quantizable_linears(config.double_blocks, config.single_blocks)
            plain = {name: StoredWeight.plain(model.get_submodule(name).weight) for name in names}
            swap_linears(model, plain, storage, torch.bfloat16)
        inputs = [t.to(device) for t in (latents, timestep, text, pooled)]
        return model.to(device)(*inputs[:3], None, inputs[3], GUIDANCE).float().cpu()

    bf16, scaled = run(None), run(WeightStorage.FP8_E4M3FN_SCALED)
    checks = [check("bf16_vs_fp32", bf16, fp32), check("fp8_scaled_vs_fp32", scaled, fp32)]
    skipped = []
    reason = scaled_mm_unsupported_reason(device)
    if reason is None:
        checks.append(check("fp8_fast_vs_fp8_scaled", run(WeightStorage.FP8_E4M3FN_FAST), scaled))
    else:
        skipped.append({"task": "numerics fp8_e4m3fn_fast", "reason": reason})
    for attention in backends:
        if attention != "sdpa":
            checks.append(check(f"{attention}_vs_sdpa", run(None, attention), bf16))
    return checks, skipped


def check(name: str, value: torch.Tensor, reference: torch.Tensor) -> dict:
    rel = float((value - reference).norm() / reference.norm())
    bound = BOUNDS[name]
    entry = {"check": name, "rel_l2": round(rel, 5), "bound": bound, "finite": bool(torch.isfinite(value).all())}
    entry["ok"] = entry["finite"] and rel <= bound
    print(f"  {name}: relative L2 {rel:.4f} (bound {bound}) {'ok' if entry['ok'] else 'OUT OF BOUNDS'}", flush=True)
    return entry
