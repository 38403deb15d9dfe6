"""The memory model and the auto plan: released sizes, hand-worked cases, and the CPU allocator's peak."""

from __future__ import annotations

import ctypes
import ctypes.util

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from hunyuanvideo_pack.hunyuan_model.dit import DiTConfig, HunyuanVideoTransformer, init_random_weights, layers, rope
from hunyuanvideo_pack.hunyuan_model.offload import memory_plan
from hunyuanvideo_pack.hunyuan_model.offload.memory_plan import (
    GIB,
    ModelSizes,
    SwapChoice,
    Workload,
    activation_bytes,
    estimate,
    materializes_scores,
    plan_block_swap,
)
from hunyuanvideo_pack.hunyuan_model.quant import StoredWeight, WeightStorage, quantizable_linears, swap_linears

# Released model, bf16 (hidden C = 3072, MLP M = 12288, 24 heads of D = 128):
#   double block: per stream Linear weights 3072 x (18432 + 9216 + 3072 + 12288) + 12288 x 3072
#                 = 169,869,312; biases 46,080; q/k norms 256. Two streams: 339,831,296 values x 2 B.
DOUBLE_BF16 = 679_662_592
#   single block: linear1 3072 x 21504, linear2 15360 x 3072, modulation 3072 x 9216 = 141,557,760
#                 weights + 33,792 biases + 256 norm values = 141,591,808 values x 2 B.
SINGLE_BF16 = 283_183_616
#   FP8 (one byte per block Linear weight; biases and norms stay bf16):
DOUBLE_FP8 = 339_738_624 + 2 * (92_160 + 512)  # 339,923,968
SINGLE_FP8 = 141_557_760 + 2 * (33_792 + 256)  # 141,625,856
#   the rest (all bf16): time_in 20,459,520 + vector_in 23,605,248 + guidance_in 20,459,520 + txt_in
#   618,350,592 + img_in 399,360 + final_layer 38,154,368.
OTHER = 721_428_608
TOTAL_BF16 = OTHER + 20 * DOUBLE_BF16 + 40 * SINGLE_BF16  # 25,642,025,088 (23.88 GiB)
TOTAL_FP8 = OTHER + 20 * DOUBLE_FP8 + 40 * SINGLE_FP8  # 13,184,942,208 (12.28 GiB)

FREE_24GB_CARD = 22 * GIB  # a 24 GB card with the desktop, the CUDA context and ComfyUI's reserve taken

# Latents [1, 16, T, H/8, W/8] of the trained sizes.
LATENT_960x544x129 = (1, 16, 33, 68, 120)
LATENT_1280x720x129 = (1, 16, 33, 90, 160)


@pytest.fixture(scope="module")
def released_bf16() -> ModelSizes:
    return ModelSizes.of(HunyuanVideoTransformer(DiTConfig.released(), device="meta"))


@pytest.fixture(scope="module")
def released_fp8() -> ModelSizes:
    model = HunyuanVideoTransformer(DiTConfig.released(), device="meta")
    weights = {}
    for name in quantizable_linears(20, 40):
        shape = tuple(model.get_submodule(name).weight.shape)
        weights[name] = StoredWeight(torch.empty(shape, dtype=torch.float8_e4m3fn, device="meta"), shape)
    swap_linears(model, weights, WeightStorage.AS_STORED, torch.bfloat16)
    return ModelSizes.of(model)


def test_released_sizes_are_the_stored_bytes(released_bf16, released_fp8):
    assert released_bf16.double_blocks == (DOUBLE_BF16,) * 20
    assert released_bf16.single_blocks == (SINGLE_BF16,) * 40
    assert released_fp8.double_blocks == (DOUBLE_FP8,) * 20
    assert released_fp8.single_blocks == (SINGLE_FP8,) * 40
    assert (released_bf16.total, released_fp8.total) == (TOTAL_BF16, TOTAL_FP8)
    assert (
        released_fp8.extras
        == released_bf16.extras
        == {
            "txt_in": 618_350_592,
            "img_in": 399_360,
            "final_layer": 38_154_368,
        }
    )
    # FP8 upcasts one weight per call; the largest is linear1: 21504 x 3072 x 2 B.
    assert (released_bf16.weight_temporary, released_fp8.weight_temporary) == (0, 132_120_576)


