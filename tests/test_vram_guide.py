"""The README's low-VRAM table is generated from the block-swap memory model and must be current."""

import importlib.util
import json

from conftest import PACK_DIR

spec = importlib.util.spec_from_file_location("vram_guide", PACK_DIR / "tools" / "vram_guide.py")
vram_guide = importlib.util.module_from_spec(spec)
spec.loader.exec_module(vram_guide)


def test_readme_vram_table_is_current():
    readme = (PACK_DIR / "README.md").read_text(encoding="utf-8")
    table = vram_guide.render()
    assert vram_guide.update(readme, table) == readme, (
        "README.md's low-VRAM table is out of date: run tools/vram_guide.py"
    )


def test_the_table_has_a_row_per_card_and_format_and_the_24gb_plans_of_the_memory_model():
    rows = [line.split(" | ") for line in vram_guide.render().splitlines()[2:]]
    assert len(rows) == len(vram_guide.CARDS_GB) * len(vram_guide.FORMATS)
    assert rows[-3][0] == "| 24 GB (22 GiB)" and rows[-3][2:] == ["no swap"] * 3 + ["no swap |"]
    assert rows[-1][1:] == [
        "bf16",
        "9 + 0",
        "11 + 0",
        "15 + 0",
        "20 + 0 |",
    ]  # tests/test_memory_plan.py: 960x544x129 -> 15
    assert rows[0][2:4] == ["20 + 20", "20 + 29"] and rows[0][4].startswith("does not fit")


def test_measured_peaks_from_a_suite_results_file_mark_their_rows_and_add_their_video_sizes(tmp_path):
    gib = 2**30

    def run(card, weights, video, plan, **fields):
        free = (card - 2) * gib
        entry = {"card_gb": card, "free_bytes": free, "weights": weights, "video": video, "prefetch": True}
        return entry | {"plan": plan} | fields

    caps = [
        run(24, "bf16", "1280x720x129", [20, 0], status="ok", peak_reserved=int(21.5 * gib)),
        run(12, "FP8", "1280x720x129", [20, 40], status="oom"),
        run(16, "FP8", "960x544x97", [12, 0], status="ok", peak_reserved=13 * gib),
        run(16, "bf16", "960x544x129", [1, 0], status="ok", peak_reserved=gib),  # another plan: left out
    ]
    results = {"suite": "gpu_suite", "dry_run": False, "device": "NVIDIA H200", "date": "2026-12-05", "caps": caps}
    (tmp_path / "gpu_suite_2026-12-05.json").write_text(json.dumps(results))
    (tmp_path / "dry.json").write_text(json.dumps({**results, "dry_run": True, "caps": []}))
    lines = vram_guide.render(tmp_path).splitlines()
    assert lines[0].split(" | ")[2:] == ["512x320x61", "848x480x73", "960x544x97", "960x544x129", "1280x720x129 |"]
    rows = {(cells[0], cells[1]): cells for cells in (line.split(" | ") for line in lines[2:]) if len(cells) > 2}
    assert rows["| 24 GB (22 GiB)", "FP8"][-1] == "no swap |"
    assert rows["| ", "bf16 (measured)"][-1] == "20 + 0 · measured 21.50 GiB |"
    assert rows["| 16 GB (14 GiB)", "FP8 (measured)"][4] == "12 + 0 · measured 13.00 GiB"
    assert rows["| ", "bf16"][5] == "20 + 17"  # measured with [1, 0]: stale, not shown
    assert rows["| 12 GB (10 GiB)", "FP8 (measured)"][-1] == "does not fit (10.80 GiB) · out of memory on a GPU |"
    assert lines[-1].endswith(": NVIDIA H200, 2026-12-05 (`bench/results/gpu_suite_2026-12-05.json`).")
