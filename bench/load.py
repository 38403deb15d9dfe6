"""Peak memory and time of loading a >= 2 GB checkpoint in each file format and weight storage.

Writes synthetic HunyuanVideo checkpoints (the released widths, 3072 hidden; all top-level modules
plus ``--double``/``--single`` blocks) in the real layouts (``hunyuan_model.tiny.dit_files`` writers;
GGUF files get random valid blocks, since gguf-py cannot quantize to K types), then loads each with
``load_transformer`` in a fresh subprocess, reads every weight byte once (what a forward pass or a
copy to the GPU does to memory-mapped weights) and prints the peak RSS the load added divided by
the file size, and the load time. Targets (issue 4): at most 1.25 for as-stored loads, at most
0.75 of the bf16 file for FP8 storage from a bf16 file.

    python3 bench/load.py [--dir /tmp/hv_load_bench] [--double 2 --single 2] [--keep]
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import torch
from common import import_pack

# ---------------------------------------------------------------------------------------------
# Writing the checkpoints


def released_shapes(double: int, single: int) -> dict[str, tuple[int, ...]]:
    from hunyuanvideo_pack.hunyuan_model.dit import DiTConfig, expected_shapes

    return expected_shapes(DiTConfig(double_blocks=double, single_blocks=single))


def bf16_state(shapes: dict[str, tuple[int, ...]]) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return {key: (torch.randn(shape, generator=generator) * 0.02).bfloat16() for key, shape in shapes.items()}


def write_files(folder: Path, double: int, single: int) -> dict[str, Path]:
    from hunyuanvideo_pack.hunyuan_model.tiny import dit_files as tiny

    folder.mkdir(parents=True, exist_ok=True)
    names = ("bf16.safetensors", "bf16.pt", "fp8.pt", "scaled_fp8.safetensors", "fp8_e4m3fn.safetensors")
    files = {name: folder / name for name in (*names, "diffusers", "q8_0.gguf", "q4_k.gguf")}
    if all(path.exists() for path in files.values()):
        return files
    shapes = released_shapes(double, single)
    state = bf16_state(shapes)
    tiny.write_safetensors(state, files["bf16.safetensors"])
    tiny.write_tencent_pt(state, files["bf16.pt"])
    tiny.write_fp8_release(state, files["fp8.pt"])
    tiny.write_scaled_fp8(state, files["scaled_fp8.safetensors"])
    tiny.write_fp8_cast(state, files["fp8_e4m3fn.safetensors"])
    tiny.write_diffusers(state, files["diffusers"], shards=2)
    del state
    for qtype in ("Q8_0", "Q4_K"):
        write_gguf(files[f"{qtype.lower()}.gguf"], shapes, qtype)
    return files


def write_gguf(path: Path, shapes: dict[str, tuple[int, ...]], qtype: str) -> None:
    """city96's layout: 2-D weights quantized (random valid blocks), 1-D and 5-D tensors F32."""
    import gguf

    writer = gguf.GGUFWriter(str(path), "hyvid")
    rng = np.random.default_rng(0)
    gtype = gguf.GGMLQuantizationType[qtype]
    block_size, type_size = gguf.GGML_QUANT_SIZES[gtype]
    for key, shape in shapes.items():
        if len(shape) != 2:
            writer.add_tensor(key, rng.normal(0, 0.02, shape).astype(np.float32))
            continue
        blocks = rng.integers(0, 256, (shape[0] * shape[1] // block_size, type_size), dtype=np.uint8)
        for offset in (0, 2) if qtype == "Q4_K" else (0,):
            halves = rng.normal(0, 1e-3, len(blocks)).astype(np.float16)
            blocks[:, offset : offset + 2] = halves.view(np.uint8).reshape(-1, 2)
        writer.add_tensor(key, blocks.reshape(shape[0], -1), raw_dtype=gtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


# ---------------------------------------------------------------------------------------------
# Loading (child process)


def load(path: Path, storage: str) -> torch.nn.Module:
    from hunyuanvideo_pack.hunyuan_model.dit import load_transformer

    return load_transformer(path, storage=storage)


def touch(model: torch.nn.Module) -> int:
    """Read every stored byte once (a byte-wise max: no temporaries)."""
    return max(int(t.reshape(-1).view(torch.uint8).max()) for t in [*model.parameters(), *model.buffers()])


def child(path: Path, storage: str, threads: int) -> None:
    if threads:
        torch.set_num_threads(threads)
    import_pack()
    before = psutil.Process().memory_info().rss
    start = time.perf_counter()
    model = load(path, storage)
    loaded = time.perf_counter() - start
    touch(model)
    held = sum(t.nbytes for t in [*model.parameters(), *model.buffers()])
    print(json.dumps({"baseline": before, "peak": peak_rss(), "seconds": loaded, "model": held}))


def peak_rss() -> int:
    """This process's peak resident memory in bytes.

    Linux's ``VmHWM`` belongs to the current program image; ``ru_maxrss`` would carry the parent's
    peak across ``exec`` (the parent held a whole state dict while writing the files).
    """
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


# ---------------------------------------------------------------------------------------------


CASES = [  # (file, weight storage, target peak / file size, size the target refers to)
    ("bf16.safetensors", "as_stored", 1.25, "bf16.safetensors"),
    ("bf16.pt", "as_stored", 1.25, "bf16.pt"),
    ("bf16.safetensors", "fp8_e4m3fn", 0.75, "bf16.safetensors"),
    ("bf16.safetensors", "fp8_e4m3fn_scaled", 0.75, "bf16.safetensors"),
    ("bf16.pt", "fp8_e4m3fn_scaled", 0.75, "bf16.pt"),
    ("fp8.pt", "as_stored", 1.25, "fp8.pt"),
    ("scaled_fp8.safetensors", "as_stored", 1.25, "scaled_fp8.safetensors"),
    ("fp8_e4m3fn.safetensors", "as_stored", 1.25, "fp8_e4m3fn.safetensors"),
    ("diffusers", "as_stored", 1.25, "diffusers"),
    ("diffusers", "fp8_e4m3fn_scaled", 0.75, "diffusers"),
    ("q8_0.gguf", "as_stored", 1.25, "q8_0.gguf"),
    ("q4_k.gguf", "as_stored", 1.25, "q4_k.gguf"),
]


def file_size(path: Path) -> int:
    """Bytes of a file, or of every file in a folder (a diffusers model)."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/hv_load_bench"))
    parser.add_argument("--double", type=int, default=2, help="double blocks (each 0.68 GB in bf16)")
    parser.add_argument("--single", type=int, default=2, help="single blocks (each 0.28 GB in bf16)")
    parser.add_argument("--keep", action="store_true", help="keep the written checkpoints for another run")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads in the loads (0: torch's default)")
    parser.add_argument("--child", nargs=2, metavar=("FILE", "STORAGE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(Path(args.child[0]), args.child[1], args.threads)
        return
    import_pack()
    start = time.perf_counter()
    files = write_files(args.dir, args.double, args.single)
    print(f"checkpoints written in {time.perf_counter() - start:.0f} s to {args.dir}")
    print("peak+: peak RSS the load added (after imports); model: bytes of the loaded weights in memory")
    print(
        f"{'file':24s} {'storage':18s} {'file GB':>8s} {'model GB':>9s} {'peak+ GB':>9s} "
        f"{'peak+/file':>10s} {'target':>7s} {'peak+/model':>11s} {'load s':>7s}"
    )
    try:
        for name, storage, target, reference in CASES:
            result = subprocess.run(
                [sys.executable, __file__, "--child", str(files[name]), storage, "--threads", str(args.threads)],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            figures = json.loads(result.stdout.strip().splitlines()[-1])
            added = figures["peak"] - figures["baseline"]
            size = file_size(files[reference])
            print(
                f"{name:24s} {storage:18s} {size / 1e9:8.2f} {figures['model'] / 1e9:9.2f} {added / 1e9:9.2f} "
                f"{added / size:10.2f} {'<= ' + str(target):>7s} {added / figures['model']:11.2f} {figures['seconds']:7.1f}"
            )
    finally:
        if not args.keep:
            shutil.rmtree(args.dir, ignore_errors=True)


if __name__ == "__main__":
    main()
