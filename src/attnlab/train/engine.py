"""``fit``: train any registered experiment with any of its models and write one run folder.

Run folder (``runs/<experiment>-<model>-<timestamp>/`` unless ``run_dir`` is given)::

    config.json        experiment and model names + resolved train / experiment / model configs
    metrics.json       test and validation metrics of the best epoch, params, seconds, epochs, steps, how training
                       stopped (``stopped_by``), under-training ``warnings``, history
    model.safetensors  weights of the best epoch (load with :func:`attnlab.train.load_model`); written at every
                       improvement while training, so an interrupted run keeps its best weights too
    checkpoints/       last.ckpt, overwritten every epoch (for --resume); removed when the run completes unless
                       ``keep_checkpoints``
    logs/version_0/    Lightning's CSV log, metrics.csv (per step and per epoch); version_1/ … after resumes
    figures/           the experiment's figures, drawn with the best model
    attention.json     attention of a few held-out examples (+ attention.safetensors), see attnlab.report.attention
    report.html        the run report (:func:`attnlab.report.build_report`), one offline file

Under DDP every process runs :func:`fit`; only global rank 0 writes files.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import signal
import threading
import time
import warnings
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.callbacks import EarlyStopping, TQDMProgressBar
from lightning.pytorch.loggers import CSVLogger
from torch import nn

from attnlab import registry
from attnlab.console import is_rank_zero
from attnlab.errors import Interrupted, UserError
from attnlab.experiments.base import DataSplits, Experiment
from attnlab.nn.maps import has_attention
from attnlab.registry import ExperimentSpec, ModelSpec
from attnlab.report import build_report
from attnlab.report.attention import DEFAULT_LIMIT, save_attention
from attnlab.system import available_memory_bytes
from attnlab.train import rundir
from attnlab.train.callbacks import (
    BestWeights,
    LastCheckpoint,
    TimeCap,
    stopped_by,
    training_warnings,
    write_weights_atomic,
)
from attnlab.train.config import RunConfig, TrainConfig, resolve
from attnlab.train.module import TaskModule
from attnlab.train.result import RunResult, write_metrics
from attnlab.train.weights import CONFIG_FILE, WEIGHTS_FILE, build_model, read_config, write_config

log = logging.getLogger(__name__)

DEFAULT_RUNS_ROOT = Path("runs")
_RUN_DIR_ENV = "ATTNLAB_RUN_DIR"  # hands the run folder of rank 0 to the DDP processes it launches
_LIGHTNING_LOGGERS = ("lightning.pytorch", "lightning.fabric", "pytorch_lightning", "lightning_fabric")
# Lightning warnings that are not actionable for attnlab's small in-memory data sets and fixed layout.
_NOISE = (
    r".*does not have many workers.*",
    r".*smaller than the logging interval.*",
    r".*exists and is not empty.*",
    r".*`srun` command is available.*",
    r".*GPU available but not used.*",
    r".*You defined a `validation_step` but have no `val_dataloader`.*",
    r".*isinstance\(treespec, LeafSpec\)` is deprecated.*",  # inside Lightning 2.6 with torch >= 2.9
    r".*Total length of `DataLoader` across ranks is zero.*",  # a forecast fitted on every step has no test part
)


# ---------------------------------------------------------------------------------------------- helpers


@contextlib.contextmanager
def quiet_lightning() -> Iterator[None]:
    """Silence Lightning's info logs (GPU available, tips, seed set, …) and its non-actionable warnings."""
    loggers = [logging.getLogger(name) for name in _LIGHTNING_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            for pattern in _NOISE:
                warnings.filterwarnings("ignore", message=pattern)
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


class _ProgressBar(TQDMProgressBar):
    """Lightning's tqdm bar without the logger version number."""

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        metrics = super().get_metrics(trainer, pl_module)
        metrics.pop("v_num", None)
        return metrics


def _devices(text: str) -> int | str:
    text = text.strip()
    return int(text) if text.lstrip("-").isdigit() else text


@contextlib.contextmanager
def _exported_run_dir(run_dir: Path) -> Iterator[None]:
    """Put the run folder in the environment, which the DDP processes Lightning launches inherit."""
    previous = os.environ.get(_RUN_DIR_ENV)
    os.environ[_RUN_DIR_ENV] = str(run_dir.resolve())
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(_RUN_DIR_ENV, None)
        else:
            os.environ[_RUN_DIR_ENV] = previous


@contextlib.contextmanager
def _interruptible(trainer: L.Trainer, run_dir: Path) -> Iterator[None]:
    """Lightning answers Ctrl-C with ``sys.exit(1)`` after a graceful shutdown; turn that back into an
    :class:`~attnlab.errors.Interrupted` that says how to continue (the CLI prints it and exits 130) and
    restore the default SIGINT handler."""
    try:
        yield
    except (SystemExit, KeyboardInterrupt) as err:
        if isinstance(err, SystemExit) and not trainer.interrupted:
            raise
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, signal.default_int_handler)
        if rundir.last_checkpoint(run_dir).is_file():
            hint = f"continue with the same command plus --resume (run folder {run_dir})"
        else:
            hint = f"no epoch had finished, so nothing was saved: the same command restarts it in {run_dir}"
        raise Interrupted(hint) from None


