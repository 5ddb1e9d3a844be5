"""Scale: a generated panel of many series streamed through training, on 1 and N processes (Lightning DDP).

For each ``--series`` count the benchmark generates a realistic panel (:mod:`attnlab.data.generate`: hourly
series, daily and weekly seasons, trend, AR noise, ragged lengths of 80-100 % of ``--length``, a future-known
``promo`` covariate) into ``--out``/data as Parquet, reads it into its memory-mapped store
(:mod:`attnlab.data.store`) in a process of its own, then trains each ``--models`` model for ``--epochs`` epochs
with each ``--processes`` count (``devices=P strategy=ddp`` when P > 1, gloo on CPU), every job in a fresh
process. The global batch is held constant (``--batch-size`` over P per process, the same steps), each process
gets ``cpus / P`` torch threads.

Reported per job: training windows per second and panel rows per second (rows of the stored panel over the
epoch's seconds), seconds per epoch (training batches, and the validation pass), the wall time of the whole
job (start-up, loading, training, test and the baselines included), the peak resident set size of each process
(``ru_maxrss``: it counts the pages of the memory-mapped store the process touched, which the processes of a
job share through the page cache) next to the RSS it had before reading any data, the validation loss, and on
the test part (the last ``--horizon`` steps of every series) the model's MASE against seasonal naive's.

Every job also runs on an almost empty panel (``--fixed-series``, 100 series), ``--fixed-repeats`` times (3): the
median of those peaks is the job's **fixed cost** (Python, torch, Lightning, pandas, the model and its training
state), what the processes need whatever the data.

Then: |Δ validation loss| between 1 and N processes for each model (the target: at most 1e-4 at equal global
batch and steps), the memory bound (peak RSS at most the fixed cost plus 2 × the stored panel), and the growth of
memory with the data: the exponents of peak RSS, and of peak RSS above the fixed cost, against the store's size,
fitted over the sizes run (target: at most 1.05), and (peak − fixed cost) / store at each size (the same value
at every size: memory follows the data, not the number of windows).

Example (the issue's measurement; the sizes it runs are listed in docs/training.md "Scaling out")::

    attnlab bench scale --series 10000,30000,100000 --length 500 --models linear,horizon_attention --processes 1,2
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from attnlab.bench.cli import choices, fmt, number
from attnlab.errors import UserError

MODELS = ("linear", "patch_transformer", "horizon_attention", "ridge")
DEFAULT_MODELS = ("linear", "horizon_attention")
SEASON = 24
DDP_TARGET = 1e-4
EXPONENT_TARGET = 1.05
# Settings of each model in this benchmark, beside the model's own defaults: dropout off and layer norm (batch
# norm and dropout draw differently on each rank, so they would make 1 and N processes differ by design); the
# patch model's patches are whole days.
MODEL_SETTINGS: dict[str, list[str]] = {
    "linear": [],
    "patch_transformer": ["lr=1e-3", "model.patch_len=24", "model.stride=24", "model.d_model=64", "model.num_layers=2",
                          "model.d_ff=128", "model.dropout=0.0", "model.norm=layer", "model.center=mean"],
    "horizon_attention": ["lr=1e-3", "model.dropout=0.0"],
    "ridge": [],
}
COVARIATE_MODELS = ("horizon_attention",)  # the models that take the future-known promo covariate


@dataclass
class Job:
    """One training job's figures (from its processes' reports)."""

    series: int
    model: str
    processes: int
    threads: int
    rows: int
    store_bytes: int
    train_windows: int = 0
    steps: int = 0
    epoch_train_s: float = math.nan
    epoch_val_s: float = math.nan
    wall_s: float = math.nan
    load_s: float = math.nan
    peak_rss_mib: list[float] = field(default_factory=list)
    start_rss_mib: list[float] = field(default_factory=list)
    pss_end_mib: list[float] = field(default_factory=list)
    model_state_mib: float = 0.0
    fixed_mib: float = math.nan  # peak RSS of the same job on the --fixed-series panel: the processes and the model
    val_loss: float = math.nan
    mase: float = math.nan
    naive_mase: float = math.nan
    run_dir: str = ""
    error: str = ""

    @property
    def windows_per_s(self) -> float:
        return self.train_windows / self.epoch_train_s if self.epoch_train_s > 0 else math.nan

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.epoch_train_s if self.epoch_train_s > 0 else math.nan

    @property
    def peak(self) -> float:
        """The largest peak RSS of the job's processes, MiB."""
        return max(self.peak_rss_mib) if self.peak_rss_mib else math.nan

    @property
    def start(self) -> float:
        return max(self.start_rss_mib) if self.start_rss_mib else math.nan

    @property
    def store_mib(self) -> float:
        return self.store_bytes / 2 ** 20

    @property
    def data_mib(self) -> float:
        """Peak RSS above the same job's on an almost empty panel: the memory the data costs."""
        return self.peak - self.fixed_mib

    @property
    def bound_mib(self) -> float:
        """The target: the job's fixed cost (processes, libraries, model and training state, measured on the
        ``--fixed-series`` panel) + 2 × the stored panel."""
        return self.fixed_mib + 2 * self.store_mib


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--series", default="10000,100000", help="comma list of series counts (default %(default)s)")
    parser.add_argument("--length", default="500", help="the longest series' steps; lengths are 80-100 %% of it "
                        "(default %(default)s)")
    parser.add_argument("--models", default=",".join(DEFAULT_MODELS),
                        help=f"comma list of {', '.join(MODELS)} (default %(default)s)")
    parser.add_argument("--processes", default="1,2", help="comma list of process counts (default %(default)s)")
    parser.add_argument("--epochs", default="1", help="training epochs per job (default %(default)s)")
    parser.add_argument("--batch-size", default="256",
                        help="global batch: each of P processes takes batch-size / P (default %(default)s)")
    parser.add_argument("--train-stride", default="24",
                        help="steps between training windows' origins (default %(default)s: one a day)")
    parser.add_argument("--input-len", default="168", help="input steps (default %(default)s: a week)")
    parser.add_argument("--horizon", default="24", help="steps forecast, and the test part (default %(default)s)")
    parser.add_argument("--num-workers", default="auto",
                        help="data loader workers per process (default %(default)s: none on CPU)")
    parser.add_argument("--seed", default="0", help="seed of the data and the training (default %(default)s)")
    parser.add_argument("--fixed-series", default="100",
                        help="series of the almost empty panel each job also runs on: its peak RSS is the job's fixed "
                        "cost (the processes, libraries, model and training state) (default %(default)s)")
    parser.add_argument("--fixed-repeats", default="3",
                        help="runs of each fixed-cost job; the fixed cost is their median peak (default %(default)s)")
    parser.add_argument("--out", default=None,
                        help="folder for the data, the stores, the runs and results.json "
                        "(default runs/bench-scale-<time>)")
    parser.add_argument("--timeout", default="86400", help="seconds allowed to each job (default %(default)s)")


