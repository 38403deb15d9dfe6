"""Image-to-video step cost: one denoising step of each I2V variant against text-to-video, side by side.

The same DiT shape runs as text-to-video, HunyuanVideo-I2V token replace (16 channels, the first
frame's tokens modulated apart), latent concat (33 channels) and SkyReels I2V (32 channels); each
step is what the sampler calls (the prompt's velocity, the variant's input built from the image
latent, frame 0 held for token replace). Runs alternate; the script prints the median and best step
time, the peak memory a step adds (CPU: VmHWM reset before each step, glibc mapping every block
above 64 KiB; CUDA: max allocated), the
ratios against text-to-video (target: token replace at most 1.1x), then the time of LLaVA's vision
tower (CLIP ViT-L/14-336 + projector, released size, random weights) on one image.

    python3 bench/i2v.py [--rounds 5] [--hidden 512] [--double 2] [--single 4] [--latent 9 32 32] [--device cpu]
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import conftest  # noqa: E402, F401  (imports the pack as hunyuanvideo_pack)
from hunyuanvideo_pack.hunyuan_model.conditioning import PromptEmbeds, TextEmbeds  # noqa: E402
from hunyuanvideo_pack.hunyuan_model.dit import DiTConfig, HunyuanVideoTransformer, init_random_weights  # noqa: E402
from hunyuanvideo_pack.hunyuan_model.image_condition import ImageCondition  # noqa: E402
from hunyuanvideo_pack.hunyuan_model.sampling.image_to_video import (  # noqa: E402
    ImageConditionedVelocity,
    image_to_video_start,
)
from hunyuanvideo_pack.hunyuan_model.sampling.velocity import GuidedVelocity  # noqa: E402
from hunyuanvideo_pack.hunyuan_model.text_encoder.vision import LlavaVision, VisionConfig  # noqa: E402

VARIANTS = {
    "text-to-video": dict(),
    "token replace": dict(guidance_embed=False, image_condition="token_replace"),
    "latent concat": dict(in_channels=33, guidance_embed=False, image_condition="latent_concat"),
    "SkyReels concat": dict(in_channels=32, image_condition="skyreels_concat"),
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--double", type=int, default=2)
    parser.add_argument("--single", type=int, default=4)
    parser.add_argument("--latent", type=int, nargs=3, default=(9, 32, 32), metavar=("T", "H", "W"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    return parser.parse_args()


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(field)


def measure(fn, device: torch.device) -> tuple[float, float]:
    """(seconds, peak MiB added) of one call."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
    else:
        Path("/proc/self/clear_refs").write_text("5")
        before = _status_kib("VmRSS")
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        peak = (torch.cuda.max_memory_allocated(device) - before) / 2**20
    else:
        peak = (_status_kib("VmHWM") - before) / 1024
    return time.perf_counter() - start, peak


def steps(args: argparse.Namespace, device: torch.device, dtype: torch.dtype) -> dict:
    base = dict(hidden_size=args.hidden, heads=args.hidden // 128, double_blocks=args.double)
    base |= dict(single_blocks=args.single, mlp_hidden=4 * args.hidden, text_dim=256, pooled_dim=64)
    g = torch.Generator().manual_seed(0)
    t, h, w = args.latent
    prompt = PromptEmbeds(
        torch.randn(1, 40, 256, generator=g), torch.ones(1, 40, dtype=torch.long), torch.randn(1, 64, generator=g)
    )
    noise = torch.randn(1, 16, t, h, w, generator=g).to(device)
    image = ImageCondition(torch.randn(1, 16, 1, h, w, generator=g))
    calls = {}
    for name, extra in VARIANTS.items():
        config = DiTConfig(**base, **extra)
        model = init_random_weights(HunyuanVideoTransformer(config, dtype=torch.float32), seed=1).to(device, dtype)
        velocity = GuidedVelocity(model, TextEmbeds(prompt), 1, device, 6.0)
        x = noise
        if config.is_image_to_video:
            x, image_latent = image_to_video_start(config, image, noise, noise, 1.0)
            velocity = ImageConditionedVelocity(velocity, config, image_latent, t)
        timestep = torch.tensor(700.0, device=device)
        calls[name] = lambda v=velocity, x=x, ts=timestep: x + v(x, ts) * -0.05  # one Euler step
    for call in calls.values():  # warm-up
        call()
    results = {name: ([], []) for name in calls}
    for _ in range(args.rounds):
        for name, call in calls.items():
            seconds, mib = measure(call, device)
            results[name][0].append(seconds)
            results[name][1].append(mib)
    return results


def main() -> None:
    args = parse_args()
    if args.device == "cpu" and "MALLOC_MMAP_THRESHOLD_" not in os.environ:
        # glibc then maps every block above 64 KiB anew, so the resident size follows the live tensors.
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"})
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    t, h, w = args.latent
    tokens = t * (h // 2) * (w // 2)
    print(
        f"DiT hidden {args.hidden}, {args.double}+{args.single} blocks, latent {t}x{h}x{w} ({tokens} video tokens), "
        f"{args.dtype} on {device}, {args.rounds} rounds alternating"
    )
    results = steps(args, device, dtype)
    t2v_time = statistics.median(results["text-to-video"][0])
    t2v_peak = statistics.median(results["text-to-video"][1])
    print(f"{'variant':<18}{'median s':>10}{'best s':>10}{'peak MiB':>10}{'time x T2V':>12}{'peak x T2V':>12}")
    for name, (times, peaks) in results.items():
        median, peak = statistics.median(times), statistics.median(peaks)
        print(
            f"{name:<18}{median:>10.4f}{min(times):>10.4f}{peak:>10.1f}{median / t2v_time:>12.3f}"
            f"{peak / t2v_peak if t2v_peak > 0 else float('nan'):>12.3f}"
        )
    vision = init_random_weights(LlavaVision(VisionConfig()), seed=2).to(device, dtype)
    pixels = torch.randn(1, 3, 336, 336, device=device)
    vision(pixels)  # warm-up
    times = [measure(lambda: vision(pixels), device)[0] for _ in range(3)]
    print(
        f"vision tower (CLIP ViT-L/14-336 + projector, 576 tokens): median {statistics.median(times):.3f} s, "
        f"best {min(times):.3f} s per image"
    )


if __name__ == "__main__":
    main()
