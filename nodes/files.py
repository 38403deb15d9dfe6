"""File-system helpers behind the ComfyUI adapter: cached folder listings, safe relative names, file
fingerprints and ComfyUI's save-file naming. Plain Python: nothing here imports ComfyUI."""

from __future__ import annotations

import os
import time
from pathlib import Path, PurePosixPath, PureWindowsPath

# ComfyUI asks for a node's INPUT_TYPES on every /object_info and several times per queued prompt, so
# folder listings are kept, as folder_paths keeps its own, until a directory they walked changes.
# A directory changed within the last seconds may change again within its mtime's resolution:
# such a listing is not kept.
_RECENT_S = 2.0
_listings: dict[tuple, tuple[list[str], dict[str, int | None]]] = {}


def folder_listing(bases: tuple[Path, ...], extensions: tuple[str, ...], include_dirs: bool) -> list[str]:
    """Names (relative, '/'-separated) under ``bases`` ending in ``extensions`` (lower case); with
    ``include_dirs``, folders holding a config.json are listed instead of searched."""
    key = (bases, extensions, include_dirs)
    if key in _listings:
        names, stamps = _listings[key]
        if all(_mtime_ns(folder) == stamp for folder, stamp in stamps.items()):
            return list(names)
    names, stamps = set(), {}
    for base in bases:
        stamps[str(base)] = _mtime_ns(base)
        if base.is_dir():
            names.update(_walk(base, extensions, include_dirs, stamps))
    names = sorted(names, key=str.lower)
    newest = max((stamp for stamp in stamps.values() if stamp is not None), default=0)
    if time.time_ns() - newest > _RECENT_S * 1e9:
        _listings[key] = (names, stamps)
    return list(names)


def _walk(base: Path, extensions: tuple[str, ...], include_dirs: bool, stamps: dict) -> list[str]:
    """Matching names under ``base``; every directory looked into is stamped with its mtime."""
    names = []
    for dirpath, dirnames, filenames in os.walk(base, followlinks=True):
        stamps[dirpath] = _mtime_ns(dirpath)
        here = Path(dirpath)
        if include_dirs and here != base and "config.json" in filenames:
            names.append(here.relative_to(base).as_posix())
            dirnames.clear()
            continue
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        names += [(here / f).relative_to(base).as_posix() for f in filenames if f.lower().endswith(extensions)]
    return names


def _mtime_ns(folder: str | Path) -> int | None:
    try:
        return os.stat(folder).st_mtime_ns
    except OSError:
        return None


def check_relative_name(name: str) -> None:
    """Refuse empty names, absolute paths (POSIX or Windows) and ``..`` parts."""
    if not name or not name.strip():
        raise ValueError("no model file chosen: pick one from the list (is the models folder empty?).")
    for pure in (PurePosixPath(name), PureWindowsPath(name)):
        if pure.is_absolute() or pure.drive or pure.root:
            raise PermissionError(
                f"model name {name!r} is an absolute path; only names inside the model folders are allowed."
            )
        if ".." in pure.parts:
            raise PermissionError(
                f"model name {name!r} contains '..'; only names inside the model folders are allowed."
            )


def fingerprint(path: Path) -> str:
    """Names, sizes and modification times of a file, or of every file under a folder."""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    stats = [(p.relative_to(path.parent).as_posix(), p.stat()) for p in files]
    return ";".join(f"{name}:{stat.st_size}:{stat.st_mtime_ns}" for name, stat in stats)


def expand_prefix(prefix: str, width: int, height: int) -> str:
    """ComfyUI's %width%, %height%, %year% ... %second% variables in a save prefix, filled in."""
    if "%" not in prefix:
        return prefix
    now = time.localtime()
    values = {
        "width": width,
        "height": height,
        "year": now.tm_year,
        "month": f"{now.tm_mon:02}",
        "day": f"{now.tm_mday:02}",
        "hour": f"{now.tm_hour:02}",
        "minute": f"{now.tm_min:02}",
        "second": f"{now.tm_sec:02}",
    }
    for key, value in values.items():
        prefix = prefix.replace(f"%{key}%", str(value))
    return prefix


def next_counter(folder: str, filename: str) -> int:
    """The counter the next ``<filename>_<counter>_`` file in ``folder`` gets."""
    # ComfyUI's rule: among files named "<filename>_<digits>..." (case-insensitive where the file
    # system is), continue after the highest <digits>; a name with no digits there counts as 0.
    start = len(filename) + 1
    used = []
    for name in os.listdir(folder):
        if name[start - 1 : start] != "_" or os.path.normcase(name[: start - 1]) != os.path.normcase(filename):
            continue
        digits = name[start:].split("_")[0]
        used.append(int(digits) if digits.isdigit() else 0)
    return max(used, default=0) + 1