def _ints(option: str, text: str) -> list[int]:
    return [int(number(option, part)) for part in text.split(",") if part.strip()]


def _check(args: argparse.Namespace) -> dict[str, Any]:
    settings = {
        "series": _ints("series", args.series), "length": int(number("length", args.length)),
        "models": choices("models", args.models, MODELS), "processes": _ints("processes", args.processes),
        "epochs": int(number("epochs", args.epochs)), "batch": int(number("batch-size", args.batch_size)),
        "stride": int(number("train-stride", args.train_stride)), "input_len": int(number("input-len", args.input_len)),
        "horizon": int(number("horizon", args.horizon)),
        "workers": "auto" if args.num_workers == "auto" else int(number("num-workers", args.num_workers, at_least=0)),
        "seed": int(number("seed", args.seed, at_least=0)), "timeout": float(number("timeout", args.timeout, float)),
        "fixed_series": int(number("fixed-series", args.fixed_series)),
        "fixed_repeats": int(number("fixed-repeats", args.fixed_repeats)),
    }
    for p in settings["processes"]:
        if settings["batch"] % p:
            raise UserError(f"--batch-size {settings['batch']} must divide by every process count "
                            f"(--processes has {p})")
    need = settings["input_len"] + 3 * settings["horizon"]
    if math.ceil(0.8 * settings["length"]) < need:
        raise UserError(f"--length {settings['length']}: the shortest series (80 %) needs input-len + 3 horizons = "
                        f"{need} steps (a training, a validation and a test window)")
    return settings


def _worker(spec: dict[str, Any], spec_path: Path, env: dict[str, str], timeout: float) -> tuple[float, str]:
    """Run one job in a fresh process; (wall seconds, error text or "")."""
    results = Path(spec["results"])
    shutil.rmtree(results, ignore_errors=True)  # no report of an earlier run is read as this one's
    results.parent.mkdir(parents=True, exist_ok=True)
    spec_path.write_text(json.dumps(spec, indent=1) + "\n")
    start = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, "-m", "attnlab.bench.scale_worker", str(spec_path)], env=env,
                              capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return time.perf_counter() - start, f"timed out after {timeout:g} s"
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return wall, f"exit {proc.returncode}: {' | '.join(tail)}"
    return wall, ""


