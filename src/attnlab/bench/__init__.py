"""Benchmarks: ``attnlab bench NAME`` (or ``python -m attnlab.bench NAME``).

Each benchmark is a module with ``add_arguments(parser)`` and ``run(args) -> int``, listed in
:data:`attnlab.bench.command.BENCHMARKS`. Shared timing and memory helpers live in :mod:`attnlab.bench.measure`.
"""
