"""Files of a run folder: ``baselines.json``, and reading a folder safely (only regular files inside it, never a
symbolic link).

A run folder may come from someone else (a CI artifact, a colleague's tarball): a symbolic link in it
(``figures/a.png -> /etc/passwd``) must not put another file's contents into a report or an export.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path

from attnlab.errors import UserError

BASELINES_FILE = "baselines.json"  # test metrics of simple reference predictors, written by a task's save_artifacts


def write_baselines(run_dir: Path, baselines: Mapping[str, Mapping[str, float]]) -> Path:
    """Write ``baselines.json``: the test metrics of simple reference predictors (repeat the last value,
    predict the majority class, …), which the run report shows beside the model's.

    Args:
        run_dir: the run folder.
        baselines: baseline description -> {metric name -> test value}, same names as ``evaluate`` returns.

    Returns:
        The path written.
    """
    data = {"split": "test", "baselines": {name: {k: float(v) for k, v in metrics.items() if math.isfinite(v)}
                                           for name, metrics in baselines.items()}}
    path = Path(run_dir) / BASELINES_FILE
    path.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n")
    return path


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
