"""Block swap on a CUDA GPU: seconds per step and peak memory without swapping, swapping without
prefetch, and swapping with prefetch, side by side on the same model and inputs.

The model has the released widths and random weights (the time of a step does not depend on them),
``--double``/``--single`` blocks (default all 20 + 40), bf16 or FP8 (``--weights``). Between runs it
waits in RAM, as the loader leaves it. For each video size the script prints the median seconds per
step (one forward: the released model is guidance-distilled), the peak allocated and reserved memory,
the memory model's estimate for the same setting (weights + swap buffers + activations, margin not
included), then each swap's overhead over no swapping and prefetch's overhead as a share of the
no-prefetch one. Targets: prefetch overhead under 5% of the step at 720p, and at most half of the
no-prefetch overhead at 512x320.

    python3 bench/block_swap.py [--sizes 1280x720x129 512x320x61] [--weights bf16|fp8] [--steps 3]
                                [--double 20] [--single 40] [--swap-double 20] [--swap-single 40]

Without CUDA it says so and exits.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import import_pack  # noqa: E402

TEXT_TOKENS = 256


def build(args: argparse.Namespace, device: torch.device):
    """The model in RAM, made one module at a time on the GPU (random weights, FP8 conversion) so that
    building needs no more GPU memory than the largest module."""
    from hunyuanvideo_pack.hunyuan_model.dit import DiTConfig, HunyuanVideoTransformer
    from hunyuanvideo_pack.hunyuan_model.quant import StoredWeight, WeightStorage, quantizable_linears, swap_linears

    config = DiTConfig(double_blocks=args.double, single_blocks=args.single)
    model = HunyuanVideoTransformer(config, dtype=torch.bfloat16, device="meta")
    quantized = set(quantizable_linears(args.double, args.single)) if args.weights == "fp8" else set()
    for name in model.run_order():
        module = model.get_submodule(name).to_empty(device=device)
        with torch.no_grad():
            for param in module.parameters():
                param.normal_(0, (param[0].numel() if param.ndim > 1 else 25) ** -0.5)
        linears = {
            key: StoredWeight.plain(model.get_submodule(key).weight) for key in quantized if key.startswith(name + ".")
        }
        swap_linears(model, linears, WeightStorage.FP8_E4M3FN_SCALED, torch.bfloat16)
        model.get_submodule(name).to("cpu")
    return model


def run(handle, shape: tuple[int, ...], steps: int) -> tuple[float, int, int]:
    """Median seconds per forward, peak allocated and reserved bytes, for ``steps`` forwards after a warm-up."""
    device = handle.compute_device
    latents = torch.randn(shape, device=device)
    text = torch.randn(1, TEXT_TOKENS, handle.model.config.text_dim, device=device, dtype=torch.bfloat16)
    pooled = torch.randn(1, handle.model.config.pooled_dim, device=device)
    timestep = torch.tensor([500.0], device=device)
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    times = []
    with handle.running(shape, offload_after=True) as model:
        model(latents, timestep, text, None, pooled, 6.0)
        torch.cuda.synchronize(device)
        for _ in range(steps):
            start = time.perf_counter()
            model(latents, timestep, text, None, pooled, 6.0)
            torch.cuda.synchronize(device)
            times.append(time.perf_counter() - start)
    return statistics.median(times), torch.cuda.max_memory_allocated(device), torch.cuda.max_memory_reserved(device)


def latent_shape(size: str) -> tuple[int, ...]:
    width, height, frames = (int(v) for v in size.split("x"))
    return (1, 16, (frames - 1) // 4 + 1, height // 8, width // 8)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", default=["1280x720x129", "512x320x61"])
    parser.add_argument("--weights", choices=["bf16", "fp8"], default="bf16")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--double", type=int, default=20)
    parser.add_argument("--single", type=int, default=40)
    parser.add_argument("--swap-double", type=int, default=20)
    parser.add_argument("--swap-single", type=int, default=40)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print(
            "bench/block_swap.py: no CUDA device here. Block swap moves weights between RAM and a GPU; nothing to measure."
        )
        return 0
    import_pack()
    from hunyuanvideo_pack.hunyuan_model.handle import TransformerHandle, WholeModel
    from hunyuanvideo_pack.hunyuan_model.offload import BlockSwap, ModelSizes, SwapChoice, Workload, estimate

    device = torch.device("cuda")
    model = build(args, device)
    sizes = ModelSizes.of(model)
    swap = SwapChoice(args.swap_double, args.swap_single)
    print(
        f"{torch.cuda.get_device_name(device)}; {args.weights} DiT {args.double}+{args.single} blocks, "
        f"{sizes.total / 1e9:.2f} GB; swapping {swap.double_blocks} double + {swap.single_blocks} single blocks"
    )
    gb = 1e9
    for size in args.sizes:
        shape = latent_shape(size)
        results = {}
        for label, placement, choice in (
            ("no swap", WholeModel(), SwapChoice()),
            ("swap, no prefetch", BlockSwap(swap.double_blocks, swap.single_blocks, prefetch=False), swap),
            ("swap + prefetch", BlockSwap(swap.double_blocks, swap.single_blocks, prefetch=True), swap),
        ):
            handle = TransformerHandle(model, device, torch.device("cpu"), placement)
            try:
                seconds, allocated, reserved = run(handle, shape, args.steps)
            except torch.cuda.OutOfMemoryError:
                print(f"{size:>14} {label:<18} out of memory")
                continue
            cost = estimate(sizes, choice, Workload(shape))
            expected = cost.weights + cost.slots + cost.activations
            results[label] = seconds
            print(
                f"{size:>14} {label:<18} {seconds:8.3f} s/step  peak {allocated / gb:6.2f} GB allocated, "
                f"{reserved / gb:6.2f} GB reserved; estimate {expected / gb:6.2f} GB (x{allocated / expected:.3f})"
            )
        if len(results) == 3:
            base = results["no swap"]
            plain, prefetched = results["swap, no prefetch"] - base, results["swap + prefetch"] - base
            share = prefetched / plain if plain > 0 else float("nan")
            print(
                f"{size:>14} overhead over no swap: no prefetch {plain / base:+.1%}, prefetch {prefetched / base:+.1%} "
                f"(prefetch / no-prefetch overhead = {share:.2f})"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
