"""The README's low-VRAM table is generated from the block-swap memory model and must be current."""

import importlib.util

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
