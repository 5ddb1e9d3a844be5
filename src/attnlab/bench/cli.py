"""What the benchmarks' command lines share: option values checked into one-line errors, and numbers formatted for
their tables.

Every check raises a :class:`~attnlab.errors.UserError` that names the option (``--lengths must be positive, got
'0'``), which ``attnlab`` prints as one line with exit status 2.
"""

from __future__ import annotations

from pathlib import Path

from attnlab.errors import UserError


def fmt(value: float | None, spec: str, na: str = "-") -> str:
    """``value`` formatted with ``spec`` (``".2f"``), or ``na`` for a missing value."""
    return na if value is None else format(value, spec)


def number(option: str, text: str, kind: type = int, at_least: float | None = None) -> int | float:
    """``text`` as a ``kind`` (int or float) that is positive, or at least ``at_least`` when given.

    Args:
        option: the option's name without dashes, for the message (``"max-memory-gb"``).
        text: the value as typed (surrounding spaces are ignored).
        kind: ``int`` or ``float``.
        at_least: the smallest value allowed (``0`` allows zero); None = any positive value.

    Raises:
        UserError: not a number of that kind, or out of range.
    """
    try:
        value = kind(text.strip())
    except ValueError:
        raise UserError(f"--{option} must be a{'n integer' if kind is int else ' number'}, got {text!r}") from None
    if at_least is None and not value > 0:
        raise UserError(f"--{option} must be positive, got {text!r}")
    if at_least is not None and not value >= at_least:
        raise UserError(f"--{option} must be at least {at_least}, got {text!r}")
    return value


def choices(option: str, text: str, valid: tuple[str, ...]) -> tuple[str, ...]:
    """The comma list ``text`` as names from ``valid``: unique, in the order given.

    Raises:
        UserError: an unknown name, or no name at all (the message lists the valid ones).
    """
    items = tuple(dict.fromkeys(s.strip() for s in text.split(",") if s.strip()))
    bad = [s for s in items if s not in valid]
    if bad or not items:
        raise UserError(f"--{option}: unknown {', '.join(map(repr, bad)) or 'empty list'}; "
                        f"choose from {','.join(valid)}")
    return items


def output_path(option: str, text: str | None, suffixes: tuple[str, ...] | None = None) -> Path | None:
    """The file an option names for writing (None if the option was not given).

    Args:
        option: the option's name without dashes.
        text: the path as typed, or None.
        suffixes: the file endings allowed (``(".png", ".svg")``, compared in lower case); None = any.

    Raises:
        UserError: a suffix not allowed, or a folder that does not exist.
    """
    if text is None:
        return None
    path = Path(text)
    if suffixes is not None and path.suffix.lower() not in suffixes:
        raise UserError(f"--{option}: {text!r} must end in {', '.join(suffixes)}")
    if not path.parent.is_dir():
        raise UserError(f"--{option}: folder {path.parent} does not exist; create it or pick another path")
    return path
