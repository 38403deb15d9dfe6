"""Load Image for the headless runner: ComfyUI's core node, which only exists inside ComfyUI.

Same id, input and outputs as ComfyUI's ``LoadImage`` (nodes.py): an RGB ``IMAGE`` [1, H, W, 3] in
0..1 after EXIF rotation, and a ``MASK`` that is 1 - alpha (zeros 64x64 without alpha). Files come
from ``$HUNYUANVIDEO_INPUT_DIR`` (default ``./input``), then the pack's ``workflows/`` folder, which
holds the shared workflows' sample image. Never registered with ComfyUI, whose own node it would replace.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from ..nodes import files

WORKFLOWS_DIR = Path(__file__).resolve().parents[1] / "workflows"
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


def input_folders() -> list[Path]:
    return [Path(os.environ.get("HUNYUANVIDEO_INPUT_DIR", "input")), WORKFLOWS_DIR]


def _images() -> list[str]:
    names = {p.name for d in input_folders() if d.is_dir() for p in d.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS}
    return sorted(names)


class LoadImage:
    DISPLAY_NAME = "Load Image"
    CATEGORY = "image"
    FUNCTION = "load_image"
    RETURN_TYPES = ("IMAGE", "MASK")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": (_images(), {"image_upload": True})}}

    def load_image(self, image: str):
        from PIL import Image, ImageOps

        files.check_relative_name(image)
        path = next((d / image for d in input_folders() if (d / image).is_file()), None)
        if path is None:
            folders = ", ".join(str(d) for d in input_folders())
            raise FileNotFoundError(f"image '{image}' is in none of the input folders ({folders}).")
        with Image.open(path) as opened:
            picture = ImageOps.exif_transpose(opened)
            rgb = torch.from_numpy(np.asarray(picture.convert("RGB"), dtype=np.float32) / 255.0)
            if "A" in picture.getbands():
                mask = 1.0 - torch.from_numpy(np.asarray(picture.getchannel("A"), dtype=np.float32) / 255.0)
            else:
                mask = torch.zeros(64, 64)
        return rgb.unsqueeze(0), mask.unsqueeze(0)


HEADLESS_CORE_NODES = {"LoadImage": LoadImage}
