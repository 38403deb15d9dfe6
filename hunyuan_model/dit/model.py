"""``HunyuanVideoTransformer``: Tencent's HYVideoDiffusionTransformer with its original state-dict keys.

The module tree mirrors Tencent's (``img_in``, ``txt_in``, ``time_in``, ``vector_in``, ``guidance_in``,
``double_blocks.N``, ``single_blocks.N``, ``final_layer``), so the released checkpoint loads with
no renaming (see :func:`.loading.load_transformer`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

from ..attention import check_backend
from .blocks import AttentionSpec, DoubleStreamBlock, SingleStreamBlock
from .config import DiTConfig
from .embeddings import MLPEmbedder, PatchEmbed, TimestepEmbedder, embedded_guidance
from .layers import FinalLayer
from .rope import RopeCache
from .token_refiner import SingleTokenRefiner

Runner = Callable[..., Any]

SUPPORTED_DTYPES = (torch.bfloat16, torch.float32)


def run_module(name: str, module: nn.Module, *args: Any) -> Any:
    """The default runner: call the module."""
    return module(*args)


class HunyuanVideoTransformer(nn.Module):
    """The HunyuanVideo DiT (12.8B parameters at :meth:`DiTConfig.released`).

    ``dtype`` is the weight and compute dtype: bfloat16 (default, as Tencent runs it) or float32.
    ``device`` may be ``"meta"`` to build without memory and materialise later from a state dict.
    ``attention`` picks the kernel (see :mod:`hunyuan_model.attention`); it can be changed later by
    assigning :attr:`attention_backend`.

    **Runner protocol.** Every top-level submodule is called through ``self.runner(name, module, *args)``,
    where ``name`` is its Tencent key prefix, in this order: ``"time_in"``, ``"vector_in"``,
    ``"guidance_in"`` (distilled models), ``"txt_in"``, ``"img_in"``, ``"double_blocks.0"`` ...,
    ``"single_blocks.0"`` ..., ``"final_layer"``. The runner must return ``module(*args)``; around that
    call it may move the module's weights to the compute device, prefetch the next one, time it, and
    so on. The arguments are activations already on the compute device. :meth:`run_order` lists the
    names in call order and ``model.get_submodule(name)`` gives each module. Install a runner with
    :meth:`set_runner` or temporarily with :meth:`using_runner`; the default is :func:`run_module`.

    **Linear contract.** Every Linear is a plain ``nn.Linear`` attribute under Tencent's name, and the
    forward never reads a Linear's weight: a loader may swap any of them for a module with the same
    call signature (FP8, GGUF) that takes and returns the compute dtype.
    """

    def __init__(
        self,
        config: DiTConfig,
        dtype: torch.dtype = torch.bfloat16,
        device: torch.device | str | None = None,
        attention: str = "sdpa",
    ) -> None:
        super().__init__()
        check_dtype(dtype)
        self.config = config
        self.compute_dtype = dtype
        self.attention_backend = attention
        self.runner: Runner = run_module
        self._rope = RopeCache(config.rope_dim_list, config.rope_theta)
        factory = dict(device=device, dtype=dtype)
        c = config
        self.img_in = PatchEmbed(c.patch_size, c.in_channels, c.hidden_size, **factory)
        self.txt_in = SingleTokenRefiner(c.text_dim, c.hidden_size, c.heads, c.refiner_blocks, **factory)
        self.time_in = TimestepEmbedder(c.hidden_size, **factory)
        self.vector_in = MLPEmbedder(c.pooled_dim, c.hidden_size, **factory)
        self.guidance_in = TimestepEmbedder(c.hidden_size, **factory) if c.guidance_embed else None
        self.double_blocks = nn.ModuleList(
            DoubleStreamBlock(c.hidden_size, c.heads, c.mlp_hidden, **factory) for _ in range(c.double_blocks)
        )
        self.single_blocks = nn.ModuleList(
            SingleStreamBlock(c.hidden_size, c.heads, c.mlp_hidden, **factory) for _ in range(c.single_blocks)
        )
        self.final_layer = FinalLayer(c.hidden_size, c.patch_features, **factory)
        self.requires_grad_(False)

    def _apply(self, fn, recurse: bool = True):
        """``.float()``, ``.to(torch.float32)``, ``.bfloat16()``: the compute dtype follows the weights.

        ``img_in`` is never quantized (:func:`~..quant.keeps_base_precision`), so its dtype is the
        base precision whatever the block Linears hold.
        """
        super()._apply(fn, recurse)
        self.compute_dtype = self.img_in.proj.weight.dtype
        return self

    @property
    def attention_backend(self) -> str:
        """The attention kernel name (see :data:`hunyuan_model.attention.ATTENTION_BACKENDS`)."""
        return self._attention_backend

    @attention_backend.setter
    def attention_backend(self, name: str) -> None:
        self._attention_backend = check_backend(name)

    def run_order(self) -> list[str]:
        """The names the runner sees, in the order one forward calls them (for prefetching the next one)."""
        names = ["time_in", "vector_in"] + (["guidance_in"] if self.guidance_in is not None else [])
        names += ["txt_in", "img_in"]
        names += [f"double_blocks.{i}" for i in range(len(self.double_blocks))]
        names += [f"single_blocks.{i}" for i in range(len(self.single_blocks))]
        return names + ["final_layer"]

    def set_runner(self, runner: Runner | None) -> None:
        """Route submodule calls through ``runner`` (None restores the default)."""
        self.runner = runner or run_module

    @contextlib.contextmanager
    def using_runner(self, runner: Runner) -> Iterator[HunyuanVideoTransformer]:
        previous = self.runner
        self.runner = runner
        try:
            yield self
        finally:
            self.runner = previous

    @torch.inference_mode()
    def forward(
        self,
        latents: torch.Tensor,
        timestep: torch.Tensor | float,
        text_states: torch.Tensor,
        text_mask: torch.Tensor | None,
        pooled_text: torch.Tensor,
        guidance: torch.Tensor | float | None = None,
    ) -> torch.Tensor:
        """The flow velocity ``[B, C_out, T, H, W]`` in the compute dtype.

        ``latents`` ``[B, 16, T, H, W]`` are in model space (VAE latents times 0.476986), on the compute
        device, any float dtype. ``timestep`` ``[B]`` (or a scalar) runs 0..1000. ``text_states``
        ``[B, L, 4096]`` are the LLM states with ``text_mask`` ``[B, L]`` (1 = real token; None = all
        real) and ``pooled_text`` ``[B, 768]`` CLIP's pooled vector. ``guidance`` is the embedded guidance
        scale as users write it (6.0); it is turned into ``bf16(g) * 1000`` (6016) inside, as Tencent's
        and diffusers' pipelines do, and is required by guidance-distilled models.

        Padding is never attended to: with one prompt its padded tokens are dropped before the refiner,
        with several the text is cut to the longest prompt and the rest masked.
        """
        b, _, t, h, w = self._check_inputs(latents, text_states, text_mask, pooled_text, guidance)
        device, dtype, run = latents.device, self.compute_dtype, self.runner
        timestep = torch.as_tensor(timestep, dtype=torch.float32, device=device).reshape(-1).expand(b)
        text_states, text_mask = drop_padding(text_states.to(device), text_mask)

        vec = run("time_in", self.time_in, timestep, dtype)
        vec = vec + run("vector_in", self.vector_in, pooled_text.to(device, dtype))
        if self.guidance_in is not None:
            vec = vec + run("guidance_in", self.guidance_in, embedded_guidance(guidance, b, device), dtype)

        txt = run("txt_in", self.txt_in, text_states, timestep, AttentionSpec(self.attention_backend, text_mask), dtype)
        del text_states
        img = run("img_in", self.img_in, latents.to(dtype))
        pt, ph, pw = self.config.patch_size
        grid = (t // pt, h // ph, w // pw)
        rope = self._rope.get(grid, device)
        attn = AttentionSpec(self.attention_backend, _joint_mask(text_mask, img.shape[1]))

        for i, block in enumerate(self.double_blocks):
            img, txt = run(f"double_blocks.{i}", block, img, txt, vec, rope, attn)
        x = torch.cat((img, txt), dim=1)
        n_img = img.shape[1]
        del img, txt
        for i, block in enumerate(self.single_blocks):
            x = run(f"single_blocks.{i}", block, x, vec, rope, attn)
        out = run("final_layer", self.final_layer, x[:, :n_img], vec)
        del x
        return unpatchify(out, grid, self.config.patch_size)

    def _check_inputs(
        self,
        latents: torch.Tensor,
        text_states: torch.Tensor,
        text_mask: torch.Tensor | None,
        pooled: torch.Tensor,
        guidance: torch.Tensor | float | None,
    ) -> tuple[int, ...]:
        c = self.config
        if guidance is None and c.guidance_embed:
            raise ValueError("this model is guidance-distilled: pass guidance (the embedded scale, 6.0 by default).")
        if guidance is not None and not c.guidance_embed:
            raise ValueError(
                "this model has no guidance embedding (config.guidance_embed is False): pass guidance=None."
            )
        if latents.ndim != 5 or latents.shape[1] != c.in_channels:
            raise ValueError(f"latents must be [B, {c.in_channels}, T, H, W], got {tuple(latents.shape)}.")
        b, _, t, h, w = latents.shape
        if any(size % p for size, p in zip((t, h, w), c.patch_size)):
            raise ValueError(f"latent size (T, H, W) = {(t, h, w)} must divide by the patch size {c.patch_size}.")
        if text_states.ndim != 3 or text_states.shape[0] != b or text_states.shape[2] != c.text_dim:
            raise ValueError(f"text_states must be [{b}, L, {c.text_dim}], got {tuple(text_states.shape)}.")
        if text_mask is not None and tuple(text_mask.shape) != tuple(text_states.shape[:2]):
            raise ValueError(f"text_mask must be {tuple(text_states.shape[:2])}, got {tuple(text_mask.shape)}.")
        if tuple(pooled.shape) != (b, c.pooled_dim):
            raise ValueError(f"pooled_text must be [{b}, {c.pooled_dim}], got {tuple(pooled.shape)}.")
        return b, c.in_channels, t, h, w


def check_dtype(dtype: torch.dtype) -> None:
    if dtype == torch.float16:
        raise ValueError(
            "float16 is not supported for the HunyuanVideo DiT: its activations overflow float16's range, which "
            "gives NaN and black frames (a known failure with fp16 base precision). Use bfloat16, or float32 on GPUs "
            "without bfloat16 support (e.g. Turing)."
        )
    if dtype not in SUPPORTED_DTYPES:
        raise ValueError(f"unsupported DiT dtype {dtype}; use torch.bfloat16 or torch.float32.")


def drop_padding(text_states: torch.Tensor, text_mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Remove padding tokens that no query needs: all of them for one prompt, the common tail for several.

    Returns the kept states and a bool mask ``[B, L']``, or None when no padding is left.
    """
    if text_mask is None:
        return text_states, None
    mask = text_mask.to(text_states.device) != 0
    if not mask.any(dim=1).all():
        raise ValueError("a prompt has no real text tokens (its text_mask is all zero); encode at least one token.")
    if mask.shape[0] == 1:
        return text_states[:, mask[0]], None
    keep = mask.any(dim=0)
    text_states, mask = text_states[:, keep], mask[:, keep]
    return text_states, None if mask.all() else mask


def _joint_mask(text_mask: torch.Tensor | None, n_img: int) -> torch.Tensor | None:
    """``[B, n_img + L]`` real-token mask of the joint sequence (video tokens are always real)."""
    if text_mask is None:
        return None
    return torch.cat((text_mask.new_ones(text_mask.shape[0], n_img), text_mask), dim=1)


def unpatchify(x: torch.Tensor, grid: tuple[int, int, int], patch: tuple[int, int, int]) -> torch.Tensor:
    """``b (t h w) (c pt ph pw) -> b c (t pt) (h ph) (w pw)``."""
    t, h, w = grid
    pt, ph, pw = patch
    x = x.reshape(x.shape[0], t, h, w, -1, pt, ph, pw)
    return x.permute(0, 4, 1, 5, 2, 6, 3, 7).reshape(x.shape[0], x.shape[4], t * pt, h * ph, w * pw)
