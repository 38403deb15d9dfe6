"""Block swap: the first blocks wait on the offload device and are copied in as the forward reaches them.

:class:`BlockSwap` is a :class:`~..handle.Placement`. On :meth:`~BlockSwap.enter` every module that is not
swapped moves to the compute device; each swapped one (any number of double and single blocks,
counted from the first, and optionally ``txt_in``, ``img_in``, ``final_layer``) is packed into one
page-locked host buffer in the form it is stored (bf16, FP8, GGUF bytes: never dequantized), and a
:class:`SwapRunner` is installed as the model's runner.

The runner keeps a ring of ``slots`` device buffers, each the size of the largest swapped module.
When the forward calls swapped module ``i`` it (1) makes sure ``i`` is in a slot, copying it if not,
(2) with prefetch, starts copying the next swapped module ``j`` (in run order, wrapping to the next
forward) into another slot, so that the copy runs while ``i`` computes, (3) makes compute wait for
``i``'s copy, points ``i``'s parameters at views of its slot, runs it, and points them back. A copy
into a slot waits for the last compute that read it. With ``slots`` or fewer swapped modules each
keeps its slot and is copied once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .copies import CopyEngine, Ticket, copy_engine
from .memory_plan import (
    EXTRAS,
    TEXT_TOKENS,
    ModelSizes,
    SwapChoice,
    SwapPlan,
    Workload,
    clip_choice,
    device_free_bytes,
    materializes_scores,
    plan_block_swap,
    plan_for,
    weight_bytes,
)
from .packing import Packed, packed

log = logging.getLogger("HunyuanVideo.block_swap")

Trace = list[tuple[str, str]]


@dataclass
class _Slot:
    buffer: torch.Tensor
    index: int
    free: Ticket  # the last compute that read the buffer
    ready: Ticket = None  # the copy that filled it
    holder: str | None = None
    last_use: int = 0


class SwapRunner:
    """The model runner that swaps packed modules into a ring of device buffers (see the module doc).

    ``trace``, when given, receives ``("copy", name)`` as a copy is issued, ``("wait", name)`` as compute
    is made to wait for it and ``("compute", name)`` just before the module runs.
    """

    def __init__(
        self,
        order: list[str],
        packs: dict[str, Packed],
        engine: CopyEngine,
        prefetch: bool = True,
        slots: int = 2,
        trace: Trace | None = None,
    ) -> None:
        if slots < 2 and prefetch:
            raise ValueError("prefetching needs at least 2 swap slots: one computing, one being filled")
        self._packs, self._engine, self._prefetch = packs, engine, prefetch
        self._record = trace.append if trace is not None else _ignore
        self._host = {name: pack.host_buffer() for name, pack in packs.items()}
        self._host_views = {name: pack.host_views() for name, pack in packs.items()}
        size = max(pack.nbytes for pack in packs.values())
        self._slots = [
            _Slot(engine.device_buffer(size), i, free=engine.computed()) for i in range(min(slots, len(packs)))
        ]
        self._bindings = {(name, s.index): pack.views(s.buffer) for name, pack in packs.items() for s in self._slots}
        self._next = _next_swapped(order, packs)
        self._clock = 0

    def __call__(self, name: str, module: nn.Module, *args: Any) -> Any:
        swapped = name in self._packs
        slot = self._load(name, keep=None) if swapped else None
        following = self._next.get(name)
        if self._prefetch and following is not None and following != name:
            self._load(following, keep=name if swapped else None)
        if not swapped:
            return module(*args)
        self._engine.wait(slot.ready)
        self._record(("wait", name))
        pack = self._packs[name]
        pack.install(self._bindings[name, slot.index])
        self._record(("compute", name))
        try:
            return module(*args)
        finally:
            slot.free = self._engine.computed()
            pack.install(self._host_views[name])

    def close(self) -> None:
        """Wait for copies in flight and release the device buffers."""
        self._engine.synchronize()
        for name, pack in self._packs.items():
            pack.install(self._host_views[name])
        self._slots, self._bindings = [], {}

    def _load(self, name: str, keep: str | None) -> _Slot:
        """The slot holding ``name``, after issuing its copy into the least recently used slot not holding ``keep``."""
        self._clock += 1
        for slot in self._slots:
            if slot.holder == name:
                slot.last_use = self._clock
                return slot
        slot = min((s for s in self._slots if keep is None or s.holder != keep), key=lambda s: s.last_use)
        self._record(("copy", name))
        pack = self._packs[name]
        slot.ready = self._engine.copy(slot.buffer[: pack.nbytes], self._host[name], after=slot.free)
        slot.holder, slot.last_use = name, self._clock
        return slot


@dataclass
class BlockSwap:
    """Placement: swap the first ``double_blocks`` / ``single_blocks`` blocks (and the chosen extras) in
    from the offload device as they run; everything else stays on the compute device.

    With ``auto``, the counts are planned in :meth:`enter` from the free memory (``free_memory(device)``
    plus what the model already holds there), the latent shape and the model's stored size
    (:func:`~.memory_plan.plan_block_swap`); the given counts are then ignored. Counts beyond the
    model's are clipped with a warning. ``prefetch`` overlaps each copy with the previous module's
    compute. ``trace`` is handed to the :class:`SwapRunner`. :attr:`plan` is the latest plan.
    """

    double_blocks: int = 0
    single_blocks: int = 0
    offload_txt_in: bool = False
    offload_img_in: bool = False
    offload_final_layer: bool = False
    prefetch: bool = True
    auto: bool = False
    slots: int = 2
    text_tokens: int = TEXT_TOKENS
    free_memory: Callable[[torch.device], int] = device_free_bytes
    trace: Trace | None = field(default=None, repr=False)
    plan: SwapPlan | None = field(default=None, init=False, repr=False)
    _runner: SwapRunner | None = field(default=None, init=False, repr=False)
    _previous_runner: Any = field(default=None, init=False, repr=False)
    _offload_device: torch.device | None = field(default=None, init=False, repr=False)

    @property
    def extras(self) -> frozenset[str]:
        chosen = (self.offload_txt_in, self.offload_img_in, self.offload_final_layer)
        return frozenset(name for name, on in zip(EXTRAS, chosen) if on)

    def enter(
        self,
        model: nn.Module,
        compute_device: torch.device,
        offload_device: torch.device,
        latent_shape: tuple[int, ...],
    ) -> None:
        self._offload_device = offload_device
        self.plan = self._make_plan(model, compute_device, latent_shape)
        swapped = swapped_names(model, self.plan.choice)
        engine = copy_engine(compute_device, offload_device)
        for name in model.run_order():
            if name not in swapped:
                model.get_submodule(name).to(compute_device)
        if not swapped:
            return
        if same_device(compute_device, offload_device) and compute_device.type != "cpu":
            log.warning(
                "HunyuanVideo block swap: the offload device is the compute device (%s), so swapping saves no "
                "memory (ComfyUI started with --gpu-only or --highvram?).",
                compute_device,
            )
        packs = {name: packed(model.get_submodule(name), engine.host_buffer, engine.pinned) for name in swapped}
        self._runner = SwapRunner(model.run_order(), packs, engine, self.prefetch, self.slots, self.trace)
        self._previous_runner = model.runner
        model.set_runner(self._runner)

    def exit(self, model: nn.Module, offload: bool) -> None:
        if self._runner is not None:
            self._runner.close()
            model.set_runner(self._previous_runner)
            self._runner = self._previous_runner = None
        if offload and self._offload_device is not None:
            for name in model.run_order():
                model.get_submodule(name).to(self._offload_device)

    def device_bytes(self, model: nn.Module, latent_shape: tuple[int, ...]) -> int:
        """Weights and swap buffers on the compute device while running; with ``auto``, the whole model
        (ask for room for all of it: only what still does not fit is swapped)."""
        sizes = ModelSizes.of(model)
        if self.auto:
            return sizes.total
        choice, _ = clip_choice(self._manual_choice(), model.config)
        return sum(weight_bytes(sizes, choice, self.slots))

    def _make_plan(self, model: nn.Module, device: torch.device, latent_shape: tuple[int, ...]) -> SwapPlan:
        sizes = ModelSizes.of(model)
        workload = self._workload(model, latent_shape, device)
        free = self.free_memory(device) + _bytes_on(model, device)
        if self.auto:
            plan = plan_block_swap(sizes, workload, free, self.extras, self.slots)
        else:
            choice, notes = clip_choice(self._manual_choice(), model.config)
            for note in notes:
                log.warning("HunyuanVideo block swap: %s.", note)
            plan = plan_for(sizes, choice, workload, free, self.slots)
        mode = "auto" if self.auto else "manual"
        log.info("HunyuanVideo block swap (%s, %s): %s", mode, _describe_shape(latent_shape), plan.describe())
        if not plan.fits:
            advice = (
                "even with every block swapped; use FP8 or GGUF weights, fewer frames or a smaller size"
                if self.auto
                else "swap more blocks, or use auto"
            )
            log.warning("HunyuanVideo block swap: the estimate exceeds the free memory (%s).", advice)
        return plan

    def _manual_choice(self) -> SwapChoice:
        return SwapChoice(self.double_blocks, self.single_blocks, self.extras)

    def _workload(self, model: nn.Module, latent_shape: tuple[int, ...], device: torch.device) -> Workload:
        scores = materializes_scores(model.attention_backend, device)
        return Workload(tuple(latent_shape), self.text_tokens, model.compute_dtype, scores)


def swapped_names(model: nn.Module, choice: SwapChoice) -> list[str]:
    """The modules ``choice`` swaps, in run order."""
    chosen = set(choice.extras)
    chosen.update(f"double_blocks.{i}" for i in range(choice.double_blocks))
    chosen.update(f"single_blocks.{i}" for i in range(choice.single_blocks))
    return [name for name in model.run_order() if name in chosen]


def _next_swapped(order: list[str], packs: dict[str, Packed]) -> dict[str, str]:
    """For each name in ``order``, the first swapped name after it, wrapping around to the next forward."""
    swapped = [i for i, name in enumerate(order) if name in packs]
    if not swapped:
        return {}
    following = {}
    for i, name in enumerate(order):
        j = next((k for k in swapped if k > i), swapped[0])
        following[name] = order[j]
    return following


def _bytes_on(model: nn.Module, device: torch.device) -> int:
    tensors = [*model.parameters(), *model.buffers()]
    return sum(t.numel() * t.element_size() for t in tensors if same_device(t.device, device))


def same_device(a: torch.device, b: torch.device) -> bool:
    """``cuda`` and ``cuda:0`` are the same device here."""
    return a.type == b.type and (a.index or 0) == (b.index or 0)


def _describe_shape(latent_shape: tuple[int, ...]) -> str:
    b, _, t, h, w = latent_shape
    return f"{b} x {w * 8}x{h * 8}x{(t - 1) * 4 + 1}"


def _ignore(_: Any) -> None:
    pass
