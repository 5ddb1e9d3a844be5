"""Checks of the paths a user gives (standard library only, so commands can check before loading anything)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from attnlab.errors import UserError


def readable_file(path: str | Path, what: str, flag: str) -> Path:
    """``path`` as a Path if it is an existing, readable regular file; otherwise a UserError that says what is
    wrong with it (missing, a folder, a device such as /dev/null, unreadable) and names ``flag``.

    Args:
        path: what the user gave.
        what: what the file should be, for the message (``"CSV file"``).
        flag: the option that takes it (``"--csv"``).
    """
    p = Path(path).expanduser()
    if str(path).strip() == "":
        raise UserError(f"{flag} is empty; pass an existing {what}")
    try:
        mode = p.stat().st_mode
    except FileNotFoundError:
        raise UserError(f"{p} not found; pass an existing {what} with {flag}") from None
    except OSError as err:
        raise UserError(f"cannot read {p} ({err.strerror}); pass an existing {what} with {flag}") from None
    if stat.S_ISDIR(mode):
        raise UserError(f"{p} is a folder, not a {what}; pass the file itself with {flag}")
    if not stat.S_ISREG(mode):
        raise UserError(f"{p} is not a regular file (a device or a pipe); pass a {what} with {flag}")
    if not os.access(p, os.R_OK):
        raise UserError(f"{p} is not readable (permission denied); fix its permissions (chmod u+r) or pass a copy "
                        f"with {flag}")
    return p


def run_folder(path: str | Path, flag: str) -> Path:
    """``path`` as a Path if it is an existing folder; otherwise a UserError naming ``flag``."""
    p = Path(path).expanduser()
    if str(path).strip() == "":
        raise UserError(f"{flag} is empty; pass a run folder")
    if not p.exists():
        raise UserError(f"{p} not found; pass a run folder with {flag}")
    if not p.is_dir():
        raise UserError(f"{p} is a file, not a run folder; pass the folder the run was written to with {flag}")
    return p
