"""Our models in ComfyUI's memory management, through a real ``comfy.model_patcher.ModelPatcher``.

ComfyUI tracks what occupies the GPU in ``comfy.model_management.current_loaded_models``; custom nodes
enter a model there with ``load_models_gpu([patcher])`` and ComfyUI asks the patcher to give memory back
(``partially_unload`` / ``detach`` from ``free_memory``: another model loading, "Unload models",
``POST /free``). Every entry must answer everything ``model_management`` asks of a ``ModelPatcher``, and
that list grows (0.12 added ``is_dynamic``, 0.18 ``model_mmap_residency``, ``pinned_memory_size`` and
``partially_unload_ram``: 0.19.3 comfy/model_management.py:664-716, 741, 775-776). So
:class:`PlacedModelPatcher` subclasses ComfyUI's own ``ModelPatcher`` (same constructor in 0.3.64 and
0.19.3) and overrides only the memory methods: whatever ComfyUI adds later comes with ComfyUI's default.

What it overrides, and why: ComfyUI never loads our weights. A patcher decides itself which weights live
on the GPU (its low-VRAM loading casts ``comfy.ops`` layers and moves whole modules with ``.to()``),
which would fight the block-swap placement and the FP8/GGUF storage modules. Our placement
(:class:`~...hunyuan_model.handle.PlacedModel`) does every load; the patcher reports what the placement
left on the device (``loaded_size``), loads nothing (``partially_load``) and, asked to free memory, moves
the model to its offload device (``partially_unload``, ``detach``). The patcher holds the model weakly
(ComfyUI's list never keeps a model alive) and lives as long as the model does (:func:`register`).
"""

from __future__ import annotations

import weakref

import comfy.model_management as mm
import comfy.model_patcher

from ...hunyuan_model.handle import PlacedModel, module_bytes, resident_bytes, same_device


class PlacedModelPatcher(comfy.model_patcher.ModelPatcher):
    """ComfyUI's view of one of our models: the weights its placement left on ``load_device``."""

    def __init__(self, model, load_device, offload_device) -> None:
        had_device = hasattr(model, "device")
        super().__init__(model, load_device, offload_device)
        if not had_device:  # ModelPatcher sets model.device; ours would then state a device it may not be on
            del model.device

    @property
    def model(self):
        return self._model_ref()

    @model.setter
    def model(self, model) -> None:
        self._model_ref = weakref.ref(model)

    def model_size(self) -> int:
        model = self.model
        return 0 if model is None else module_bytes(model)

    def loaded_size(self) -> int:
        model = self.model
        return 0 if model is None else resident_bytes(model, self.load_device)

    def current_loaded_device(self):
        return self.load_device if self.loaded_size() else self.offload_device

    def lowvram_patch_counter(self) -> int:
        return 0

    def model_mmap_residency(self, free: bool = False) -> tuple[int, int]:
        """No part of our weights is one of ComfyUI's tracked file mappings it could release (0.18+)."""
        return 0, self.model_size()

    def pinned_memory_size(self) -> int:
        """ComfyUI pins nothing for us (block swap pins its own buffers): report the whole model as pinned,
        so that registering it never makes ComfyUI unpin other models' RAM (0.18+)."""
        return self.model_size()

    def partially_unload_ram(self, ram_to_unload: int) -> None:
        """Our RAM copy holds no ComfyUI pins to give back (0.18+)."""

    def partially_load(self, device_to, extra_memory=0, force_patch_weights=False) -> int:
        """Our placement loads the weights when a run starts; ComfyUI loads nothing."""
        return 0

    def partially_unload(self, device_to, memory_to_free=0, force_patch_weights=False) -> int:
        """Move the whole model off the GPU (the next run's placement brings back what it needs)."""
        freed = self.loaded_size()
        model = self.model
        if model is not None and freed:
            model.to(self.offload_device)
        return freed

    def detach(self, unpatch_all: bool = True):
        """``unpatch_all``: ComfyUI unloads the model, so the weights leave the GPU; without it (a clone
        replacing us, the patcher's ``__del__``) nothing about the weights changes."""
        if unpatch_all:
            self.partially_unload(self.offload_device)
        return self.model


class LoadedModels:
    """Our side of ComfyUI's list of loaded models: one patcher per model, living as long as the model."""

    def __init__(self) -> None:
        self._patchers: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def patcher_for(self, placed: PlacedModel) -> PlacedModelPatcher:
        """The one patcher of ``placed.model`` (a new one if its devices changed)."""
        patcher = self._patchers.get(placed.model)
        if patcher is None or patcher.load_device != placed.compute_device:
            patcher = PlacedModelPatcher(placed.model, placed.compute_device, placed.offload_device)
            self._patchers[placed.model] = patcher
        return patcher

    def register(self, placed: PlacedModel) -> None:
        """Enter the weights a run left on the compute device in ComfyUI's list of loaded models (once).

        ``load_models_gpu`` is how custom nodes enter a model there (ComfyUI sets up its own bookkeeping
        and keeps its inference reserve free beside ours); our patcher's ``partially_load`` moves nothing.
        """
        if same_device(placed.compute_device, placed.offload_device) or placed.resident_bytes() == 0:
            return
        mm.load_models_gpu([self.patcher_for(placed)], force_full_load=True)

    def entries_of(self, placed: PlacedModel) -> list:
        """ComfyUI's list entries for ``placed.model`` (for ``free_memory(keep_loaded=...)``)."""
        patcher = self._patchers.get(placed.model)
        return [entry for entry in mm.current_loaded_models if patcher is not None and entry.model is patcher]
