"""The run as people read it: targets (PASS/FAIL), the text report, and one CSV row per cell."""

from __future__ import annotations

import csv
from pathlib import Path

import torch

from attnlab.bench.cli import fmt
from attnlab.bench.complexity.config import ATTENTION, BASELINE, LAYERS, MODE_NAMES
from attnlab.bench.complexity.fit import crossover_of, exponents, upper_half
from attnlab.bench.complexity.measurement import MAX_SETTLE_CALLS, MIN_SAMPLE_S, SETTLED_BYTES
from attnlab.bench.complexity.result import ComplexityResult
from attnlab.bench.measure import GIB, MIB, Target

TIME_TARGET_S = 300.0  # the default run must finish within this on the project's 2-core CPU


def evaluate_targets(result: ComplexityResult) -> list[Target]:
    """The issue's targets: exponents (upper half of the lengths) of GRU and convolution in 0.8–1.2 and of
    both attention paths in 1.7–2.2, per mode; and the whole run within 5 minutes."""
    targets = []
    for mode in result.config.modes:
        for layer in result.config.layers:
            bounds = LAYERS[layer].exponent_target
            if bounds is None:
                continue
            (p, points), _ = exponents(result, layer, mode)
            name = f"{layer} exponent, {MODE_NAMES[mode]}, in [{bounds[0]}, {bounds[1]}]"
            if p is None:
                targets.append(Target(name, "not measured", f"{points} measured length(s) in the upper half"))
            else:
                ok = bounds[0] <= p <= bounds[1]
                targets.append(Target(name, "PASS" if ok else "FAIL", f"{p:.2f} over {points} lengths"))
    ok = result.elapsed_s <= TIME_TARGET_S
    targets.append(Target(f"total run time <= {TIME_TARGET_S:.0f} s", "PASS" if ok else "FAIL",
                          f"{result.elapsed_s:.0f} s"))
    return targets


def _short(note: str) -> str:
    return "skip" if note.startswith("skipped") else "oom" if note.startswith("failed") else "-"


