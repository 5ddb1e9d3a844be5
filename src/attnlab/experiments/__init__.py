"""Tasks (experiments): each task's data, loss, metrics, figures and attention, for the one training engine.

The contract is :class:`attnlab.experiments.base.Experiment`; each task's declaration (data options, models,
training defaults) lives in a torch-free module of :mod:`attnlab.catalog`.
"""