def test_activations_of_960x544x129_by_hand(released_fp8):
    # Nv = 33 x 34 x 60 = 67,320 video tokens; N = 67,320 + 256 text = 67,576; e = 2.
    # attention moment: N e (7C + M) = 67,576 x 2 x 33,792                      = 4,567,056,384
    # RoPE moment:      N e (6C + M) + 10 x 8192 x 3072 = 4,151,869,440 + 251,658,240 = 4,403,527,680
    # linear1 moment:   N e (5C + M) + 132,120,576 = 3,736,682,496 + 132,120,576  = 3,868,803,072
    # + RoPE tables Nv x 128 x 4 = 34,467,840; + latents 6 x 16 x 33 x 68 x 120 x 4 = 103,403,520
    assert activation_bytes(released_fp8, Workload(LATENT_960x544x129)) == 4_567_056_384 + 34_467_840 + 103_403_520


def test_960x544x129_in_fp8_fits_a_24gb_card_without_swapping(released_fp8):
    # weights 13,184,942,208 + activations 4,704,927,744 + margin (1 GiB + 470,492,774) = 19,434,104,550
    # (18.10 GiB) <= 22 GiB: nothing to swap. (kohya's fork swaps 20 double blocks here; its blocks keep
    # about twice our activations alive.)
    plan = plan_block_swap(released_fp8, Workload(LATENT_960x544x129), FREE_24GB_CARD)
    assert plan.fits and plan.choice == SwapChoice(0, 0)
    assert plan.estimate.peak == 19_434_104_550
    assert plan.estimate.copied_per_forward == 0


def test_960x544x129_in_bf16_on_a_24gb_card_swaps_15_double_blocks(released_bf16):
    # Room for weights + swap buffers: 22 GiB - 4,704,927,744 - 1,544,234,598 = 17,373,157,786.
    # Swapping d double blocks leaves 25,642,025,088 - d x 679,662,592 plus two 679,662,592-byte buffers:
    #   d = 14: 16,126,748,800 + 1,359,325,184 = 17,486,073,984  > 17,373,157,786
    #   d = 15: 15,447,086,208 + 1,359,325,184 = 16,806,411,392 <= 17,373,157,786
    plan = plan_block_swap(released_bf16, Workload(LATENT_960x544x129), FREE_24GB_CARD)
    assert plan.fits and plan.choice == SwapChoice(15, 0)
    assert plan.estimate.weights + plan.estimate.slots == 16_806_411_392
    assert plan.estimate.copied_per_forward == 15 * DOUBLE_BF16


def test_720p_in_bf16_on_a_24gb_card_swaps_all_double_blocks(released_bf16):
    # N = 33 x 45 x 80 + 256 = 119,056: activations 119,056 x 67,584 + 118,800 x 512 + 6 x 30,412,800
    # = 8,289,583,104; margin 1 GiB + 828,958,310. Room: 23,622,320,128 - 8,289,583,104 - 1,902,700,134
    # = 13,430,036,890. d = 20: 12,048,773,248 + 1,359,325,184 = 13,408,098,432 fits (d = 19 leaves
    # 679,662,592 more).
    plan = plan_block_swap(released_bf16, Workload(LATENT_1280x720x129), FREE_24GB_CARD)
    assert activation_bytes(released_bf16, Workload(LATENT_1280x720x129)) == 8_289_583_104
    assert plan.fits and plan.choice == SwapChoice(20, 0)


def test_the_plan_takes_the_first_count_that_fits(released_bf16):
    workload = Workload(LATENT_960x544x129)
    for free_gib in (12, 16, 20):
        plan = plan_block_swap(released_bf16, workload, free_gib * GIB)
        d, s = plan.choice.double_blocks, plan.choice.single_blocks
        previous = SwapChoice(d - 1, 0) if s == 0 else SwapChoice(d, s - 1)
        assert plan.fits
        assert estimate(released_bf16, previous, workload).peak > free_gib * GIB


def test_one_or_two_swapped_blocks_save_nothing(released_bf16):
    # Each swapped block needs a buffer the size of the largest one while it runs (two buffers: one
    # computing, one being filled), so the first two blocks swapped only move memory around.
    workload = Workload(LATENT_960x544x129)
    peaks = [estimate(released_bf16, SwapChoice(d, 0), workload).peak for d in range(4)]
    assert peaks[0] == peaks[1] == peaks[2] == peaks[3] + DOUBLE_BF16