def format_report(result: ComplexityResult, targets: list[Target]) -> str:
    """Tables of time and peak memory per length, exponents, crossovers, skipped cells and targets."""
    cfg = result.config
    layers, w = cfg.layers, 12
    configured = sorted(cfg.lengths)
    upper, top = upper_half(configured), configured[-3:]
    device = f"cpu ({torch.backends.cpu.get_cpu_capability()}), {result.threads} threads" if cfg.device == "cpu" \
        else f"cuda ({torch.cuda.get_device_name()})"
    out = [
        f"attnlab bench complexity: torch {result.torch_version}, {device}, fp32",
        f"B={cfg.batch}, d_model={cfg.d_model}, heads={cfg.num_heads} (head_dim {cfg.d_model // cfg.num_heads}), "
        f"conv kernel {cfg.kernel_size}; one layer each, input (B, L, d_model) ((B, d_model, L) for conv)",
        f"memory limit per cell: {result.memory_limit_bytes / GIB:.1f} GiB",
        "freed memory: " + ("kept and reused by the process (glibc: no mmap, no trim)" if result.kept_freed_memory
                            else "returned to the OS (allocator defaults)"),
    ]
    header = f"  {'L':>6}" + "".join(f"{name:>{w}}" for name in layers)
    for mode in cfg.modes:
        out += ["", f"{MODE_NAMES[mode]}: median ms per call", header]
        for n in configured:
            row = [result.cell(layer, mode, n) for layer in layers]
            out.append(f"  {n:>6}" + "".join(
                f"{fmt(c.ms, '.2f', _short(c.note)) if c else '-':>{w}}" for c in row))
        for label, pick, expected in ((f"exponent, upper half L {upper[0]}-{upper[-1]}", 0, len(upper)),
                                      (f"exponent, top 3 L {top[0]}-{top[-1]}", 1, len(top))):
            fits = [exponents(result, layer, mode)[pick] for layer in layers]
            shown = [fmt(p, ".2f") + (f" ({k})" if p is not None and k < expected else "") for p, k in fits]
            out += [f"  {label}", f"  {'':>6}" + "".join(f"{s:>{w}}" for s in shown)]
        largest = [max((c for c in result.cells if (c.layer, c.mode) == (layer, mode) and c.ms is not None),
                       key=lambda c: c.length, default=None) for layer in layers]
        out.append("  GFLOP/s at the largest measured L")
        out.append(f"  {'':>6}" + "".join(
            f"{(f'{c.gflops:.1f}@{c.length}' if c is not None else '-'):>{w}}" for c in largest))
        out.append("  kernel (system) share of CPU time at the largest measured L")
        out.append(f"  {'':>6}" + "".join(
            f"{(fmt(c.kernel_share, '.0%') if c is not None else '-'):>{w}}" for c in largest))
        out += ["", f"{MODE_NAMES[mode]}: peak memory of one call, MiB", header]
        for n in configured:
            row = [result.cell(layer, mode, n) for layer in layers]
            peak = "n/a" if not result.peak_memory_supported else "-"
            out.append(f"  {n:>6}" + "".join(
                f"{(fmt(c.peak_mib, '.1f', peak) if c.ms is not None else _short(c.note)) if c else '-':>{w}}"
                for c in row))

    if BASELINE in layers and any(a in layers for a in ATTENTION):
        out += ["", f"crossover: the length from which attention takes longer than the {BASELINE.upper()} "
                "(log-log interpolation)"]
        for mode in cfg.modes:
            for layer in (a for a in ATTENTION if a in layers):
                out.append(f"  {MODE_NAMES[mode]:<17} {layer:<11} {crossover_of(result, layer, mode).text}")

    skipped = [c for c in result.cells if c.note]
    if skipped:
        out += ["", "not measured"]
        out += [f"  L={c.length} {c.mode} {c.layer}: {c.note}" for c in skipped]

    out += ["", "targets"]
    out += [f"  {t.status:<12} {t.name}: {t.detail}" for t in targets]
    out += [
        "",
        f"times: {cfg.rounds} round(s) over all cells; per cell and round one warm-up call"
        + (f" (then, with freed memory kept, up to {MAX_SETTLE_CALLS} more until a call page-faults at most "
           f"{SETTLED_BYTES // MIB} MiB)" if result.kept_freed_memory else "")
        + f", then the median of up to {cfg.repeats} samples, fewer once they add up to {cfg.budget_s:g} s but at "
        f"least {cfg.min_samples} (a sample repeats calls under {MIN_SAMPLE_S * 1e3:.0f} ms); shown: the fastest "
        "round's median.",
        "exponent: least-squares slope of log(ms) on log(L); (k) = fitted on k measured lengths only. "
        "kernel share: system / (user + system) CPU time of the process during the cell's samples.",
        "peak memory: " + (
            "CUDA max_memory_allocated above the memory allocated before the cell" if cfg.device == "cuda"
            else "peak RSS during the first warm-up call minus RSS before it, under the allocator's defaults; "
                 "the smaller of the rounds (a process's first call also allocates one-time workspaces)"
            + ("" if result.peak_memory_supported else " (not available here: n/a)")) + ".",
        "FLOPs (forward; forward+backward = 3x): GRU 12*B*L*d^2, LSTM 16*B*L*d^2, conv 2*k*B*L*d^2, "
        "self-attention 8*B*L*d^2 + 4*B*L^2*d.",
        "layers: " + "; ".join(f"{name} = {LAYERS[name].description}" for name in layers) + ".",
    ]
    return "\n".join(out)


def write_csv(result: ComplexityResult, path: Path) -> None:
    """One row per cell."""
    cfg = result.config
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["layer", "mode", "length", "batch", "d_model", "heads", "ms", "round_ms", "warmup_ms",
                         "samples", "calls_per_sample", "peak_mib", "estimate_mib", "flops", "gflops", "kernel_share",
                         "note"])

        def join(values: list[float] | list[int]) -> str:
            return ";".join(f"{v:.6g}" for v in values)

        for c in result.cells:
            writer.writerow([c.layer, c.mode, c.length, cfg.batch, cfg.d_model, cfg.num_heads, fmt(c.ms, ".6g", ""),
                             join(c.round_ms), join(c.warmup_ms), join(c.samples), c.calls_per_sample,
                             fmt(c.peak_mib, ".6g", ""), f"{c.estimate_bytes / MIB:.6g}", f"{c.flops:.6g}",
                             fmt(c.gflops, ".6g", ""), fmt(c.kernel_share, ".4f", ""), c.note])
