"""The README's node reference is generated from the node definitions and must be current."""

import importlib.util

from conftest import PACK_DIR
from hunyuanvideo_pack.nodes import NODE_CLASS_MAPPINGS

spec = importlib.util.spec_from_file_location("node_reference", PACK_DIR / "tools" / "node_reference.py")
node_reference = importlib.util.module_from_spec(spec)
spec.loader.exec_module(node_reference)


def test_readme_node_reference_is_current(models_dir):
    readme = (PACK_DIR / "README.md").read_text(encoding="utf-8")
    wanted = node_reference.update(readme, node_reference.render(NODE_CLASS_MAPPINGS))
    assert wanted == readme, "README.md's node reference is out of date: run python3 tools/node_reference.py"


def test_every_node_input_and_output_appears_with_its_tooltip(models_dir):
    reference = node_reference.render(NODE_CLASS_MAPPINGS)
    for node_id, cls in NODE_CLASS_MAPPINGS.items():
        assert f"#### {cls.DISPLAY_NAME}\n\n`{node_id}`. {cls.DESCRIPTION}" in reference
        for section in ("required", "optional"):
            for name, spec in cls.INPUT_TYPES().get(section, {}).items():
                assert f"| `{name}`" in reference and spec[1]["tooltip"] in reference, (cls.__name__, name)
        for tooltip in cls.OUTPUT_TOOLTIPS:
            assert tooltip in reference


def test_rows_show_types_ranges_defaults_and_escape_pipes():
    class Toy:
        DISPLAY_NAME, CATEGORY, DESCRIPTION = "Toy", "HunyuanVideo/toy", "A | B."
        RETURN_TYPES, RETURN_NAMES, OUTPUT_TOOLTIPS = ("LATENT",), ("samples",), ("Out.",)

        @classmethod
        def INPUT_TYPES(cls):
            return {
                "required": {
                    "model": ([], {"tooltip": "A file."}),
                    "steps": ("INT", {"default": 30, "min": 1, "max": 200, "tooltip": "Steps."}),
                },
                "optional": {"text": ("STRING", {"default": "", "forceInput": True, "tooltip": "x|y"})},
            }

    assert node_reference.render({"Toy": Toy}).splitlines() == [
        "### HunyuanVideo/toy",
        "",
        "#### Toy",
        "",
        "`Toy`. A \\| B.",
        "",
        "| Input | Type | Default | Description |",
        "|---|---|---|---|",
        "| `model` | a model file from the list |  | A file. |",
        "| `steps` | INT 1..200 | `30` | Steps. |",
        '| `text` (optional) | STRING (socket) | `""` | x\\|y |',
        "",
        "| Output | Type | Description |",
        "|---|---|---|",
        "| `samples` | LATENT | Out. |",
    ]
