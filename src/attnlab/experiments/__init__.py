"""Tasks (experiments) that the training engine can fit, registered by name."""

from attnlab.experiments.base import DataSplits, Experiment, ModelSpec, TrainConfig

__all__ = ["DataSplits", "Experiment", "ModelSpec", "TrainConfig"]
