"""Random-weight models for ``gpu_suite.py``, made directly on the device (no file), and their weight formats.

The DiT is built on ``meta`` and materialised one top-level module at a time on the device with
``to_empty`` and an in-place ``normal_`` (std ``1/sqrt(fan_in)`` for matrices, 0.2 for vectors), so the
released 12.8B model takes seconds and never more than its own size plus one module. The FP8 model is
converted as it is built, module by module, through the pack's own storage conversion
(``quant.swap_linears`` with ``fp8_e4m3fn_scaled``); :func:`set_fp8_kernel` then switches its Linears
between the upcasting ``CastLinear`` (scaled FP8) and ``ScaledMMLinear`` (``fp8_e4m3fn_fast``) through
``quant.make_linear``, sharing the same FP8 tensors (no copy). Time and memory do not depend on the
weights' values.
"""

from __future__ import annotations

import torch
from common import import_pack

import_pack()
from hunyuanvideo_pack.hunyuan_model import DiTConfig, HunyuanVideoTransformer  # noqa: E402
from hunyuanvideo_pack.hunyuan_model.quant import (  # noqa: E402
    StoredWeight,
    WeightStorage,
    make_linear,
    quantizable_linears,
    swap_linears,
)
from hunyuanvideo_pack.hunyuan_model.vae import CausalVideoVAE, VAEConfig  # noqa: E402

BF16 = "bf16"
FP8_SCALED = WeightStorage.FP8_E4M3FN_SCALED.value
FP8_FAST = WeightStorage.FP8_E4M3FN_FAST.value
WEIGHT_FORMATS = (BF16, FP8_SCALED, FP8_FAST)
VECTOR_STD = 0.2


def random_dit(config: DiTConfig, device: torch.device, fp8: bool, seed: int = 0) -> HunyuanVideoTransformer:
    """A bf16 DiT on ``device`` with random weights; with ``fp8``, its block Linears stored as scaled FP8."""
    torch.manual_seed(seed)
    model = HunyuanVideoTransformer(config, dtype=torch.bfloat16, device="meta")
    quantized = quantizable_linears(config.double_blocks, config.single_blocks) if fp8 else []
    for name in model.run_order():
        model.get_submodule(name).to_empty(device=device)
        fill_random_(model.get_submodule(name))
        inside = [key for key in quantized if key.startswith(name + ".")]
        plain = {key: StoredWeight.plain(model.get_submodule(key).weight) for key in inside}
        swap_linears(model, plain, WeightStorage.FP8_E4M3FN_SCALED, torch.bfloat16)
    return model.eval()


@torch.no_grad()
def fill_random_(module: torch.nn.Module) -> None:
    for tensor in [*module.parameters(), *module.buffers()]:
        if tensor.is_floating_point():
            tensor.normal_(0, tensor[0].numel() ** -0.5 if tensor.ndim > 1 else VECTOR_STD)


def set_fp8_kernel(model: HunyuanVideoTransformer, weight_format: str) -> None:
    """Make an FP8 model's block Linears ``CastLinear`` (:data:`FP8_SCALED`) or ``ScaledMMLinear``
    (:data:`FP8_FAST`), keeping their FP8 weights, scales and biases (the same tensors, not copies)."""
    storage = WeightStorage(weight_format)
    config = model.config
    for name in quantizable_linears(config.double_blocks, config.single_blocks):
        old = model.get_submodule(name)
        stored = StoredWeight(old.weight.data, tuple(old.weight.shape), scale=old.scale)
        new = make_linear(stored, storage, model.compute_dtype)
        new.bias = old.bias
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent), child, new)


def random_vae(config: VAEConfig, device: torch.device, dtype: torch.dtype, seed: int = 0) -> CausalVideoVAE:
    """The causal VAE with random weights (PyTorch's default initialisation, run on ``device``) in ``dtype``."""
    torch.manual_seed(seed)
    with torch.device(device):
        vae = CausalVideoVAE(config)
    return vae.to(dtype).eval()


def model_inputs(config: DiTConfig, latent_shape: tuple[int, ...], text_tokens: int, device: torch.device):
    """Random latents, text states and pooled vector for one forward: ``(latents, timestep, text, pooled)``.

    The text has no mask, so all ``text_tokens`` are attended to (the released pipeline pads to 256).
    """
    generator = torch.Generator(device=device).manual_seed(1)
    latents = torch.randn(latent_shape, generator=generator, device=device)
    text = torch.randn(latent_shape[0], text_tokens, config.text_dim, generator=generator, device=device)
    pooled = torch.randn(latent_shape[0], config.pooled_dim, generator=generator, device=device)
    timestep = torch.full((latent_shape[0],), 700.0, device=device)
    return latents, timestep, text.to(torch.bfloat16), pooled
