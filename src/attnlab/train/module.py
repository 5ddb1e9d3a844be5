"""The one Lightning module every experiment trains through.

:class:`TaskModule` owns the training / validation / test steps, the optimiser, the learning-rate schedule,
the data loaders and metric logging. The experiment adds only :meth:`Experiment.loss` and
:meth:`Experiment.evaluate`; the model is a forward-only ``nn.Module``.

Metrics of a split are means over examples: each batch's metric is weighted by
:meth:`Experiment.batch_size_of`, sums and counts are reduced over all ranks (DDP) before dividing, so the
value is exact whatever the number of processes.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterator, Sequence
from typing import Any

import lightning as L
import torch
from lightning.pytorch.accelerators import CPUAccelerator
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, Sampler

from attnlab.experiments.base import DataSplits, Experiment
from attnlab.train.config import HALVING_GAMMA, TrainConfig


def lr_factor(step: int, warmup_steps: int, total_steps: float, scheduler: str,
              steps_per_epoch: float = math.inf, gamma: float = 0.5, hold_epochs: int = 0) -> float:
    """Multiplier of the base learning rate at optimiser step ``step`` (0-based).

    Linear warm-up from ``1/warmup_steps`` to 1 over ``warmup_steps`` steps, then either constant
    (``scheduler="none"``), a cosine decay to 0 at ``total_steps`` (``"cosine"``; constant if
    ``total_steps`` is infinite, i.e. no epoch limit), or a step decay (``"step"``): epochs
    ``0 .. hold_epochs`` (0-based, of ``steps_per_epoch`` steps) at the full rate, then ``gamma`` times
    the previous epoch's. ``"halving"`` is the step decay with ``gamma = 0.5``.
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if scheduler in ("step", "halving"):
        if not math.isfinite(steps_per_epoch):
            return 1.0
        epoch = int((step - warmup_steps) // steps_per_epoch)
        return (HALVING_GAMMA if scheduler == "halving" else gamma) ** max(0, epoch - hold_epochs)
    if scheduler == "none" or not math.isfinite(total_steps):
        return 1.0
    progress = (step - warmup_steps) / max(1.0, total_steps - warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


MAX_AUTO_WORKERS = 4


def loader_workers(setting: int | str, on_cpu: bool, processes_here: int, cpus: int | None = None) -> int:
    """The data-loader workers of each process: ``setting`` when it is a number; for ``"auto"``, none when the
    model runs on the CPU (a batch of windows is one cheap gather, ~1 ms for 256 forecast windows, and worker processes
    would only take the cores the model computes on), and on an accelerator (GPU, MPS, ...) the CPUs left to
    each of the ``processes_here`` processes of this machine beside its own, at most :data:`MAX_AUTO_WORKERS`,
    so batches are gathered while the device computes."""
    if setting != "auto":
        return int(setting)
    if on_cpu:
        return 0
    cpus = (os.cpu_count() or 1) if cpus is None else cpus
    return max(0, min(MAX_AUTO_WORKERS, cpus // max(1, processes_here) - 1))


class ShardSampler(Sampler[int]):
    """Indices of one rank's shard of a dataset, shuffled per epoch from ``seed + epoch``.

    The order depends only on ``(seed, epoch)``, so a resumed run sees the same batches as an
    uninterrupted one. With ``pad=True`` (training) every rank gets the same number of indices by
    repeating a few; with ``pad=False`` (evaluation) each example is seen exactly once over all ranks.

    Args:
        size: number of examples in the dataset.
        seed: base seed of the shuffle.
        shuffle: shuffle (training) or keep the dataset order (evaluation).
        rank: this process's global rank.
        world_size: number of processes.
        pad: pad to a multiple of ``world_size``.
    """

    def __init__(self, size: int, seed: int, shuffle: bool, rank: int = 0, world_size: int = 1, pad: bool = True):
        self.size, self.seed, self.shuffle = size, seed, shuffle
        self.rank, self.world_size, self.pad = rank, world_size, pad
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Called by Lightning at the start of every epoch."""
        self.epoch = epoch

    def permutation(self) -> torch.Tensor:
        """This epoch's shuffle of all ``size`` indices (int64), from ``seed + epoch``."""
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return torch.randperm(self.size, generator=generator)

    def _indices(self) -> list[int]:
        if self.shuffle:
            indices = self.permutation().tolist()
        else:
            indices = list(range(self.size))
        if self.pad and self.size and self.size % self.world_size:
            total = math.ceil(self.size / self.world_size) * self.world_size
            indices = (indices * math.ceil(total / self.size))[:total]
        return indices[self.rank :: self.world_size]

    def __iter__(self) -> Iterator[int]:
        return iter(self._indices())

    def __len__(self) -> int:
        if self.pad:
            return math.ceil(self.size / self.world_size)
        return len(range(self.rank, self.size, self.world_size))


class GlobalBatchSampler(Sampler[list[int]]):
    """Training batches under DDP: the batches one process would take with the **global** batch of
    ``batch_size × world_size`` examples, each shared out among the ranks.

    Step ``k`` of an epoch is examples ``k·G .. (k+1)·G − 1`` of the permutation drawn from ``seed + epoch``
    (``G = batch_size × world_size``, the last step's batch smaller when G does not divide the data), and rank
    ``r`` takes every ``world_size``-th of them from the r-th: nothing is repeated or dropped, and every rank
    makes the same number of steps. :meth:`weight` is what rank ``r``'s mean loss is multiplied by at step k so
    that the gradients DDP averages over the ranks are the gradient of the global batch's mean loss: the same
    training as one process with batch ``G``. A rank whose share of a last, tiny batch is empty (fewer examples
    than ranks) gets one example with weight 0, so that it still joins the gradient exchange.

    With one process this is the :class:`ShardSampler`'s order in batches of ``batch_size``.

    Args:
        size: examples in the dataset.
        batch_size: examples per rank and step (the global batch over ``world_size``).
        seed: base seed of the shuffle.
        rank, world_size: this process's place.
    """

    def __init__(self, size: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1) -> None:
        self.size, self.batch_size, self.rank, self.world_size = size, batch_size, rank, world_size
        # Lightning calls set_epoch on a DataLoader's batch_sampler.sampler at every epoch.
        self.sampler = ShardSampler(size, seed, shuffle=True)

    @property
    def global_batch(self) -> int:
        return self.batch_size * self.world_size

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    def _share(self, k: int) -> tuple[int, int]:
        """(this rank's examples at step k, the step's global batch)."""
        total = min(self.global_batch, self.size - k * self.global_batch)
        return len(range(self.rank, total, self.world_size)), total

    def weight(self, k: int) -> float:
        """The factor of this rank's mean loss at step ``k`` (1 with one process and full batches)."""
        mine, total = self._share(k)
        return mine * self.world_size / total if total else 0.0

    def examples(self, k: int) -> int:
        """This rank's real examples at step ``k`` (0 for a placeholder batch)."""
        return self._share(k)[0]

    def __iter__(self) -> Iterator[list[int]]:
        # Drawn at the first batch, after Lightning's set_epoch (see BatchShardSampler); kept as one int64 tensor
        # (8 bytes a window), each batch made a list only when it is taken.
        order = self.sampler.permutation()
        G = self.global_batch
        for k in range(len(self)):
            batch = order[k * G: (k + 1) * G]
            mine = batch[self.rank:: self.world_size]
            yield (mine if len(mine) else batch[:1]).tolist()

    def __len__(self) -> int:
        return math.ceil(self.size / self.global_batch)


class BatchShardSampler(Sampler[list[int]]):
    """The batches a task chose (:attr:`DataSplits.batches`), in an order shuffled per epoch from ``seed + epoch``
    and shared out among ranks: a :class:`ShardSampler` over whole batches.

    With ``pad=True`` (training) every rank gets the same number of batches by repeating a few; with ``pad=False``
    (evaluation) each batch, so each example, is seen exactly once over all ranks.

    Args:
        batches: lists of example indices that hold each of the dataset's ``size`` examples exactly once.
        size: number of examples in the dataset.
        seed, shuffle, rank, world_size, pad: as in :class:`ShardSampler`, applied to the batches.

    Raises:
        ValueError: a batch is empty, or the batches do not hold every example exactly once.
    """

    def __init__(self, batches: Sequence[Sequence[int]], size: int, seed: int, shuffle: bool, rank: int = 0,
                 world_size: int = 1, pad: bool = True) -> None:
        self.batches = [list(batch) for batch in batches]
        if not all(self.batches):
            raise ValueError("a task's batches must not be empty")
        if sorted(i for batch in self.batches for i in batch) != list(range(size)):
            raise ValueError(f"a task's batches must hold each of the {size} examples of the split exactly once")
        # Lightning calls set_epoch on a DataLoader's batch_sampler.sampler at every epoch.
        self.sampler = ShardSampler(len(self.batches), seed, shuffle, rank, world_size, pad)

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    def __iter__(self) -> Iterator[list[int]]:
        # A generator: the order is drawn at the first batch, after Lightning's set_epoch, not when the DataLoader
        # makes its iterator (Lightning makes the first epoch's before it sets the epoch of a resumed run).
        for i in self.sampler:
            yield self.batches[i]

    def __len__(self) -> int:
        return len(self.sampler)


class TaskModule(L.LightningModule):
    """Trains ``model`` on ``experiment`` with the settings of ``config``.

    Logged metrics: ``train_loss_step`` (every logging step), and per epoch ``train_loss``, ``lr``,
    ``val_<name>`` and, when testing, ``test_<name>`` for every ``name`` that
    :meth:`Experiment.evaluate` returns. :attr:`history` keeps one dict per finished epoch and is saved in
    checkpoints, so it survives ``--resume``.

    Args:
        experiment: the task (an :class:`Experiment` instance).
        model: the forward-only network.
        config: optimiser, schedule and loader settings.
        splits: the task's data.
    """

    def __init__(self, experiment: Experiment, model: nn.Module, config: TrainConfig, splits: DataSplits) -> None:
        super().__init__()
        self.experiment = experiment
        self.model = model
        self.config = config
        self.splits = splits
        self.history: list[dict[str, float]] = []
        self.val_metrics: dict[str, float] = {}  # last validation means, without the "val_" prefix
        self.test_metrics: dict[str, float] = {}
        self._sums: dict[str, dict[str, Tensor]] = {}
        self._counts: dict[str, float] = {}
        self._seconds_before = 0.0  # training time of earlier runs (resume)
        self._train_sampler: GlobalBatchSampler | None = None
        # Wall-clock seconds of each training epoch of this fit: its batches ("train") and its validation ("val").
        self.epoch_times: list[dict[str, float]] = []
        self._epoch_marks: list[float] = []
        self._fit_start: float | None = None

    # ------------------------------------------------------------------ data

    def _loader(self, dataset: Dataset, split: str) -> DataLoader:
        """The loader of ``split`` (``"train"``, ``"val"`` or ``"test"``): this rank's shard, shuffled per epoch for
        training; batches of ``batch_size`` examples, or the task's own (:attr:`DataSplits.batches`)."""
        train = split == "train"
        size = len(dataset)  # type: ignore[arg-type]
        shard = {"seed": self.config.seed, "shuffle": train, "rank": self.trainer.global_rank,
                 "world_size": self.trainer.world_size, "pad": train}
        batches = self.splits.batches(split, self.config.batch_size, self.config.seed) if self.splits.batches else None
        accelerator = getattr(self.trainer, "accelerator", None)
        on_cpu = accelerator is None or isinstance(accelerator, CPUAccelerator)
        workers = loader_workers(self.config.num_workers, on_cpu, getattr(self.trainer, "num_devices", 1))
        options = {"collate_fn": self.splits.collate_fn, "num_workers": workers, "persistent_workers": workers > 0,
                   "pin_memory": self.config.accelerator in ("gpu", "cuda")}
        if batches is None and train:
            self._train_sampler = GlobalBatchSampler(size, self.config.batch_size, self.config.seed,
                                                     self.trainer.global_rank, self.trainer.world_size)
            return DataLoader(dataset, batch_sampler=self._train_sampler, **options)
        if batches is None:
            sampler = ShardSampler(size, **shard)
            return DataLoader(dataset, batch_size=self.config.batch_size, sampler=sampler, **options)
        return DataLoader(dataset, batch_sampler=BatchShardSampler(batches, size, **shard), **options)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.splits.train, "train")

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.splits.val, "val")

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.splits.test, "test")

    # ------------------------------------------------------------------ metric sums

    def _accumulate(self, stage: str, metrics: dict[str, Any], batch: Any, n: int | None = None) -> None:
        n = self.experiment.batch_size_of(batch) if n is None else n
        dtype = torch.float32 if self.device.type == "mps" else torch.float64
        sums = self._sums.setdefault(stage, {})
        if sums and set(sums) != set(metrics):
            # Under DDP every rank reduces the same vector of metrics: the names must not vary.
            raise ValueError(
                f"{type(self.experiment).__name__}.{'loss' if stage == 'train' else 'evaluate'} returned metrics "
                f"{sorted(metrics)} after {sorted(sums)}; return the same names for every batch"
            )
        for name, value in metrics.items():
            value = torch.as_tensor(value).detach()
            if value.numel() != 1:
                raise ValueError(
                    f"{type(self.experiment).__name__}.evaluate returned {name!r} with shape {tuple(value.shape)}; "
                    "each metric must be a scalar mean over the batch"
                )
            weighted = value.reshape(()).to(device=self.device, dtype=dtype) * n
            sums[name] = sums[name] + weighted if name in sums else weighted
        self._counts[stage] = self._counts.get(stage, 0.0) + n

    def _reduce(self, stage: str) -> dict[str, float]:
        """Means over the whole split (all ranks) of the sums accumulated for ``stage``; resets them."""
        sums, count = self._sums.pop(stage, {}), self._counts.pop(stage, 0.0)
        names = sorted(sums)
        if not names:
            return {}
        dtype = next(iter(sums.values())).dtype
        vector = torch.stack([sums[name] for name in names] + [torch.tensor(count, dtype=dtype, device=self.device)])
        vector = self.trainer.strategy.reduce(vector, reduce_op="sum")  # all-reduce under DDP, identity otherwise
        total = vector[-1].item()
        return {name: vector[i].item() / total for i, name in enumerate(names)}

    def _log_means(self, prefix: str, means: dict[str, float]) -> None:
        monitor = self.experiment.monitor[0]
        for name, value in means.items():
            key = f"{prefix}_{name}"
            # The value is already reduced over ranks; sync_dist averages equal numbers (a no-op) and
            # keeps Lightning's epoch-level logging consistent under DDP.
            self.log(key, value, prog_bar=key in ("val_loss", monitor), sync_dist=True)

    # ------------------------------------------------------------------ steps

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        loss = self.experiment.loss(self.model, batch)
        sampler = self._train_sampler
        if sampler is None or sampler.world_size == 1:
            self._accumulate("train", {"loss": loss}, batch)
            self.log("train_loss_step", loss.detach(), on_step=True, on_epoch=False, prog_bar=True)
            return loss
        # DDP: this rank's share of the global batch, weighted so the averaged gradient is the global batch's.
        self._accumulate("train", {"loss": loss}, batch, n=sampler.examples(batch_idx))
        self.log("train_loss_step", loss.detach(), on_step=True, on_epoch=False, prog_bar=True)
        return loss * sampler.weight(batch_idx)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._accumulate("val", self.experiment.evaluate(self.model, batch), batch)

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._accumulate("test", self.experiment.evaluate(self.model, batch), batch)

    def on_train_epoch_start(self) -> None:
        self._sums.pop("train", None)
        self._counts.pop("train", None)
        self.val_metrics = {}
        self._epoch_marks = [time.perf_counter()]

    def on_validation_epoch_start(self) -> None:
        self._sums.pop("val", None)
        self._counts.pop("val", None)
        if len(self._epoch_marks) == 1 and not self.trainer.sanity_checking:
            self._epoch_marks.append(time.perf_counter())  # the epoch's batches are done

    def on_test_epoch_start(self) -> None:
        self._sums.pop("test", None)
        self._counts.pop("test", None)

    def on_validation_epoch_end(self) -> None:
        means = self._reduce("val")
        if self.trainer.sanity_checking:
            return
        self.val_metrics = means
        self._log_means("val", means)

    def on_test_epoch_end(self) -> None:
        self.test_metrics = self._reduce("test")
        self._log_means("test", self.test_metrics)

    def on_train_epoch_end(self) -> None:
        # Runs after this epoch's validation and before ModelCheckpoint / EarlyStopping, so the
        # checkpoint saved for this epoch already holds its history entry.
        train = self._reduce("train")
        self._log_means("train", train)
        lr = self.trainer.optimizers[0].param_groups[0]["lr"] if self.trainer.optimizers else self.config.lr
        self.log("lr", lr, sync_dist=True)
        entry: dict[str, float] = {"epoch": self.current_epoch + 1}
        entry.update({f"train_{k}": v for k, v in train.items()})
        entry.update({f"val_{k}": v for k, v in self.val_metrics.items()})
        entry["lr"] = float(lr)
        self.history.append(entry)
        if self._epoch_marks:
            now = time.perf_counter()
            batches_done = self._epoch_marks[1] if len(self._epoch_marks) > 1 else now
            self.epoch_times.append({"train": batches_done - self._epoch_marks[0], "val": now - batches_done})

    # ------------------------------------------------------------------ optimiser

    def configure_optimizers(self) -> Any:
        """AdamW / Adam / SGD (momentum 0.9) with weight decay on matrices only (not on biases or norm
        gains), and a per-step schedule: linear warm-up then cosine decay to 0, a step decay every epoch, or
        constant."""
        params = [p for p in self.model.parameters() if p.requires_grad]
        decay = [p for p in params if p.ndim >= 2]
        no_decay = [p for p in params if p.ndim < 2]
        groups = [
            {"params": group, "weight_decay": wd}
            for group, wd in ((decay, self.config.weight_decay), (no_decay, 0.0))
            if group
        ]
        cfg = self.config
        kinds = {"adamw": (torch.optim.AdamW, {}), "adam": (torch.optim.Adam, {}),
                 "sgd": (torch.optim.SGD, {"momentum": 0.9})}
        if cfg.optimizer not in kinds:
            raise ValueError(f"unknown optimizer {cfg.optimizer!r}")
        kind, options = kinds[cfg.optimizer]
        # One fused kernel per step for all parameters where torch has one for their device (CPU included); the
        # default on CPU is a loop of small operators per parameter (M4's patch_transformer: 19.0 → 17.4 ms a step).
        # Not under mixed precision: Lightning refuses to clip the gradients of a fused optimiser there.
        optimizer: torch.optim.Optimizer | None = None
        if str(cfg.precision) in ("32-true", "32", "64-true", "64"):
            try:
                optimizer = kind(groups, lr=cfg.lr, fused=True, **options)
            except RuntimeError:  # a device or dtype without fused kernels
                pass
        if optimizer is None:
            optimizer = kind(groups, lr=cfg.lr, **options)
        if cfg.scheduler == "none" and cfg.warmup_steps == 0:
            return optimizer
        total = float(self.trainer.estimated_stepping_batches)
        per_epoch = total / cfg.max_epochs if cfg.max_epochs and math.isfinite(total) else math.inf
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer,
            lambda step: lr_factor(step, cfg.warmup_steps, total, cfg.scheduler, per_epoch, cfg.lr_gamma,
                                   cfg.lr_hold_epochs),
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    # ------------------------------------------------------------------ time and checkpoints

    @property
    def train_seconds(self) -> float:
        """Wall-clock seconds spent in ``trainer.fit`` so far, over this run and the runs it resumed."""
        running = time.perf_counter() - self._fit_start if self._fit_start is not None else 0.0
        return self._seconds_before + running

    def on_fit_start(self) -> None:
        self._fit_start = time.perf_counter()

    def on_fit_end(self) -> None:
        self._seconds_before = self.train_seconds
        self._fit_start = None

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["attnlab"] = {"history": self.history, "train_seconds": self.train_seconds}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Only a resumed fit continues the history; loading the best weights for testing must not
        # replace the full history with the (shorter) one saved at the best epoch.
        state = checkpoint.get("attnlab", {})
        if self.trainer.state.fn == "fit" and state:
            self.history = [dict(entry) for entry in state.get("history", [])]
            self._seconds_before = float(state.get("train_seconds", 0.0))
