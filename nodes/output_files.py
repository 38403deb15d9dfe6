"""The files save nodes write: their output folder checked before a run, their names claimed atomically.

Host-neutral: the output folder and the first counter come from the host (ComfyUI's
``folder_paths.get_save_image_path`` or the standalone rule, the same one), everything after that
happens here, so a headless run and a ComfyUI instance sharing an output folder follow one protocol.

Naming. ComfyUI's rule gives the next counter as one past the highest in the folder, which two
runs saving at once both compute alike: each would write ``<prefix>_00002_.mp4`` and one video would
replace the other. :func:`claimed_file` keeps the rule for the first guess and then claims the name
with an exclusive create (``O_CREAT | O_EXCL``, atomic on local and network file systems alike),
moving on to the next counter while a name is taken. The claimed, still empty, file stands in the
folder while the real one is written beside it under a hidden temporary name, so every other saver
(of this pack or ComfyUI's own, which count it) sees the name as used; the finished file replaces it
in one rename. A failed or cancelled save removes both.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger("HunyuanVideo")


def output_problems(filename_prefix: str | None, output_dir: str | os.PathLike) -> list[str]:
    """What would stop a save with ``filename_prefix`` in ``output_dir``, found without writing a file:
    a prefix leaving the folder, a file where a folder must be, a folder that cannot be written.
    For a save node's ``VALIDATE_INPUTS``, so ComfyUI and the headless runner refuse before anything
    loads; ``None`` (a linked prefix, known only at run time) has none."""
    if filename_prefix is None:
        return []
    output_dir = os.path.abspath(output_dir)
    folder = os.path.abspath(os.path.join(output_dir, os.path.dirname(os.path.normpath(filename_prefix))))
    if os.path.commonpath((output_dir, folder)) != output_dir:
        return [
            f"filename_prefix {filename_prefix!r} points outside the output folder {output_dir}; use a plain "
            f"name or a subfolder such as 'video/HunyuanVideo'"
        ]
    existing = Path(folder)
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return [
            f"{existing} is a file, but filename_prefix {filename_prefix!r} needs a folder there; move the file "
            f"away or change the prefix"
        ]
    if not _can_write_in(existing):
        return [
            f"cannot write in {existing} (read-only, or no permission), so the output of filename_prefix "
            f"{filename_prefix!r} could not be saved; make it writable or choose another output folder"
            + (" (--output-dir)" if existing == Path(output_dir) else "")
        ]
    return []


def warn_about_prefix(filename_prefix: str) -> None:
    """Warn when ``filename_prefix`` names no file (empty, or ``.``): ComfyUI then writes hidden files
    such as ``._00001_.mp4``, and so does the pack, as saved workflows expect."""
    if os.path.basename(os.path.normpath(filename_prefix or ".")) in ("", "."):
        log.warning(
            "HunyuanVideo: filename_prefix %r gives no file name, so the file is saved as '._<counter>_...', "
            "hidden in most file browsers (ComfyUI names it the same way); give a name such as 'HunyuanVideo'.",
            filename_prefix,
        )


def _can_write_in(folder: Path) -> bool:
    # os.access answers "yes" to root on a read-only folder; creating a file is the real test.
    try:
        handle, probe = tempfile.mkstemp(dir=folder, prefix=".hunyuanvideo_probe_")
    except OSError:
        return False
    os.close(handle)
    os.unlink(probe)
    return True


@contextlib.contextmanager
def claimed_file(folder: Path, filename: str, counter: int, extension: str) -> Iterator[tuple[str, Path]]:
    """Claim ``<filename>_<counter>_.<extension>`` in ``folder`` (the first free counter from ``counter`` on)
    and yield ``(name, temporary path)``: write the file at the temporary path; when the block ends it
    becomes the claimed name. On an error (or cancel) both go and the error propagates."""
    folder = Path(folder)
    while True:
        name = f"{filename}_{counter:05}_.{extension}"
        try:
            os.close(os.open(folder / name, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
            break
        except FileExistsError:
            counter += 1
    final = folder / name
    # Hidden, and not of the "<prefix>_<counter>_" form, so it never counts as a saved file.
    temporary = folder / f".{name}.{uuid.uuid4().hex[:8]}.partial"
    try:
        yield name, temporary
        os.replace(temporary, final)
    except BaseException:
        temporary.unlink(missing_ok=True)
        final.unlink(missing_ok=True)
        raise
