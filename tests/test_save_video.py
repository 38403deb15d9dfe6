"""Saving frames as video: decoded back with PyAV, named like ComfyUI's save nodes, never half-written."""

import json
import os
import subprocess
import sys

import av
import numpy as np
import pytest
import torch

from hunyuanvideo_pack.hunyuan_model.video_file import write_video
from hunyuanvideo_pack.nodes import comfy_env
from hunyuanvideo_pack.nodes.video import HunyuanVideoSaveVideo


def gradient_frames(frames: int = 9, height: int = 32, width: int = 48) -> torch.Tensor:
    """Red rises left to right, green top to bottom, blue over time: [F, H, W, 3] in 0..1."""
    red = torch.linspace(0, 1, width).expand(frames, height, width)
    green = torch.linspace(0, 1, height)[:, None].expand(frames, height, width)
    blue = torch.linspace(0.1, 0.9, frames)[:, None, None].expand(frames, height, width)
    return torch.stack([red, green, blue], dim=-1)


def decode(path):
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
        return frames, stream.average_rate, stream.codec_context.name, dict(container.metadata)


def save(images, **overrides):
    arguments = dict(filename_prefix="HunyuanVideo", format="mp4", fps=24.0, crf=19) | overrides
    return HunyuanVideoSaveVideo().save(images, **arguments)


@pytest.mark.parametrize("format, codec", [("mp4", "h264"), ("webm", "vp9")])
def test_frames_come_back_with_their_count_size_rate_and_colours(tmp_path, format, codec):
    images = gradient_frames()
    path = write_video(images, tmp_path / f"clip.{format}", fps=23.976, format=format, crf=8)

    frames, rate, codec_name, _ = decode(path)
    assert frames.shape == (9, 32, 48, 3)
    assert codec_name == codec
    assert rate == pytest.approx(23.976, abs=1e-6)
    expected = images.numpy() * 255
    error = np.abs(frames.astype(np.float64) - expected)
    assert error.mean() < 3.5, error.mean()  # 2.6 measured: 4:2:0 chroma and 8-bit rounding
    assert np.percentile(error, 99) < 12
    assert frames[4, 16, 47, 0] > 240 and frames[4, 16, 0, 0] < 15  # red at the right edge only
    assert frames[8, 16, 24, 2] > frames[0, 16, 24, 2] + 150  # blue grows over time


def test_solid_colours_survive_exactly_and_are_stored_as_bt709(tmp_path):
    colours = torch.tensor([[1, 0, 0], [0, 1, 0], [0, 0, 1], [0.5, 0.5, 0.5], [1, 0.8, 0.2]])
    path = write_video(colours[:, None, None, :].expand(5, 16, 16, 3), tmp_path / "solid.mp4", crf=0)

    frames, *_ = decode(path)
    np.testing.assert_allclose(frames[:, 8, 8], colours.numpy() * 255, atol=3)
    with av.open(str(path)) as container:
        first = next(container.decode(video=0))
        luma = first.to_ndarray(format="yuv420p")[8, 8]
        assert (first.colorspace, first.color_range) == (1, 1)  # tagged BT.709, limited range
    assert abs(int(luma) - 63) <= 1  # pure red: 16 + 219 * 0.2126 in BT.709 (BT.601 would give 81)


def test_odd_sizes_are_padded_by_repeating_the_edge(tmp_path):
    images = gradient_frames(frames=5, height=17, width=23)
    frames, *_ = decode(write_video(images, tmp_path / "odd.mp4", crf=0))
    assert frames.shape == (5, 18, 24, 3)
    np.testing.assert_allclose(frames[:, :, -1].astype(int), frames[:, :, -2].astype(int), atol=6)
    np.testing.assert_allclose(frames[:, -1].astype(int), frames[:, -2].astype(int), atol=6)


def test_rgba_frames_are_saved_without_their_alpha(tmp_path):
    images = torch.cat([gradient_frames(frames=5), torch.zeros(5, 32, 48, 1)], dim=-1)
    frames, *_ = decode(write_video(images, tmp_path / "rgba.mp4", crf=8))
    assert frames.shape == (5, 32, 48, 3)
    assert frames[2, 16, 47, 0] > 240


def test_the_node_saves_into_the_output_folder_with_prompt_and_workflow(models_dir):
    prompt = {"1": {"class_type": "HunyuanVideoEmptyLatent", "inputs": {"frames": 9}}}
    workflow = {"nodes": [{"id": 1}], "links": []}
    result = save(gradient_frames(), prompt=prompt, extra_pnginfo={"workflow": workflow})

    assert result == {
        "ui": {
            "images": [{"filename": "HunyuanVideo_00001_.mp4", "subfolder": "", "type": "output"}],
            "animated": (True,),
        }
    }
    frames, rate, _, metadata = decode(comfy_env.output_directory() / "HunyuanVideo_00001_.mp4")
    assert frames.shape == (9, 32, 48, 3) and rate == 24
    assert json.loads(metadata["prompt"]) == prompt
    assert json.loads(metadata["workflow"]) == workflow


def top_level_boxes(path):
    data, boxes, position = path.read_bytes(), [], 0
    while position + 8 <= len(data):
        boxes.append(data[position + 4 : position + 8].decode())
        position += int.from_bytes(data[position : position + 4], "big")
    return boxes


