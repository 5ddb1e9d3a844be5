"""``attnlab translate``: train a translation model on a corpus, or translate with a trained run.

usage:
  attnlab translate fit --corpus FILE [--model NAME] [--test-size 2000] [--beam N] [--out DIR] [KEY=VALUE ...]
  attnlab translate --run RUN [--beam N] [--heatmap PNG] "i'm home ."
  attnlab translate --run RUN --interactive [--beam N]

``fit`` trains through the one engine (:func:`attnlab.train.fit`, experiment ``translate``) and prints the
held-out sacreBLEU and chrF. With ``--run`` the sentences are translated; the first one's cross-attention
(source tokens × generated tokens, per layer and head for the Transformer) is saved as a PNG.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from attnlab.console import add_run_options, is_rank_zero, run_footer, setup_logging
from attnlab.errors import UserError
from attnlab.paths import readable_file, run_folder
from attnlab.train.command import check_run_request

HELP = "train a translation model on a source<TAB>target corpus, or translate with a trained run"

EPILOG = """\
examples:
  attnlab translate fit --corpus ../shared/data/fra-eng/fra.txt --model transformer max_epochs=10
  attnlab translate fit --corpus fra.txt --model bahdanau --test-size 1000 --beam 4 max_epochs=3
  attnlab translate --run runs/translate-transformer-20250101-120000 "i'm home ."
  attnlab translate --run RUN --interactive --beam 4

fit overrides: KEY=VALUE sets a field of the train, data or model config (`attnlab list translate`).
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``translate`` sub-command."""
    parser = subparsers.add_parser("translate", help=HELP, description=__doc__.split("\n\n")[0],
                                   epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
                                   usage=_usage())
    _add_translate_options(parser)
    parser.add_argument("rest", nargs=argparse.REMAINDER, metavar="SENTENCE | fit ...",
                        help="sentences to translate, or `fit` and its options")
    parser.set_defaults(func=run, translate_parser=parser)


def _usage() -> str:
    return ("\n  attnlab translate fit --corpus FILE [--model NAME] [--test-size N] [--beam N] [--out DIR] "
            "[--skip-bad-lines] [KEY=VALUE ...]\n"
            "  attnlab translate --run RUN [--beam N] [--heatmap PNG] [--no-cache] [--interactive] [SENTENCE ...]")


def _add_translate_options(parser: argparse.ArgumentParser, suppress: bool = False) -> None:
    default: Any = argparse.SUPPRESS if suppress else None
    flag: Any = argparse.SUPPRESS if suppress else False
    parser.add_argument("--run", metavar="RUN", default=default, help="run folder written by `translate fit`")
    parser.add_argument("--beam", type=int, default=default, help="beam size (1 = greedy; default 1)")
    parser.add_argument("--heatmap", metavar="PNG", default=default,
                        help="where to save the cross-attention of the first sentence "
                             "(default RUN/figures/translate_attention.png)")
    parser.add_argument("--no-cache", dest="no_cache", action="store_true", default=flag,
                        help="Transformer: re-run the whole prefix every step instead of using the KV cache")
    parser.add_argument("--interactive", "-i", action="store_true", default=flag,
                        help="read sentences from standard input, one per line")


def _fit_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="attnlab translate fit", add_help=False)
    parser.add_argument("--corpus", required=True, help="source<TAB>target file (UTF-8)")
    parser.add_argument("--model", "-m", default=None, help="seq2seq | bahdanau | luong | transformer (default)")
    parser.add_argument("--test-size", type=int, default=None, help="held-out test sources (default 2000)")
    parser.add_argument("--beam", type=int, default=None, help="beam size for the test BLEU (default 1 = greedy)")
    parser.add_argument("--out", "-o", metavar="DIR", default=None, help="run folder (default runs/translate-…)")
    parser.add_argument("--skip-bad-lines", action="store_true", help="skip lines without a tab or with an empty side")
    add_run_options(parser)
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    return parser


class _ArgumentError(UserError):
    pass


def _parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """Parse ``argv``; argparse's own errors become a one-line UserError (exit 2 via the CLI)."""
    def fail(message: str) -> None:
        raise _ArgumentError(f"{parser.prog}: {message}")

    parser.error = fail  # type: ignore[method-assign]
    return parser.parse_intermixed_args(argv)


