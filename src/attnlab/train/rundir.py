"""Run folders: choose one, and never write into a folder that holds anything but an attnlab run.

A run folder holds ``config.json`` from the moment training starts, ``checkpoints/last.ckpt`` after each
epoch (removed when the run completes unless checkpoints are kept), ``model.safetensors`` (the best
weights so far) and, once finished, ``metrics.json``. :func:`claim` decides what a fit may do with a
folder: start in it (new or empty), restart in it (an attnlab run stopped before its first checkpoint),
resume it, or refuse with a one-line error naming the fix.
"""

from __future__ import annotations

import datetime
import json
import shutil
from enum import Enum
from pathlib import Path

from attnlab.errors import UserError

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"
WEIGHTS_FILE = "model.safetensors"
CHECKPOINT_DIR = "checkpoints"
LAST_CHECKPOINT = "last.ckpt"
# What a fit writes before its first checkpoint: removed when such a run is restarted.
_EARLY_FILES = (CONFIG_FILE, WEIGHTS_FILE, WEIGHTS_FILE + ".tmp", "logs", "figures", CHECKPOINT_DIR)


class State(Enum):
    """What a folder holds."""

    EMPTY = "empty"  # missing or empty: a new run may start
    UNSTARTED = "unstarted"  # an attnlab run stopped before its first checkpoint
    RESUMABLE = "resumable"  # an unfinished attnlab run with a checkpoint
    FINISHED = "finished"  # a finished attnlab run (its checkpoint only if it was kept)
    FOREIGN = "foreign"  # anything else: never written into


def last_checkpoint(run_dir: Path) -> Path:
    """Where a run keeps its resumable checkpoint."""
    return run_dir / CHECKPOINT_DIR / LAST_CHECKPOINT


def is_attnlab_config(path: Path) -> bool:
    """True if ``path`` is a ``config.json`` an attnlab fit wrote (JSON naming an experiment and a model)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and {"experiment", "model", "train"} <= set(data)


def state(run_dir: Path) -> State:
    """Classify ``run_dir`` (see :class:`State`)."""
    if not run_dir.exists():
        return State.EMPTY
    if not run_dir.is_dir():
        return State.FOREIGN
    if not any(run_dir.iterdir()):
        return State.EMPTY
    if not is_attnlab_config(run_dir / CONFIG_FILE):
        return State.FOREIGN
    if (run_dir / METRICS_FILE).is_file():
        return State.FINISHED
    return State.RESUMABLE if last_checkpoint(run_dir).is_file() else State.UNSTARTED


def check_path(run_dir: Path | str, flag: str = "--out") -> Path:
    """``run_dir`` as a Path, refusing an empty name and a path that is a file."""
    if str(run_dir).strip() == "":
        raise UserError(f"{flag} is empty; pass the name of a new folder for the run, e.g. {flag} runs/my-run")
    path = Path(run_dir)
    if path.exists() and not path.is_dir():
        raise UserError(f"{path} is a file, not a folder; pass a new folder for the run with {flag}")
    return path


def new_run_dir(root: Path, experiment: str, model: str) -> Path:
    """A fresh ``root/<experiment>-<model>-<timestamp>`` (suffixed ``-1``, ``-2``, … if taken)."""
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    candidate = root / f"{experiment}-{model}-{stamp}"
    n = 1
    while candidate.exists():
        candidate = root / f"{experiment}-{model}-{stamp}-{n}"
        n += 1
    return candidate


def latest_run_dir(root: Path, experiment: str, model: str) -> Path:
    """The run of ``experiment``/``model`` under ``root`` whose checkpoint is newest."""
    runs = sorted(
        (p for p in root.glob(f"{experiment}-{model}-*") if last_checkpoint(p).is_file()),
        key=lambda p: last_checkpoint(p).stat().st_mtime,
    )
    if not runs:
        raise UserError(f"no run of {experiment}/{model} with a checkpoint to resume in {root}/; pass its folder "
                        "with --out")
    return runs[-1]


def check(run_dir: Path, resume: bool, flag: str = "--out") -> State:
    """Check that a fit may use ``run_dir``; return what the folder holds. Nothing is written.

    * new or empty folder: a new run starts there (``resume`` is an error: nothing to resume);
    * an attnlab run stopped before its first checkpoint: restarted (see :func:`clear_unstarted`), unless
      ``resume``, which is an error that says to rerun without it;
    * an unfinished run with a checkpoint: resumed with ``resume``, otherwise an error naming ``--resume``;
    * a finished run: resumed with ``resume`` if its checkpoint was kept, otherwise an error;
    * anything else (a file, a folder of the user's own files): always an error.

    Raises:
        UserError: the folder cannot be used as asked; the message names the fix.
    """
    found = state(run_dir)
    if found is State.FOREIGN:
        names = sorted(p.name for p in run_dir.iterdir())[:4] if run_dir.is_dir() else []
        listed = f" ({', '.join(names)}{', …' if len(names) == 4 else ''})" if names else ""
        raise UserError(f"{run_dir} is not empty and holds no attnlab run{listed}; attnlab never writes into such "
                        f"a folder: pass a new or empty folder with {flag}")
    if resume:
        if found is State.EMPTY:
            raise UserError(f"cannot resume: {last_checkpoint(run_dir)} not found ({run_dir} holds no run); "
                            "drop --resume to start a new run there")
        if found is State.UNSTARTED:
            raise UserError(f"cannot resume: the run in {run_dir} stopped before its first checkpoint; run the same "
                            "command without --resume to restart it")
        if found is State.FINISHED and not last_checkpoint(run_dir).is_file():
            raise UserError(f"cannot resume: the run in {run_dir} finished and kept no checkpoint; start a new run "
                            f"with another {flag} (pass --keep-checkpoints to keep one for later resumes)")
    elif found is State.RESUMABLE:
        raise UserError(f"{run_dir} holds an unfinished run; pass --resume to continue it, or choose another {flag}")
    elif found is State.FINISHED:
        raise UserError(f"{run_dir} already holds a finished run; choose another {flag}")
    return found


def clear_unstarted(run_dir: Path) -> None:
    """Remove what a run stopped before its first checkpoint wrote, so it can start again in its folder."""
    for name in _EARLY_FILES:
        path = run_dir / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()


def drop_checkpoints(run_dir: Path) -> None:
    """Remove a completed run's resumable checkpoint (and its folder, once empty)."""
    folder = run_dir / CHECKPOINT_DIR
    path = folder / LAST_CHECKPOINT
    if path.is_file():
        path.unlink()
    if folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()