@contextlib.contextmanager
def _threads(n: int) -> Iterator[None]:
    """torch's intra-op thread count set to ``n`` inside the block (restored after)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def fit_batch_to_data(train: TrainConfig, n_train: int) -> TrainConfig:
    """``train`` with ``batch_size`` lowered to ``n_train // min_steps_per_epoch`` (at least 1) where that is
    smaller, so an epoch over ``n_train`` examples has at least ``min_steps_per_epoch`` full batches.

    A recipe tuned on a large data set (PatchTST's batch of 128 on ETTh1's 8,209 windows) would otherwise
    make a handful of steps an epoch on a small CSV and stop long before it fits. The lowered batch is what
    the run's ``config.json`` saves, so the run repeats as it ran. Under DDP the steps are counted over the
    whole training set, before it is shared out.
    """
    if train.min_steps_per_epoch is None:
        return train
    batch = max(1, min(train.batch_size, n_train // train.min_steps_per_epoch))
    if batch == train.batch_size:
        return train
    log.info("batch_size %d -> %d, so the %d training examples make at least min_steps_per_epoch=%d batches an epoch "
             "(min_steps_per_epoch=none keeps %d)", train.batch_size, batch, n_train, train.min_steps_per_epoch,
             train.batch_size)
    return replace(train, batch_size=batch)


@dataclass
class _Callbacks:
    """The callbacks whose state the engine reads after training."""

    best: BestWeights
    early: EarlyStopping | None
    time_cap: TimeCap | None


def _make_trainer(
    train: TrainConfig, run_dir: Path, monitor: tuple[str, str], progress: bool, *, started: float | None = None,
    eval_batches: int = 0, weights_metadata: dict[str, str] | None = None,
) -> tuple[L.Trainer, _Callbacks]:
    """The Lightning trainer of a fit: one resumable ``last.ckpt`` overwritten every epoch, the best weights
    kept by :class:`BestWeights`, early stopping, and the optional :class:`TimeCap`."""
    best = BestWeights(monitor[0], monitor[1], run_dir / WEIGHTS_FILE, weights_metadata)
    callbacks: list[L.Callback] = [best, LastCheckpoint(rundir.last_checkpoint(run_dir))]
    early = None
    if train.patience is not None:
        early = EarlyStopping(monitor=monitor[0], mode=monitor[1], patience=train.patience,
                              check_on_train_epoch_end=True)
        callbacks.append(early)
    time_cap = None
    if train.max_time_s is not None:
        time_cap = TimeCap(train.max_time_s, time.perf_counter() if started is None else started, eval_batches)
        callbacks.append(time_cap)
    if progress:
        callbacks.append(_ProgressBar())
    try:
        trainer = L.Trainer(
            accelerator=train.accelerator,
            devices=_devices(train.devices),
            strategy=train.strategy,
            precision=train.precision,  # type: ignore[arg-type]
            num_nodes=train.num_nodes,
            max_epochs=train.max_epochs,
            max_steps=-1 if train.max_steps is None else train.max_steps,
            gradient_clip_val=train.grad_clip,
            callbacks=callbacks,
            logger=CSVLogger(save_dir=run_dir, name="logs"),  # logs/version_<n>/: one per fit or resume
            default_root_dir=run_dir,
            enable_progress_bar=progress,
            enable_model_summary=False,
            use_distributed_sampler=False,  # TaskModule shards the data itself (exact eval, resumable order)
            log_every_n_steps=10,
        )
    except (MisconfigurationException, ValueError, RuntimeError, ImportError) as err:
        raise UserError(
            f"Lightning cannot run accelerator={train.accelerator} devices={train.devices} "
            f"strategy={train.strategy} precision={train.precision} num_nodes={train.num_nodes}: {err}"
        ) from None
    return trainer, _Callbacks(best, early, time_cap)


def check_checkpoint(path: Path) -> None:
    """Refuse a checkpoint that cannot be resumed from (truncated, not a checkpoint, or holding code:
    ``torch.load(weights_only=True)`` never runs what a file asks for) before anything is written."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated zip, pickle opcodes that call code, not a torch file, …
        first = str(err).strip().splitlines()[0][:160] if str(err).strip() else type(err).__name__
        raise UserError(f"cannot resume: {path} is damaged or not an attnlab checkpoint ({first}); start a new run "
                        "with another --out") from None
    if not isinstance(state, dict) or "state_dict" not in state or "loops" not in state:
        raise UserError(f"cannot resume: {path} is not a Lightning checkpoint of an attnlab run; start a new run "
                        "with another --out")


