"""Throughput of the pack's torch GGUF dequantization against the ``gguf`` package's numpy one.

For every supported type: random valid blocks for a ``rows x cols`` weight (default 3072 x 3072,
one DiT attention projection), both dequantizers run side by side in this process, best of
``--repeat`` runs each. Prints weights per second for each and the ratio ours / gguf, for float32
output (what the gguf package returns) and bfloat16 output (what the DiT computes in).

    python3 bench/gguf_dequant.py [--rows 3072 --cols 3072 --repeat 5 --device cpu]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from functools import partial

import numpy as np
import torch
from common import import_pack


def random_blocks(qtype, n_blocks: int, rng: np.random.Generator) -> np.ndarray:
    """Random bytes with every fp16 scale field set to a finite value (random bytes may be NaN/inf)."""
    from hunyuanvideo_pack.hunyuan_model.quant.ggml_types import BLOCK_LAYOUTS, GGMLType

    layout = BLOCK_LAYOUTS[qtype]
    if qtype in (GGMLType.F32, GGMLType.BF16):
        values = rng.normal(size=n_blocks).astype(np.float32).view(np.uint8).reshape(n_blocks, 4)
        return values if qtype == GGMLType.F32 else values[:, 2:].copy()
    blocks = rng.integers(0, 256, size=(n_blocks, layout.type_size), dtype=np.uint8)
    for offset in HALF_FIELDS[qtype.name]:
        halves = (rng.normal(0, 0.01, size=n_blocks)).astype(np.float16)
        blocks[:, offset : offset + 2] = halves.view(np.uint8).reshape(n_blocks, 2)
    return blocks


# Byte offsets of the fp16 fields in each block (ggml-common.h); BF16's only field is its value.
HALF_FIELDS = {
    "F16": [0],
    "BF16": [],
    "Q4_0": [0],
    "Q4_1": [0, 2],
    "Q5_0": [0],
    "Q5_1": [0, 2],
    "Q8_0": [0],
    "Q2_K": [80, 82],
    "Q3_K": [108],
    "Q4_K": [0, 2],
    "Q5_K": [0, 2],
    "Q6_K": [208],
}


def interleaved_best(functions: dict[str, Callable[[], object]], repeat: int) -> dict[str, float]:
    """Best wall time of each function, running them in turns so machine load hits all alike."""
    best = dict.fromkeys(functions, float("inf"))
    for _ in range(repeat + 1):  # the first round warms up
        for name, function in functions.items():
            start = time.perf_counter()
            function()
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=3072)
    parser.add_argument("--cols", type=int, default=3072)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    import gguf

    import_pack()
    from hunyuanvideo_pack.hunyuan_model.quant.dequant import dequantize
    from hunyuanvideo_pack.hunyuan_model.quant.ggml_types import BLOCK_LAYOUTS, FLOAT_TYPES, GGMLType

    rng = np.random.default_rng(0)
    numel = args.rows * args.cols
    print(
        f"{args.rows}x{args.cols} weights, ours on {args.device} ({torch.get_num_threads()} threads), gguf {gguf.__version__ if hasattr(gguf, '__version__') else ''} numpy"
    )
    print(f"{'type':6s} {'gguf Mw/s':>10s} {'ours f32':>10s} {'ours bf16':>10s} {'ratio f32':>10s} {'ratio bf16':>11s}")
    ratios = {"f32": [], "bf16": []}
    for qtype in GGMLType:
        layout = BLOCK_LAYOUTS[qtype]
        raw = random_blocks(qtype, numel // layout.block_size, rng).reshape(args.rows, -1)
        blocks = torch.from_numpy(raw).to(args.device)
        shape = (args.rows, args.cols)
        with np.errstate(all="ignore"):
            best = interleaved_best(
                {
                    "gguf": partial(gguf.quants.dequantize, raw, gguf.GGMLQuantizationType(int(qtype))),
                    "f32": partial(dequantize, blocks, qtype, shape),
                    "bf16": partial(dequantize, blocks, qtype, shape, torch.bfloat16),
                },
                args.repeat,
            )
        if qtype not in FLOAT_TYPES:  # F32/F16/BF16 are reinterpretations, not dequantization
            for output in ratios:
                ratios[output].append(best["gguf"] / best[output])
        print(
            f"{qtype.name:6s} {numel / best['gguf'] / 1e6:10.0f} {numel / best['f32'] / 1e6:10.0f} "
            f"{numel / best['bf16'] / 1e6:10.0f} {best['gguf'] / best['f32']:10.1f}x {best['gguf'] / best['bf16']:10.1f}x"
        )
    for output, values in ratios.items():
        print(
            f"geometric mean ratio over the block types, {output} output: {float(np.exp(np.mean(np.log(values)))):.1f}x"
        )


if __name__ == "__main__":
    main()
