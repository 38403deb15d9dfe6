"""Widget values from workflow files and ``--set``: cast to the input's type as ComfyUI does, but
never silently differently from what was meant.

ComfyUI casts an INT input with ``int()`` (64.5 runs as 64) and a BOOLEAN with ``bool()``; the
runner keeps the first (a workflow must run the same in both) but says so, and reads booleans by
their usual spellings, refusing anything else, because ``bool("false")`` is True.
"""

from __future__ import annotations

import json
import math

TRUE_WORDS = ("true", "yes", "on", "1")
FALSE_WORDS = ("false", "no", "off", "0")
ACCEPTED_BOOLEANS = "/".join(FALSE_WORDS) + " or " + "/".join(TRUE_WORDS)


class ValueProblem(ValueError):
    """A value that cannot be read as its input's type; the message says what is accepted."""


def parse_boolean(value) -> bool:
    """``value`` as a bool: a bool, 0 or 1, or a word of :data:`TRUE_WORDS` / :data:`FALSE_WORDS` in any case."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    word = value.strip().lower() if isinstance(value, str) else None
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ValueProblem(f"{value!r} is not a boolean; use {ACCEPTED_BOOLEANS} (any case)")


def cast(kind, value) -> tuple[object, str | None]:
    """``value`` cast to widget type ``kind`` (INT, FLOAT, STRING, BOOLEAN; others pass) and a warning
    when the cast changed what the value says."""
    if kind == "BOOLEAN":
        return parse_boolean(value), None
    if kind == "INT":
        number = _number(value, kind)
        if number != int(number):
            return int(number), (
                f"{value!r} is not a whole number; it runs as {int(number)} (ComfyUI truncates the same way). "
                f"Write {int(number)} to keep it, or {round(number)} if that was meant"
            )
        return int(number), None
    if kind == "FLOAT":
        return _number(value, kind), None
    if kind == "STRING":
        return str(value), None
    return value, None


def _number(value, kind: str) -> int | float:
    # As ComfyUI: int() / float() of the value, so "64" is an INT but "64.5" is not; ints stay exact
    # (a seed may be 2**64 - 1, beyond a float's precision).
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueProblem(f"{value!r} is not a valid {kind}")
    try:
        number = (int if kind == "INT" and not isinstance(value, float) else float)(value)
    except ValueError:
        raise ValueProblem(f"{value!r} is not a valid {kind}") from None
    if isinstance(number, float) and not math.isfinite(number):
        raise ValueProblem(f"{value!r} is not a valid {kind}")
    return float(number) if kind == "FLOAT" else number


def parse_text(text: str, kind):
    """A ``--set`` VALUE for an input of ``kind``: STRING and combo inputs take it as written, BOOLEAN
    by its spellings, others as JSON (``30``, ``6.5``), falling back to the text."""
    if kind == "STRING" or isinstance(kind, list) or kind == "COMBO":
        return text
    if kind == "BOOLEAN":
        return parse_boolean(text)
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text
