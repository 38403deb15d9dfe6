"""Tiled against untiled VAE decode: peak memory and time, each in a fresh subprocess.

    python3 bench/vae_decode.py     # 33 frames at 512x512, block channels (8, 16, 32, 32): about a minute

Both runs decode the same random latent with the same small-channel VAE (random weights; the cost
does not depend on them). Peak RSS is the child's ``ru_maxrss``, so it includes the Python/torch
baseline (about 230 MB) that both runs share. Targets: memory ratio <= 0.4, time ratio <= 1.35.
One thread by default: on a shared machine two OpenMP threads mostly wait for each other. On the CPU the
tiled run can be the faster one, because the untiled run spends seconds faulting in fresh pages for its
gigabyte-sized activations; on a GPU expect the recomputed overlaps to cost a little instead.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

PACK_DIR = Path(__file__).resolve().parents[1]


def import_pack():
    spec = importlib.util.spec_from_file_location("hunyuanvideo_pack", PACK_DIR / "__init__.py")
    pack = importlib.util.module_from_spec(spec)
    sys.modules["hunyuanvideo_pack"] = pack
    spec.loader.exec_module(pack)
    return pack


def child(args) -> None:
    import torch

    import_pack()
    from hunyuanvideo_pack.hunyuan_model.vae import CausalVideoVAE, Tiling, VAEConfig, decode, estimate_bytes

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = VAEConfig(block_out_channels=args.channels, norm_groups=8)
    vae = CausalVideoVAE(config).eval()
    latent = torch.randn(1, 16, (args.frames - 1) // 4 + 1, args.size // 8, args.size // 8)
    tiling = Tiling(args.tile, args.overlap, args.temporal, args.temporal_overlap) if args.child == "tiled" else None
    start = time.perf_counter()
    frames = decode(vae, latent, tiling)
    seconds = time.perf_counter() - start
    usage = resource.getrusage(resource.RUSAGE_SELF)
    peak = usage.ru_maxrss * 1024  # Linux reports KiB
    estimate = estimate_bytes(config, tuple(latent.shape), tiling or Tiling.off(), torch.float32)
    print(
        json.dumps(
            {
                "seconds": seconds,
                "peak": peak,
                "estimate": estimate,
                "shape": list(frames.shape),
                "user": usage.ru_utime,
                "sys": usage.ru_stime,
            }
        )
    )


def run(mode: str, argv: list[str]) -> dict:
    result = subprocess.run(
        [sys.executable, __file__, "--child", mode, *argv], capture_output=True, text=True, check=True
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=33)
    parser.add_argument("--size", type=int, default=512, help="width and height in pixels")
    parser.add_argument("--channels", type=lambda s: tuple(map(int, s.split(","))), default=(8, 16, 32, 32))
    parser.add_argument("--tile", type=int, default=136)
    parser.add_argument("--overlap", type=int, default=8)
    parser.add_argument("--temporal", type=int, default=24)
    parser.add_argument("--temporal-overlap", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--child", choices=("tiled", "untiled"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    untiled, tiled = run("untiled", sys.argv[1:]), run("tiled", sys.argv[1:])
    print(
        f"decode of {args.frames} frames at {args.size}x{args.size}, block channels {args.channels}, float32, "
        f"{args.threads} thread(s); tiles {args.tile} px (overlap {args.overlap}), {args.temporal} frames "
        f"(overlap {args.temporal_overlap})"
    )
    for name, result in (("untiled", untiled), ("tiled", tiled)):
        print(
            f"  {name:8s} {result['seconds']:7.1f} s   peak RSS {result['peak'] / 2**20:7.0f} MiB   "
            f"estimated activations {result['estimate'] / 2**20:6.0f} MiB   (cpu {result['user']:.1f} s user, {result['sys']:.1f} s sys)"
        )
    print(f"peak RSS tiled/untiled: {tiled['peak'] / untiled['peak']:.2f} (target <= 0.4)")
    print(f"time tiled/untiled:     {tiled['seconds'] / untiled['seconds']:.2f} (target <= 1.35)")
    cpu = (tiled["user"] + tiled["sys"]) / (untiled["user"] + untiled["sys"])
    print(f"CPU time tiled/untiled: {cpu:.2f} (less sensitive to other load on the machine)")


if __name__ == "__main__":
    main()
