"""Eager against per-block torch.compile at the bench config (bench/sample.py's): the compile time (the first
compiled step minus an eager step) and the steady per-step time of each, measured in alternating rounds, with
how far the compiled result is from the eager one.

    python3 bench/compile.py [--rounds 3] [--steps 4] [--mode default] [--hidden 512] [--latent 5 32 32]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time

from common import add_model_args, bench_model, describe, import_pack

SEED = 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_args(parser, steps=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--mode", default="default")
    args = parser.parse_args()
    import_pack()
    import torch

    from hunyuanvideo_pack.hunyuan_model.compile_blocks import BlockCompile
    from hunyuanvideo_pack.hunyuan_model.sampling import SamplerSettings, sample

    handle, embeds, latent = bench_model(args)
    compiled = dataclasses.replace(handle, compile=BlockCompile(mode=args.mode))
    one, many = SamplerSettings(steps=1), SamplerSettings(steps=args.steps)

    def timed(h, settings) -> tuple[float, torch.Tensor]:
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        out = sample(h, embeds, latent, SEED, settings)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        return time.perf_counter() - start, out

    timed(handle, one)  # warm-up
    eager_step, _ = timed(handle, one)
    first, _ = timed(compiled, one)
    if compiled.compile.unavailable:
        print(f"compile unavailable: {compiled.compile.unavailable}")
        return
    times = {"eager": [], "compiled": []}
    results = {}
    for _ in range(args.rounds):
        for name, h in (("eager", handle), ("compiled", compiled)):
            seconds, results[name] = timed(h, many)
            times[name].append(seconds / args.steps)
    difference = (results["compiled"] - results["eager"]).abs().max() / results["eager"].abs().max()
    print(f"config: {describe(args)}, mode {args.mode}, {args.rounds} alternating rounds")
    print(f"  compile time (first compiled step - eager step): {first - eager_step:.1f} s")
    for name, values in times.items():
        print(
            f"  {name:8s} per step: best {min(values) * 1000:8.1f} ms, median {statistics.median(values) * 1000:8.1f} ms"
        )
    best = min(times["eager"]) / min(times["compiled"])
    median = statistics.median(times["eager"]) / statistics.median(times["compiled"])
    print(f"  speed-up eager/compiled: {best:.3f} (best), {median:.3f} (median)")
    print(f"  final latents apart by {difference:.2e} of their largest value")


if __name__ == "__main__":
    main()