def _reports(folder: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(folder.glob("rank*.json"), key=lambda p: int(p.stem[4:]))]


def data_options(model: str) -> dict[str, Any]:
    """How the bench reads the panel for ``model``: with the promo covariate for the models that take it."""
    return {"futr": ["promo"]} if model in COVARIATE_MODELS else {"exclude": ["promo"]}


def fit_exponent(xs: list[float], ys: list[float]) -> float:
    """Slope of log y against log x (least squares); NaN with fewer than two distinct x."""
    points = [(math.log(x), math.log(y)) for x, y in zip(xs, ys, strict=True) if x > 0 and y > 0]
    if len({x for x, _ in points}) < 2:
        return math.nan
    mx = sum(x for x, _ in points) / len(points)
    my = sum(y for _, y in points) / len(points)
    return sum((x - mx) * (y - my) for x, y in points) / sum((x - mx) ** 2 for x, _ in points)


def run(args: argparse.Namespace) -> int:
    s = _check(args)
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        raise UserError("bench scale writes Parquet: pip install pyarrow") from None
    from attnlab.data.generate import generate_panel

    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = Path(args.out) if args.out else Path("runs") / f"bench-scale-{stamp}"
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "ATTNLAB_CACHE": str((out / "cache").resolve())}
    cpus = os.cpu_count() or 1
    print(f"bench scale: series {', '.join(f'{n:,}' for n in s['series'])} x length <= {s['length']}; models "
          f"{', '.join(s['models'])}; processes {', '.join(map(str, s['processes']))}; {s['epochs']} epoch(s), global "
          f"batch {s['batch']}, train stride {s['stride']}, input {s['input_len']}, horizon {s['horizon']}, "
          f"{s['workers']} loader worker(s) per process; {cpus} CPUs; out {out}", flush=True)
    data_rows, jobs, fixed = [], [], {}
    fixed_path = out / "data" / f"panel-{s['fixed_series']}x{s['length']}-seed{s['seed']}.parquet"
    if not fixed_path.is_file():
        generate_panel(fixed_path, s["fixed_series"], s["length"], seed=s["seed"])
    for model in s["models"]:
        for p in s["processes"]:
            # the median of a few runs: one job's peak varies by ~10 MiB from run to run (allocator, page cache),
            # as much as the whole data part of a small panel
            runs = [_fit_job(s, s["fixed_series"], model, p, fixed_path, out, env, cpus)
                    for _ in range(s["fixed_repeats"])]
            peaks = [job.peak for job in runs if job.peak_rss_mib]
            fixed[model, p] = statistics.median(peaks) if peaks else math.nan
            print(f"  fixed cost {model}, {p} process(es) ({s['fixed_series']} series): median peak RSS "
                  f"{fixed[model, p]:.0f} MiB of {', '.join(f'{m:.0f}' for m in peaks) or 'n/a'} (before data "
                  f"{runs[0].start:.0f} MiB)" + "".join(f" [{job.error}]" for job in runs if job.error), flush=True)
    for n in s["series"]:
        path = out / "data" / f"panel-{n}x{s['length']}-seed{s['seed']}.parquet"
        start = time.perf_counter()
        if path.is_file():
            generated = None
            seconds = math.nan
        else:
            generated = generate_panel(path, n, s["length"], seed=s["seed"])
            seconds = time.perf_counter() - start
        row: dict[str, Any] = {"series": n, "parquet_mb": path.stat().st_size / 1e6, "generate_s": seconds}
        for model in dict.fromkeys("futr" if m in COVARIATE_MODELS else "y" for m in s["models"]):
            options = data_options("horizon_attention" if model == "futr" else "linear")
            folder = out / "results" / f"store-{n}-{model}"
            spec = {"job": "store", "csv": str(path.resolve()), "data": options, "results": str(folder.resolve())}
            wall, error = _worker(spec, folder.with_suffix(".json"), env, s["timeout"])
            if error:
                raise UserError(f"reading {path} into its store failed: {error}")
            report = _reports(folder)[0]
            row.update({"rows": report["rows"], f"store_{model}_mb": report["store_bytes"] / 1e6,
                        f"store_{model}_s": report["seconds"], f"store_{model}_peak_mib": report["peak_rss_mib"],
                        f"store_{model}_start_mib": report["rss_start_mib"]})
        if generated is not None:
            row["rows"] = generated.rows
        data_rows.append(row)
        print(f"  data {n:,} series: {row['rows']:,} rows, Parquet {row['parquet_mb']:.1f} MB"
              + (f" (generated in {seconds:.1f} s)" if not math.isnan(seconds) else " (already there)")
              + "".join(f"; store {k} {row[f'store_{k}_mb']:.1f} MB in {row[f'store_{k}_s']:.1f} s, peak RSS "
                        f"{row[f'store_{k}_peak_mib']:.0f} MiB" for k in ("y", "futr") if f"store_{k}_mb" in row),
              flush=True)
        for model in s["models"]:
            for p in s["processes"]:
                job = _fit_job(s, n, model, p, path, out, env, cpus)
                job.fixed_mib = fixed.get((model, p), math.nan)
                jobs.append(job)
                print("  " + _job_line(job), flush=True)
    print()
    print(report_text(data_rows, jobs, s))
    (out / "results.json").write_text(json.dumps({"settings": s, "data": data_rows, "jobs": [asdict(j) for j in jobs]},
                                                 indent=1, default=float) + "\n")
    print(f"\nresults: {out / 'results.json'}")
    return 0 if not any(j.error for j in jobs) else 1


