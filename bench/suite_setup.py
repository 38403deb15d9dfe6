"""What ``gpu_suite.py`` runs on: the device, model configs, video sizes and emulated cards, and the
environment it records."""

from __future__ import annotations

import datetime
import platform
from dataclasses import dataclass

import torch
from common import import_pack
from suite_gauge import card_free_bytes

import_pack()
from hunyuanvideo_pack.hunyuan_model import DiTConfig, VAEConfig, installed_backends  # noqa: E402


@dataclass(frozen=True)
class Card:
    """An emulated card: ``card_gb`` as the vram guide names it, the weights it runs, and the bytes free to
    the process (None: derived from the model, in dry runs, so that the plan swaps every double block)."""

    card_gb: int
    weights: str
    free_bytes: int | None


@dataclass(frozen=True)
class Setup:
    device: torch.device
    dit: DiTConfig
    vae: VAEConfig
    videos: tuple[str, ...]  # width x height x frames, smallest first
    vae_video: str
    cards: tuple[Card, ...]
    text_tokens: int = 256  # the pipeline pads prompts to 256; random embeds stand in for the encoders
    numerics_latent: tuple[int, ...] = (1, 16, 5, 16, 16)
    dry_run: bool = False

    @classmethod
    def released(cls) -> Setup:
        cards = tuple(
            Card(gb, weights, card_free_bytes(gb)) for gb, weights in ((24, "bf16"), (16, "FP8"), (12, "FP8"))
        )
        return cls(
            torch.device("cuda"),
            DiTConfig.released(),
            VAEConfig.released(),
            ("960x544x97", "1280x720x129"),
            "1280x720x129",
            cards,
        )

    @classmethod
    def tiny(cls) -> Setup:
        """Everything on the CPU at toy sizes: the suite's code paths in seconds."""
        cards = tuple(Card(gb, weights, None) for gb, weights in ((24, "bf16"), (16, "FP8")))
        config = DiTConfig.tiny(double_blocks=3, single_blocks=2)
        videos = ("32x32x5", "48x32x5")
        return cls(torch.device("cpu"), config, VAEConfig.tiny(), videos, videos[0], cards, 8, (1, 16, 2, 4, 4), True)


def latent_shape(video: str) -> tuple[int, int, int, int, int]:
    """``"WxHxF"`` -> the latent ``[1, 16, (F - 1) / 4 + 1, H / 8, W / 8]``."""
    width, height, frames = (int(v) for v in video.split("x"))
    return (1, 16, (frames - 1) // 4 + 1, height // 8, width // 8)


def attention_backends() -> list[str]:
    """sdpa first, then every other installed backend."""
    return ["sdpa"] + [b for b in installed_backends() if b != "sdpa"]


def environment(setup: Setup) -> dict:
    now = datetime.datetime.now(datetime.timezone.utc)
    env = {
        "suite": "gpu_suite",
        "date": now.strftime("%Y-%m-%d"),
        "started": now.strftime("%Y-%m-%d_%H%M"),
        "dry_run": setup.dry_run,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "attention_backends": attention_backends(),
        "text_tokens": setup.text_tokens,
    }
    if setup.device.type == "cuda" and torch.cuda.is_available():
        props = torch.cuda.get_device_properties(setup.device)
        env |= {"device": props.name, "cuda": torch.version.cuda, "total_memory": props.total_memory}
        env["capability"] = f"{props.major}.{props.minor}"
    else:
        env["device"] = "cpu (dry run)" if setup.dry_run else "no CUDA device"
    return env
