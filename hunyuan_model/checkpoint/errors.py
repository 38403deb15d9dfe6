"""The one error family of every model loader (DiT, scale map, LLM, CLIP, VAE).

Every message names the file and says what was found. The readers raise the corrupt and unsafe
errors, so each slot words them the same; :func:`wrong_model` words the "this is another model"
error for every slot from :func:`~..identify.identify`'s answer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from ..identify import Loader, ModelKind, identify


class CheckpointError(ValueError):
    """A model file that cannot be used as asked."""


class CorruptCheckpointError(CheckpointError):
    """A truncated or damaged file (the message names the failing part)."""


class UnsafeCheckpointError(CheckpointError):
    """A pickle that would run code to load; a shared model file must never do that."""


class WrongModelError(CheckpointError):
    """A readable file that holds something else than this loader wants (another model family, a VAE...)."""


class MissingScaleMapError(CheckpointError):
    """FP8 weights divided by per-layer scales that were not found; loading them unscaled gives noise."""

    def __init__(self, message: str, searched: list[Path]) -> None:
        super().__init__(message)
        self.searched = searched


def wrong_model(
    description: str,
    shapes: Mapping[str, Sequence[int]],
    wanted: str,
    expected: ModelKind,
    asking: Loader,
    prefix: str = "",
    hint: str = "",
) -> WrongModelError:
    """``description`` (a reader's :meth:`~.reader.CheckpointReader.describe`) is not ``wanted``; says what it is.

    ``shapes`` and ``prefix`` go to :func:`~..identify.identify`; its kind's advice for ``asking``
    follows, then ``hint`` (what this slot takes). The ``expected`` kind itself means a layout this
    loader does not read (cut short, another tool's names): the first keys are listed.
    """
    kind = identify(shapes, prefix)
    keys = sorted(shapes)
    shown = f"{len(keys)} tensors: {', '.join(keys[:5])}, ..."
    if kind is None:
        found = f"an unknown model ({shown})"
    elif kind is expected:
        found = f"{kind.what}, but not in a layout this loader reads ({shown})"
    else:
        found = f"{kind.what}; {kind.advice(asking)}"
    return WrongModelError(f"{description} is not {wanted}: it is {found}.{' ' + hint if hint else ''}")
