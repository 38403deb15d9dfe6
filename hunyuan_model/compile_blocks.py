"""``torch.compile`` per DiT block, plugged in from outside through the model's runner.

Each ``double_blocks.N`` / ``single_blocks.N`` is compiled on its own (``torch.compile(block)``), never the
whole forward: the embedders, the token refiner and the final layer stay eager, and all blocks of a kind
share one compiled graph (the same ``forward`` with the parameters as inputs), so the first step compiles
two graphs and a new video size recompiles only those two (``dynamic=True`` avoids even that, at some
speed). The wrapper hands the compiled block to the inner runner, so block swap still installs the
block's weights before it runs (they are graph inputs, not constants). FP8 and GGUF layers compile too
(dequantisation is traced into the graph where Dynamo can, a graph break elsewhere).

Where compile cannot work (no C++ compiler for the CPU, no Triton for the GPU, an unsupported platform),
the first compiled call fails: one warning says why, and every block runs eager from then on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

log = logging.getLogger("HunyuanVideo.compile")

MODES = ("default", "max-autotune-no-cudagraphs")
COMPILED_PREFIXES = ("double_blocks.", "single_blocks.")


@dataclass
class BlockCompile:
    """Compile each DiT block (attach with ``dataclasses.replace(handle, compile=BlockCompile())``).

    ``mode`` is torch.compile's (CUDA graphs are left out: block swap moves weights between calls);
    ``dynamic`` marks sizes dynamic so a new video size does not recompile. The compiled blocks are kept
    across runs. :attr:`unavailable` holds the reason once compile has failed (then everything runs eager).
    """

    mode: str = "default"
    dynamic: bool = False
    backend: str = "inductor"
    unavailable: str | None = field(default=None, init=False)
    _compiled: dict[nn.Module, Callable[..., Any]] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"compile mode must be one of {', '.join(MODES)}, got {self.mode!r}.")

    def wrap(self, inner: Callable[..., Any]) -> Callable[..., Any]:
        """The runner that gives ``inner`` each block's compiled form instead of the block."""

        def run(name: str, module: nn.Module, *args: Any) -> Any:
            if self.unavailable is None and name.startswith(COMPILED_PREFIXES):
                return self._run_compiled(inner, name, module, args)
            return inner(name, module, *args)

        return run

    def _run_compiled(self, inner: Callable[..., Any], name: str, module: nn.Module, args: tuple) -> Any:
        compiled = self._compiled.get(module)
        first = compiled is None
        if first:
            compiled = self._compile(module)
            if compiled is None:
                return inner(name, module, *args)
        try:
            return inner(name, compiled, *args)
        except Exception as error:  # noqa: BLE001 - any compiler failure means: run eager, say why once
            if not first or not _is_compile_failure(error):
                raise
            self._give_up(f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}")
            return inner(name, module, *args)

    def _compile(self, module: nn.Module) -> Callable[..., Any] | None:
        try:
            compiled = torch.compile(module, mode=self.mode, dynamic=self.dynamic, backend=self.backend)
        except Exception as error:  # noqa: BLE001 - e.g. "Windows not yet supported for torch.compile"
            self._give_up(f"{type(error).__name__}: {error}")
            return None
        self._compiled[module] = compiled
        return compiled

    def _give_up(self, reason: str) -> None:
        self.unavailable = reason
        self._compiled.clear()
        log.warning(
            "HunyuanVideo compile: torch.compile is not available here (%s); running the model uncompiled.", reason
        )


def _is_compile_failure(error: Exception) -> bool:
    """Errors raised by Dynamo/Inductor while compiling (not by the model's own computation)."""
    module = type(error).__module__
    return (
        module.startswith(("torch._dynamo", "torch._inductor"))
        or isinstance(error, (OSError, RuntimeError))
        and ("compile" in str(error).lower() or "triton" in str(error).lower())
    )
