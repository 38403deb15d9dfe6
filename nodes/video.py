"""Video output: decoded frames to an mp4 or webm file in the output folder."""

from __future__ import annotations

import json

from ..hunyuan_model.video_file import VIDEO_FORMATS, check_crf, write_video
from . import comfy_env, output_files
from .widget_checks import join_problems, validate

CATEGORY = "HunyuanVideo/video"


class HunyuanVideoSaveVideo:
    DISPLAY_NAME = "HunyuanVideo Save Video"
    DESCRIPTION = (
        "Saves frames as an mp4 (H.264) or webm (VP9) video in ComfyUI's output folder, with the prompt and "
        "workflow embedded so the video can be dragged back into ComfyUI's browser later. The file appears "
        "only once complete. Odd widths or heights are padded by one pixel (repeating the edge), as the "
        "video formats need even sizes."
    )
    CATEGORY = CATEGORY
    FUNCTION = "save"
    OUTPUT_NODE = True
    RETURN_TYPES = ()
    OUTPUT_TOOLTIPS = ()

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "images": ("IMAGE", {"tooltip": "The video frames, e.g. from 'HunyuanVideo VAE Decode'."}),
                "filename_prefix": (
                    "STRING",
                    {
                        "default": "HunyuanVideo",
                        "tooltip": "File name start; may hold subfolders ('video/cats'). A counter follows: "
                        "HunyuanVideo_00001_.mp4. %width%, %height% and %year%..%second% are filled in.",
                    },
                ),
                "format": (
                    list(VIDEO_FORMATS),
                    {"default": "mp4", "tooltip": "mp4 = H.264, plays everywhere; webm = VP9, smaller files."},
                ),
                "fps": (
                    "FLOAT",
                    {
                        "default": 24.0,
                        "min": 1.0,
                        "max": 240.0,
                        "step": 0.01,
                        "tooltip": "Frames per second; HunyuanVideo is trained on 24 fps video.",
                    },
                ),
                "crf": (
                    "INT",
                    {
                        "default": 19,
                        "min": 0,
                        "max": 63,
                        "tooltip": "Constant quality: lower is better and bigger. 0-51 for mp4, 0-63 for webm; "
                        "19 is visually clean for mp4, about 30 for webm.",
                    },
                ),
            },
            "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"},
        }

    @classmethod
    def VALIDATE_INPUTS(cls, filename_prefix, format, crf):
        verdict = validate(cls.INPUT_TYPES(), {"format": format, "crf": crf}, check_crf)
        return join_problems(
            [
                *([] if verdict is True else [verdict]),
                *output_files.output_problems(filename_prefix, comfy_env.output_directory()),
            ]
        )

    def save(self, images, filename_prefix, format, fps, crf, prompt=None, extra_pnginfo=None):
        frames, height, width = images.shape[0], images.shape[1], images.shape[2]
        output_files.warn_about_prefix(filename_prefix)
        target = comfy_env.save_target(filename_prefix, width, height)
        with (
            output_files.claimed_file(target.folder, target.filename, target.counter, format) as (name, temporary),
            comfy_env.Progress(frames, "HunyuanVideo save") as progress,
        ):
            write_video(
                images,
                temporary,
                fps=fps,
                format=format,
                crf=crf,
                metadata=workflow_metadata(prompt, extra_pnginfo),
                on_frame=progress.update,
            )
        saved = {"filename": name, "subfolder": target.subfolder, "type": "output"}
        return {"ui": {"images": [saved], "animated": (True,)}}


def workflow_metadata(prompt: dict | None, extra_pnginfo: dict | None) -> dict[str, str]:
    """Container tags as ComfyUI's own video savers write them: "prompt" and each extra_pnginfo key as JSON."""
    if not comfy_env.metadata_enabled():
        return {}
    tags = {"prompt": json.dumps(prompt)} if prompt is not None else {}
    for key, value in (extra_pnginfo or {}).items():
        tags[key] = json.dumps(value)
    return tags
