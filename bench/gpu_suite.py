"""The GPU evidence in one command: full-size speed, emulated 24/16/12 GB cards, block-swap overhead, VAE decode,
numerics. Issue 16; results go to ``bench/results/`` and feed the README's VRAM table (``tools/vram_guide.py``).

    python3 bench/gpu_suite.py [--out DIR] [--budget 420] [--only numerics speed caps vae | WORD ...]
    python3 bench/gpu_suite.py --list     # the planned tasks and their first predictions, no GPU needed

On a machine without CUDA it says so and exits 0. ``--dry-run`` runs every task on the CPU with a tiny
DiT and VAE (about a minute; ``tests/test_gpu_suite.py`` runs its plan, budget, report, one emulated
card and the FLOP count, so the script cannot rot unnoticed).

ONE DEVICE CALL (bench/README.md has the details). The device machine has PyTorch with CUDA, Triton and numpy,
which is all the suite imports. SageAttention 1 (pure Triton, a 20 kB wheel) is optional and travels as a
wheel; flash-attn has no wheel that installs without network and is not carried. Once, at no device time,
in the root of the checkout the session was started in::

    echo /.whl/ >> .git/info/exclude
    python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 -d .whl sageattention==1.0.6

then the device tool's ``run`` with ``command: "bash bench/gpu_suite.sh"``, ``carry: [".whl"]`` and
``timeout_s: 540``. ``gpu_suite.sh`` installs the carried wheels (if any) and runs this script with
``--out $OUT``, its log beside the results. The tasks stop starting at ``--budget`` seconds (default 420):
with the interpreter's start the run ends within about 7.5 minutes on an H200, so machine start + run stay
near 10 of the lease's 15 minutes, leaving room for one short rerun of what failed or was skipped
(``bash bench/gpu_suite.sh --only fp8_e4m3fn_fast --budget 120``: ``--only`` takes group names or parts of
task names). JSON and table are written after every task, so a run stopped early still returns what it
measured. Copy ``gpu_suite_<date>_<time>.json`` from the returned files to ``bench/results/``, run
``python3 tools/vram_guide.py`` and commit both.

WHAT IT MEASURES, in this order (tasks predicted not to fit the budget are skipped and listed):

1. numerics: the tiny DiT in bf16 on the GPU against fp32 on the CPU (relative L2 bound 0.03), scaled FP8
   against fp32 (0.08), ``fp8_e4m3fn_fast`` against scaled FP8 (0.10) (on the CPU these measure 0.009,
   0.034 and 0.034), and each installed attention backend against sdpa (SageAttention 0.05, flash-attn
   0.01);
2. speed: the released 12.8B DiT (random bf16 weights built on the GPU, ``suite_models.py``), text
   encoders absent (256 random text tokens, as the pipeline pads), for each installed attention backend
   (sdpa first) in bf16, then scaled FP8 with sdpa: one untimed warm-up forward at the smaller video,
   then one timed forward (= one step; the model is guidance-distilled) per video; seconds, TFLOP/s
   and MFU from ``flops.py``'s count, against the bf16 matmul rate measured at start (8192^3, about
   790 TFLOP/s on an H200) and the datasheet's 989.5 (FP8 steps too: MFU counts model FLOPs against the
   bf16 rate); peak memory against the memory model's estimate;
3. caps: each emulated card (``suite_gauge.py``: 24 GB with bf16 weights, 16 and 12 GB with scaled FP8)
   runs HunyuanVideo Block Swap on ``auto`` from RAM at each video: the plan, the measured peak against
   its estimate (allocated against weights + buffers + activations; reserved against the whole estimate
   with its margin), the step against the uncapped step; prefetch off at 720p on the 24 GB card (12 GB
   at 720p, which the plan says does not fit even with every block swapped, comes after the decodes);
4. vae: the released VAE (random weights, bf16) decodes a 1280x720x129 latent under each cap (the
   smallest first) with ``auto`` tiling: the tiling, seconds, peak above the weights against the tile
   estimate;
5. then ``fp8_e4m3fn_fast`` speed, prefetch off on the remaining caps and videos, FP8 with the other
   attention backends.

Targets it reports against (never asserted): bf16 1280x720x129 at least 55% MFU with the best attention;
prefetch overhead under 5% of the step at 720p on the 24 GB card; no OOM and peak within 10% of the
estimate on every card; tiled decode under each cap without OOM.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import import_pack  # noqa: E402

import_pack()
from flops import dit_forward_flops, mfu  # noqa: E402
from suite_budget import Budget  # noqa: E402
from suite_gauge import GIB, Gauge  # noqa: E402
from suite_models import BF16, FP8_FAST, FP8_SCALED, model_inputs, random_dit, random_vae, set_fp8_kernel  # noqa: E402
from suite_numerics import numerics  # noqa: E402
from suite_report import markdown  # noqa: E402
from suite_setup import Card, Setup, attention_backends, environment, latent_shape  # noqa: E402

from hunyuanvideo_pack.hunyuan_model import TransformerHandle, auto_tiling, vae_decode  # noqa: E402
from hunyuanvideo_pack.hunyuan_model.dit import HunyuanVideoTransformer  # noqa: E402
from hunyuanvideo_pack.hunyuan_model.offload import BlockSwap, ModelSizes, SwapChoice, Workload, estimate  # noqa: E402
from hunyuanvideo_pack.hunyuan_model.quant import (  # noqa: E402
    CastLinear,
    ScaledMMLinear,
    scaled_mm_unsupported_reason,
)
from hunyuanvideo_pack.hunyuan_model.vae import estimate_bytes  # noqa: E402

GUIDANCE = 6.0
DATASHEET_BF16 = 989.5e12  # H100/H200 SXM dense bf16
CARD_WEIGHTS = {"bf16": BF16, "FP8": FP8_SCALED}  # tools/vram_guide.py's row labels -> the suite's formats
RESULTS_DIR = Path(__file__).resolve().parent / "results"
GROUPS = ("numerics", "speed", "caps", "vae")


@dataclass
class Task:
    name: str
    group: str
    predict: Callable[[], float]
    run: Callable[[], None]


@dataclass
class Suite:
    setup: Setup
    budget: Budget
    out: Path
    results: dict = field(default_factory=dict)
    _dit: dict = field(default_factory=dict)  # "bf16" / "fp8" -> model
    _vae: object = None

    def __post_init__(self) -> None:
        self.gauge = Gauge(self.setup.device)
        self.results.update(environment(self.setup), budget_s=self.budget.seconds, skipped=self.budget.skipped)
        for key in ("numerics", "speed", "caps", "vae", "errors"):
            self.results.setdefault(key, [])
        self.results["flops"] = {
            video: dit_forward_flops(self.setup.dit, latent_shape(video), self.setup.text_tokens).as_dict()
            for video in self.setup.videos
        }

    # -- the plan ---------------------------------------------------------------------------------

    def plan(self) -> list[Task]:
        """Every task, most important first (module doc)."""
        s, backends = self.setup, attention_backends()
        small, large = s.videos[0], s.videos[-1]
        tasks = [Task("numerics: tiny DiT", "numerics", lambda: 20.0, self.numerics)]
        tasks += [t for b in backends for t in self.speed_tasks(BF16, b)]
        tasks += self.speed_tasks(FP8_SCALED, "sdpa")
        first, *others = s.cards
        smallest = others[-1] if others else first
        tasks += [self.cap_task(first, video, True) for video in s.videos] + [self.cap_task(first, large, False)]
        # The smallest card at the largest video does not fit by the plan: it comes after the decodes.
        pairs = [(card, video) for card in others for video in s.videos if (card, video) != (smallest, large)]
        tasks += [self.cap_task(card, video, True) for card, video in pairs]
        tasks += [self.vae_task(card) for card in sorted(s.cards, key=lambda c: c.card_gb)]  # the hardest first
        tasks += [self.cap_task(smallest, large, True)]
        tasks += self.speed_tasks(FP8_FAST, "sdpa")
        tasks += [self.cap_task(card, small, False) for card in s.cards]
        tasks += [self.cap_task(card, large, False) for card in others]
        tasks += [t for b in backends[1:] for w in (FP8_SCALED, FP8_FAST) for t in self.speed_tasks(w, b)]
        return tasks

    def run(self, only: tuple[str, ...] = GROUPS) -> None:
        """Every planned task that ``only`` selects (a group name, or any part of the task's name)."""
        self.results["ceiling"] = self.ceiling()
        no_fp8_matmul = scaled_mm_unsupported_reason(self.setup.device)
        if no_fp8_matmul:
            self.budget.skipped.append({"task": f"every {FP8_FAST} task", "reason": no_fp8_matmul})
        for task in self.plan():
            if not any(word == task.group or word in task.name for word in only):
                continue
            if no_fp8_matmul and FP8_FAST in task.name:
                continue
            if not self.budget.allows(task.name, task.predict()):
                continue
            print(f"[{self.budget.elapsed():6.1f} s] {task.name}", flush=True)
            self.attempt(task.name, task.run)
            self.save()
        self.results["elapsed_s"] = round(self.budget.elapsed(), 1)
        self.save()

    def attempt(self, name: str, fn: Callable[[], None]) -> None:
        """Run ``fn``; a failure is recorded (with its traceback's end) and the suite goes on."""
        try:
            fn()
        except Exception as error:  # noqa: BLE001 - one broken task must not cost the others
            message = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
            print(f"  FAILED {name}: {message}", flush=True)
            self.results["errors"].append({"task": name, "error": message, "trace": traceback.format_exc()[-1500:]})
            self.gauge.release()

    # -- speed ------------------------------------------------------------------------------------

    def speed_tasks(self, weights: str, attention: str) -> list[Task]:
        def forward_s(video: str) -> float:
            return self.budget.forward_seconds(self.flops(video), weights, attention)

        def prepare_s() -> float:
            if self.dit_model(weights, build=False) is None:
                return self.budget.guess(f"build {weights}", 30.0)
            return self.budget.guess("move", 15.0)

        warm = self.setup.videos[0]
        tasks = [
            Task(
                f"speed {weights} {attention} warm-up {warm}",
                "speed",
                lambda: prepare_s() + forward_s(warm) * 1.5,
                lambda: self.speed_step(weights, attention, warm, record=False),
            )
        ]
        for video in self.setup.videos:
            tasks.append(
                Task(
                    f"speed {weights} {attention} {video}",
                    "speed",
                    lambda v=video: forward_s(v),
                    lambda v=video: self.speed_step(weights, attention, v, record=True),
                )
            )
        return tasks

    def speed_step(self, weights: str, attention: str, video: str, record: bool) -> None:
        model = self.dit_model(weights, build=True)
        self.alone_on_device(model)
        model.attention_backend = attention
        shape = latent_shape(video)
        inputs = model_inputs(self.setup.dit, shape, self.setup.text_tokens, self.setup.device)
        self.gauge.reset_peak()
        out, seconds = self.gauge.timed(lambda: model(*inputs[:3], None, inputs[3], GUIDANCE))
        flops = self.flops(video)
        self.budget.saw_forward(flops, seconds, weights, attention)
        entry = {"weights": weights, "attention": attention, "video": video, "seconds": round(seconds, 3)}
        entry |= self.rates(flops, seconds) | self.gauge.peaks() | {"finite": bool(torch.isfinite(out).all())}
        workload = Workload(shape, self.setup.text_tokens)
        entry["estimate_peak"] = estimate(ModelSizes.of(model), SwapChoice(), workload).peak
        print(f"  {'' if record else 'warm-up '}{_describe(entry)}", flush=True)
        if record:
            self.results["speed"].append(entry)

    def rates(self, flops: int, seconds: float) -> dict:
        ceiling = self.results.get("ceiling", {}).get("bf16_matmul_flops")
        entry = {"tflops": round(flops / seconds / 1e12, 1)}
        if ceiling:
            entry["mfu"] = round(mfu(flops, seconds, ceiling), 4)
            entry["mfu_datasheet"] = round(mfu(flops, seconds, DATASHEET_BF16), 4)
        return entry

    # -- emulated cards ---------------------------------------------------------------------------

    def cap_task(self, card: Card, video: str, prefetch: bool) -> Task:
        weights = CARD_WEIGHTS[card.weights]
        name = f"cap {card.card_gb} GB {card.weights} {video} prefetch {'on' if prefetch else 'off'}"

        def predict() -> float:
            setup = self.budget.guess("swap enter + exit", 30.0)  # moving and packing 13-26 GB, pinning
            return setup + 1.3 * self.budget.forward_seconds(self.flops(video), weights, "sdpa")

        return Task(name, "caps", predict, lambda: self.capped_step(card, video, prefetch))

    def capped_step(self, card: Card, video: str, prefetch: bool) -> None:
        s, weights = self.setup, CARD_WEIGHTS[card.weights]
        model = self.dit_model(weights, build=True)
        model.attention_backend = "sdpa"  # the default, and the uncapped steps it is compared with
        _, moved = self.gauge.timed(lambda: self.alone_on_device(None))
        self.budget.saw("move", moved)
        shape = latent_shape(video)
        cap = card.free_bytes or self.dry_run_cap(model)
        entry = {"card_gb": card.card_gb, "free_bytes": cap, "weights": card.weights, "video": video}
        entry["prefetch"] = prefetch
        free = self.gauge.free_under(cap)
        placement = BlockSwap(auto=True, prefetch=prefetch, text_tokens=s.text_tokens, free_memory=free)
        handle = TransformerHandle(model, s.device, torch.device("cpu"), placement)
        try:
            with self.gauge.capped(cap):
                inputs = model_inputs(s.dit, shape, self.setup.text_tokens, s.device)
                self.gauge.reset_peak()
                (out, seconds), entered = self.gauge.timed(lambda: self._swapped_forward(handle, shape, inputs))
                entry |= {"status": "ok", "seconds": round(seconds, 3), "enter_exit_s": round(entered - seconds, 1)}
                self.budget.saw("swap enter + exit", moved + entered - seconds)
                entry["finite"] = bool(torch.isfinite(out).all())
                del out
                entry |= self.gauge.peaks()
        except torch.OutOfMemoryError as error:
            entry |= {"status": "oom", "error": str(error).splitlines()[0]} | self.gauge.peaks()
        entry |= plan_record(placement.plan)
        uncapped = self.speed_of(weights, "sdpa", video)
        if uncapped and "seconds" in entry:
            entry["uncapped_seconds"] = uncapped
            entry["vs_uncapped"] = round(entry["seconds"] / uncapped - 1, 4)
        if "peak_allocated" in entry and "estimate_peak" in entry:
            entry["allocated_vs_estimate"] = round(entry["peak_allocated"] / entry["estimate_without_margin"], 4)
            entry["reserved_vs_estimate"] = round(entry["peak_reserved"] / entry["estimate_peak"], 4)
        print(f"  {_describe(entry)}", flush=True)
        self.results["caps"].append(entry)

    def _swapped_forward(self, handle, shape, inputs):
        with handle.running(shape, offload_after=True) as model:
            return self.gauge.timed(lambda: model(*inputs[:3], None, inputs[3], GUIDANCE))

    def dry_run_cap(self, model) -> int:
        """A cap under which ``auto`` swaps every double block at the largest video (tiny models only).

        On the CPU the offload device is the compute device, so the planner counts the whole model as
        already there and adds it to the free memory: the cap leaves it out.
        """
        sizes = ModelSizes.of(model)
        workload = Workload(latent_shape(self.setup.videos[-1]), self.setup.text_tokens)
        return estimate(sizes, SwapChoice(len(sizes.double_blocks), 0), workload).peak - sizes.total

    def speed_of(self, weights: str, attention: str, video: str) -> float | None:
        found = [
            e["seconds"]
            for e in self.results["speed"]
            if (e["weights"], e["attention"], e["video"]) == (weights, attention, video)
        ]
        return found[-1] if found else None

    # -- VAE --------------------------------------------------------------------------------------

    def vae_task(self, card: Card) -> Task:
        name = f"vae decode {self.setup.vae_video} under {card.card_gb} GB"
        return Task(name, "vae", lambda: self.budget.guess("vae", 60.0), lambda: self.vae_decode(card))

    def vae_decode(self, card: Card) -> None:
        s = self.setup
        if self._vae is None:
            self._vae = random_vae(s.vae, s.device, torch.bfloat16)
        vae = self._vae
        self.alone_on_device(vae)
        latent = torch.randn(latent_shape(s.vae_video), generator=torch.Generator().manual_seed(2))
        cap = card.free_bytes or 1 * GIB
        entry = {"card_gb": card.card_gb, "free_bytes": cap, "video": s.vae_video}
        try:
            with self.gauge.capped(cap):
                weights = self.gauge.allocated()
                tiling = auto_tiling(vae.config, tuple(latent.shape), vae.dtype, cap - weights)
                entry |= {
                    "tiling": tiling.describe(),
                    "estimate": estimate_bytes(vae.config, tuple(latent.shape), tiling, vae.dtype),
                }
                self.gauge.reset_peak()
                frames, seconds = self.gauge.timed(lambda: vae_decode(vae, latent, tiling))
                entry |= {"status": "ok", "seconds": round(seconds, 2), "finite": bool(torch.isfinite(frames).all())}
                entry |= self.gauge.peaks()
        except torch.OutOfMemoryError as error:
            entry |= {"status": "oom", "error": str(error).splitlines()[0]} | self.gauge.peaks()
        if "peak_allocated" in entry:
            entry["above_weights"] = entry["peak_allocated"] - weights
            entry["above_weights_vs_estimate"] = round(entry["above_weights"] / entry["estimate"], 4)
        self.budget.saw("vae", entry.get("seconds", 60.0))
        print(f"  {_describe(entry)}", flush=True)
        self.results["vae"].append(entry)

    def numerics(self) -> None:
        checks, skipped = numerics(self.setup.device, self.setup.numerics_latent, attention_backends())
        self.results["numerics"] += checks
        self.budget.skipped.extend(skipped)

    # -- models, ceiling, output ------------------------------------------------------------------

    def dit_model(self, weights: str, build: bool) -> HunyuanVideoTransformer | None:
        """The bf16 or FP8 model (FP8 with the kernel ``weights`` names), built on the device on first use."""
        key = "bf16" if weights == BF16 else "fp8"
        if key not in self._dit:
            if not build:
                return None
            (model, seconds) = self.gauge.timed(lambda: random_dit(self.setup.dit, self.setup.device, fp8=key == "fp8"))
            self.budget.saw(f"build {weights}", seconds)
            print(f"  built the {key} DiT in {seconds:.1f} s", flush=True)
            self._dit[key] = model
        model = self._dit[key]
        if key == "fp8" and not isinstance(model.double_blocks[0].img_attn_qkv, _kernel(weights)):
            set_fp8_kernel(model, weights)
        return model

    def alone_on_device(self, model: torch.nn.Module | None) -> None:
        """``model`` on the compute device and every other model in RAM (None: all in RAM), so that the
        emulated cards hold only what a real run would. The allocator's cache is emptied only when
        something left the device, so that consecutive steps of one model keep their warm cache."""
        others = [m for m in (*self._dit.values(), self._vae) if m is not None and m is not model]
        leaving = [m for m in others if _on(m, self.setup.device)]
        for other in leaving:
            other.to("cpu")
        if leaving:
            self.gauge.release()
        if model is not None:
            model.to(self.setup.device)

    def flops(self, video: str) -> int:
        return self.results["flops"][video]["total"]

    def ceiling(self) -> dict:
        """The dense bf16 matmul rate of this device (8192^3, median of 10 after 3 warm-ups)."""
        if not self.gauge.cuda:
            return {}
        a, b = (torch.randn(8192, 8192, device=self.setup.device, dtype=torch.bfloat16) for _ in range(2))
        for _ in range(3):
            a @ b
        times = sorted(self.gauge.timed(lambda: a @ b)[1] for _ in range(10))
        rate = 2 * 8192**3 / times[len(times) // 2]
        print(f"bf16 matmul 8192^3: {rate / 1e12:.0f} TFLOP/s", flush=True)
        return {"bf16_matmul_flops": rate, "datasheet_bf16_flops": DATASHEET_BF16}

    def save(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        stem = self.out / f"gpu_suite_{self.results['started']}"
        stem.with_suffix(".json").write_text(json.dumps(self.results, indent=1) + "\n", encoding="utf-8")
        stem.with_suffix(".md").write_text(markdown(self.results), encoding="utf-8")


def plan_record(plan) -> dict:
    if plan is None:
        return {}
    e = plan.estimate
    return {
        "plan": [plan.choice.double_blocks, plan.choice.single_blocks],
        "plan_fits": plan.fits,
        "estimate_peak": e.peak,
        "estimate_without_margin": e.weights + e.slots + e.activations,
        "estimate_terms": {"weights": e.weights, "slots": e.slots, "activations": e.activations, "margin": e.margin},
        "copied_per_forward": e.copied_per_forward,
    }


def _on(model: torch.nn.Module, device: torch.device) -> bool:
    """Whether any of ``model``'s weights are on ``device`` (the CPU holds everything in dry runs: never)."""
    return device.type != "cpu" and any(p.device.type == device.type for p in model.parameters())


def _kernel(weights: str) -> type:
    return ScaledMMLinear if weights == FP8_FAST else CastLinear


def _describe(entry: dict) -> str:
    keys = ("weights", "attention", "card_gb", "video", "prefetch", "plan", "tiling", "status", "seconds", "mfu")
    parts = [f"{k}={entry[k]}" for k in keys if k in entry]
    parts += [
        f"{k}={entry[k] / GIB:.2f} GiB" for k in ("peak_allocated", "peak_reserved", "estimate_peak") if k in entry
    ]
    return " ".join(parts)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default_out = os.environ.get("OUT") or str(RESULTS_DIR)
    parser.add_argument("--out", type=Path, default=Path(default_out), help="folder for the JSON and table ($OUT)")
    parser.add_argument("--budget", type=float, default=420.0, help="seconds of tasks; the rest is skipped")
    parser.add_argument(
        "--only",
        nargs="+",
        default=list(GROUPS),
        metavar="WORD",
        help=f"run only the tasks of these groups ({', '.join(GROUPS)}) or whose names contain one of the words",
    )
    parser.add_argument("--dry-run", action="store_true", help="tiny models on the CPU (tests)")
    parser.add_argument("--list", action="store_true", help="print the planned tasks and exit (no GPU needed)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.list:
        suite = Suite(Setup.tiny() if args.dry_run else Setup.released(), Budget(args.budget), args.out)
        for task in suite.plan():
            print(f"{task.group:9s} {task.predict():6.0f} s  {task.name}")
        return 0
    if not args.dry_run and not torch.cuda.is_available():
        print("bench/gpu_suite.py: no CUDA device here; the suite measures GPUs only. Nothing run, nothing written.")
        return 0
    logging.basicConfig(level=logging.INFO, format="  %(name)s: %(message)s")  # the block-swap plans
    setup = Setup.tiny() if args.dry_run else Setup.released()
    suite = Suite(setup, Budget(args.budget), args.out)
    print(
        f"{suite.results['device']}, torch {torch.__version__}; budget {args.budget:.0f} s; out {args.out}", flush=True
    )
    suite.run(tuple(args.only))
    print(markdown(suite.results), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
