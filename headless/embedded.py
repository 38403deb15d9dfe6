"""Workflows carried inside saved files: PNG images and mp4/webm videos, as ComfyUI writes them.

ComfyUI's page accepts such a file dropped onto it and loads the graph stored in it; the runner
does the same. PNGs keep ``prompt`` and ``workflow`` as text chunks (``tEXt``, or ``iTXt``/``zTXt``
when the text is not Latin-1 or compressed; ComfyUI's nodes.py ``SaveImage`` through PIL's
``PngInfo.add_text``); videos keep them as container tags (webm upper-cases the keys).
"""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_EBML = b"\x1a\x45\xdf\xa3"  # webm / Matroska


def file_kind(head: bytes) -> str | None:
    """``"png"``, ``"video"`` or None (not a file that may carry a workflow) from a file's first bytes."""
    if head.startswith(PNG_SIGNATURE):
        return "png"
    if head[4:8] == b"ftyp" or head.startswith(_EBML):
        return "video"
    return None


def embedded_graphs(path: Path, kind: str) -> dict[str, object]:
    """The JSON values stored under ``workflow`` and ``prompt`` in a PNG or video file (those present).

    Raises ValueError when the file cannot be read as its kind or a value is not JSON.
    """
    texts = _png_texts(path.read_bytes()) if kind == "png" else _video_tags(path)
    found = {}
    for key in ("workflow", "prompt"):
        value = next((text for name, text in texts.items() if name.lower() == key), None)
        if value is not None:
            try:
                found[key] = json.loads(value)
            except json.JSONDecodeError as error:
                raise ValueError(f"its {key!r} entry is not JSON ({error})") from error
    return found


def _png_texts(data: bytes) -> dict[str, str]:
    texts, position = {}, len(PNG_SIGNATURE)
    while position + 8 <= len(data):
        length, chunk_type = struct.unpack(">I4s", data[position : position + 8])
        body = data[position + 8 : position + 8 + length]
        if len(body) < length:
            raise ValueError("the PNG file is truncated")
        if chunk_type in (b"tEXt", b"zTXt", b"iTXt"):
            key, text = _png_text(chunk_type, body)
            texts[key] = text
        if chunk_type == b"IEND":
            break
        position += 12 + length  # length, type, body, CRC
    return texts


def _png_text(chunk_type: bytes, body: bytes) -> tuple[str, str]:
    key, _, rest = body.partition(b"\0")
    if chunk_type == b"tEXt":
        return key.decode("latin-1"), rest.decode("latin-1")
    if chunk_type == b"zTXt":  # compression method byte, then zlib data
        return key.decode("latin-1"), zlib.decompress(rest[1:]).decode("latin-1")
    compressed, rest = rest[0], rest[2:]  # iTXt: flag, method, language\0, translated key\0, text
    _, _, rest = rest.partition(b"\0")
    _, _, text = rest.partition(b"\0")
    return key.decode("latin-1"), (zlib.decompress(text) if compressed else text).decode("utf-8")


def _video_tags(path: Path) -> dict[str, str]:
    import av

    try:
        with av.open(str(path)) as container:
            return dict(container.metadata)
    except av.error.FFmpegError as error:
        raise ValueError(f"the video cannot be read ({error})") from error
