"""Step caches side by side: a 30-step sample at the bench config (bench/sample.py's) without a cache and with
each method at its published default threshold; prints full-model passes, wall time and how far the final latent
is from the uncached one.

On random tiny weights the latent difference says nothing about video quality (the published thresholds were
tuned on the real model's activations; here the blocks' changes from step to step are not the real ones): the
figure that carries over is the number of full-model passes each method's rule chooses.

    python3 bench/step_cache.py [--steps 30] [--hidden 512] [--double 2] [--single 4] [--latent 5 32 32]
"""

from __future__ import annotations

import argparse
import dataclasses
import time

from common import add_model_args, bench_model, describe, import_pack

SEED = 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_args(parser, steps=30)
    args = parser.parse_args()
    import_pack()
    from hunyuanvideo_pack.hunyuan_model.sampling import SamplerSettings, sample
    from hunyuanvideo_pack.hunyuan_model.step_cache import METHODS, StepCache

    handle, embeds, latent = bench_model(args)
    settings = SamplerSettings(steps=args.steps)
    sample(handle, embeds, latent, SEED, SamplerSettings(steps=1))  # warm-up
    rows = []
    reference = None
    for method in (None, *METHODS):
        cache = StepCache(method) if method else None
        start = time.perf_counter()
        out = sample(dataclasses.replace(handle, step_cache=cache), embeds, latent, SEED, settings)
        seconds = time.perf_counter() - start
        reference = out if reference is None else reference
        passes = cache.last_run.computed if cache else args.steps
        difference = ((out - reference).abs().max() / reference.abs().max()).item()
        label = f"{method} {cache.threshold:g}" if cache else "uncached"
        rows.append((label, passes, seconds, difference))
    print(f"config: {describe(args)}")
    base = rows[0][2]
    print(f"  {'method':16s} {'full passes':>11s} {'wall s':>8s} {'speed-up':>8s} {'rel diff':>9s}")
    for label, passes, seconds, difference in rows:
        print(f"  {label:16s} {passes:>6d}/{args.steps:<4d} {seconds:8.2f} {base / seconds:7.2f}x {difference:9.2e}")
    print("  (random weights: the latent difference says nothing about quality; the pass counts are the figure)")


if __name__ == "__main__":
    main()
