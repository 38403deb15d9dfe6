"""Helpers shared by the bench scripts: import the pack the way ComfyUI does (under a package name)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

PACK_DIR = Path(__file__).resolve().parents[1]
PACK_NAME = "hunyuanvideo_pack"


def import_pack():
    if PACK_NAME in sys.modules:
        return sys.modules[PACK_NAME]
    spec = importlib.util.spec_from_file_location(PACK_NAME, PACK_DIR / "__init__.py")
    pack = importlib.util.module_from_spec(spec)
    sys.modules[PACK_NAME] = pack
    spec.loader.exec_module(pack)
    return pack


def add_model_args(parser, steps: int) -> None:
    """The bench config of bench/sample.py: a random DiT of ``--hidden`` with ``--double`` + ``--single`` blocks,
    the released text widths, a ``--latent`` of T H W, ``--steps`` steps."""
    parser.add_argument("--steps", type=int, default=steps)
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--double", type=int, default=2)
    parser.add_argument("--single", type=int, default=4)
    parser.add_argument("--latent", type=int, nargs=3, default=(5, 32, 32), metavar=("T", "H", "W"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=("fp32", "bf16"), default="fp32")


def bench_model(args):
    """(handle, embeds, latent) for the bench config: float32 random weights (seed 0), one prompt of 256 tokens
    with 40 real ones, as the text encoders hand it over."""
    import torch

    import_pack()
    from hunyuanvideo_pack.hunyuan_model.conditioning import PromptEmbeds, TextEmbeds
    from hunyuanvideo_pack.hunyuan_model.dit import HunyuanVideoTransformer, init_random_weights
    from hunyuanvideo_pack.hunyuan_model.handle import TransformerHandle

    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[args.dtype]
    device = torch.device(args.device)
    config = bench_config(args)
    model = init_random_weights(HunyuanVideoTransformer(config, dtype=torch.float32), seed=0)
    model.to(device, dtype)
    model.compute_dtype = dtype
    g = torch.Generator().manual_seed(1)
    mask = (torch.arange(256) < 40).long()[None]
    prompt = PromptEmbeds(torch.randn(1, 256, config.text_dim, generator=g), mask, torch.randn(1, 768, generator=g))
    handle = TransformerHandle(model, device, device, description="bench DiT")
    return handle, TextEmbeds(prompt), torch.zeros(1, 16, *args.latent)


def bench_config(args):
    """The bench DiT's config: ``--hidden`` wide (128-wide heads), ``--double`` + ``--single`` blocks, the
    released text widths."""
    from hunyuanvideo_pack.hunyuan_model.dit import DiTConfig

    return DiTConfig.tiny(
        hidden_size=args.hidden,
        heads=args.hidden // 128,
        double_blocks=args.double,
        single_blocks=args.single,
        mlp_hidden=4 * args.hidden,
        text_dim=4096,
        pooled_dim=768,
    )


def describe(args) -> str:
    import torch

    return (
        f"hidden {args.hidden}, {args.double}+{args.single} blocks, latent {tuple(args.latent)}, {args.steps} steps, "
        f"{args.dtype} on {args.device}, {torch.get_num_threads()} CPU threads"
    )
