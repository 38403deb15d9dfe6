"""Block swap on the CPU (compute = offload = CPU, copies at once): outputs bit-identical to no swapping
for every swap setting and weight format, the order of copy, wait and compute, reused buffers, the
stored form kept, devices between runs, auto mode, and the node."""

from __future__ import annotations

import dataclasses
import gc
import logging
import weakref

import gguf
import pytest
import torch
from comfyui_run import run_in_comfyui

from hunyuanvideo_pack.hunyuan_model.dit import DiTConfig, HunyuanVideoTransformer, init_random_weights
from hunyuanvideo_pack.hunyuan_model.dit.model import run_module
from hunyuanvideo_pack.hunyuan_model.handle import TransformerHandle, WholeModel, module_bytes
from hunyuanvideo_pack.hunyuan_model.offload import BlockSwap, ModelSizes, SwapChoice, Workload, plan_block_swap
from hunyuanvideo_pack.hunyuan_model.offload.packing import ALIGN, layout, packed
from hunyuanvideo_pack.hunyuan_model.quant import (
    CastLinear,
    GGMLType,
    GGUFLinear,
    StoredWeight,
    WeightStorage,
    quantizable_linears,
    swap_linears,
)
from hunyuanvideo_pack.nodes import comfy_env
from hunyuanvideo_pack.nodes.block_swap import HunyuanVideoBlockSwap

CPU = torch.device("cpu")
CONFIG = DiTConfig.tiny(double_blocks=3, single_blocks=3)
SHAPE = (1, 16, 2, 8, 8)  # 2 x 4 x 4 = 32 video tokens


def tiny_model(weights: str) -> HunyuanVideoTransformer:
    """The tiny DiT with its block Linears stored as ``weights``: fp32, bf16, fp8 (scaled) or gguf (Q8_0)."""
    dtype = torch.bfloat16 if weights == "bf16" else torch.float32
    model = init_random_weights(HunyuanVideoTransformer(CONFIG, dtype=dtype), seed=3)
    names = quantizable_linears(CONFIG.double_blocks, CONFIG.single_blocks)
    linears = {name: model.get_submodule(name) for name in names}
    if weights == "fp8":
        plain = {name: StoredWeight.plain(linear.weight) for name, linear in linears.items()}
        swap_linears(model, plain, WeightStorage.FP8_E4M3FN_SCALED, dtype)
    if weights == "gguf":
        blocks = {name: _q8_0(linear.weight) for name, linear in linears.items()}
        swap_linears(model, blocks, WeightStorage.AS_STORED, dtype)
    return model


def _q8_0(weight: torch.Tensor) -> StoredWeight:
    data = gguf.quants.quantize(weight.detach().float().numpy(), gguf.GGMLQuantizationType.Q8_0)
    return StoredWeight(torch.from_numpy(data), tuple(weight.shape), GGMLType.Q8_0)


@pytest.fixture(scope="module")
def inputs() -> dict:
    generator = torch.Generator().manual_seed(0)
    return dict(
        latents=torch.randn(SHAPE, generator=generator),
        timestep=torch.tensor([700.0]),
        text_states=torch.randn(1, 7, CONFIG.text_dim, generator=generator),
        text_mask=None,
        pooled_text=torch.randn(1, CONFIG.pooled_dim, generator=generator),
        guidance=6.0,
    )


def two_forwards(handle: TransformerHandle, inputs: dict, offload_after: bool = False) -> list[torch.Tensor]:
    with handle.running(SHAPE, offload_after=offload_after) as model:
        return [model(**inputs) for _ in range(2)]


SETTINGS = {
    "none": dict(),
    "some": dict(double_blocks=2, single_blocks=1),
    "all": dict(double_blocks=3, single_blocks=3, offload_txt_in=True, offload_img_in=True, offload_final_layer=True),
}


@pytest.mark.parametrize("weights", ["fp32", "bf16", "fp8", "gguf"])
def test_outputs_are_bit_identical_to_no_swapping(weights, inputs):
    model = tiny_model(weights)
    expected = model(**inputs)
    for name, settings in SETTINGS.items():
        for prefetch in (True, False):
            handle = TransformerHandle(model, CPU, CPU, BlockSwap(prefetch=prefetch, **settings))
            for out in two_forwards(handle, inputs):
                assert torch.equal(out, expected), (weights, name, prefetch)
    assert model.runner is run_module