# ---------------------------------------------------------------------------------------------- prepare and fit


@dataclass
class Run:
    """A run prepared once and ready to train: its resolved configuration, task, network, data and folder.

    :func:`prepare_run` builds it (every check done, nothing written yet); :func:`fit` trains it. The CLI, the
    Python APIs and the benchmarks all go through this one path.

    Attributes:
        spec: the experiment's registry entry.
        model_name: the model's name in the experiment.
        model_spec: the model's registry entry.
        config: the resolved configuration (what ``config.json`` will hold).
        task: the experiment instance (data, loss, metrics, figures).
        net: the model, built and (for closed-form models) already fitted.
        splits: the train / validation / test data.
        run_dir: the run folder.
        ckpt_path: the checkpoint a resumed run continues from (None for a new run).
        folder: what ``run_dir`` held before (:class:`attnlab.train.rundir.State`).
        started: ``time.perf_counter()`` when preparation began (the ``max_time_s`` clock).
        prepare_seconds: time spent fitting closed-form parts (counted as training time).
    """

    spec: ExperimentSpec
    model_name: str
    model_spec: ModelSpec
    config: RunConfig
    task: Experiment
    net: nn.Module
    splits: DataSplits
    run_dir: Path
    ckpt_path: Path | None
    folder: rundir.State
    started: float
    prepare_seconds: float


