"""Block swap's CUDA copy engine on the CPU: stand-in streams, events and cudart log what the engine asks
CUDA for, in program order, and the log is checked against the stream rules that make the real copies
safe (a copy into a buffer waits for the compute that last read it; compute waits for the copy that filled
its buffer; only recorded events are waited for), while the copies themselves happen at once."""

from __future__ import annotations

import contextlib
import gc
import logging
import weakref

import pytest
import torch
from test_block_swap import CONFIG, SHAPE, tiny_model, two_forwards

from hunyuanvideo_pack.hunyuan_model.handle import TransformerHandle
from hunyuanvideo_pack.hunyuan_model.offload import BlockSwap, block_swap
from hunyuanvideo_pack.hunyuan_model.offload import copies as copies_module
from hunyuanvideo_pack.hunyuan_model.offload.copies import CudaCopies, pinned_buffer

CPU = torch.device("cpu")


class FakeCuda:
    """What the engine uses of torch.cuda, logging ``(kind, stream, ...)`` tuples."""

    def __init__(self) -> None:
        self.log: list[tuple] = []
        self.compute = FakeStream(self, "compute")
        self.current = self.compute
        self.events = 0
        self.registered: dict[int, tuple[int, int]] = {}
        self.register_status = 0

    # torch.cuda.cudart()
    class cudaError:  # noqa: N801 (the binding's name)
        success = 0

    def cudaHostRegister(self, address: int, size: int, flags: int) -> int:  # noqa: N802
        if self.register_status == self.cudaError.success:
            self.registered[address] = (size, flags)
        return self.register_status

    def cudaHostUnregister(self, address: int) -> int:  # noqa: N802
        del self.registered[address]
        return 0

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(torch.cuda, "cudart", lambda: self)
        monkeypatch.setattr(torch.cuda, "Stream", lambda device=None, priority=0: FakeStream(self, "copy"))
        monkeypatch.setattr(torch.cuda, "Event", lambda **_: FakeEvent(self))
        monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: self.current)
        monkeypatch.setattr(torch.cuda, "stream", self.stream)
        copy = torch.Tensor.copy_

        def logged_copy(dst, src, non_blocking=False):
            if non_blocking:
                self.log.append(("copy", self.current.name, dst.untyped_storage().data_ptr()))
            return copy(dst, src, non_blocking)

        monkeypatch.setattr(torch.Tensor, "copy_", logged_copy)

    @contextlib.contextmanager
    def stream(self, stream):
        previous, self.current = self.current, stream
        try:
            yield
        finally:
            self.current = previous


class FakeStream:
    def __init__(self, cuda: FakeCuda, name: str) -> None:
        self.cuda, self.name = cuda, name

    def wait_event(self, event: FakeEvent) -> None:
        self.cuda.log.append(("wait", self.name, event.id))

    def synchronize(self) -> None:
        self.cuda.log.append(("sync", self.name))


class FakeEvent:
    def __init__(self, cuda: FakeCuda) -> None:
        cuda.events += 1
        self.cuda, self.id = cuda, cuda.events

    def record(self, stream: FakeStream) -> None:
        self.cuda.log.append(("record", stream.name, self.id))


def check_stream_order(log: list[tuple]) -> None:
    """The rules that make the real copies safe, checked on the log in program order."""
    recorded: dict[int, tuple[str, int]] = {}  # event -> (stream, position of its record)
    waited: dict[str, list[int]] = {"compute": [], "copy": []}
    last_copy: dict[int, int] = {}
    last_compute: dict[int, int] = {}

    def waited_for(stream: str, on: str, after: int) -> bool:
        return any(recorded[e][0] == on and recorded[e][1] > after for e in waited[stream])

    for position, (kind, stream, *rest) in enumerate(log):
        if kind == "record":
            recorded[rest[0]] = (stream, position)
        elif kind == "wait":
            assert rest[0] in recorded, f"{stream} waits for an event never recorded (CUDA would not wait at all)"
            waited[stream].append(rest[0])
        elif kind == "copy":
            buffer = rest[0]
            assert stream == "copy", "a block copy was issued on the compute stream"
            assert waited_for("copy", "compute", last_compute.get(buffer, -1)), "copy overwrites a buffer in use"
            last_copy[buffer] = position
        elif kind == "compute":
            buffer = rest[0]
            assert waited_for("compute", "copy", last_copy[buffer]), "compute reads a buffer still being filled"
            last_compute[buffer] = position
    assert log[-1] == ("sync", "copy"), "copies still in flight when the run ended"


