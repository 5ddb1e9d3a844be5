"""attnlab: attention on sequences, from first principles to fast fused kernels.

The building blocks live in :mod:`attnlab.nn` (plain PyTorch). The ``attnlab`` command-line
workbench lives in :mod:`attnlab.cli`.
"""

__version__ = "0.1.0"

from attnlab.registry import ExperimentSpec, ModelSpec, Twin, register_experiment, register_model  # noqa: E402 (light)

__all__ = ["ExperimentSpec", "ModelSpec", "Twin", "__version__", "register_experiment", "register_model"]