def last_before(trace: list, event: tuple[str, str], end: int) -> int:
    return max(i for i, seen in enumerate(trace[:end]) if seen == event)


def test_each_copy_is_issued_before_the_previous_block_computes_and_waited_for(inputs):
    trace = []
    model = tiny_model("fp32")
    swap = BlockSwap(double_blocks=3, single_blocks=2, offload_txt_in=True, prefetch=True, trace=trace)
    two_forwards(TransformerHandle(model, CPU, CPU, swap), inputs)
    order = ["txt_in", "double_blocks.0", "double_blocks.1", "double_blocks.2", "single_blocks.0", "single_blocks.1"]
    computes = [i for i, (kind, _) in enumerate(trace) if kind == "compute"]
    assert [trace[i][1] for i in computes] == order * 2
    copied = []
    for i in computes:
        name = trace[i][1]
        copy, wait = last_before(trace, ("copy", name), i), last_before(trace, ("wait", name), i)
        assert copy < wait < i  # computes only after waiting for its copy
        copied.append(copy)
    # Module k + 1's copy was issued before module k computed, across the two forwards too.
    assert all(copied[k + 1] < computes[k] for k in range(len(computes) - 1))


def test_without_prefetch_each_copy_waits_for_the_previous_compute(inputs):
    trace = []
    model = tiny_model("fp32")
    swap = BlockSwap(double_blocks=3, single_blocks=3, prefetch=False, trace=trace)
    two_forwards(TransformerHandle(model, CPU, CPU, swap), inputs)
    names = [f"double_blocks.{i}" for i in range(3)] + [f"single_blocks.{i}" for i in range(3)]
    expected = [(kind, name) for name in names for kind in ("copy", "wait", "compute")]
    assert trace == expected * 2


def test_two_or_fewer_swapped_modules_stay_in_their_buffers(inputs):
    trace = []
    model = tiny_model("fp32")
    two_forwards(TransformerHandle(model, CPU, CPU, BlockSwap(double_blocks=2, trace=trace)), inputs)
    assert [kind for kind, _ in trace].count("copy") == 2  # copied once, reused in the second forward


@pytest.mark.parametrize("weights", ["fp8", "gguf"])
def test_swapped_blocks_compute_from_two_reused_buffers_in_their_stored_form(weights, inputs):
    model = tiny_model(weights)
    seen = []

    def record(module, args):
        weight = module.linear1.weight
        seen.append((weight.untyped_storage().data_ptr(), weight.dtype))

    for block in model.single_blocks:
        block.register_forward_pre_hook(record)
    handle = TransformerHandle(model, CPU, CPU, BlockSwap(single_blocks=3))
    two_forwards(handle, inputs)
    stored = torch.float8_e4m3fn if weights == "fp8" else torch.uint8
    assert {dtype for _, dtype in seen} == {stored}
    buffers = {ptr for ptr, _ in seen}
    assert len(seen) == 6 and len(buffers) == 2
    # Between calls each block points at its own packed host memory again, the size it is stored in.
    for block in model.single_blocks:
        ptr = block.linear1.weight.untyped_storage().data_ptr()
        assert ptr not in buffers and block.linear1.weight.dtype == stored
        entries, nbytes = layout(block)
        assert module_bytes(block) <= nbytes < module_bytes(block) + ALIGN * len(entries)
    assert isinstance(model.single_blocks[0].linear1, CastLinear if weights == "fp8" else GGUFLinear)


def test_a_failing_block_leaves_the_model_usable(inputs):
    model = tiny_model("fp32")
    expected = model(**inputs)
    hook = model.double_blocks[1].register_forward_pre_hook(lambda *_: (_ for _ in ()).throw(RuntimeError("stop")))
    handle = TransformerHandle(model, CPU, CPU, BlockSwap(double_blocks=3))
    with pytest.raises(RuntimeError, match="stop"):
        two_forwards(handle, inputs)
    hook.remove()
    assert model.runner is run_module
    assert torch.equal(two_forwards(handle, inputs)[0], expected)


