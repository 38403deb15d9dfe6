"""Reporting every problem with a set of values at once, not only the first one found."""

from __future__ import annotations

from collections.abc import Callable


def check_all(*checks: Callable[[], object]) -> None:
    """Run every check; if any raise ValueError, raise one ValueError whose message lists them all."""
    problems = []
    for check in checks:
        try:
            check()
        except ValueError as error:
            problems.append(str(error))
    if problems:
        raise ValueError(" ".join(problems) if len(problems) == 1 else "\n".join(f"- {p}" for p in problems))