def prepare_run(
    experiment: str,
    model: str | None = None,
    overrides: Mapping[str, Any] | Iterable[str] = (),
    *,
    task: Experiment | None = None,
    run_dir: str | Path | None = None,
    resume: bool = False,
    runs_root: str | Path = DEFAULT_RUNS_ROOT,
) -> Run:
    """Resolve, check and build a run: configuration, run folder, task, data, model (closed-form parts
    fitted). Nothing is written, so any error leaves no trace.

    Args:
        experiment: registered experiment name (``attnlab list``).
        model: one of its models; None = the experiment's default.
        overrides: ``["lr=3e-4", "model.d_model=64"]`` or ``{"lr": 3e-4}``: fields of TrainConfig, of the
            experiment's Config or of the model's config (see :func:`attnlab.train.config.resolve`).
        task: an experiment instance built by the caller (e.g. the forecast API, from data it already holds);
            its ``config`` is the run's data options, which overrides may then not change.
        run_dir: the run folder; default ``runs_root/<experiment>-<model>-<timestamp>``. It must be new,
            empty, or hold an attnlab run (see :func:`attnlab.train.rundir.check`).
        resume: continue from ``run_dir/checkpoints/last.ckpt`` (the latest run of this experiment and model
            under ``runs_root`` if ``run_dir`` is None). The saved config is the base; ``overrides`` may change
            training settings such as ``max_epochs`` but not the model.
        runs_root: where default run folders go.

    Raises:
        UserError: unknown experiment / model / override key, bad value, impossible model size, a run folder
            that cannot be used, or a damaged checkpoint to resume from.
    """
    started = time.perf_counter()
    spec = registry.get_experiment(experiment)
    writer = is_rank_zero()

    # The run folder: rank 0 chooses it; DDP processes launched by rank 0 inherit it through the environment.
    out: Path | None = None
    if not writer and os.environ.get(_RUN_DIR_ENV):
        out = Path(os.environ[_RUN_DIR_ENV])
    elif run_dir is not None:
        out = rundir.check_path(run_dir)

    base: RunConfig | None = None
    if resume and out is not None and rundir.is_attnlab_config(out / CONFIG_FILE):
        base = read_config(out)
        model = base.model if model is None else model  # resuming continues the run's own model
    model_name, model_spec = registry.get_model(spec, model)
    if out is None:
        root = Path(runs_root)
        out = (rundir.latest_run_dir(root, spec.name, model_name) if resume
               else rundir.new_run_dir(root, spec.name, model_name))
    folder = rundir.check(out, resume) if writer else rundir.State.EMPTY

    ckpt_path: Path | None = None
    if resume:
        ckpt_path = rundir.last_checkpoint(out)
        base = base or read_config(out)
        if (base.experiment, base.model) != (spec.name, model_name):
            raise UserError(f"cannot resume {out}: it is a run of {base.experiment}/{base.model}, not "
                            f"{spec.name}/{model_name}")
        check_checkpoint(ckpt_path)

    config = resolve(spec, model_name, model_spec, overrides, base=base)
    if task is not None:
        if config.experiment_config != spec.Config():
            raise UserError("the data options come from the data given; set them there, not as data. overrides")
        config.experiment_config = task.config
    if base is not None and config.model_config != base.model_config:
        raise UserError("cannot change the model's hyper-parameters when resuming; start a new run instead")
    if base is not None and config.experiment_config != base.experiment_config:
        raise UserError("cannot change the experiment's data settings when resuming; start a new run instead")

    with quiet_lightning(), _threads(config.train.threads):
        L.seed_everything(config.train.seed, workers=True, verbose=False)
        task = spec.create(config.experiment_config) if task is None else task
        # Data-dependent model sizes (e.g. a forecaster's input length and channels) come from the task.
        config.model_config = task.complete_model_config(config.model_config)
        check_model_memory(model_spec, config.model_config)
        net = build_model(model_spec, config.model_config)
        splits = task.data(config.train.seed)
        config.train = fit_batch_to_data(config.train, len(splits.train))  # type: ignore[arg-type]
        prepare_start = time.perf_counter()
        task.prepare_model(net, splits)  # closed-form parts, fitted on the data (most models: nothing)
        prepare_seconds = time.perf_counter() - prepare_start
    return Run(spec, model_name, model_spec, config, task, net, splits, out, ckpt_path, folder, started,
               prepare_seconds)