def test_weights_leave_the_compute_device_only_when_asked():
    # The meta device stands in for the offload device: no GPU needed to see what moves where.
    meta = torch.device("meta")
    model = tiny_model("fp32")
    swap = BlockSwap(double_blocks=2, offload_txt_in=True)
    swap.enter(model, CPU, meta, SHAPE)
    swapped = {"txt_in", "double_blocks.0", "double_blocks.1"}
    for name in model.run_order():
        devices = {t.device.type for t in model.get_submodule(name).parameters()}
        assert devices == ({"meta"} if name in swapped else {"cpu"}), name
    swap.exit(model, offload=False)
    assert model.double_blocks[2].img_attn_qkv.weight.device == CPU
    assert model.runner is run_module
    swap.exit(model, offload=True)
    assert {t.device.type for t in model.parameters()} == {"meta"}


def test_device_bytes_counts_resident_weights_and_two_buffers():
    model = tiny_model("fp32")
    sizes = ModelSizes.of(model)
    manual = BlockSwap(double_blocks=3, single_blocks=1)
    expected = sizes.total - sum(sizes.double_blocks) - sizes.single_blocks[0] + 2 * sizes.double_blocks[0]
    assert manual.device_bytes(model, SHAPE) == expected
    assert BlockSwap(auto=True).device_bytes(model, SHAPE) == WholeModel().device_bytes(model, SHAPE) == sizes.total


def test_auto_swaps_what_the_plan_says_for_the_free_memory(inputs, caplog):
    model = tiny_model("fp32")
    expected = model(**inputs)
    sizes = ModelSizes.of(model)
    workload = Workload(SHAPE, dtype=torch.float32)
    # Free memory that the weights alone already fill: the plan must swap blocks.
    free = lambda device: 0  # noqa: E731
    budget = sizes.total  # what auto adds: the model's bytes already on the compute device
    plan = plan_block_swap(sizes, workload, budget)
    swap = BlockSwap(auto=True, free_memory=free, double_blocks=0)
    with caplog.at_level(logging.INFO, logger="HunyuanVideo.block_swap"):
        outputs = two_forwards(TransformerHandle(model, CPU, CPU, swap), inputs)
    assert swap.plan.choice == plan.choice != SwapChoice(0, 0)
    assert all(torch.equal(out, expected) for out in outputs)
    assert "block swap (auto, 1 x 64x64x5)" in caplog.text and "estimated peak" in caplog.text


def test_counts_beyond_the_model_are_clipped_with_a_warning(inputs, caplog):
    model = tiny_model("fp32")
    swap = BlockSwap(double_blocks=7, single_blocks=50)
    with caplog.at_level(logging.WARNING, logger="HunyuanVideo.block_swap"):
        two_forwards(TransformerHandle(model, CPU, CPU, swap), inputs)
    assert swap.plan.choice == SwapChoice(3, 3)
    assert "7 double blocks to swap, but the model has 3" in caplog.text
    assert "50 single blocks to swap, but the model has 3" in caplog.text


def test_the_node_returns_a_new_handle_on_the_same_module(caplog):
    model = tiny_model("fp32")
    loaded = TransformerHandle(model, CPU, CPU, description="tiny")
    node = HunyuanVideoBlockSwap()
    with caplog.at_level(logging.WARNING, logger="HunyuanVideo"):
        (swapping,) = node.configure(loaded, "manual", 30, 1, True, False, False, True)
    assert isinstance(loaded.placement, WholeModel) and loaded.after_run is None  # the cached input is untouched
    assert swapping.model is model and swapping.description == "tiny"
    assert swapping.placement == dataclasses.replace(
        swapping.placement, double_blocks=3, single_blocks=1, offload_txt_in=True, auto=False, prefetch=True
    )
    assert swapping.after_run is comfy_env.track_model
    assert "30 double blocks to swap, but the model has 3" in caplog.text
    (auto,) = node.configure(loaded, "auto", 0, 0, False, False, False, False)
    assert auto.placement.auto and not auto.placement.prefetch


def test_the_node_names_a_wrong_input():
    with pytest.raises(ValueError, match="from HunyuanVideo Model Loader"):
        HunyuanVideoBlockSwap().configure({"model": 1}, "auto", 0, 0, False, False, False, True)


