"""The sampler node as a graph runs it: LATENT in and out, seeds, previews, cancel, memory, refusals."""

from __future__ import annotations

import pytest
import torch
from test_sampling import make_handle, random_prompts, relative_error, tiny_model

from hunyuanvideo_pack.hunyuan_model.conditioning import TextEmbeds
from hunyuanvideo_pack.hunyuan_model.latent import VAE_SCALING_FACTOR
from hunyuanvideo_pack.hunyuan_model.sampling import SamplerSettings, sample
from hunyuanvideo_pack.nodes import comfy_env
from hunyuanvideo_pack.nodes import sampling as sampling_node
from hunyuanvideo_pack.nodes.latent import HunyuanVideoEmptyLatent
from hunyuanvideo_pack.nodes.sampling import HunyuanVideoSampler


@pytest.fixture(scope="module")
def model():
    return tiny_model()


@pytest.fixture(scope="module")
def embeds(model) -> TextEmbeds:
    return TextEmbeds(random_prompts(model.config, (7,), seed=3))


@pytest.fixture
def latent() -> dict:
    (latent,) = HunyuanVideoEmptyLatent().generate(width=64, height=64, frames=9, batch=1)
    return latent


def widgets(**overrides) -> dict:
    """The required widgets at their defaults, with fewer steps to stay fast."""
    values = {
        name: spec[1]["default"]
        for name, spec in HunyuanVideoSampler.INPUT_TYPES()["required"].items()
        if "default" in spec[1]
    }
    return values | {"steps": 3} | overrides


def run(handle, embeds, latent, **overrides) -> dict:
    (result,) = HunyuanVideoSampler().sample(model=handle, embeds=embeds, latent=latent, **widgets(**overrides))
    return result


def test_defaults_and_input_names_are_the_documented_ones():
    required = HunyuanVideoSampler.INPUT_TYPES()["required"]
    assert list(required) == [
        "model",
        "embeds",
        "latent",
        "seed",
        "steps",
        "shift",
        "embedded_guidance",
        "denoise",
        "offload_model",
    ]
    assert {k: required[k][1]["default"] for k in ("steps", "shift", "embedded_guidance", "denoise")} == {
        "steps": 30,
        "shift": 7.0,
        "embedded_guidance": 6.0,
        "denoise": 1.0,
    }
    # solver is last, so workflows saved before it existed keep their widget positions
    optional = HunyuanVideoSampler.INPUT_TYPES()["optional"]
    assert list(optional) == ["sigmas", "solver"]
    assert optional["solver"][0] == ["euler", "dpmpp_2m", "unipc"] and optional["solver"][1]["default"] == "euler"
    assert required["seed"][1]["max"] == 2**64 - 1


def test_node_returns_raw_latents_of_the_api_run_and_keeps_the_latent_fields(model, embeds, latent):
    latent = latent | {"batch_index": [4]}
    result = run(make_handle(model), embeds, latent, seed=7)
    expected = sample(make_handle(model), embeds, latent["samples"], 7, SamplerSettings(steps=3), batch_index=[4])
    assert torch.equal(result["samples"], expected)
    assert result["batch_index"] == [4]
    assert result["samples"].shape == latent["samples"].shape and result["samples"].dtype == torch.float32


def test_same_seed_twice_is_bit_identical_and_another_seed_differs(model, embeds, latent):
    first = run(make_handle(model), embeds, latent, seed=21)["samples"]
    assert torch.equal(first, run(make_handle(model), embeds, latent, seed=21)["samples"])
    assert relative_error(run(make_handle(model), embeds, latent, seed=22)["samples"], first) > 0.1


def test_progress_shows_a_preview_of_each_steps_denoised_estimate(model, embeds, latent, monkeypatch):
    updates = []

    class Recorder(comfy_env.Progress):
        def update(self, done, preview_latent=None):
            updates.append((done, self.total, preview_latent))
            super().update(done, preview_latent)

    monkeypatch.setattr(comfy_env, "Progress", Recorder)
    latent = {"samples": torch.zeros(2, 16, 3, 8, 8)}
    result = run(make_handle(model), embeds, latent, seed=1, steps=4)
    assert [(done, total) for done, total, _ in updates] == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert all(preview.shape == (1, 16, 3, 8, 8) for _, _, preview in updates)  # model space, first video
    torch.testing.assert_close(updates[-1][2], result["samples"][:1] * VAE_SCALING_FACTOR, atol=1e-6, rtol=1e-6)


def test_cancel_stops_within_a_step_and_the_next_run_succeeds(model, embeds, latent):
    handle = make_handle(model)
    forwards = []

    def cancel_during_second_step(name, module, *args):
        if name == "final_layer":
            forwards.append(name)
            if len(forwards) == 2:
                comfy_env.request_cancel()
        return module(*args)

    with model.using_runner(cancel_during_second_step), pytest.raises(comfy_env.Cancelled):
        run(handle, embeds, latent, seed=3, steps=10, offload_model=False)
    assert len(forwards) == 2
    assert handle.placement.events[-1] == ("exit", False)  # the placement was undone

    again = run(handle, embeds, latent, seed=3)["samples"]
    assert torch.equal(again, run(make_handle(model), embeds, latent, seed=3)["samples"])


def test_cancel_is_answered_between_blocks_inside_a_step(model, embeds, latent):
    # One step of a large video can take minutes on the CPU: the request must not wait for the step's end.
    handle = make_handle(model)
    called = []

    def cancel_in_the_first_block(name, module, *args):
        called.append(name)
        if name == "double_blocks.0":
            comfy_env.request_cancel()
        return module(*args)

    with model.using_runner(cancel_in_the_first_block), pytest.raises(comfy_env.Cancelled):
        run(handle, embeds, latent, seed=3, steps=10)
    assert called[-1] == "double_blocks.0"  # nothing ran after the request
    assert handle.placement.events[-1] == ("exit", True)