@pytest.fixture
def cuda(monkeypatch) -> FakeCuda:
    fake = FakeCuda()
    fake.install(monkeypatch)
    monkeypatch.setattr(block_swap, "copy_engine", lambda compute, offload: CudaCopies(compute))
    return fake


@pytest.fixture
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


def log_computes(model, cuda: FakeCuda, names: list[str]) -> None:
    def hook(module, args):
        cuda.log.append(("compute", "compute", next(module.parameters()).untyped_storage().data_ptr()))

    for name in names:
        model.get_submodule(name).register_forward_pre_hook(hook)


@pytest.mark.parametrize("prefetch", [True, False])
def test_copies_and_compute_follow_the_stream_rules(cuda, inputs, prefetch):
    model = tiny_model("fp8")
    expected = model(**inputs)
    swap = BlockSwap(double_blocks=3, single_blocks=2, offload_final_layer=True, prefetch=prefetch)
    swapped = [*(f"double_blocks.{i}" for i in range(3)), "single_blocks.0", "single_blocks.1", "final_layer"]
    log_computes(model, cuda, swapped)
    outputs = two_forwards(TransformerHandle(model, CPU, CPU, swap), inputs)
    assert all(torch.equal(out, expected) for out in outputs)
    # Six modules through two buffers, twice; with prefetch the last module also starts a third forward's first.
    assert [entry[0] for entry in cuda.log].count("copy") == 2 * len(swapped) + prefetch
    check_stream_order(cuda.log)


def test_the_rules_catch_a_copy_that_does_not_wait_for_compute(cuda, inputs, monkeypatch):
    # The check above must fail when the engine forgets the wait that protects a buffer still being read.
    original = CudaCopies.copy
    monkeypatch.setattr(CudaCopies, "copy", lambda self, dst, src, after: original(self, dst, src, None))
    model = tiny_model("fp32")
    log_computes(model, cuda, [f"double_blocks.{i}" for i in range(3)])
    two_forwards(TransformerHandle(model, CPU, CPU, BlockSwap(double_blocks=3)), inputs)
    with pytest.raises(AssertionError, match="copy overwrites a buffer in use"):
        check_stream_order(cuda.log)


def test_a_failing_block_still_waits_for_the_copies_in_flight(cuda, inputs):
    model = tiny_model("fp32")
    hook = model.double_blocks[1].register_forward_pre_hook(lambda *_: (_ for _ in ()).throw(RuntimeError("stop")))
    with pytest.raises(RuntimeError, match="stop"):
        two_forwards(TransformerHandle(model, CPU, CPU, BlockSwap(double_blocks=3)), inputs)
    hook.remove()
    # Block 2's copy was prefetched before block 1 failed; the run ends by waiting for it.
    assert [entry[0] for entry in cuda.log].count("copy") == 3 and cuda.log[-1] == ("sync", "copy")


def test_swapped_blocks_live_in_portable_page_locked_memory_unlocked_when_released(cuda, inputs):
    model = tiny_model("fp32")
    two_forwards(TransformerHandle(model, CPU, CPU, BlockSwap(double_blocks=2, offload_txt_in=True)), inputs)
    assert len(cuda.registered) == 3 and {flags for _, flags in cuda.registered.values()} == {1}
    for name in ("txt_in", "double_blocks.0", "double_blocks.1"):
        start = next(model.get_submodule(name).parameters()).untyped_storage().data_ptr()
        assert start in cuda.registered
    model.to(torch.float32)  # a no-op on fp32: the memory stays registered while the modules hold it
    assert len(cuda.registered) == 3
    model.double_blocks[0]._apply(lambda tensor: tensor.clone())  # what moving it to the GPU does to its memory
    assert len(cuda.registered) == 2
    blocks = weakref.ref(model.double_blocks[0])
    del model
    gc.collect()
    assert blocks() is None and cuda.registered == {}


def test_memory_that_cannot_be_locked_is_used_pageable_with_a_warning(cuda, monkeypatch, caplog):
    cuda.register_status = 2  # cudaErrorMemoryAllocation
    taken = []
    monkeypatch.setattr(copies_module, "_take_cuda_error", lambda: taken.append(True))
    with caplog.at_level(logging.WARNING, logger="HunyuanVideo.block_swap"):
        buffer = pinned_buffer(10_000)
    assert buffer.shape == (10_000,) and buffer.dtype == torch.uint8 and cuda.registered == {}
    buffer.fill_(7)
    assert int(buffer.sum()) == 70_000
    assert taken == [True] and "could not page-lock 0.00 GB of RAM" in caplog.text
