"""Cost of a rank-64 LoRA on a >= 2 GB synthetic released-width checkpoint, per weight storage.

Part 1, memory and time of applying (one fresh subprocess per storage and mode): load the bf16
safetensors (or the Q8_0 GGUF) written by bench/load.py's writers, read every weight byte (what a
copy to the GPU or a forward does to memory-mapped weights), note the peak RSS the load added;
then read a rank-64 musubi-format LoRA on every Linear of the model, apply it, read every byte of
the new model, and print the time and the peak RSS the LoRA added as a share of the load's.
Target: at most 10% (``auto``); ``merge`` on bf16 is shown too (it copies every changed weight).

Part 2, time per step, side by side in one process: the forward of a one-double-, one-single-block
model of released width on ``--tokens`` tokens, without LoRA, merged and on the fly, for float, FP8
scaled and GGUF Q8_0 weights (minimum of ``--repeats`` interleaved runs), computing in ``--dtype``
(bfloat16 on a GPU; float32 by default, since CPU bf16 matmuls are an order of magnitude slower
and would not say what a GPU step costs). Targets: merged adds nothing; on the fly adds at most 15%.

    python3 bench/lora.py [--dir /tmp/hv_lora_bench] [--double 2 --single 2] [--tokens 1024] [--keep]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psutil
import torch
from common import import_pack
from load import bf16_state, peak_rss, released_shapes, touch, write_gguf

RANK = 64


def write_inputs(folder: Path, double: int, single: int) -> dict[str, Path]:
    from hunyuanvideo_pack.hunyuan_model.tiny import dit_files as dit_tiny
    from hunyuanvideo_pack.hunyuan_model.tiny import lora_files as lora_tiny

    folder.mkdir(parents=True, exist_ok=True)
    files = {name: folder / name for name in ("bf16.safetensors", "q8_0.gguf", "lora.safetensors")}
    if all(path.exists() for path in files.values()):
        return files
    shapes = released_shapes(double, single)
    dit_tiny.write_safetensors(bf16_state(shapes), files["bf16.safetensors"])
    write_gguf(files["q8_0.gguf"], shapes, "Q8_0")
    linears = {
        key.removesuffix(".weight"): shape
        for key, shape in shapes.items()
        if len(shape) == 2 and key.endswith(".weight")
    }
    factors = lora_tiny.random_factors(linears, rank=RANK, alpha=RANK / 2, gain=0.05)
    lora_tiny.write_lora(lora_tiny.lora_tensors(factors, "musubi", torch.bfloat16), files["lora.safetensors"])
    return files


def child(weights: Path, lora: Path, storage: str, mode: str) -> None:
    import_pack()
    from hunyuanvideo_pack.hunyuan_model.dit import load_transformer
    from hunyuanvideo_pack.hunyuan_model.lora import AppliedLora, apply_loras, linear_shapes, read_lora

    baseline = psutil.Process().memory_info().rss
    model = load_transformer(weights, storage=storage)
    touch(model)
    loaded = peak_rss()
    start = time.perf_counter()
    styled = apply_loras(model, [AppliedLora(read_lora(lora, linear_shapes(model)), 1.0)], mode)
    seconds = time.perf_counter() - start
    touch(styled)
    print(json.dumps({"load": loaded - baseline, "with_lora": peak_rss() - baseline, "seconds": seconds}))


CASES = [  # (weights file, storage, mode)
    ("bf16.safetensors", "as_stored", "auto"),
    ("bf16.safetensors", "as_stored", "merge"),
    ("bf16.safetensors", "fp8_e4m3fn_scaled", "auto"),
    ("bf16.safetensors", "fp8_e4m3fn_fast", "auto"),
    ("q8_0.gguf", "as_stored", "auto"),
]


def memory_table(files: dict[str, Path]) -> None:
    print(
        f"{'weights':<18} {'storage':<18} {'mode':<6} {'load peak':>10} {'LoRA adds':>10} {'ratio':>7} {'apply s':>8}"
    )
    for name, storage, mode in CASES:
        command = [sys.executable, __file__, "--child", str(files[name]), str(files["lora.safetensors"]), storage, mode]
        result = json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout.splitlines()[-1])
        added = result["with_lora"] - result["load"]
        ratio = added / result["load"]
        verdict = "" if mode == "merge" else ("ok" if ratio <= 0.10 else "OVER 10%")
        print(
            f"{name:<18} {storage:<18} {mode:<6} {result['load'] / 2**30:>9.2f}G {added / 2**30:>9.2f}G "
            f"{ratio:>7.1%} {result['seconds']:>8.1f} {verdict}"
        )


def step_table(tokens: int, repeats: int, dtype: torch.dtype, device: torch.device) -> None:
    import_pack()
    from hunyuanvideo_pack.hunyuan_model.dit import DiTConfig, HunyuanVideoTransformer, init_random_weights
    from hunyuanvideo_pack.hunyuan_model.lora import AppliedLora, apply_loras, linear_shapes, parse_lora
    from hunyuanvideo_pack.hunyuan_model.quant import StoredWeight, WeightStorage, quantizable_linears, swap_linears
    from hunyuanvideo_pack.hunyuan_model.tiny import lora_files as lora_tiny

    config = DiTConfig(double_blocks=1, single_blocks=1)
    side = int(tokens**0.5)
    g = torch.Generator().manual_seed(0)
    inputs = dict(
        latents=torch.randn(1, 16, 1, 2 * side, 2 * side, generator=g).to(device),
        timestep=torch.tensor([500.0]),
        text_states=torch.randn(1, 32, config.text_dim, generator=g).to(device),
        text_mask=None,
        pooled_text=torch.randn(1, config.pooled_dim, generator=g).to(device),
        guidance=6.0,
    )

    def base(storage: str) -> HunyuanVideoTransformer:
        model = init_random_weights(HunyuanVideoTransformer(config, dtype=dtype), seed=1).eval()
        names = quantizable_linears(1, 1)
        if storage == "fp8_e4m3fn_scaled":
            plain = {n: StoredWeight.plain(model.get_submodule(n).weight) for n in names}
            swap_linears(model, plain, WeightStorage.FP8_E4M3FN_SCALED, dtype)
        elif storage == "gguf_q8_0":
            import gguf

            blocks = {}
            for n in names:
                w = model.get_submodule(n).weight.float().numpy()
                data = torch.from_numpy(gguf.quants.quantize(w, gguf.GGMLQuantizationType.Q8_0))
                blocks[n] = StoredWeight(data, tuple(w.shape), gguf.GGMLQuantizationType.Q8_0)
            swap_linears(model, blocks, WeightStorage.AS_STORED, dtype)
        return model.to(device)

    shapes = linear_shapes(HunyuanVideoTransformer(config, device="meta"))
    lora = parse_lora(lora_tiny.lora_tensors(lora_tiny.random_factors(shapes, rank=RANK), "musubi"), shapes, "r64")
    print(
        f"\nper-step time, {side * side} video + 32 text tokens, 1 double + 1 single block of released width, rank {RANK}:"
    )
    print(f"{'storage':<20} {'no LoRA s':>10} {'merged':>14} {'on the fly':>14}")
    for storage in ("float", "fp8_e4m3fn_scaled", "gguf_q8_0"):
        plain = base(storage)
        variants = {"none": plain, "on_the_fly": apply_loras(plain, [AppliedLora(lora)], "on_the_fly")}
        if storage == "float":
            variants["merge"] = apply_loras(plain, [AppliedLora(lora)], "merge")
        times = {name: float("inf") for name in variants}
        for _ in range(repeats):
            for name, model in variants.items():  # interleaved: machine load hits every variant alike
                start = time.perf_counter()
                model(**inputs)
                if device.type == "cuda":
                    torch.cuda.synchronize()
                times[name] = min(times[name], time.perf_counter() - start)
        none = times["none"]
        merged = f"{times['merge'] / none - 1:+.1%}" if "merge" in times else "n/a (kept)"
        fly = times["on_the_fly"] / none - 1
        print(f"{storage:<20} {none:>10.2f} {merged:>14} {fly:>+13.1%} {'ok' if fly <= 0.15 else 'OVER 15%'}")


def layer_table(tokens: int, repeats: int, dtype: torch.dtype, device: torch.device) -> None:
    """The on-the-fly cost where it arises, with little noise: one ``img_attn_qkv``-sized layer (9216 x 3072)
    alone, its forward with and without the rank-64 :class:`LoraDelta`, minimum of many interleaved runs."""
    import gguf

    import_pack()
    from hunyuanvideo_pack.hunyuan_model.lora.apply import attach_delta, share_tree
    from hunyuanvideo_pack.hunyuan_model.quant import StoredWeight, WeightStorage, make_linear

    g = torch.Generator().manual_seed(0)
    weight = torch.randn(9216, 3072, generator=g) / 3072**0.5
    x = torch.randn(1, tokens, 3072, generator=g).to(device, dtype)
    up, down = torch.randn(9216, RANK, generator=g) * 1e-2, torch.randn(RANK, 3072, generator=g) / 3072**0.5
    q8 = torch.from_numpy(gguf.quants.quantize(weight.numpy(), gguf.GGMLQuantizationType.Q8_0))
    layers = {
        "float": make_linear(StoredWeight.plain(weight), WeightStorage.AS_STORED, dtype),
        "fp8_e4m3fn_scaled": make_linear(StoredWeight.plain(weight), WeightStorage.FP8_E4M3FN_SCALED, dtype),
        "gguf_q8_0": make_linear(StoredWeight(q8, (9216, 3072), gguf.GGMLQuantizationType.Q8_0), "as_stored", dtype),
    }
    print(f"\none 9216x3072 layer, {tokens} tokens, rank {RANK}, {dtype} on {device}, min of {repeats} runs:")
    print(f"{'storage':<20} {'layer ms':>9} {'+ LoRA':>9}")
    with torch.inference_mode():
        for storage, layer in layers.items():
            variants = {"base": layer.to(device), "lora": share_tree(layer.to(device))}
            attach_delta(variants["lora"], up, down, dtype)  # the forward hook apply_loras installs
            times = {"base": float("inf"), "lora": float("inf")}
            for _ in range(repeats):
                for name in times:
                    start = time.perf_counter()
                    variants[name](x)
                    if device.type == "cuda":
                        torch.cuda.synchronize()
                    times[name] = min(times[name], time.perf_counter() - start)
            extra = times["lora"] / times["base"] - 1
            print(f"{storage:<20} {times['base'] * 1e3:>9.1f} {extra:>+8.1%} {'ok' if extra <= 0.15 else 'OVER 15%'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/hv_lora_bench"))
    parser.add_argument("--double", type=int, default=2, help="double blocks (each 0.68 GB in bf16)")
    parser.add_argument("--single", type=int, default=2, help="single blocks (each 0.28 GB in bf16)")
    parser.add_argument("--tokens", type=int, default=512, help="video tokens of the per-step forward")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32", help="compute dtype of part 2")
    parser.add_argument("--device", default="cpu", help="device of part 2 (cuda for a GPU)")
    parser.add_argument("--keep", action="store_true", help="keep the written files for another run")
    parser.add_argument("--skip-memory", action="store_true", help="leave out part 1 (memory)")
    parser.add_argument("--skip-step", action="store_true", help="leave out the whole-forward table of part 2")
    parser.add_argument("--child", nargs=4, metavar=("WEIGHTS", "LORA", "STORAGE", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        weights, lora, storage, mode = args.child
        child(Path(weights), Path(lora), storage, mode)
        return
    import_pack()
    if not args.skip_memory:
        files = write_inputs(args.dir, args.double, args.single)
        size = files["bf16.safetensors"].stat().st_size
        print(f"bf16 checkpoint {size / 2**30:.2f} GB, rank-{RANK} LoRA on every Linear")
        try:
            memory_table(files)
        finally:
            if not args.keep:
                shutil.rmtree(args.dir, ignore_errors=True)
    dtype, device = getattr(torch, args.dtype), torch.device(args.device)
    layer_table(args.tokens, 10 * args.repeats, dtype, device)
    if not args.skip_step:
        step_table(args.tokens, args.repeats, dtype, device)


if __name__ == "__main__":
    main()
