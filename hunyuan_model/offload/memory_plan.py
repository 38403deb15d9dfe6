"""How much device memory a DiT forward needs, and the fewest blocks to swap so that it fits.

THE MEMORY MODEL (:func:`estimate`). Peak device bytes of one forward =
``resident weights + swap slots + activations + margin``, where

- *resident weights*: the stored bytes of every module that is not swapped (FP8 = 1 byte a weight,
  GGUF = its block bytes; :class:`ModelSizes`);
- *swap slots*: ``min(slots, swapped modules) x`` the largest swapped module (the reused device buffers
  swapped modules are copied into);
- *activations* (:func:`activation_bytes`): with ``B`` videos per forward, ``Nv`` video tokens
  (``T/pt * H/ph * W/pw``), ``L`` text tokens, ``N = Nv + L``, hidden size ``C``, MLP width ``M``, ``e``
  bytes per compute value, head size ``D`` and ``K = min(Nv, TOKEN_CHUNK)``, the largest of these
  moments inside a single-stream block (it holds the widest tensors of the model):

  - attention:  ``B N e (7C + M)``: residual ``x`` (C), linear1's output q|k|v|mlp (3C + M), the
    normed q and k (2C) and the attention output (C);
  - RoPE:       ``B N e (6C + M) + 10 B K C``: before the attention output exists, the rotation's
    float32 temporaries (2.5 copies of one chunk of keys);
  - linear1:    ``B N e (5C + M) + W``: x, its modulated norm, linear1's output, and ``W`` the weight
    temporary of a storage Linear (FP8: the weight upcast, ``out*in*e``; GGUF: dequantized in float32
    then cast, ``out*in*(4 + e)``; plain weights: 0);
  - FP8 matmul: ``B N e (4C + M) + 2 B N e (C + M)``, with :class:`~..quant.ScaledMMLinear` only: linear2's
    input (C + M wide) is scaled and clamped through two full-size temporaries;

  plus the RoPE tables (``Nv D`` float32 values), the sampler's float32 latents (``LATENT_COPIES x``
  the latent) and, where attention materialises scores (:func:`materializes_scores`),
  ``2 B heads N^2 e``;
- *margin*: ``MARGIN_BYTES + activations / MARGIN_DIVISOR`` for allocator fragmentation, cuBLAS
  workspaces and kernel temporaries the model above does not list.

The moments were checked against the allocator's peak on the CPU (``tests/test_memory_plan.py``); on
a GPU, ``bench/block_swap.py`` prints estimate and measured peak side by side.

THE PLAN (:func:`plan_block_swap`): try ``(0, 0), (1, 0) ... (all doubles, 0), (all doubles, 1) ...
(all, all)`` (double, single) swap counts and take the first whose peak fits in the free memory.
Double blocks go first: each frees 2.4 times a single block's bytes, so the fewest blocks are swapped.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import nn

from ..dit.config import DiTConfig
from ..dit.layers import TOKEN_CHUNK
from ..handle import module_bytes
from ..quant.linear import CastLinear, GGUFLinear, ScaledMMLinear

GIB = 1 << 30
MARGIN_BYTES = 1 * GIB
MARGIN_DIVISOR = 10
LATENT_COPIES = 6  # x, noise, velocity, the x0 preview, the update's temporary, the model's input cast
TEXT_TOKENS = 256  # the most the text encoder gives; padding is dropped, so real prompts use fewer
EXTRAS = ("txt_in", "img_in", "final_layer")


@dataclass(frozen=True)
class ModelSizes:
    """A DiT's stored bytes per part, and what its Linear modules allocate per call.

    ``fixed`` are the parts that never leave the device (``time_in``, ``vector_in``, ``guidance_in``);
    ``extras`` the offloadable ``txt_in``, ``img_in``, ``final_layer``. ``weight_temporary`` is the
    largest per-call weight temporary of a storage Linear (see the module doc); ``fp8_matmul`` whether
    Linears multiply in FP8 (:class:`~..quant.ScaledMMLinear`).
    """

    config: DiTConfig
    fixed: int
    extras: dict[str, int]
    double_blocks: tuple[int, ...]
    single_blocks: tuple[int, ...]
    weight_temporary: int = 0
    fp8_matmul: bool = False

    @classmethod
    def of(cls, model: nn.Module) -> ModelSizes:
        """Sizes of a loaded (or ``meta``-built) :class:`~..dit.HunyuanVideoTransformer`."""
        size = {name: module_bytes(model.get_submodule(name)) for name in model.run_order()}
        double = tuple(size.pop(f"double_blocks.{i}") for i in range(len(model.double_blocks)))
        single = tuple(size.pop(f"single_blocks.{i}") for i in range(len(model.single_blocks)))
        extras = {name: size.pop(name) for name in EXTRAS}
        temporary, fp8_matmul = _linear_costs(model, model.compute_dtype.itemsize)
        return cls(model.config, sum(size.values()), extras, double, single, temporary, fp8_matmul)

    @property
    def total(self) -> int:
        return self.fixed + sum(self.extras.values()) + sum(self.double_blocks) + sum(self.single_blocks)


@dataclass(frozen=True)
class SwapChoice:
    """What waits on the offload device: the first ``double_blocks`` / ``single_blocks`` blocks and the
    named extras (``txt_in``, ``img_in``, ``final_layer``)."""

    double_blocks: int = 0
    single_blocks: int = 0
    extras: frozenset[str] = frozenset()

    def swapped_bytes(self, sizes: ModelSizes) -> list[int]:
        """Stored bytes of each swapped module."""
        extras = [sizes.extras[name] for name in EXTRAS if name in self.extras]
        return (
            extras + list(sizes.double_blocks[: self.double_blocks]) + list(sizes.single_blocks[: self.single_blocks])
        )


@dataclass(frozen=True)
class Workload:
    """One forward's shape: latents ``[B, 16, T, H, W]`` (B = videos per forward), text tokens, compute
    dtype, and whether attention materialises its scores (:func:`materializes_scores`)."""

    latent_shape: tuple[int, ...]
    text_tokens: int = TEXT_TOKENS
    dtype: torch.dtype = torch.bfloat16
    scores: bool = False


@dataclass(frozen=True)
class MemoryEstimate:
    """The terms of :func:`estimate`, in bytes."""

    weights: int
    slots: int
    activations: int
    margin: int
    copied_per_forward: int

    @property
    def peak(self) -> int:
        return self.weights + self.slots + self.activations + self.margin


@dataclass(frozen=True)
class SwapPlan:
    """A swap choice, its estimate, the free bytes it was planned for, and whether it fits."""

    choice: SwapChoice
    estimate: MemoryEstimate
    free_bytes: int
    fits: bool

    def describe(self) -> str:
        c, e = self.choice, self.estimate
        extras = f" + {', '.join(sorted(c.extras))}" if c.extras else ""
        verdict = "fits in" if self.fits else "does NOT fit in"
        return (
            f"swap {c.double_blocks} double + {c.single_blocks} single blocks{extras}; estimated peak "
            f"{gib(e.peak)} GiB (weights {gib(e.weights)}, swap buffers {gib(e.slots)}, activations "
            f"{gib(e.activations)}, margin {gib(e.margin)}) {verdict} {gib(self.free_bytes)} GiB free; "
            f"copies {gib(e.copied_per_forward)} GiB per forward"
        )


def activation_bytes(sizes: ModelSizes, workload: Workload) -> int:
    """Peak activation bytes of one forward (the module doc's formula)."""
    c = sizes.config
    b, _, t, h, w = workload.latent_shape
    pt, ph, pw = c.patch_size
    video = (t // pt) * (h // ph) * (w // pw)
    n = video + workload.text_tokens
    e = workload.dtype.itemsize
    hidden, mlp = c.hidden_size, c.mlp_hidden
    chunk = min(video, TOKEN_CHUNK)
    moments = [
        b * n * e * (7 * hidden + mlp),
        b * n * e * (6 * hidden + mlp) + 10 * b * chunk * hidden,
        b * n * e * (5 * hidden + mlp) + sizes.weight_temporary,
    ]
    if sizes.fp8_matmul:
        moments.append(b * n * e * (4 * hidden + mlp) + 2 * b * n * e * (hidden + mlp))
    rope_tables = video * c.head_dim * 4
    latents = LATENT_COPIES * b * c.in_channels * t * h * w * 4
    scores = 2 * b * c.heads * n * n * e if workload.scores else 0
    return max(moments) + rope_tables + latents + scores


def estimate(sizes: ModelSizes, choice: SwapChoice, workload: Workload, slots: int = 2) -> MemoryEstimate:
    """Peak device memory of one forward with ``choice`` swapped through ``slots`` reused buffers."""
    swapped = choice.swapped_bytes(sizes)
    activations = activation_bytes(sizes, workload)
    weights, buffers = weight_bytes(sizes, choice, slots)
    return MemoryEstimate(
        weights=weights,
        slots=buffers,
        activations=activations,
        margin=MARGIN_BYTES + activations // MARGIN_DIVISOR,
        copied_per_forward=sum(swapped) if len(swapped) > slots else 0,
    )


def weight_bytes(sizes: ModelSizes, choice: SwapChoice, slots: int = 2) -> tuple[int, int]:
    """Bytes of the weights that stay on the device, and of the swap buffers, with ``choice`` swapped."""
    swapped = choice.swapped_bytes(sizes)
    return sizes.total - sum(swapped), min(slots, len(swapped)) * max(swapped, default=0)


def plan_block_swap(
    sizes: ModelSizes,
    workload: Workload,
    free_bytes: int,
    extras: frozenset[str] = frozenset(),
    slots: int = 2,
) -> SwapPlan:
    """The fewest blocks to swap (doubles first) so that the estimated peak fits in ``free_bytes``.

    ``extras`` are swapped in every candidate. When nothing fits, the plan swaps every block and
    says ``fits=False``.
    """
    doubles, singles = len(sizes.double_blocks), len(sizes.single_blocks)
    candidates = [(d, 0) for d in range(doubles + 1)] + [(doubles, s) for s in range(1, singles + 1)]
    plan = None
    for d, s in candidates:
        choice = SwapChoice(d, s, frozenset(extras))
        cost = estimate(sizes, choice, workload, slots)
        plan = SwapPlan(choice, cost, free_bytes, cost.peak <= free_bytes)
        if plan.fits:
            return plan
    return plan


def plan_for(sizes: ModelSizes, choice: SwapChoice, workload: Workload, free_bytes: int, slots: int = 2) -> SwapPlan:
    """The plan of a fixed ``choice`` (manual mode), for the same log line as :func:`plan_block_swap`."""
    cost = estimate(sizes, choice, workload, slots)
    return SwapPlan(choice, cost, free_bytes, cost.peak <= free_bytes)


def clip_choice(choice: SwapChoice, config: DiTConfig) -> tuple[SwapChoice, list[str]]:
    """``choice`` with block counts clipped to the model's, and a message per clipped count."""
    notes = []
    counts = {
        "double": (choice.double_blocks, config.double_blocks),
        "single": (choice.single_blocks, config.single_blocks),
    }
    for kind, (asked, available) in counts.items():
        if asked > available:
            notes.append(f"{asked} {kind} blocks to swap, but the model has {available}: swapping all {available}")
        if asked < 0:
            raise ValueError(f"{kind} blocks to swap must be 0 or more, got {asked}")
    clipped = replace(
        choice,
        double_blocks=min(choice.double_blocks, config.double_blocks),
        single_blocks=min(choice.single_blocks, config.single_blocks),
    )
    return clipped, notes


def materializes_scores(backend: str, device: torch.device) -> bool:
    """Whether attention holds ``[B, heads, N, N]`` scores: only PyTorch's math kernel does.

    ``flash_attn`` and ``sageattention`` never do; ``sdpa`` (and ``auto``, which falls back to it) uses
    FlashAttention or memory-efficient kernels on CUDA, and falls back to the math kernel only when
    both are disabled (``torch.backends.cuda.enable_flash_sdp(False)`` and the memory-efficient one).
    On the CPU, sdpa runs a flash-style kernel (measured: 4096 tokens attend in 2-37 MB, not the 134 MB
    of their scores).
    """
    if backend not in ("sdpa", "auto") or device.type != "cuda":
        return False
    cuda = torch.backends.cuda
    return not (cuda.flash_sdp_enabled() or cuda.mem_efficient_sdp_enabled())


def device_free_bytes(device: torch.device) -> int:
    """Bytes free on ``device`` for a plan without a host: CUDA's free memory plus what torch caches unused;
    on the CPU, the available RAM."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device))
    import psutil

    return int(psutil.virtual_memory().available)


def gib(n: int) -> str:
    return f"{n / GIB:.2f}"


def _linear_costs(model: nn.Module, itemsize: int) -> tuple[int, bool]:
    temporary, fp8_matmul = 0, False
    for module in model.modules():
        if isinstance(module, GGUFLinear):
            temporary = max(temporary, module.out_features * module.in_features * (4 + itemsize))
        elif isinstance(module, CastLinear):
            temporary = max(temporary, module.out_features * module.in_features * itemsize)
        elif isinstance(module, ScaledMMLinear):
            fp8_matmul = True
    return temporary, fp8_matmul
