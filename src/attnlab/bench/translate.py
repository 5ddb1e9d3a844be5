"""Translation benchmark: each model trained for a fixed number of epochs, then scored and timed.

For every model it (1) trains with :func:`attnlab.train.fit` for ``--epochs`` (one engine, held-out split
grouped by source; the budget is work, so the BLEU does not depend on how busy the machine is); (2) decodes the
whole test set greedily and with beam 4 (and, for the Transformer, greedily without the KV cache), printing
sacreBLEU, chrF, training minutes and sentences per second.

The KV-cache micro-benchmark times greedy decoding of a batch of test sentences forced to 30 output tokens
(``<eos>`` forbidden before), with the cache and re-running the whole prefix every step: same model, same
batch, the same tokens (checked).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from attnlab.bench.measure import Target, time_call
from attnlab.data.text import pad_batch
from attnlab.errors import UserError

MODELS = ("transformer", "bahdanau", "luong", "seq2seq")
KV_LENGTH = 30  # forced output length of the KV-cache micro-benchmark
KV_BATCH = 64
# Default epochs per model: the Transformer's 10 epochs reach 48 BLEU (beam 4) in about 19 minutes on 2 cores;
# the GRU models get 2-3 epochs (about 6 minutes each).
DEFAULT_EPOCHS = {"transformer": 10, "bahdanau": 3, "luong": 2, "seq2seq": 2}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--corpus", required=True, help="source<TAB>target file, e.g. ../shared/data/fra-eng/fra.txt")
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma list (default {','.join(MODELS)})")
    parser.add_argument("--epochs", action="append", default=[], metavar="[MODEL=]N",
                        help="training epochs per model: a number for every model, or MODEL=N (repeatable; default "
                             + ", ".join(f"{m}={n}" for m, n in DEFAULT_EPOCHS.items()) + ")")
    parser.add_argument("--out", default="runs/bench-translate", help="folder for the runs (default %(default)s)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="hide training progress bars")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="overrides for every model (e.g. data.test_size=1000)")


def _budgets(items: list[str], models: list[str]) -> dict[str, int]:
    """``--epochs`` values -> epochs per model: a bare number sets every model, ``MODEL=N`` one model."""
    default: int | None = None
    named: dict[str, int] = {}
    for item in items:
        name, sep, value = item.rpartition("=")
        try:
            epochs = int(value)
        except ValueError:
            raise UserError(f"--epochs {item!r} is not N or MODEL=N (e.g. --epochs 3 --epochs transformer=10)") \
                from None
        if epochs < 1:
            raise UserError(f"--epochs {item!r} is out of range; it must be at least 1")
        if not sep:
            default = epochs
        elif name in models:
            named[name] = epochs
        else:
            raise UserError(f"--epochs {item!r}: {name!r} is not one of the benchmarked models {', '.join(models)}")
    return {m: named.get(m, DEFAULT_EPOCHS[m] if default is None else default) for m in models}


def _decode_timed(model, task, held, beam: int, use_cache: bool = True) -> tuple[dict[str, float], float]:
    """Decode a whole held-out set; return its corpus scores and sentences per second."""
    from attnlab.data.text import detokenize
    from attnlab.experiments.translate import corpus_scores, decode_sentences

    _, tgt_vocab = task.vocabs
    start = time.perf_counter()
    if use_cache:
        ids = decode_sentences(model, held.src, beam=beam, alpha=task.config.length_penalty)
    else:
        from attnlab.decode import greedy

        ids = [[] for _ in held.src]
        order = sorted(range(len(held.src)), key=lambda i: len(held.src[i]))
        for lo in range(0, len(order), 500):
            picked = order[lo : lo + 500]
            src, lens = pad_batch([held.src[i] for i in picked])
            for i, hyp in zip(picked, greedy(model, src, lens, use_cache=False), strict=True):
                ids[i] = hyp
    seconds = time.perf_counter() - start
    hyps = [detokenize(tgt_vocab.decode(h)) for h in ids]
    return corpus_scores(hyps, held.references), len(ids) / seconds


def kv_cache_benchmark(model, held, batch: int = KV_BATCH, length: int = KV_LENGTH) -> dict[str, float]:
    """Greedy decoding of ``batch`` test sentences forced to ``length`` tokens, with and without the KV cache."""
    from attnlab.decode import greedy

    src, lens = pad_batch(held.src[:batch])
    cached = greedy(model, src, lens, max_len=length, min_len=length, use_cache=True)
    uncached = greedy(model, src, lens, max_len=length, min_len=length, use_cache=False)
    if cached != uncached:
        raise RuntimeError("greedy decoding with and without the KV cache disagree")
    if any(len(t) != length for t in cached):
        raise RuntimeError(f"forced length {length} not reached")
    with_cache = time_call(lambda: greedy(model, src, lens, length, length, True), 1, 5, 20.0, False)
    without = time_call(lambda: greedy(model, src, lens, length, length, False), 1, 5, 40.0, False)
    return {"batch": batch, "length": length, "cache_ms": with_cache.median_s * 1e3,
            "no_cache_ms": without.median_s * 1e3, "speedup": without.median_s / with_cache.median_s}


def run(args: argparse.Namespace) -> int:
    from attnlab.console import setup_logging
    from attnlab.experiments.translate import learning_curve
    from attnlab.train import fit, load_model

    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in models if m not in MODELS]
    if unknown or not models:
        raise UserError(f"--models: unknown {', '.join(unknown) or '(none given)'}; choose from {', '.join(MODELS)}")
    budgets = _budgets(args.epochs, models)
    base = [f"data.corpus={args.corpus}", *args.overrides]
    out_root = Path(args.out)
    setup_logging()
    rows = []
    kv: dict[str, float] | None = None
    for name in models:
        print(f"[{name}] max_epochs={budgets[name]}", flush=True)
        run_dir = out_root / f"translate-{name}-{time.strftime('%Y%m%d-%H%M%S')}"
        result = fit("translate", name, [*base, f"max_epochs={budgets[name]}"], run_dir=run_dir,
                     progress=args.progress, figures=False)
        model, config = load_model(run_dir)
        from attnlab import registry

        task = registry.get_experiment("translate").create(config.experiment_config)
        held = task.data(config.train.seed).test[0]
        torch_threads = torch.get_num_threads()
        greedy_scores, greedy_speed = _decode_timed(model, task, held, beam=1)
        beam_scores, beam_speed = _decode_timed(model, task, held, beam=4)
        row = {
            "model": name, "params": result.params, "train_minutes": result.train_seconds / 60,
            "epochs": result.epochs, "bleu": greedy_scores["bleu"], "chrf": greedy_scores["chrf"],
            "bleu_beam4": beam_scores["bleu"], "chrf_beam4": beam_scores["chrf"],
            "greedy_sent_s": greedy_speed, "beam4_sent_s": beam_speed, "threads": torch_threads,
            "test_sources": len(held), "run_dir": str(run_dir),
            "curve": learning_curve(result.history, result.train_seconds),
        }
        if name == "transformer":
            nocache_scores, nocache_speed = _decode_timed(model, task, held, beam=1, use_cache=False)
            if abs(nocache_scores["bleu"] - greedy_scores["bleu"]) > 1e-9:
                raise RuntimeError("greedy BLEU differs with and without the KV cache")
            row["greedy_nocache_sent_s"] = nocache_speed
            kv = kv_cache_benchmark(model, held)
        rows.append(row)

    _print(rows, kv)
    targets = _targets(rows, kv)
    print("\ntargets:")
    for t in targets:
        print(f"  {t.status:<12} {t.name}: {t.detail}")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "kv_cache": kv,
                                               "targets": [vars(t) for t in targets]}, indent=2) + "\n")
    return 0


def _print(rows: list[dict], kv: dict[str, float] | None) -> None:
    print(f"\nheld-out test: {rows[0]['test_sources']} source sentences (grouped split, all references), "
          f"sacreBLEU / chrF, {rows[0]['threads']} torch threads")
    header = (f"{'model':<12} {'params':>10} {'train min':>9} {'epochs':>6} {'BLEU':>6} {'chrF':>6} "
              f"{'BLEU b4':>7} {'chrF b4':>7} {'greedy s/s':>10} {'beam4 s/s':>9} {'no-cache s/s':>12}")
    print(header)
    print("-" * len(header))
    for r in rows:
        nocache = f"{r['greedy_nocache_sent_s']:.0f}" if "greedy_nocache_sent_s" in r else "-"
        print(f"{r['model']:<12} {r['params']:>10,} {r['train_minutes']:>9.1f} {r['epochs']:>6} {r['bleu']:>6.2f} "
              f"{r['chrf']:>6.2f} {r['bleu_beam4']:>7.2f} {r['chrf_beam4']:>7.2f} {r['greedy_sent_s']:>10.0f} "
              f"{r['beam4_sent_s']:>9.0f} {nocache:>12}")
    print("\nlearning curves (minutes: val BLEU, greedy on the validation sources; minutes pro-rated per epoch):")
    for r in rows:
        points = "  ".join(f"{m:.1f}m:{b:.1f}" for m, b in r["curve"])
        print(f"  {r['model']:<12} {points}")
    if kv is not None:
        print(f"\nKV cache: greedy decoding of {kv['batch']} sentences forced to {kv['length']} tokens: "
              f"cache {kv['cache_ms']:.0f} ms, re-running the prefix {kv['no_cache_ms']:.0f} ms "
              f"-> {kv['speedup']:.1f}x (identical tokens)")


def _targets(rows: list[dict], kv: dict[str, float] | None) -> list[Target]:
    by = {r["model"]: r for r in rows}
    targets = []
    if "transformer" in by:
        t = by["transformer"]
        best = max(t["bleu"], t["bleu_beam4"])
        targets.append(Target("transformer >= 40 BLEU", "PASS" if best >= 40 else "FAIL",
                              f"{best:.2f} BLEU after {t['epochs']} epochs ({t['train_minutes']:.1f} min of training)"))
    if all(m in by for m in ("transformer", "bahdanau", "seq2seq")):
        t, b, s = (max(by[m]["bleu"], by[m]["bleu_beam4"]) for m in ("transformer", "bahdanau", "seq2seq"))
        ok = t > b + 2 and b > s + 2
        targets.append(Target("transformer > bahdanau > seq2seq (margins > 2 BLEU)", "PASS" if ok else "FAIL",
                              f"{t:.2f} / {b:.2f} / {s:.2f}"))
    if kv is not None:
        targets.append(Target("KV cache >= 3x for 30-token greedy", "PASS" if kv["speedup"] >= 3 else "FAIL",
                              f"{kv['speedup']:.1f}x"))
    else:
        targets.append(Target("KV cache >= 3x for 30-token greedy", "not measured", "transformer not benchmarked"))
    return targets
