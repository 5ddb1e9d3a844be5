"""The catalogue of experiments and models: data options, hyper-parameters and the registry's table.

One torch-free module per experiment, so that listing, configuring and checking a run costs no import of
torch: see :mod:`attnlab.registry`.
"""
