"""One measured job of ``attnlab bench scale``, in its own process: ``python -m attnlab.bench.scale_worker
SPEC.json``.

``SPEC.json`` says what to do (``"job": "store"``: read the Parquet file into its store; ``"job": "fit"``: train
a model on it with :func:`attnlab.forecast.api.forecast`). Under DDP, Lightning starts the other ranks with
this same command line, so each rank runs this module and writes its own ``rank<r>.json`` into the spec's
``results`` folder: its peak resident set size (``ru_maxrss``: the pages it touched, those of the
memory-mapped store included), its RSS before reading any data, its proportional set size at the end (shared
pages divided among the processes that map them), and on rank 0 the run's metrics, epoch times and sizes.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

from attnlab.bench.measure import proc_kib

MIB = 1024 ** 2


def rss_mib() -> float:
    """The current resident set size (VmRSS), MiB; NaN where /proc is missing."""
    return _proc_mib("VmRSS", Path("/proc/self/status"))


def pss_mib() -> float:
    """The proportional set size (shared pages counted once over the processes sharing them), MiB."""
    return _proc_mib("Pss", Path("/proc/self/smaps_rollup"))


def _proc_mib(field: str, path: Path) -> float:
    try:
        return proc_kib(field, path) / 1024
    except OSError:
        return float("nan")


def peak_mib(who: int = resource.RUSAGE_SELF) -> float:
    """Peak resident set size (``ru_maxrss``, KiB on Linux), MiB."""
    return resource.getrusage(who).ru_maxrss / 1024


def rank() -> int:
    """This process's global rank (0 for the process the bench started)."""
    if os.environ.get("RANK"):
        return int(os.environ["RANK"])
    local, node = int(os.environ.get("LOCAL_RANK", 0)), int(os.environ.get("NODE_RANK", 0))
    return node * int(os.environ.get("LOCAL_WORLD_SIZE", 1)) + local if node else local


def run_store(spec: dict[str, Any]) -> dict[str, Any]:
    """Read the Parquet file into its store (or open the cached one)."""
    from attnlab.data.panel import load_panel
    from attnlab.data.store import store_bytes, store_of

    start_rss = rss_mib()
    start = time.perf_counter()
    panel = load_panel(spec["csv"], **spec["data"])
    seconds = time.perf_counter() - start
    folder = store_of(panel)
    return {"seconds": seconds, "rss_start_mib": start_rss, "series": panel.n_series, "rows": int(panel.offsets[-1]),
            "store": str(folder), "store_bytes": store_bytes(folder) if folder else 0}


def run_fit(spec: dict[str, Any]) -> dict[str, Any]:
    """Train the spec's model on its data, one process of the job."""
    from attnlab.data.panel import load_panel
    from attnlab.data.store import store_bytes, store_of
    from attnlab.forecast.api import forecast

    out: dict[str, Any] = {"rss_start_mib": rss_mib()}
    start = time.perf_counter()
    panel = load_panel(spec["csv"], **spec["data"])
    out["load_seconds"] = time.perf_counter() - start
    out["rss_after_load_mib"] = rss_mib()
    folder = store_of(panel)
    out["store_bytes"] = store_bytes(folder) if folder else 0
    out["rows"] = int(panel.offsets[-1])
    result = forecast(panel, spec["model"], spec["overrides"], run_dir=spec["run_dir"], progress=False,
                      figures=False, forecast_windows=0, **spec["split"])
    out["fit_seconds"] = time.perf_counter() - start - out["load_seconds"]
    run = result.run
    data = result.data
    out.update({
        "params": run.params, "steps": run.steps, "epochs": run.epochs, "epoch_times": run.epoch_times,
        "train_seconds": run.train_seconds, "windows": {k: len(w) for k, w in data.windows.items()},
        "val": run.val_metrics, "test": run.metrics, "history": run.history, "run_dir": str(run.run_dir),
        "series": data.panel.n_series,
    })
    baselines = Path(run.run_dir) / "baselines.json"
    if baselines.is_file():
        out["baselines"] = json.loads(baselines.read_text()).get("baselines", {})
    return out


def main(argv: list[str]) -> int:
    spec = json.loads(Path(argv[0]).read_text())
    from attnlab.console import setup_logging

    setup_logging()
    out = run_store(spec) if spec["job"] == "store" else run_fit(spec)
    out.update({"rank": rank(), "peak_rss_mib": peak_mib(), "children_peak_rss_mib": peak_mib(resource.RUSAGE_CHILDREN),
                "pss_end_mib": pss_mib()})
    results = Path(spec["results"])
    results.mkdir(parents=True, exist_ok=True)
    (results / f"rank{out['rank']}.json").write_text(json.dumps(out, indent=1, default=float) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
