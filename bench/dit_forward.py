"""One DiT forward on the CPU: ours against diffusers' HunyuanVideoTransformer3DModel, side by side.

Both models get the same random float32 weights (ours converted to diffusers keys) and the same
inputs; runs alternate. The script prints the best and the median time of a forward (the best is the
steadier figure on a machine shared with other work) and the median peak memory a forward adds above
what the process held before it, then the ratios ours / diffusers. Two text
layouts are run: a prompt padded to 256 tokens as the encoders hand it over (40 real), and the same
prompt without padding.

Memory is measured in a child process (Linux VmHWM, reset before every run) whose glibc mmaps every
block above 64 KiB, so the resident size follows the live tensors instead of keeping freed blocks
for reuse; the timing runs in this process with the normal allocator, since fresh mmaps are slow.

    python3 bench/dit_forward.py [--rounds 5] [--hidden 512] [--double 2] [--single 4] [--latent 5 32 32]
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import conftest  # noqa: E402, F401  (imports the pack as hunyuanvideo_pack)
from hunyuanvideo_pack.hunyuan_model.dit import DiTConfig, HunyuanVideoTransformer, tencent_to_diffusers  # noqa: E402

MEMORY_ENV = {"MALLOC_MMAP_THRESHOLD_": "65536"}


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def peak_mib(fn) -> float:
    """Peak resident MiB above the starting resident size during one call."""
    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current resident size
    before = _status_kib("VmRSS")
    fn()
    return (_status_kib("VmHWM") - before) / 1024


def seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def build(args: argparse.Namespace) -> tuple:
    from diffusers import HunyuanVideoTransformer3DModel

    config = DiTConfig(
        hidden_size=args.hidden,
        heads=args.hidden // 128,
        double_blocks=args.double,
        single_blocks=args.single,
        mlp_hidden=4 * args.hidden,
    )
    ours = HunyuanVideoTransformer(config, dtype=torch.float32)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in ours.parameters():
            p.copy_(torch.randn(p.shape, generator=generator) / math.sqrt(p[0].numel() if p.ndim > 1 else 25))
    theirs = HunyuanVideoTransformer3DModel(
        num_attention_heads=config.heads,
        attention_head_dim=config.head_dim,
        num_layers=config.double_blocks,
        num_single_layers=config.single_blocks,
        text_embed_dim=config.text_dim,
        pooled_projection_dim=config.pooled_dim,
    ).eval()
    theirs.load_state_dict(tencent_to_diffusers(ours.state_dict()), strict=True)
    return config, ours, theirs, generator


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--double", type=int, default=2)
    parser.add_argument("--single", type=int, default=4)
    parser.add_argument("--latent", type=int, nargs=3, default=(5, 32, 32), metavar=("T", "H", "W"))
    parser.add_argument("--memory-child", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args()


def run_alternating(args: argparse.Namespace, metric) -> dict[str, dict[str, list[float]]]:
    """layout -> model -> ``metric`` of each round."""
    config, ours, theirs, generator = build(args)
    latents = torch.randn(1, 16, *args.latent, generator=generator)
    timestep = torch.tensor([700.0])
    pooled = torch.randn(1, config.pooled_dim, generator=generator)
    states = torch.randn(1, 256, config.text_dim, generator=generator)
    real = 40
    mask = (torch.arange(256) < real).long()[None]
    guidance = torch.tensor([6.0]).to(torch.bfloat16) * 1000.0
    layouts = {
        "padded 256 (40 real)": (states, mask),
        "unpadded 40": (states[:, :real].contiguous(), mask[:, :real].contiguous()),
    }
    results = {}
    for layout, (text, text_mask) in layouts.items():
        runs = {
            "ours": lambda t=text, m=text_mask: ours(latents, timestep, t, m, pooled, 6.0),
            "diffusers": lambda t=text, m=text_mask: theirs(
                latents, timestep, t, m, pooled, guidance, return_dict=False
            ),
        }
        values: dict[str, list[float]] = {name: [] for name in runs}
        with torch.inference_mode():
            for fn in runs.values():
                fn()  # warm-up
            for _ in range(args.rounds):
                for name, fn in runs.items():
                    values[name].append(metric(fn))
        results[layout] = values
    return results


def main() -> None:
    args = parse_args()
    if args.memory_child:
        peaks = run_alternating(args, peak_mib)
        print(json.dumps({layout: {n: statistics.median(v) for n, v in by.items()} for layout, by in peaks.items()}))
        return
    child = subprocess.run(
        [sys.executable, __file__, *sys.argv[1:], "--memory-child"],
        env={**os.environ, **MEMORY_ENV},
        capture_output=True,
        text=True,
        check=True,
    )
    memory = json.loads(child.stdout.strip().splitlines()[-1])
    times = run_alternating(args, seconds)
    print(
        f"config: hidden {args.hidden}, {args.double}+{args.single} blocks, latent {tuple(args.latent)}, "
        f"float32, {torch.get_num_threads()} threads, {args.rounds} alternating rounds"
    )
    for layout, by_model in times.items():
        best = {name: min(v) for name, v in by_model.items()}
        median = {name: statistics.median(v) for name, v in by_model.items()}
        print(f"\n{layout}:")
        for name in by_model:
            print(
                f"  {name:9s} best {best[name] * 1000:8.1f} ms, median {median[name] * 1000:8.1f} ms, "
                f"peak +{memory[layout][name]:6.1f} MiB"
            )
        print(
            f"  ratio ours/diffusers: time {best['ours'] / best['diffusers']:.3f} (best), "
            f"{median['ours'] / median['diffusers']:.3f} (median); "
            f"peak memory {memory[layout]['ours'] / memory[layout]['diffusers']:.3f}"
        )


if __name__ == "__main__":
    main()