def fit(
    experiment: str | Run,
    model: str | None = None,
    overrides: Mapping[str, Any] | Iterable[str] = (),
    *,
    run_dir: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
    figures: bool = True,
    runs_root: str | Path = DEFAULT_RUNS_ROOT,
    report: bool = True,
    keep_checkpoints: bool = False,
) -> RunResult:
    """Train a run, test the best epoch's weights and write the run folder.

    ``experiment`` is a :class:`Run` from :func:`prepare_run`, or an experiment name: then the run is prepared
    here from ``model``, ``overrides``, ``run_dir``, ``resume`` and ``runs_root`` (see :func:`prepare_run`).

    The budget is work, not time: ``max_epochs`` (and ``max_steps``) with early stopping, so the same seed
    gives the same metrics however busy the machine is. ``max_time_s``, if set, caps the wall-clock time of
    the whole call, evaluation included: training stops early enough to leave the test its time, and the
    result says so (``stopped_by == "time"`` and a warning).

    Args:
        experiment: a prepared :class:`Run`, or a registered experiment name (``attnlab list``).
        model, overrides, run_dir, resume, runs_root: see :func:`prepare_run` (only with a name).
        progress: show Lightning's progress bar.
        figures: draw the experiment's figures.
        report: write ``report.html`` (:func:`attnlab.report.build_report`) at the end; a failure only warns.
        keep_checkpoints: keep ``checkpoints/last.ckpt`` (weights and optimiser state) once the run completes,
            so it can be resumed for more epochs; by default a completed run keeps its weights only.

    Returns:
        A :class:`RunResult`.

    Raises:
        UserError: see :func:`prepare_run`; also a Lightning setting that cannot run here.
        Interrupted: Ctrl-C; its message says how to continue.
    """
    if isinstance(experiment, Run):
        run = experiment
    else:
        run = prepare_run(experiment, model, overrides, run_dir=run_dir, resume=resume, runs_root=runs_root)
    config, task, net, splits, out = run.config, run.task, run.net, run.splits, run.run_dir
    monitor, writer = run.spec.monitor, is_rank_zero()
    with quiet_lightning(), _threads(config.train.threads):
        module = TaskModule(task, net, config.train, splits)
        eval_batches = sum(math.ceil(len(s) / config.train.batch_size)  # type: ignore[arg-type]
                           for s in (splits.val, splits.val, splits.test))  # validation runs again at a stop
        trainer, callbacks = _make_trainer(
            config.train, out, monitor, progress, started=run.started, eval_batches=eval_batches,
            weights_metadata={"experiment": run.spec.name, "model": run.model_name},
        )
        if writer:
            if run.folder is rundir.State.UNSTARTED:
                log.info("restarting the run in %s (it stopped before its first checkpoint)", out)
                rundir.clear_unstarted(out)
            (out / "figures").mkdir(parents=True, exist_ok=True)
            write_config(out, config, monitor, run.model_spec.module)
        params = sum(p.numel() for p in net.parameters())
        trainable = sum(p.numel() for p in net.parameters() if p.requires_grad)
        log.info("fit %s/%s (%s parameters) -> %s", run.spec.name, run.model_name, f"{params:,}", out)

        trained = bool(trainable) and config.train.max_epochs != 0
        with _exported_run_dir(out), _interruptible(trainer, out):  # a trainer call may launch DDP processes
            val_metrics: dict[str, float] | None = None
            if trained:
                trainer.fit(module, ckpt_path=run.ckpt_path, weights_only=True)
                if callbacks.best.best_state is not None:
                    net.load_state_dict(callbacks.best.best_state)
                    val_metrics = dict(callbacks.best.best_val)
                else:
                    log.warning("no epoch gave a finite %s; testing the last weights", monitor[0])
            elif not trainable:
                log.info("%s has no trainable parameters: evaluating without training", run.model_name)
            if val_metrics is None:
                trainer.validate(module, verbose=False)
                val_metrics = dict(module.val_metrics)
            trainer.test(module, verbose=False)

    stop = stopped_by(trained, callbacks.time_cap, callbacks.early, trainer)
    notes = training_warnings(module.history, monitor, stop, trainer.global_step, trainer.num_training_batches,
                              config.train) if trained else []
    notes += task.result_warnings(val_metrics)
    cap, elapsed = config.train.max_time_s, time.perf_counter() - run.started
    if cap is not None and elapsed > cap:
        notes.append(f"evaluation overran max_time_s={cap:g} by {elapsed - cap:.2f} s (the cap stops training early "
                     "enough for the evaluation it measured before training; raise max_time_s)")
    result = RunResult(
        run_dir=out,
        experiment=run.spec.name,
        model=run.model_name,
        metrics=dict(module.test_metrics),
        val_metrics=val_metrics,
        params=params,
        train_seconds=module.train_seconds + run.prepare_seconds,  # a closed-form fit is training time too
        epochs=len(module.history),
        history=list(module.history),
        epoch_times=list(module.epoch_times),
        monitor=monitor,
        config=config,
        stopped_by=stop,
        warnings=notes,
        steps=int(trainer.global_step),
    )
    if trainer.is_global_zero:
        net.cpu().float().eval()  # figures, attention and saved weights in float32 whatever the training precision
        write_weights_atomic(net, out / WEIGHTS_FILE, {"experiment": result.experiment, "model": result.model})
        task.save_artifacts(net, splits, out)  # files the model needs beside its weights (vocabularies, …)
        extra, more = task.summarize(net, splits, out)  # metrics that need the whole test set at once
        result.metrics.update(extra)
        result.warnings += more
        if figures:
            result.figures = [Path(p) for p in task.figures(net, splits, out / "figures", result.history)]
        _best_effort("save the attention", write_run_attention, out, task, net, splits)
        write_metrics(result, trainable)
        if not keep_checkpoints:
            rundir.drop_checkpoints(out)
        if report:
            _best_effort("write the report", build_report, out)
    return result


