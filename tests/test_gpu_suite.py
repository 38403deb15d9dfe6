"""bench/gpu_suite.py on the CPU: its FLOP count, its task plan and budget, one emulated-card step on a tiny
DiT, its report, and its exit on a machine without CUDA. The GPU measurements themselves need a GPU."""

from __future__ import annotations

import json
import sys

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from conftest import PACK_DIR
from hunyuanvideo_pack.hunyuan_model.dit import DiTConfig, HunyuanVideoTransformer, init_random_weights

sys.path.insert(0, str(PACK_DIR / "bench"))
import gpu_suite  # noqa: E402
from flops import dit_forward_flops, mfu  # noqa: E402
from suite_budget import Budget  # noqa: E402


def test_the_flop_count_equals_torch_flop_counter_on_a_tiny_dit():
    config = DiTConfig.tiny(double_blocks=1, single_blocks=1, refiner_blocks=1)
    model = init_random_weights(HunyuanVideoTransformer(config, dtype=torch.float32))
    shape, text_tokens = (2, 16, 3, 8, 12), 7
    args = (torch.randn(shape), torch.tensor([500.0, 20.0]), torch.randn(2, text_tokens, config.text_dim))
    # The math kernel runs attention as matmuls the counter sees (the CPU's flash kernel is not counted).
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        model(*args, None, torch.randn(2, config.pooled_dim), 6.0)
    counted = dit_forward_flops(config, shape, text_tokens)
    assert counted.total == counter.get_total_flops()
    assert counted.attention == 2 * 4 * config.hidden_size * (2 * (3 * 4 * 6 + 7) ** 2 + 7**2)


def test_the_released_count_at_720p_matches_the_reference_figures():
    """users_and_performance.md section 5: 1.62 PF of Linears + 10.45 PF of attention = 12.07 PF, 87% attention."""
    flops = dit_forward_flops(DiTConfig.released(), gpu_suite.latent_shape("1280x720x129"), 256)
    assert flops.linear / 1e15 == pytest.approx(1.62, abs=0.005)
    assert flops.attention / 1e15 == pytest.approx(10.45, abs=0.005)
    assert flops.attention / flops.total == pytest.approx(0.866, abs=0.001)
    # Tencent's ~38 s per step on an H100 (FA2) is about 32% of its 989.5 TFLOP/s datasheet rate.
    assert mfu(flops.total, 38.0, 989.5e12) == pytest.approx(0.32, abs=0.005)


def test_video_sizes_are_width_by_height_by_frames():
    assert gpu_suite.latent_shape("960x544x97") == (1, 16, 25, 68, 120)
    assert gpu_suite.latent_shape("1280x720x129") == (1, 16, 33, 90, 160)


def test_the_plan_puts_the_issue_targets_first(tmp_path):
    suite = gpu_suite.Suite(gpu_suite.Setup.released(), Budget(420), tmp_path)
    names = [task.name for task in suite.plan()]
    assert names[0] == "numerics: tiny DiT"
    assert names[1:4] == [
        "speed bf16 sdpa warm-up 960x544x97",
        "speed bf16 sdpa 960x544x97",
        "speed bf16 sdpa 1280x720x129",
    ]
    order = {name: i for i, name in enumerate(names)}
    prefetch_target = order["cap 24 GB bf16 1280x720x129 prefetch off"]
    assert order["speed fp8_e4m3fn_scaled sdpa 1280x720x129"] < order["cap 24 GB bf16 1280x720x129 prefetch on"]
    assert (
        prefetch_target < order["cap 16 GB FP8 960x544x97 prefetch on"] < order["vae decode 1280x720x129 under 12 GB"]
    )
    assert order["vae decode 1280x720x129 under 24 GB"] < order["speed fp8_e4m3fn_fast sdpa 1280x720x129"]
    assert len(names) == len(set(names))
    caps = [task for task in suite.plan() if task.group == "caps"]
    assert len(caps) == 3 * 2 * 2  # every card and video, prefetch on and off
    assert {c.card_gb: c.free_bytes for c in suite.setup.cards} == {24: 22 << 30, 16: 14 << 30, 12: 10 << 30}


def test_a_spent_budget_skips_every_task_and_still_writes_json_and_table(tmp_path):
    suite = gpu_suite.Suite(gpu_suite.Setup.tiny(), Budget(0), tmp_path)
    suite.run()
    results = json.loads(next(tmp_path.glob("gpu_suite_*.json")).read_text())
    assert [note["task"] for note in results["skipped"]] == [task.name for task in suite.plan()]
    assert results["speed"] == results["caps"] == results["vae"] == results["numerics"] == []
    table = next(tmp_path.glob("gpu_suite_*.md")).read_text()
    assert "- skipped numerics: tiny DiT: predicted 20.0 s" in table