def test_offload_option_reaches_the_placement_and_room_is_made_first(model, embeds, latent, monkeypatch):
    handle = make_handle(model)
    asked = []
    monkeypatch.setattr(
        comfy_env, "make_room", lambda needed, device, keep: asked.append((needed, keep, list(handle.placement.events)))
    )
    run(handle, embeds, latent, offload_model=True)
    assert handle.placement.events[-1] == ("exit", True)
    (needed, keep, events_then), *_ = asked
    assert needed > 0 and events_then == []  # asked before the model was placed
    assert keep is handle  # the weights it already has on the device stay


def test_out_of_memory_says_what_to_change_and_stays_an_out_of_memory_error(model, embeds, latent, monkeypatch):
    def out_of_memory(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(sampling_node, "sample", out_of_memory)
    with pytest.raises(torch.cuda.OutOfMemoryError, match="sampling 1 video.* of 9 frames at 64x64.*block swap"):
        run(make_handle(model), embeds, latent)  # ComfyUI unloads its models after an OOM error, not any error


def test_true_cfg_runs_batched_when_memory_allows_and_in_turn_otherwise(embeds, latent, monkeypatch):
    model = tiny_model(seed=2, guidance_embed=False)
    cfg = TextEmbeds(
        random_prompts(model.config, (7,), seed=3),
        negative=random_prompts(model.config, (4,), seed=4),
        cfg_scale=4.0,
    )
    batches = []

    def record(name, module, *args):
        if name == "final_layer":
            batches.append(args[0].shape[0])
        return module(*args)

    with model.using_runner(record):
        batched = run(make_handle(model), cfg, latent, seed=5, steps=2)["samples"]
        monkeypatch.setattr(comfy_env, "free_memory", lambda device: 0)
        in_turn = run(make_handle(model), cfg, latent, seed=5, steps=2)["samples"]
    assert batches == [2, 2] + [1, 1, 1, 1]
    assert relative_error(in_turn, batched) < 1e-5


def test_connected_sigmas_replace_steps_shift_and_denoise(model, embeds, latent):
    sigmas = torch.tensor([0.9, 0.6, 0.2, 0.0])
    result = run(make_handle(model), embeds, latent, seed=2, steps=30, shift=2.0, denoise=0.3, sigmas=sigmas)
    expected = sample(make_handle(model), embeds, latent["samples"], 2, SamplerSettings(sigmas=sigmas))
    assert torch.equal(result["samples"], expected)
    with pytest.raises(ValueError, match="sigma_max"):
        run(make_handle(model), embeds, latent, sigmas=torch.tensor([14.6, 1.0, 0.0]))


def test_bad_node_inputs_are_refused_before_the_model_is_placed(model, embeds, latent):
    handle = make_handle(model)
    wide = TextEmbeds(random_prompts(type(model.config).tiny(text_dim=96), (4,), seed=1))
    with pytest.raises(ValueError, match="noise_mask"):
        run(handle, embeds, latent | {"noise_mask": torch.ones(1, 1, 64, 64)})
    with pytest.raises(ValueError, match="expects 64"):
        run(handle, wide, latent)
    with pytest.raises(ValueError, match="got \\(1, 4, 8, 8\\)"):
        run(handle, embeds, {"samples": torch.zeros(1, 4, 8, 8)})
    with pytest.raises(ValueError, match="steps must be"):
        run(handle, embeds, latent, steps=0)
    with pytest.raises(TypeError, match="model must be a loaded HunyuanVideo DiT"):
        run(None, embeds, latent)
    assert handle.placement.events == []


def test_a_size_far_beyond_the_machine_is_announced_before_the_first_step(model, embeds, latent, caplog):
    handle = make_handle(model)
    huge = (1, 16, 33, 512, 512)  # 4096x4096, 129 frames: days of arithmetic on a CPU, even for the tiny DiT
    with caplog.at_level("WARNING", logger="HunyuanVideo"):
        sampling_node._warn_if_beyond_the_machine(handle, embeds, huge, steps=30)
    assert "1 video(s) of 129 frames at 4096x4096 in 30 step(s) is about" in caplog.text
    assert "that is about" in caplog.text and ("hours" in caplog.text or "days" in caplog.text)
    caplog.clear()
    with caplog.at_level("WARNING", logger="HunyuanVideo"):
        sampling_node._warn_if_beyond_the_machine(handle, embeds, tuple(latent["samples"].shape), steps=30)
    assert caplog.text == ""  # the test size: nothing to say


def test_memory_far_beyond_the_free_memory_is_announced_by_the_node(model, embeds, latent, caplog, monkeypatch):
    monkeypatch.setattr(comfy_env, "free_memory", lambda device: 1024)
    with caplog.at_level("WARNING", logger="HunyuanVideo"):
        run(make_handle(model), embeds, latent, steps=1)
    assert "1 video(s) of 9 frames at 64x64 needs about" in caplog.text and "which has 0.0 MiB free" in caplog.text


def test_the_arithmetic_of_a_step_is_counted_as_documented():
    from hunyuanvideo_pack.hunyuan_model.dit.config import DiTConfig
    from hunyuanvideo_pack.hunyuan_model.sampling.cost import forward_flops

    released = forward_flops(DiTConfig(), (1, 16, 19, 60, 106), 256)  # 848x480x73
    assert released == pytest.approx(1.236e15, rel=1e-3)
    assert forward_flops(DiTConfig(), (2, 16, 19, 60, 106), 256) == 2 * released
