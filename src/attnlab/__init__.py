"""attnlab: attention on sequences, from first principles to fast fused kernels.

The building blocks live in :mod:`attnlab.nn` (plain PyTorch). The ``attnlab`` command-line
workbench lives in :mod:`attnlab.cli`.
"""

__version__ = "0.1.0"