def check_model_memory(spec: ModelSpec, model_config: Any) -> None:
    """Refuse a model whose training state cannot fit in this machine's memory, before it is built.

    The model is built on PyTorch's ``meta`` device (shapes only, no memory) to count its parameters; training
    holds about four float32 copies of them (weights, gradients, two Adam moments). A factory that cannot run
    on ``meta`` is skipped (the real build then fails or succeeds on its own).
    """
    try:
        with torch.device("meta"):
            params = sum(p.numel() for p in spec.factory(model_config).parameters())
    except Exception:  # a factory that computes values on construction: no estimate
        return
    need = 16 * params  # bytes: weights + gradients + 2 optimiser moments, float32
    free = available_memory_bytes()
    if free is not None and need > free:
        changed = [f"model.{f.name}={getattr(model_config, f.name)!r}" for f in dataclasses.fields(model_config)
                   if f.default is not dataclasses.MISSING and getattr(model_config, f.name) != f.default]
        raise UserError(
            f"the model would have {params:,} parameters, {need / 2**30:,.1f} GiB to train (weights, gradients and "
            f"optimiser state), but this machine has {free / 2**30:,.1f} GiB free; lower the model's sizes"
            + (f" ({', '.join(changed)})" if changed else "")
        )


def write_run_attention(
    run_dir: str | Path, experiment: Experiment, model: nn.Module, data: DataSplits, limit: int = DEFAULT_LIMIT
) -> Path:
    """Ask the experiment for the attention of up to ``limit`` held-out examples and save it in ``run_dir``.

    With nothing to show, ``attention.json`` still records why (no attention layers in the model, or
    a task that does not provide attention samples).
    """
    samples = experiment.attention_samples(model, data, limit=limit)
    note = ""
    if not samples:
        if has_attention(model):
            note = f"the {type(experiment).name} experiment does not provide attention samples"
        else:
            note = f"{type(model).__name__} has no attention layers"
    return save_attention(run_dir, samples[:limit], note)



def _best_effort(what: str, function: Any, *args: Any) -> None:
    """Run an optional last step of a run; a failure is logged as a warning, the run is kept."""
    try:
        function(*args)
    except Exception as err:  # the trained run matters more than its extras
        log.warning("could not %s of %s: %s: %s", what, args[0], type(err).__name__, err)
        log.debug("traceback", exc_info=True)
