"""Per-block LoRA strengths, as kijai's LoraBlockEdit offers them (20 double + 40 single blocks), in one line.

The text is comma- or newline-separated ``selector=factor`` entries; later entries override earlier
ones and unnamed layers keep factor 1. Selectors: ``double_blocks`` / ``single_blocks`` (all of
them), ``double_blocks.3``, ``single_blocks.10-19`` (a range, both ends included), ``other`` (the
layers outside the blocks: token refiner, embedders, final layer). Example:
``double_blocks=0.5, single_blocks.30-39=0, other=0``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_ENTRY = re.compile(r"^(double_blocks|single_blocks|other)(?:\.(\d+)(?:-(\d+))?)?\.?$")
_BLOCK = re.compile(r"^(double_blocks|single_blocks)\.(\d+)\.")


@dataclass(frozen=True)
class BlockStrengths:
    """Factors by layer group, parsed from the text above; ``BlockStrengths()`` is 1 everywhere."""

    entries: tuple[tuple[str, int | None, int | None, float], ...] = ()

    @classmethod
    def parse(cls, text: str) -> BlockStrengths:
        entries = []
        for part in filter(None, (p.strip() for p in re.split(r"[,\n;]", text or ""))):
            selector, sep, value = part.partition("=")
            match = _ENTRY.match(selector.strip())
            try:
                factor = float(value)
            except ValueError:
                match = None
            if not sep or match is None:
                raise ValueError(
                    f"block strengths: cannot read {part!r}; write selector=factor, e.g. 'double_blocks.0-9=0.5', "
                    "'single_blocks=0' or 'other=1' (selectors: double_blocks, single_blocks, other)."
                )
            group, first, last = match.group(1), match.group(2), match.group(3)
            low = None if first is None else int(first)
            high = low if last is None else int(last)
            entries.append((group, low, high, factor))
        return cls(tuple(entries))

    def factor(self, module: str) -> float:
        """The factor for Tencent module name ``module``."""
        match = _BLOCK.match(module)
        group, index = (match.group(1), int(match.group(2))) if match else ("other", None)
        result = 1.0
        for name, low, high, factor in self.entries:
            if name == group and (low is None or (index is not None and low <= index <= high)):
                result = factor
        return result

    def __str__(self) -> str:
        def selector(group, low, high):
            if low is None:
                return group
            return f"{group}.{low}" if low == high else f"{group}.{low}-{high}"

        return ", ".join(f"{selector(g, lo, hi)}={f:g}" for g, lo, hi, f in self.entries)
