"""``attnlab fit`` and ``attnlab list``: thin wrappers over :func:`attnlab.train.fit` and the registry."""

from __future__ import annotations

import argparse
from typing import Any

from attnlab import registry
from attnlab.console import add_run_options, is_rank_zero, parse_tail, run_footer, setup_logging
from attnlab.registry import ExperimentSpec
from attnlab.train import rundir
from attnlab.train.config import TrainConfig, field_types, resolve, type_name

FIT_EPILOG = """\
overrides: KEY=VALUE sets a field of the train config, of the experiment's config or of the model's config
(see `attnlab list EXPERIMENT`); prefix train., data. or model. when a key is in more than one of them.
Values: ints, floats, true/false, none, comma lists (3,5).

examples:
  attnlab fit sine --model transformer max_epochs=5 lr=3e-4
  attnlab fit sine --out runs/sine-a --resume max_epochs=10
  attnlab fit sine devices=2 strategy=ddp
  attnlab fit sine --out /shared/runs/sine-ddp accelerator=gpu devices=4 num_nodes=2 strategy=ddp
    (with several machines, give every node the same --out on a shared filesystem)
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``fit`` and ``list`` sub-commands."""
    fit_parser = subparsers.add_parser(
        "fit",
        help="train an experiment with one of its models and write a run folder",
        description="Train EXPERIMENT with one of its models, test the best checkpoint, write a run folder.",
        epilog=FIT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    fit_parser.add_argument("experiment", metavar="EXPERIMENT", help="experiment name (see `attnlab list`)")
    _add_fit_options(fit_parser)
    # Everything after EXPERIMENT: overrides, possibly mixed with the options above (parsed in _run_fit).
    fit_parser.add_argument("rest", nargs=argparse.REMAINDER, metavar="KEY=VALUE", help="config overrides")
    fit_parser.set_defaults(func=_run_fit, fit_parser=fit_parser)

    list_parser = subparsers.add_parser(
        "list",
        help="list experiments and their models",
        description="List experiments and their models (default marked *). "
        "With EXPERIMENT, also list the keys `attnlab fit` accepts, with their defaults.",
    )
    list_parser.add_argument("experiment", nargs="?", metavar="EXPERIMENT", help="show one experiment in detail")
    list_parser.set_defaults(func=_run_list)


def _add_fit_options(parser: argparse.ArgumentParser, suppress: bool = False) -> None:
    default: Any = argparse.SUPPRESS if suppress else None
    parser.add_argument("--model", "-m", default=default, help="model name (default: the experiment's default model)")
    parser.add_argument(
        "--out",
        "-o",
        metavar="DIR",
        default=default,
        help="run folder (default: runs/<experiment>-<model>-<timestamp>)",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        default=argparse.SUPPRESS if suppress else False,
        help="continue from the run folder's last checkpoint (the latest run of this experiment/model without --out)",
    )
    add_run_options(parser, suppress)


def _format_metrics(metrics: dict[str, float]) -> str:
    return "  ".join(f"{name} {value:.4g}" for name, value in metrics.items()) or "-"


def check_run_request(experiment: str, model: str | None, overrides: list[str], out: str | None, resume: bool,
                      flag: str = "--out") -> None:
    """Answer unknown names, bad overrides and unusable run folders before torch is loaded (the engine checks
    them again with the same functions; this only makes the answer fast)."""
    spec = registry.get_experiment(experiment)
    if not resume:  # a resumed run's saved config is the base of its overrides
        name, model_spec = registry.get_model(spec, model)
        resolve(spec, name, model_spec, overrides)
    if out is not None:
        rundir.check(rundir.check_path(out, flag), resume, flag)


def _run_fit(args: argparse.Namespace) -> int:
    overrides = parse_tail(args, args.fit_parser, "attnlab fit EXPERIMENT", _add_fit_options)
    check_run_request(args.experiment, args.model, overrides, args.out, args.resume)
    from attnlab.train.engine import fit

    setup_logging()
    result = fit(
        args.experiment,
        args.model,
        overrides,
        run_dir=args.out,
        resume=args.resume,
        progress=args.progress,
        figures=args.figures,
        keep_checkpoints=args.keep_checkpoints,
    )
    if is_rank_zero():
        print(f"{result.experiment}/{result.model}: {result.run_dir}")
        print(f"  params {result.params:,}   train {result.train_seconds:.1f} s   figures {len(result.figures)}")
        print(f"  test  {_format_metrics(result.metrics)}")
        print(f"  val   {_format_metrics(result.val_metrics)}")
        print("\n".join(run_footer(result)))
    return 0


def _defaults_line(cls: type, values: dict[str, Any] | None = None) -> str:
    instance = cls(**(values or {}))
    types_ = field_types(cls)
    return ", ".join(f"{key}={getattr(instance, key)!r} ({type_name(tp)})" for key, tp in types_.items()) or "-"


def _describe(experiment: ExperimentSpec, detail: bool) -> list[str]:
    lines = [f"{experiment.name:<20} {experiment.summary}"]
    width = max((len(name) for name in experiment.models), default=0) + 2
    for name, spec in experiment.models.items():
        mark = "*" if name == experiment.default_model else " "
        lines.append(f"  {mark} {name:<{width}} {spec.summary}")
    if detail:
        monitor, mode = experiment.monitor
        lines.append(f"  best checkpoint: {monitor} ({mode})")
        train_defaults = dict(experiment.train_defaults)
        lines.append(f"  train. keys: {_defaults_line(TrainConfig, train_defaults)}")
        lines.append(f"  data. keys: {_defaults_line(experiment.Config)}")
        for name, spec in experiment.models.items():
            extra = f" (train overrides: {spec.train_overrides})" if spec.train_overrides else ""
            lines.append(f"  model. keys of {name}: {_defaults_line(spec.config)}{extra}")
        kinds = {name: getattr(spec.config, "COVARIATES", None) for name, spec in experiment.models.items()}
        if any(kind is not None for kind in kinds.values()):  # forecast models declare the covariates they take
            lines.append("  covariates each model takes (hist, futr, static): "
                         + "; ".join(f"{name} {', '.join(sorted(kind)) or 'none'}" for name, kind in kinds.items()
                                     if kind is not None))
            heads = [name for name, spec in experiment.models.items() if getattr(spec.config, "QUANTILES", False)]
            lines.append(f"  quantile heads (intervals=quantile): {', '.join(heads) or 'none'}")
            single = [name for name, spec in experiment.models.items() if not getattr(spec.config, "PANELS", True)]
            lines.append(f"  one series only (a wide CSV, not a panel): {', '.join(single) or 'none'}")
    return lines


def _run_list(args: argparse.Namespace) -> int:
    if args.experiment is not None:
        print("\n".join(_describe(registry.get_experiment(args.experiment), detail=True)))
        return 0
    table = registry.experiments()
    if not table:
        print("no experiments registered")
        return 0
    print("experiments and their models (* = default; `attnlab list EXPERIMENT` shows the config keys):")
    for experiment in table.values():
        print("\n".join(_describe(experiment, detail=False)))
    return 0