def test_an_emulated_card_step_swaps_what_auto_plans_and_records_it(tmp_path):
    suite = gpu_suite.Suite(gpu_suite.Setup.tiny(), Budget(60), tmp_path)
    card, video = suite.setup.cards[0], suite.setup.videos[-1]
    suite.capped_step(card, video, prefetch=True)
    (entry,) = suite.results["caps"]
    assert entry["status"] == "ok" and entry["finite"]
    assert entry["plan"] == [3, 0] and entry["plan_fits"]  # the dry-run cap fits exactly every double block swapped
    terms = entry["estimate_terms"]
    assert entry["estimate_peak"] == sum(terms.values())
    assert entry["estimate_without_margin"] == terms["weights"] + terms["slots"] + terms["activations"]
    assert entry["copied_per_forward"] > 0 and entry["seconds"] > 0
    # The model is back in RAM afterwards, as the sampler leaves it.
    assert all(p.device.type == "cpu" for p in suite.dit_model(gpu_suite.BF16, build=False).parameters())


def test_without_cuda_it_says_so_exits_0_and_writes_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_suite.main(["--out", str(tmp_path)]) == 0
    assert "no CUDA device here" in capsys.readouterr().out
    assert list(tmp_path.iterdir()) == []


def test_the_table_answers_each_target_from_gpu_measurements():
    gib = 1 << 30
    cap = {"prefetch": True, "plan": [20, 0], "estimate_without_margin": 20 * gib, "estimate_peak": 22 * gib}
    results = {
        "date": "2026-12-05",
        "device": "NVIDIA H200",
        "torch": "2.11.0",
        "attention_backends": ["sdpa", "sageattention"],
        "ceiling": {"bf16_matmul_flops": 790e12, "datasheet_bf16_flops": 989.5e12},
        "flops": {"960x544x97": {"total": 2}, "1280x720x129": {"total": 12}},
        "speed": [
            {"weights": "bf16", "attention": a, "video": "1280x720x129", "seconds": s, "tflops": 1, "mfu": m}
            | {"finite": True, "peak_allocated": 30 * gib, "estimate_peak": 31 * gib}
            for a, s, m in (("sdpa", 30.0, 0.5), ("sageattention", 20.0, 0.75))
        ],
        "caps": [
            cap
            | {"card_gb": 24, "weights": "bf16", "video": "1280x720x129", "status": "ok", "seconds": 30.6}
            | {
                "vs_uncapped": 0.02,
                "peak_allocated": 21 * gib,
                "peak_reserved": 21.5 * gib,
                "allocated_vs_estimate": 1.05,
            },
            cap | {"card_gb": 12, "weights": "FP8", "video": "1280x720x129", "status": "oom", "plan_fits": False},
        ],
        "vae": [{"card_gb": 12, "video": "1280x720x129", "status": "ok", "seconds": 40.0, "tiling": "256 px"}],
        "numerics": [{"check": "bf16_vs_fp32", "rel_l2": 0.01, "bound": 0.03, "ok": True}],
        "skipped": [{"task": "speed fp8_e4m3fn_fast sdpa 1280x720x129", "predicted_s": 30.0, "left_s": 5.0}],
        "errors": [],
        "budget_s": 420,
        "elapsed_s": 415.0,
    }
    table = gpu_suite.markdown(results)
    assert "- bf16 1280x720x129 step >= 55% MFU with the best attention: 75.0% with sageattention" in table
    assert (
        "- prefetch overhead < 5% of the step at 1280x720x129 on the 24 GB card: +2.0% over the uncapped step" in table
    )
    assert "- no OOM on any card: 1 of 2 runs (OOM: 12 GB 1280x720x129)" in table
    assert "(weights + buffers + activations): 1 of 1 (24 GB 1280x720x129 x1.05)" in table
    assert "| 24 GB | bf16 | 1280x720x129 | on | 20 + 0 | ok | 21.00 / 20.00 | 21.50 / 22.00 | 30.60 | +2.0% |" in table
    assert "| 12 GB | FP8 | 1280x720x129 | on | 20 + 0 (plan: no fit) | oom | - / 20.00 | - / 22.00 | - | - |" in table
    assert "- skipped speed fp8_e4m3fn_fast sdpa 1280x720x129: predicted 30.0 s, 5.0 s left" in table