def test_mp4_metadata_sits_before_the_frames_where_comfyuis_page_reads_it(models_dir):
    # The page reads only the first 64 MB of a dropped mp4, looking for moov/udta/meta keys+ilst.
    save(gradient_frames(frames=5), prompt={"a": 1})
    path = comfy_env.output_directory() / "HunyuanVideo_00001_.mp4"
    boxes = top_level_boxes(path)
    assert boxes[0] == "ftyp" and boxes.index("moov") < boxes.index("mdat")
    data = path.read_bytes()
    assert data.index(b"udta") < data.index(b"keys") < data.index(b"prompt") < data.index(b"ilst") < data.index(b"mdat")


def test_webm_metadata_keys_are_upper_case_as_in_comfyui_savewebm(models_dir):
    save(gradient_frames(frames=5), format="webm", prompt={"a": 1}, extra_pnginfo={"workflow": {"b": 2}})
    *_, metadata = decode(comfy_env.output_directory() / "HunyuanVideo_00001_.webm")
    assert json.loads(metadata["PROMPT"]) == {"a": 1}
    assert json.loads(metadata["WORKFLOW"]) == {"b": 2}


def test_counters_continue_after_existing_files_like_comfyui(models_dir):
    output = comfy_env.output_directory()
    output.mkdir(parents=True)
    for name in ("HunyuanVideo_00007_.png", "hunyuanvideo_00002_.webp", "HunyuanVideoX_00042_.mp4", "Other_00099_.mp4"):
        (output / name).write_bytes(b"")
    first = save(gradient_frames(frames=1))["ui"]["images"][0]["filename"]
    second = save(gradient_frames(frames=1), format="webm")["ui"]["images"][0]["filename"]
    assert (first, second) == ("HunyuanVideo_00008_.mp4", "HunyuanVideo_00009_.webm")


def test_counters_match_comfyuis_own_rule_where_a_checkout_is_present(models_dir):
    comfy = os.environ.get("COMFYUI_DIR")
    if not comfy or not os.path.isfile(os.path.join(comfy, "folder_paths.py")):
        pytest.skip("COMFYUI_DIR does not point at a ComfyUI checkout")
    output = comfy_env.output_directory()
    (output / "sub").mkdir(parents=True)
    names = ["clip_00003_.mp4", "CLIP_00011_.webm", "clip_x_.mp4", "clip_.mp4", "clip00099_.mp4", "sub/clip_00005_.mp4"]
    for name in names:
        (output / name).write_bytes(b"")
    prefixes = ["clip", "Clip", "sub/clip", "new/clip", "x_%width%"]
    ours = [tuple(comfy_env.save_target(p, 48, 32))[1:] for p in prefixes]
    script = (
        "import json, sys; sys.path.insert(0, sys.argv[1]); import folder_paths as f; "
        "print(json.dumps([f.get_save_image_path(p, sys.argv[2], 48, 32)[1:4] for p in json.loads(sys.argv[3])]))"
    )
    run = subprocess.run(
        [sys.executable, "-c", script, comfy, str(output), json.dumps(prefixes)], capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr
    assert [tuple(t) for t in json.loads(run.stdout.splitlines()[-1])] == ours


def test_a_prefix_with_folders_and_size_variables_saves_into_a_subfolder(models_dir):
    (saved,) = save(gradient_frames(frames=1), filename_prefix="clips/cat_%width%x%height%")["ui"]["images"]
    assert saved == {"filename": "cat_48x32_00001_.mp4", "subfolder": "clips", "type": "output"}
    assert (comfy_env.output_directory() / "clips" / "cat_48x32_00001_.mp4").is_file()


def test_a_prefix_cannot_leave_the_output_folder(models_dir):
    with pytest.raises(PermissionError, match="outside the output folder"):
        save(gradient_frames(frames=1), filename_prefix="../escape")


def test_the_final_name_appears_only_when_the_file_is_complete(tmp_path):
    final = tmp_path / "clip.mp4"
    seen = []

    def on_frame(done):
        seen.append((final.exists(), sorted(p.name for p in tmp_path.iterdir())))
        if done == 60:
            raise RuntimeError("power cut")

    with pytest.raises(RuntimeError, match="power cut"):
        write_video(gradient_frames(frames=64, height=16, width=16), final, on_frame=on_frame)
    assert not any(final_exists for final_exists, _ in seen)
    partial = {name for _, names in seen for name in names}
    assert len(partial) == 1 and partial.pop().startswith(".clip.mp4.")  # written (hidden) once x264 emits
    assert list(tmp_path.iterdir()) == []  # and removed after the failure


def test_cancelling_the_node_leaves_no_file(models_dir, monkeypatch):
    original = comfy_env.Progress.update

    def cancel_at_frame_2(self, done, preview_latent=None):
        if done == 2:
            comfy_env.request_cancel()
        original(self, done, preview_latent)

    monkeypatch.setattr(comfy_env.Progress, "update", cancel_at_frame_2)
    with pytest.raises(comfy_env.Cancelled):
        save(gradient_frames())
    assert list(comfy_env.output_directory().iterdir()) == []


def test_validation_names_the_crf_range_of_the_chosen_format(models_dir):
    assert HunyuanVideoSaveVideo.VALIDATE_INPUTS(filename_prefix="v", format="webm", crf=60) is True
    message = HunyuanVideoSaveVideo.VALIDATE_INPUTS(filename_prefix="v", format="mp4", crf=60)
    assert "crf 60 is outside 0..51, the range of libx264 (mp4)" in message


def test_bad_frame_shapes_are_refused_with_the_shape_found(tmp_path):
    with pytest.raises(ValueError, match=r"\[frames, height, width, 3\].*got shape \(1, 16, 3, 4, 8\)"):
        write_video(torch.zeros(1, 16, 3, 4, 8), tmp_path / "x.mp4")
    assert list(tmp_path.iterdir()) == []
