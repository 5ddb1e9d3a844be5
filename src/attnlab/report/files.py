"""Reading a run folder safely: only regular files inside it, never a symbolic link.

A run folder may come from someone else (a CI artifact, a colleague's tarball): a symbolic link in it
(``figures/a.png -> /etc/passwd``) must not put another file's contents into a report or an export.
"""

from __future__ import annotations

from pathlib import Path

from attnlab.errors import UserError


def is_inside(run_dir: Path, path: Path) -> bool:
    """True if ``path`` is not a symbolic link and resolves to a place inside ``run_dir``.

    Args:
        run_dir: the run folder (itself may be reached through a link).
        path: a path under ``run_dir``.

    Returns:
        Whether the report may read ``path``.
    """
    if path.is_symlink():
        return False
    try:
        return path.resolve().is_relative_to(run_dir.resolve())
    except (OSError, RuntimeError):  # a loop of links above it
        return False


def regular_file(run_dir: Path, path: Path) -> bool:
    """True if ``path`` is a regular file the report may read (see :func:`is_inside`)."""
    return is_inside(run_dir, path) and path.is_file()


def checked_path(run_dir: Path, name: str) -> Path:
    """``run_dir / name``, which may be missing; a UserError when it is a link or leads outside the folder.

    Args:
        run_dir: the run folder.
        name: a file name inside it (``config.json``).

    Returns:
        The path (check ``is_file()`` for presence).

    Raises:
        UserError: the path is a symbolic link or resolves outside ``run_dir``.
    """
    path = run_dir / name
    if (path.is_symlink() or path.exists()) and not is_inside(run_dir, path):
        raise UserError(f"{path} is a symbolic link or leads outside the run folder; the report reads only regular "
                        "files inside the run folder")
    return path
