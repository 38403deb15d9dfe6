"""A short sampling run: our sampler against diffusers' HunyuanVideoPipeline, side by side.

Both get the same random float32 DiT weights (ours converted to diffusers keys), the same prompt
embeds (padded to 256 tokens, 40 real, as the text encoders hand them over) and the same starting
noise; the pipeline runs without text encoders or VAE (embeds in, ``output_type="latent"`` out).
Runs alternate; the script prints the best and the median time of a whole run, the ratio
ours / diffusers, and how far the two results are apart. On the CPU by default; ``--device cuda``
runs both on the GPU (bf16 with ``--dtype bf16``).

    python3 bench/sample.py [--rounds 5] [--steps 4] [--hidden 512] [--double 2] [--single 4] [--latent 5 32 32]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from common import bench_config  # noqa: E402

import conftest  # noqa: E402, F401  (imports the pack as hunyuanvideo_pack)
from hunyuanvideo_pack.hunyuan_model.conditioning import PromptEmbeds, TextEmbeds  # noqa: E402
from hunyuanvideo_pack.hunyuan_model.dit import (  # noqa: E402
    HunyuanVideoTransformer,
    init_random_weights,
    tencent_to_diffusers,
)
from hunyuanvideo_pack.hunyuan_model.handle import TransformerHandle  # noqa: E402
from hunyuanvideo_pack.hunyuan_model.latent import VAE_SCALING_FACTOR  # noqa: E402
from hunyuanvideo_pack.hunyuan_model.sampling import SamplerSettings, sample, seeded_noise  # noqa: E402

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
SEED = 0
# 4.0 embeds as 4000 in both: diffusers' float32 pipeline would embed 6.0 as 6000, the DiT as bf16's 6016.
GUIDANCE = 4.0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--double", type=int, default=2)
    parser.add_argument("--single", type=int, default=4)
    parser.add_argument("--latent", type=int, nargs=3, default=(5, 32, 32), metavar=("T", "H", "W"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=DTYPES, default="fp32")
    return parser.parse_args()


def build(args: argparse.Namespace):
    from diffusers import FlowMatchEulerDiscreteScheduler, HunyuanVideoPipeline
    from diffusers.utils import logging as diffusers_logging
    from test_dit import diffusers_model  # the same diffusers transformer the parity tests build

    diffusers_logging.set_verbosity_error()

    device, dtype = torch.device(args.device), DTYPES[args.dtype]
    config = bench_config(args)
    ours = init_random_weights(HunyuanVideoTransformer(config, dtype=torch.float32), seed=0)
    theirs = diffusers_model(config)
    theirs.load_state_dict(tencent_to_diffusers(ours.state_dict()), strict=True)
    ours.to(device, dtype)
    ours.compute_dtype = dtype
    pipe = HunyuanVideoPipeline(
        None, None, theirs.to(device, dtype), None, FlowMatchEulerDiscreteScheduler(shift=7.0), None, None
    )
    pipe.set_progress_bar_config(disable=True)
    handle = TransformerHandle(ours, device, device, description="bench DiT")
    return config, handle, pipe


def main() -> None:
    args = parse_args()
    config, handle, pipe = build(args)
    g = torch.Generator().manual_seed(1)
    mask = (torch.arange(256) < 40).long()[None]
    prompt = PromptEmbeds(torch.randn(1, 256, config.text_dim, generator=g), mask, torch.randn(1, 768, generator=g))
    embeds = TextEmbeds(prompt)
    latent = torch.zeros(1, 16, *args.latent)
    settings = SamplerSettings(steps=args.steps, shift=7.0, guidance=GUIDANCE)
    noise = seeded_noise(latent.shape, SEED).to(args.device)
    device_prompt = prompt.to(args.device)
    t, h, w = args.latent

    def ours() -> torch.Tensor:
        return sample(handle, embeds, latent, SEED, settings) * VAE_SCALING_FACTOR

    def diffusers() -> torch.Tensor:
        return (
            pipe(
                prompt_embeds=device_prompt.text_states,
                pooled_prompt_embeds=device_prompt.pooled,
                prompt_attention_mask=device_prompt.text_mask,
                latents=noise,
                num_inference_steps=args.steps,
                guidance_scale=GUIDANCE,
                height=h * 8,
                width=w * 8,
                num_frames=(t - 1) * 4 + 1,
                output_type="latent",
            )
            .frames.float()
            .cpu()
        )

    runs = {"ours": ours, "diffusers": diffusers}
    results = {name: fn() for name, fn in runs.items()}  # warm-up, and the results compared below
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.rounds):
        for name, fn in runs.items():
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            start = time.perf_counter()
            fn()
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - start)

    difference = (results["ours"] - results["diffusers"]).abs().max() / results["diffusers"].abs().max()
    print(
        f"config: hidden {args.hidden}, {args.double}+{args.single} blocks, latent {tuple(args.latent)}, "
        f"{args.steps} steps, {args.dtype} on {args.device}, {torch.get_num_threads()} CPU threads, "
        f"{args.rounds} alternating rounds"
    )
    for name, values in times.items():
        print(f"  {name:9s} best {min(values) * 1000:8.1f} ms, median {statistics.median(values) * 1000:8.1f} ms")
    best = min(times["ours"]) / min(times["diffusers"])
    median = statistics.median(times["ours"]) / statistics.median(times["diffusers"])
    print(f"  ratio ours/diffusers: time {best:.3f} (best), {median:.3f} (median)")
    print(f"  final latents apart by {difference:.2e} of their largest value")


if __name__ == "__main__":
    main()
