"""The log–log plot of time against length."""

from __future__ import annotations

from pathlib import Path

from attnlab.bench.cli import fmt
from attnlab.bench.complexity.config import BASELINE, MODE_NAMES
from attnlab.bench.complexity.fit import crossover_of, exponents
from attnlab.bench.complexity.result import ComplexityResult

COLOURS = {"gru": "tab:blue", "lstm": "tab:cyan", "conv": "tab:green", "attn-fused": "tab:red",
           "attn-ref": "tab:orange"}


def write_plot(result: ComplexityResult, path: Path) -> None:
    """Log–log time against length, one panel per mode, one line per layer (legend: fitted exponent),
    grey guides ∝ L and ∝ L², and a dotted line at the fused-attention/GRU crossover."""
    from matplotlib.figure import Figure  # headless: a bare Figure needs no pyplot or backend choice

    cfg = result.config
    fig = Figure(figsize=(11, 4.6), layout="constrained")
    axes = fig.subplots(1, len(cfg.modes), sharey=True, squeeze=False)[0]
    for ax, mode in zip(axes, cfg.modes, strict=True):
        for layer in cfg.layers:
            lengths, ms = result.curve(layer, mode)
            if not lengths:
                continue
            (p, _), _ = exponents(result, layer, mode)
            ax.plot(lengths, ms, marker="o", markersize=4, color=COLOURS[layer],
                    linestyle="--" if layer == "attn-ref" else "-",
                    label=f"{layer} (exponent {fmt(p, '.2f', 'n/a')})")
        for layer, power in ((BASELINE, 1), ("attn-fused", 2)):
            lengths, ms = result.curve(layer, mode)
            if layer in cfg.layers and lengths:  # through the layer's largest measured point
                guide = [ms[-1] * (n / lengths[-1]) ** power for n in sorted(cfg.lengths)]
                ax.plot(sorted(cfg.lengths), guide, color="grey", linewidth=0.9, linestyle=":" if power == 1 else "-.",
                        label=f"∝ L{'²' if power == 2 else ''} (through {layer})")
        if BASELINE in cfg.layers and "attn-fused" in cfg.layers:
            cross = crossover_of(result, "attn-fused", mode)
            if cross.length is not None:
                ax.axvline(cross.length, color=COLOURS["attn-fused"], linewidth=0.8, alpha=0.6)
                ax.annotate(f"attn-fused = GRU\nL ≈ {cross.length:.0f}", (cross.length, 0.98),
                            xycoords=("data", "axes fraction"), ha="right", va="top", fontsize=8)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(sorted(cfg.lengths), [str(n) for n in sorted(cfg.lengths)], fontsize=8)
        ax.minorticks_off()
        ax.set_xlabel("sequence length L")
        ax.set_title(MODE_NAMES[mode])
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    axes[0].set_ylabel("ms per call (median)")
    where = f"{cfg.device}, {result.threads} threads" if cfg.device == "cpu" else cfg.device
    fig.suptitle(f"one layer, B={cfg.batch}, d_model={cfg.d_model}, heads={cfg.num_heads}, fp32 ({where})")
    fig.savefig(path, dpi=100)
