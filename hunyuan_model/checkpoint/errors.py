"""Errors a checkpoint reader raises. Every message names the file and says what was found."""

from __future__ import annotations

from pathlib import Path


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
