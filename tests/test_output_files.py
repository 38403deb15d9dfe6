"""Output files: names claimed atomically when several runs save at once, the output folder checked before
anything runs, a warning for a prefix that names no file (issue 17, items 1, 4 and 5)."""

import os
import threading
from pathlib import Path

import av
import pytest
import torch

from hunyuanvideo_pack.hunyuan_model.conditioning import PromptEmbeds, TextEmbeds
from hunyuanvideo_pack.hunyuan_model.text_encoder.embeds_io import load_embeds
from hunyuanvideo_pack.nodes import comfy_env, output_files
from hunyuanvideo_pack.nodes.text import HunyuanVideoTextEmbedsSave
from hunyuanvideo_pack.nodes.video import HunyuanVideoSaveVideo


def frames(shade: float) -> torch.Tensor:
    return torch.full((1, 16, 16, 3), shade)


def save_video(shade: float, prefix: str = "race") -> str:
    ui = HunyuanVideoSaveVideo().save(frames(shade), filename_prefix=prefix, format="mp4", fps=24.0, crf=0)
    return ui["ui"]["images"][0]["filename"]


def embeds(value: float) -> TextEmbeds:
    prompt = PromptEmbeds(
        text_states=torch.full((1, 3, 8), value),
        text_mask=torch.ones(1, 3, dtype=torch.long),
        pooled=torch.full((1, 4), value),
    )
    return TextEmbeds(positive=prompt)


def racing_save_target(monkeypatch, runners: int):
    """Every saver computes its counter before any has written: what two runs at once see."""
    barrier = threading.Barrier(runners)
    original = comfy_env.save_target

    def save_target(*args):
        target = original(*args)
        barrier.wait(timeout=30)
        return target

    monkeypatch.setattr(comfy_env, "save_target", save_target)


def in_threads(work, count: int) -> list:
    results, errors = [None] * count, []

    def run(index):
        try:
            results[index] = work(index)
        except BaseException as error:  # surfaced below
            errors.append(error)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    return results


def test_videos_saved_at_once_get_their_own_names_and_none_is_overwritten(models_dir, monkeypatch):
    racing_save_target(monkeypatch, 3)
    names = in_threads(lambda i: save_video(shade=0.2 + 0.3 * i), 3)

    assert sorted(names) == ["race_00001_.mp4", "race_00002_.mp4", "race_00003_.mp4"]
    output = comfy_env.output_directory()
    assert sorted(p.name for p in output.iterdir()) == sorted(names)  # no placeholder or partial file left
    shades = set()
    for name in names:
        with av.open(str(output / name)) as container:
            shades.add(round(next(container.decode(video=0)).to_ndarray(format="rgb24")[8, 8, 0] / 255, 1))
    assert shades == {0.2, 0.5, 0.8}  # three different videos, not one written three times


def test_embeds_saved_at_once_get_their_own_names(models_dir, monkeypatch):
    racing_save_target(monkeypatch, 2)
    in_threads(lambda i: HunyuanVideoTextEmbedsSave().save(embeds(float(i + 1)), "emb"), 2)

    output = comfy_env.output_directory()
    saved = sorted(output.glob("emb_*"))
    assert [p.name for p in saved] == ["emb_00001_.safetensors", "emb_00002_.safetensors"]
    assert {load_embeds(p).positive.pooled[0, 0].item() for p in saved} == {1.0, 2.0}


def test_a_claimed_name_counts_for_the_next_saver_and_comfyuis_counter_rule_is_kept(models_dir):
    output = comfy_env.output_directory()
    output.mkdir(parents=True, exist_ok=True)
    (output / "race_00007_.mp4").write_bytes(b"")
    with output_files.claimed_file(output, "race", 8, "mp4") as (name, temporary):
        assert name == "race_00008_.mp4" and (output / name).exists()  # the claim stands in the folder
        assert comfy_env.save_target("race", 16, 16).counter == 9  # so the rule moves past it
        temporary.write_bytes(b"video")
    assert (output / name).read_bytes() == b"video"
    assert save_video(0.5) == "race_00009_.mp4"


def test_a_failed_save_gives_its_claimed_name_back(models_dir):
    output = comfy_env.output_directory()
    output.mkdir(parents=True, exist_ok=True)
    with pytest.raises(RuntimeError, match="disk full"), output_files.claimed_file(output, "x", 1, "mp4") as claim:
        claim[1].write_bytes(b"half")
        raise RuntimeError("disk full")
    assert list(output.iterdir()) == []


def test_an_empty_prefix_saves_as_comfyui_does_but_warns(models_dir, caplog):
    with caplog.at_level("WARNING", logger="HunyuanVideo"):
        name = save_video(0.5, prefix="")
    assert name == "._00001_.mp4"
    assert "filename_prefix '' gives no file name" in caplog.text and "hidden" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="HunyuanVideo"):
        assert save_video(0.5, prefix="clips/") == "clips_00001_.mp4"  # ComfyUI's normpath: a name, no warning
    assert caplog.text == ""


@pytest.mark.parametrize("node", [HunyuanVideoSaveVideo, HunyuanVideoTextEmbedsSave])
def test_output_problems_are_found_by_the_save_nodes_validation(models_dir, node):
    def verdict(prefix):
        arguments = {"filename_prefix": prefix}
        if node is HunyuanVideoSaveVideo:
            arguments |= {"format": "mp4", "crf": 19}
        return node.VALIDATE_INPUTS(**arguments)

    output = comfy_env.output_directory()
    output.mkdir(parents=True, exist_ok=True)
    assert verdict("fine/name") is True and verdict(None) is True
    assert "points outside the output folder" in verdict("../escape")
    (output / "clips").write_text("a file where a folder must be")
    assert f"{output / 'clips'} is a file, but filename_prefix 'clips/deep/cat' needs a folder" in verdict(
        "clips/deep/cat"
    )
    assert list(output.iterdir()) == [output / "clips"]  # validation wrote nothing


def test_a_read_only_output_folder_is_found_before_saving(tmp_path):
    if os.geteuid() == 0:  # root writes into folders without write permission; /sys refuses even root
        target = "/sys/hunyuanvideo_output"
        if os.access("/sys", os.W_OK) and output_files._can_write_in(Path("/sys")):
            pytest.skip("no read-only folder available to root here")
    else:
        (tmp_path / "ro").mkdir()
        (tmp_path / "ro").chmod(0o555)
        target = tmp_path / "ro" / "output"
    problems = output_files.output_problems("HunyuanVideo", target)
    assert len(problems) == 1 and "cannot write in" in problems[0] and "(--output-dir)" not in problems[0]
    assert "read-only" in problems[0]