def run(args: argparse.Namespace) -> int:
    """Dispatch ``translate fit …`` or the translation of sentences with ``--run``."""
    rest = list(args.rest)
    if any(item in ("-h", "--help") for item in rest):
        args.translate_parser.print_help()
        return 0
    if rest and rest[0] == "fit":
        if args.run is not None or args.interactive:
            raise UserError("`translate fit` trains a new model; --run and --interactive are for translating")
        fit_args = _parse(_fit_parser(), rest[1:])
        if args.beam is not None and fit_args.beam is None:
            fit_args.beam = args.beam
        return _run_fit(fit_args)
    tail = argparse.ArgumentParser(prog="attnlab translate", add_help=False)
    _add_translate_options(tail, suppress=True)
    tail.add_argument("sentences", nargs="*")
    parsed = _parse(tail, rest)
    sentences = parsed.__dict__.pop("sentences")
    vars(args).update(vars(parsed))
    return _run_translate(args, sentences)


def _run_fit(a: argparse.Namespace) -> int:
    readable_file(a.corpus, "corpus file (source<TAB>target)", "--corpus")
    overrides = [f"data.corpus={a.corpus}", *a.overrides]
    if a.test_size is not None:
        overrides.append(f"data.test_size={a.test_size}")
    if a.beam is not None:
        overrides.append(f"data.beam={a.beam}")
    if a.skip_bad_lines:
        overrides.append("data.skip_bad_lines=true")
    check_run_request("translate", a.model, overrides, a.out, False)
    from attnlab.train.engine import fit

    setup_logging()
    result = fit("translate", a.model, overrides, run_dir=a.out, progress=a.progress, figures=a.figures,
                 keep_checkpoints=a.keep_checkpoints)
    if is_rank_zero():
        m = result.metrics
        beam = result.config.experiment_config.beam if result.config else 1
        print(f"translate/{result.model}: {result.run_dir}")
        print(f"  params {result.params:,}   train {result.train_seconds / 60:.1f} min")
        print(f"  test  BLEU {m.get('bleu', float('nan')):.2f}   chrF {m.get('chrf', float('nan')):.2f}   "
              f"({'greedy' if beam == 1 else f'beam {beam}'}; token acc {m.get('token_acc', float('nan')):.3f})")
        print(f"  val   BLEU {result.val_metrics.get('bleu', float('nan')):.2f} (greedy)")
        print("\n".join(run_footer(result)))
    return 0


def _run_translate(args: argparse.Namespace, sentences: list[str]) -> int:
    if args.run is None:
        raise UserError("pass --run RUN (a folder written by `attnlab translate fit`) or use `attnlab translate fit`")
    run_folder(args.run, "--run")
    if not sentences and not args.interactive:
        raise UserError("nothing to translate; give a sentence, e.g. attnlab translate --run RUN \"i'm home .\", "
                        "or --interactive")
    from attnlab.translate.run import load_run
    from attnlab.viz.heatmaps import save_figure
    from attnlab.viz.translate import plot_cross_attention

    beam = 1 if args.beam is None else args.beam
    translator = load_run(args.run)
    for sentence in sentences:
        print(translator.translate([sentence], beam=beam, use_cache=not args.no_cache)[0])
    if sentences:
        source, output, trace = translator.trace(sentences[0])
        cross = {name: w for name, w in trace.attention.items() if "cross_attn" in name}
        if cross:
            path = Path(args.heatmap) if args.heatmap else Path(args.run) / "figures" / "translate_attention.png"
            title = f"{translator.model_name}: cross-attention (greedy)"
            save_figure(plot_cross_attention(cross, source, output, title), path)
            print(f"attention heatmap: {path}", file=sys.stderr)
        else:
            print(f"{translator.model_name} has no attention: no heatmap", file=sys.stderr)
    if args.interactive:
        for line in sys.stdin:
            line = line.strip()
            if not line:
                continue
            try:
                print(translator.translate([line], beam=beam, use_cache=not args.no_cache)[0], flush=True)
            except UserError as err:  # one bad line does not end the session
                print(f"attnlab: error: {err}", file=sys.stderr, flush=True)
    return 0