def test_comfyui_can_evict_the_weights_a_run_left_on_the_device():
    # ComfyUI on the CPU; the meta device stands in for the offload device.
    run_in_comfyui("""
        def handle():
            model = HunyuanVideoTransformer(DiTConfig.tiny(), dtype=torch.float32)
            return TransformerHandle(model, cpu, meta, after_run=comfy_env.track_model)

        first = handle()
        with first.running((1, 16, 1, 8, 8)):
            pass
        first.after_run(first)  # registering twice keeps one entry
        (entry,) = mm.current_loaded_models
        assert isinstance(entry.model, comfy.model_patcher.ModelPatcher)
        size = module_bytes(first.model)
        assert entry.model_memory() == entry.model_loaded_memory() == size, (entry.model_memory(), size)
        assert not hasattr(first.model, "device")  # ModelPatcher's bookkeeping does not claim a device for us
        if CURRENT:  # what 0.12+ and 0.18+ ask of every entry
            assert entry.model.is_dynamic() is False
            assert entry.model_mmap_residency() == (0, size)
            assert entry.model.pinned_memory_size() == size
            entry.model.partially_unload_ram(size)
            # RAM pressure between prompts (execution.py): no VRAM to free, our weights stay.
            mm.free_memory(0, None, pins_required=10**30, ram_required=10**30)
            assert mm.current_loaded_models == [entry] and entry.model_loaded_memory() == size
        mm.load_models_gpu([])
        mm.free_memory(10**30, cpu)
        assert mm.current_loaded_models == []
        assert {p.device.type for p in first.model.parameters()} == {"meta"}

        second = handle()
        second.after_run(second)
        assert len(mm.current_loaded_models) == 1
        del second
        gc.collect()
        assert mm.current_loaded_models == []

        third = handle()  # "Unload models" in the UI and POST /free: the prompt worker calls this
        third.after_run(third)
        mm.unload_all_models()
        assert mm.current_loaded_models == []
        assert {p.device.type for p in third.model.parameters()} == {"meta"}
        print("ok")
    """)


def test_comfyui_loading_other_models_and_freeing_a_little_memory_handle_ours():
    # The branches ComfyUI takes on a GPU: another model loads beside ours (is_clone is asked of ours), and
    # a little memory is missing (memory_to_free below what ours holds: the partial-unload path).
    run_in_comfyui("""
        model = HunyuanVideoTransformer(DiTConfig.tiny(), dtype=torch.float32)
        handle = TransformerHandle(model, cpu, meta, after_run=comfy_env.track_model)
        with handle.running((1, 16, 1, 8, 8)):
            pass
        (ours,) = mm.current_loaded_models

        other = comfy.model_patcher.ModelPatcher(torch.nn.Linear(4, 4), cpu, cpu)
        mm.load_models_gpu([other])
        (theirs,) = [entry for entry in mm.current_loaded_models if entry.model is other]
        assert len(mm.current_loaded_models) == 2 and ours in mm.current_loaded_models

        free = 10**9
        mm.get_free_memory = lambda dev=None, torch_free_too=False: (free, free) if torch_free_too else free
        mm.free_memory(free + 1000, cpu, keep_loaded=[theirs])
        assert ours in mm.current_loaded_models and ours.model_loaded_memory() == 0
        assert {p.device.type for p in model.parameters()} == {"meta"}
        mm.free_memory(free + 1000, cpu, keep_loaded=[theirs])
        assert mm.current_loaded_models == [theirs]
        mm.unload_all_models()
        assert mm.current_loaded_models == []
        print("ok")
    """)


def test_blocks_given_new_memory_between_runs_are_packed_again(inputs):
    model = tiny_model("fp32")  # no buffers: module.to() keeps every tensor object of it
    expected = model(**inputs)
    handle = TransformerHandle(model, CPU, CPU, BlockSwap(double_blocks=3, single_blocks=3))
    two_forwards(handle, inputs)
    # What module.to(device) does to each Parameter: same object, new data.
    model._apply(lambda tensor: tensor.clone())
    assert all(torch.equal(out, expected) for out in two_forwards(handle, inputs))


def test_the_pack_cache_does_not_keep_a_freed_module_alive():
    # Packs are cached per module; a module with its own parameters (a Linear) must still be freed with its
    # packed memory (page-locked RAM on a GPU) when nothing else holds it.
    linear = torch.nn.Linear(8, 8)
    pack = packed(linear, lambda nbytes: torch.empty(nbytes, dtype=torch.uint8), pinned=False)
    assert pack.is_installed() and packed(linear, None, pinned=False) is pack  # reused while installed
    module, storage = weakref.ref(linear), weakref.ref(linear.weight.untyped_storage())
    del linear, pack
    gc.collect()
    assert module() is None and storage() is None