def test_when_nothing_fits_everything_is_swapped_and_the_plan_says_so(released_bf16):
    plan = plan_block_swap(released_bf16, Workload(LATENT_1280x720x129), 4 * GIB, frozenset({"txt_in"}))
    assert not plan.fits
    assert plan.choice == SwapChoice(20, 40, frozenset({"txt_in"}))
    assert "does NOT fit" in plan.describe()


def test_a_math_attention_fallback_adds_the_score_matrices(released_bf16, monkeypatch):
    cuda = torch.device("cuda")
    assert not materializes_scores("sdpa", cuda) and not materializes_scores("flash_attn", cuda)
    monkeypatch.setattr(torch.backends.cuda, "flash_sdp_enabled", lambda: False)
    monkeypatch.setattr(torch.backends.cuda, "mem_efficient_sdp_enabled", lambda: False)
    assert materializes_scores("sdpa", cuda) and not materializes_scores("sdpa", torch.device("cpu"))
    shape = (1, 16, 5, 8, 8)  # 5 x 4 x 4 = 80 video tokens + 256 text = 336
    extra = activation_bytes(released_bf16, Workload(shape, scores=True)) - activation_bytes(
        released_bf16, Workload(shape)
    )
    assert extra == 2 * 24 * 336 * 336 * 2


class _PeakHeap(TorchDispatchMode):
    """The heap in use after each torch op (glibc's mallinfo2): the peak of live tensors on the CPU."""

    def __init__(self) -> None:
        super().__init__()
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
        libc.mallinfo2.restype = _Mallinfo2
        self._mallinfo, self.peak = libc.mallinfo2, 0

    def used(self) -> int:
        info = self._mallinfo()
        return info.uordblks + info.hblkhd

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        self.peak = max(self.peak, self.used())
        return out


class _Mallinfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks")
    ] + [("keepcost", ctypes.c_size_t)]


def _has_mallinfo2() -> bool:
    name = ctypes.util.find_library("c")
    return name is not None and hasattr(ctypes.CDLL(name), "mallinfo2")


@pytest.mark.skipif(not _has_mallinfo2(), reason="needs glibc's mallinfo2 to read the heap")
@pytest.mark.parametrize("storage", [None, WeightStorage.FP8_E4M3FN_SCALED])
def test_the_model_matches_the_allocators_peak_on_the_cpu(monkeypatch, storage):
    # (FP8 matmuls are not measured: torch._scaled_mm takes about a minute per small matmul on the CPU.)
    # Small chunks, so that the per-token terms dominate as they do at real sizes.
    for module in (layers, rope, memory_plan):
        monkeypatch.setattr(module, "TOKEN_CHUNK", 256)
    config = DiTConfig.tiny()
    model = init_random_weights(HunyuanVideoTransformer(config, dtype=torch.bfloat16))
    if storage is not None:
        names = quantizable_linears(config.double_blocks, config.single_blocks)
        plain = {name: StoredWeight.plain(model.get_submodule(name).weight) for name in names}
        swap_linears(model, plain, storage, torch.bfloat16)
    text = torch.randn(1, 16, config.text_dim)
    pooled = torch.randn(1, config.pooled_dim)
    sizes = ModelSizes.of(model)
    shape = (1, 16, 4, 32, 64)  # 2048 video tokens: fixed costs stay below 1%
    latents = torch.randn(shape)
    with _PeakHeap():  # first runs allocate for good: this grid's RoPE tables, dispatch caches
        model(latents, torch.tensor([500.0]), text, None, pooled, 6.0)
    heap = _PeakHeap()
    before = heap.used()
    with heap:
        model(latents, torch.tensor([500.0]), text, None, pooled, 6.0)
    measured = heap.peak - before
    # A bare forward with its RoPE tables already cached: no tables, no sampler latents.
    cached = 2048 * config.head_dim * 4 + memory_plan.LATENT_COPIES * latents.nbytes
    expected = activation_bytes(sizes, Workload(shape, text_tokens=16)) - cached
    assert 0.98 < measured / expected < 1.02, (measured, expected)  # measured: 1.001 (bf16 and FP8 weights)
