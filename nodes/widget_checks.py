"""Widget checks for a node's ``VALIDATE_INPUTS``, as ComfyUI would have made them.

ComfyUI skips its own checks (min, max, the choices of a list) for every input that a node's
``VALIDATE_INPUTS`` takes, and for all inputs when it takes ``**kwargs``; and it passes ``None`` for
an input that is linked (a widget converted to a socket), whose value is known only at run time.
:func:`validate` redoes ComfyUI's checks for the values it gets, then runs the node's own check
once every value that check needs is known (otherwise the node checks them when it runs).
"""

from __future__ import annotations

from collections.abc import Callable


def input_options(spec: tuple) -> dict:
    """The options dict of an ``INPUT_TYPES`` entry such as ``("INT", {"default": 1})`` (``{}`` if none)."""
    return spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}


def value_problem(spec: tuple, value) -> str | None:
    """What is wrong with widget ``value`` for the ``INPUT_TYPES`` entry ``spec`` (None if nothing)."""
    kind, options = spec[0], input_options(spec)
    if "min" in options and value < options["min"]:
        return f"{value} is below the minimum {options['min']}"
    if "max" in options and value > options["max"]:
        return f"{value} is above the maximum {options['max']}"
    if isinstance(kind, list) and value not in kind:
        choices = ", ".join(map(repr, kind[:20])) or "(none: is the models folder right?)"
        return f"{value!r} is not one of the choices: {choices}"
    return None


def validate(input_types: dict, values: dict, check: Callable[..., object] | None = None) -> bool | str:
    """``True``, or every problem with ``values`` (input name -> value, ``None`` when linked), one per line.

    ``check(**values)`` raises ValueError with the message to show when the combination is wrong; it
    runs once each value is known and within its range (its message may itself list several).
    """
    specs = {**input_types.get("required", {}), **(input_types.get("optional") or {})}
    problems = [
        f"{name} {problem}"
        for name, value in values.items()
        if value is not None and (problem := value_problem(specs[name], value))
    ]
    if check is not None and not problems and None not in values.values():
        try:
            check(**values)
        except ValueError as error:
            problems.append(str(error))
    return join_problems(problems)


def join_problems(problems: list[str]) -> bool | str:
    """A ``VALIDATE_INPUTS`` verdict: ``True`` for no problems, else all of them, one per line."""
    return "\n".join(problems) or True