def _fit_job(s: dict[str, Any], n: int, model: str, p: int, path: Path, out: Path, env: dict[str, str],
             cpus: int) -> Job:
    threads = max(1, cpus // p)
    name = f"{model}-{n}-p{p}"
    results = out / "results" / name
    overrides = [*MODEL_SETTINGS.get(model, []), f"max_epochs={s['epochs']}", "patience=none",
                 "min_steps_per_epoch=none", f"batch_size={s['batch'] // p}", f"threads={threads}",
                 f"num_workers={s['workers']}", f"seed={s['seed']}"]
    if p > 1:
        overrides += [f"devices={p}", "strategy=ddp"]
    spec = {"job": "fit", "csv": str(path.resolve()), "model": model, "data": data_options(model),
            "split": {"split": "last", "horizon": s["horizon"], "input_len": s["input_len"], "season": SEASON,
                      "train_stride": s["stride"]},
            "overrides": overrides, "run_dir": str((out / "runs" / name).resolve()), "results": str(results.resolve())}
    shutil.rmtree(spec["run_dir"], ignore_errors=True)  # a rerun into the same --out replaces the job's run
    wall, error = _worker(spec, results.with_suffix(".json"), env, s["timeout"])
    reports = _reports(results) if results.is_dir() else []
    job = Job(n, model, p, threads, 0, 0, wall_s=wall, error=error)
    if not reports or reports[0].get("rank") != 0:
        job.error = job.error or "no report from rank 0"
        return job
    first = reports[0]
    times = first.get("epoch_times") or []
    job.rows, job.store_bytes = first["rows"], first["store_bytes"]
    job.train_windows = first["windows"]["train"]
    job.steps = first["steps"]
    job.epoch_train_s = sum(t["train"] for t in times) / len(times) if times else math.nan
    job.epoch_val_s = sum(t["val"] for t in times) / len(times) if times else math.nan
    job.load_s = first["load_seconds"]
    job.peak_rss_mib = [r["peak_rss_mib"] for r in reports]
    job.start_rss_mib = [r["rss_start_mib"] for r in reports]
    job.pss_end_mib = [r["pss_end_mib"] for r in reports]
    job.model_state_mib = 16 * first["params"] / 2 ** 20  # weights, gradients, two Adam moments, float32
    job.val_loss = first["val"].get("loss", math.nan)
    job.mase = first["test"].get("mase", math.nan)
    job.naive_mase = first.get("baselines", {}).get("seasonal naive", {}).get("mase", math.nan)
    job.run_dir = first["run_dir"]
    if len(reports) != p:
        job.error = f"{len(reports)} of {p} processes reported"
    return job


def _job_line(j: Job) -> str:
    if j.error and not j.peak_rss_mib:
        return f"{j.model} {j.series:,} series, {j.processes} process(es): FAILED ({j.error})"
    return (f"{j.model} {j.series:,} series, {j.processes} process(es): {j.train_windows:,} windows, epoch "
            f"{j.epoch_train_s:.1f} s + validation {j.epoch_val_s:.1f} s, {j.windows_per_s:,.0f} windows/s, peak RSS "
            f"{'/'.join(f'{m:.0f}' for m in j.peak_rss_mib)} MiB, val loss {j.val_loss:.6f}, MASE {j.mase:.4f} "
            f"(seasonal naive {j.naive_mase:.4f}), wall {j.wall_s:.1f} s" + (f" [{j.error}]" if j.error else ""))


def report_text(data_rows: list[dict[str, Any]], jobs: list[Job], s: dict[str, Any]) -> str:
    """The tables and checks the benchmark prints."""
    lines = ["| series | rows | Parquet MB | store MB (y) | store MB (y + promo) | store s | store peak RSS MiB |",
             "|---|---|---|---|---|---|---|"]
    for r in data_rows:
        lines.append(f"| {r['series']:,} | {r['rows']:,} | {r['parquet_mb']:.1f} | {fmt(r.get('store_y_mb'), '.1f')} | "
                     f"{fmt(r.get('store_futr_mb'), '.1f')} | "
                     f"{' / '.join(f'{r[k]:.1f}' for k in ('store_y_s', 'store_futr_s') if k in r)} | "
                     f"{' / '.join(f'{r[k]:.0f}' for k in ('store_y_peak_mib', 'store_futr_peak_mib') if k in r)} |")
    lines += ["", "| series | model | processes | windows | s / epoch (train + val) | windows/s | panel rows/s | "
              "wall s | peak RSS MiB (per process) | fixed cost MiB | store MiB | (peak − fixed) / store | "
              "val loss | MASE | seasonal naive MASE |", "|---" * 15 + "|"]
    for j in jobs:
        if not j.peak_rss_mib:
            lines.append(f"| {j.series:,} | {j.model} | {j.processes} | failed: {j.error} |" + " |" * 11)
            continue
        lines.append(
            f"| {j.series:,} | {j.model} | {j.processes} | {j.train_windows:,} | {j.epoch_train_s:.1f} + "
            f"{j.epoch_val_s:.1f} | {j.windows_per_s:,.0f} | {j.rows_per_s:,.0f} | {j.wall_s:.0f} | "
            f"{' / '.join(f'{m:.0f}' for m in j.peak_rss_mib)} | {j.fixed_mib:.0f} | {j.store_mib:.1f} | "
            f"{j.data_mib / j.store_mib:.2f} | {j.val_loss:.6f} | {j.mase:.4f} | {j.naive_mase:.4f} |")
    lines += ["", "checks:"]
    for n in s["series"]:
        for model in s["models"]:
            runs = {j.processes: j for j in jobs if j.series == n and j.model == model and j.peak_rss_mib}
            if 1 in runs:
                for p, j in sorted(runs.items()):
                    if p == 1:
                        continue
                    delta = abs(j.val_loss - runs[1].val_loss)
                    ok = delta <= DDP_TARGET and j.steps == runs[1].steps
                    lines.append(f"  {model} {n:,} series: val loss, 1 process {runs[1].val_loss:.6f} vs {p} processes "
                                 f"{j.val_loss:.6f}, |Δ| {delta:.2e} after {runs[1].steps} and {j.steps} steps "
                                 f"(target <= {DDP_TARGET:g} at equal steps): {'met' if ok else 'NOT met'}; wall "
                                 f"{runs[1].wall_s:.0f} s vs {j.wall_s:.0f} s, epoch {runs[1].epoch_train_s:.1f} s vs "
                                 f"{j.epoch_train_s:.1f} s")
    for j in jobs:
        if j.peak_rss_mib:
            ok = j.peak <= j.bound_mib
            lines.append(f"  memory {j.model} {j.series:,} series, {j.processes} process(es): peak {j.peak:.0f} MiB vs "
                         f"bound {j.bound_mib:.0f} MiB (fixed cost {j.fixed_mib:.0f}, of which model state "
                         f"{j.model_state_mib:.1f}, + 2 x store {j.store_mib:.1f}): {'met' if ok else 'NOT met'}")
    for model in s["models"]:
        for p in s["processes"]:
            runs = [j for j in jobs if j.model == model and j.processes == p and j.peak_rss_mib]
            if len({j.series for j in runs}) < 2:
                continue
            total = fit_exponent([j.store_bytes for j in runs], [j.peak for j in runs])
            above = fit_exponent([j.store_bytes for j in runs], [j.data_mib for j in runs])
            per_unit = ", ".join(f"{j.series:,}: {j.data_mib / j.store_mib:.2f}" for j in runs)
            verdict = "n/a (peak not above the fixed cost)" if math.isnan(above) else \
                "met" if max(total, above) <= EXPONENT_TARGET else "NOT met"
            lines.append(f"  growth {model}, {p} process(es): peak RSS ~ store^{total:.3f}, peak above the fixed "
                         f"cost ~ store^{above:.3f} (target <= {EXPONENT_TARGET}: {verdict}); (peak − fixed) / store "
                         f"by series count: {per_unit}")
    return "\n".join(lines)
