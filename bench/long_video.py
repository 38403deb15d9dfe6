"""Context windows on a long video: peak memory and time of sampling a latent of 1x and 4x the trained
length with context windows, against one window over the whole 4x length, side by side.

HunyuanVideo was trained on 129 frames = 33 latent frames, so 1x is 33 latent frames and 4x is 132
(525 video frames). Windows are 33 latent frames overlapping by 8 (pyramid weights). The DiT has
random weights (time and memory do not depend on them), heads of 128 as released, ``--hidden`` wide
(3072 as released on CUDA, 256 on the CPU) with ``--double`` + ``--single`` blocks; the wider it is,
the smaller the share of the full-length latents (a few copies of 16 channels per token) beside one
window's activations, which is what windows keep constant. Each case runs in
its own process; the peak is the allocator's peak above what was allocated before sampling on CUDA,
and the resident set's peak above its level before sampling on the CPU (polled every 2 ms, with glibc
told to map every large block on its own so that freed tensors leave the resident set). Target:
with windows, the peak grows at most 10% from 1x to 4x.

    python3 bench/long_video.py [--size 128x128] [--steps 2] [--device cuda|cpu] [--hidden 3072]
                                [--double 2] [--single 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import import_pack  # noqa: E402

TRAINED_LATENT_FRAMES = 33  # 129 video frames
WINDOW, OVERLAP = 33, 8
CASES = {
    "windows 1x": (1, True),
    "windows 4x": (4, True),
    "one window 4x": (4, False),
}


class RssPeak:
    """The resident set's peak above its level at start, polled in a thread (Linux /proc)."""

    def __init__(self) -> None:
        self.start = self.peak = _rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, _rss())

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return max(self.peak, _rss()) - self.start


def _rss() -> int:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * 4096


def run_case(args: argparse.Namespace) -> dict:
    import_pack()
    from hunyuanvideo_pack.hunyuan_model.conditioning import PromptEmbeds, TextEmbeds
    from hunyuanvideo_pack.hunyuan_model.dit import DiTConfig, HunyuanVideoTransformer, init_random_weights
    from hunyuanvideo_pack.hunyuan_model.extras import ContextWindows, VideoOptions
    from hunyuanvideo_pack.hunyuan_model.handle import TransformerHandle
    from hunyuanvideo_pack.hunyuan_model.sampling import SamplerSettings, sample

    device = torch.device(args.device)
    multiple, windowed = CASES[args.case]
    hidden = args.hidden or (256 if device.type == "cpu" else 3072)
    config = DiTConfig.tiny(
        hidden_size=hidden,
        heads=hidden // 128,
        mlp_hidden=4 * hidden,
        double_blocks=args.double,
        single_blocks=args.single,
    )
    dtype = torch.float32 if device.type == "cpu" else torch.bfloat16
    model = HunyuanVideoTransformer(config, dtype=dtype, device=device)
    init_random_weights(model, seed=0)
    g = torch.Generator().manual_seed(0)
    prompt = PromptEmbeds(
        torch.randn(1, 64, config.text_dim, generator=g),
        torch.ones(1, 64, dtype=torch.int64),
        torch.randn(1, config.pooled_dim, generator=g),
    )
    width, height = (int(v) for v in args.size.split("x"))
    latent = torch.zeros(1, 16, TRAINED_LATENT_FRAMES * multiple, height // 8, width // 8)
    options = VideoOptions(context=ContextWindows(WINDOW, OVERLAP, "pyramid")) if windowed else None
    handle = TransformerHandle(model, device, device, options=options)
    settings = SamplerSettings(steps=args.steps)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
    else:
        meter = RssPeak()
    start = time.perf_counter()
    sample(handle, TextEmbeds(prompt), latent, 0, settings)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated(device) - before if device.type == "cuda" else meter.stop()
    return {"seconds_per_step": seconds / args.steps, "peak_bytes": peak, "frames": latent.shape[2], "hidden": hidden}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="128x128", help="video width x height in pixels")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--hidden", type=int, help="DiT width, heads of 128 (default: 3072 as released on CUDA, 256 on CPU)"
    )
    parser.add_argument("--double", type=int, default=2, help="double-stream blocks")
    parser.add_argument("--single", type=int, default=2, help="single-stream blocks")
    parser.add_argument("--case", choices=list(CASES), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(args)))
        return 0

    # glibc serves big blocks from its heap once the mmap threshold has grown, and then keeps freed ones
    # resident: with a fixed threshold every tensor gets its own mapping, so the RSS follows live tensors.
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    results = {}
    for case in CASES:
        command = [sys.executable, __file__, "--case", case, *sys.argv[1:]]
        out = subprocess.run(command, check=True, capture_output=True, text=True, env=env).stdout
        results[case] = json.loads(out.strip().splitlines()[-1])
    first = next(iter(results.values()))
    print(
        f"context windows of {WINDOW} latent frames (overlap {OVERLAP}, pyramid) on {args.device}, "
        f"{args.size} px, DiT of width {first['hidden']} with {args.double}+{args.single} blocks, {args.steps} steps"
    )
    print(f"{'case':<16}{'latent frames':>14}{'s/step':>10}{'peak MiB':>11}")
    for case, r in results.items():
        print(f"{case:<16}{r['frames']:>14}{r['seconds_per_step']:>10.2f}{r['peak_bytes'] / 2**20:>11.1f}")
    w1, w4, one = (results[c] for c in CASES)
    growth = w4["peak_bytes"] / w1["peak_bytes"] - 1
    print(f"peak growth with windows, 1x -> 4x: {growth:+.1%} (target <= +10%)")
    print(f"4x peak, windows / one window: {w4['peak_bytes'] / one['peak_bytes']:.2f}")
    print(f"4x time, windows / one window: {w4['seconds_per_step'] / one['seconds_per_step']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
