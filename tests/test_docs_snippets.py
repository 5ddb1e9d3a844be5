"""The examples in docs/attention-core.md and docs/training.md run, so the docs cannot drift from the code.

* Every ```python block of a page runs, in page order, in one namespace per page (a later example may use a
  model defined by an earlier one, as a reader would). Tracebacks point at the Markdown file's own lines.
  A block whose first line is ``# doc: no-run`` (it trains a model or needs a finished run folder) is not
  run, but its imports are, so a renamed function still fails the test.
* Printed output shown in a page is checked: a ``print(...)`` followed by comment lines (or, without them,
  by a comment at the end of its own line) must run and print that text; a comment ending in ``...`` is a
  prefix. So an example that shows an error message fails if the error is not raised.
* Every ``attnlab`` command of a ```bash block goes through the real CLI: ``list`` runs, ``fit`` parses its
  options and resolves its experiment, model and overrides exactly as ``attnlab fit`` does, with the
  training replaced by a stub; ``bench`` is only parsed.
* The excerpt of ``attnlab list`` output quoted in training.md is what ``attnlab list`` prints.
"""

from __future__ import annotations

import ast
import io
import re
import shlex
import sys
import tempfile
import tokenize
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from attnlab import cli, registry
from attnlab.bench.command import benchmark_parser
from attnlab.nn import reference_attention_enabled, set_reference_attention

pytestmark = pytest.mark.usefixtures("torch_single_thread")

DOCS = Path(__file__).resolve().parents[1] / "docs"
PAGES = ("attention-core.md", "training.md")
NO_RUN = "# doc: no-run"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```[ \t]*$", re.S | re.M)
# At least this many runnable Python examples per page: the extraction must not silently find nothing.
MIN_RUNNABLE = {"attention-core.md": 12, "training.md": 3}


@dataclass
class Block:
    page: str
    lang: str
    line: int  # line of the block's first code line in the Markdown file (1-based)
    code: str

    @property
    def runs(self) -> bool:
        return not self.code.startswith(NO_RUN)

    def compiled(self, code: str | None = None):
        """Compile with the page as file name and the page's line numbers, for readable tracebacks (and
        without this module's ``from __future__`` flags: the example runs as it would in a user's file)."""
        source = "\n" * (self.line - 1) + (self.code if code is None else code)
        return compile(source, str(DOCS / self.page), "exec", dont_inherit=True)


def blocks(page: str, lang: str) -> list[Block]:
    text = (DOCS / page).read_text()
    found = []
    for match in FENCE.finditer(text):
        if match.group(1) == lang:
            first_line = text.count("\n", 0, match.start(2)) + 1
            found.append(Block(page, lang, first_line, match.group(2)))
    return found


@pytest.fixture
def doc_sandbox(monkeypatch, tmp_path):
    """Temporary files under tmp_path; the reference switch and the experiment registry restored afterwards."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    reference = reference_attention_enabled()
    before = dict(registry._EXPERIMENTS)
    torch.manual_seed(0)
    yield
    set_reference_attention(reference)
    # Forget only the experiments a page registered (its classes live in the page's namespace).
    for name, cls in list(registry._EXPERIMENTS.items()):
        if cls.__module__.startswith("docs.") and before.get(name) is not cls:
            del registry._EXPERIMENTS[name]


def expected_prints(block: Block) -> dict[int, str]:
    """Page line of each ``print(...)`` call that shows its output -> that output (see the module docstring)."""
    lines = block.code.splitlines()
    comments = {
        tok.start[0]: tok.string.removeprefix("#").strip()
        for tok in tokenize.generate_tokens(io.StringIO(block.code).readline)
        if tok.type == tokenize.COMMENT
    }
    expected = {}
    for node in ast.walk(ast.parse(block.code)):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print"):
            continue
        following = []
        for number in range(node.end_lineno + 1, len(lines) + 1):  # full-line comments right below
            if not lines[number - 1].lstrip().startswith("#"):
                break
            following.append(comments[number])
        text = " ".join(following) if following else comments.get(node.end_lineno)
        if text:
            expected[block.line + node.lineno - 1] = text
    return expected


def check_printed(page: str, expected: dict[int, str], printed: dict[int, list[str]]) -> None:
    for line, text in expected.items():
        assert line in printed, f"{page}:{line}: this print never ran (an example error was not raised?)"
        got = " ".join(printed[line][0].split())
        want = " ".join(text.split())
        if want.endswith("..."):
            want = want.removesuffix("...").rstrip()
            assert got.startswith(want), f"{page}:{line}: printed {got!r}, the page shows {want!r}..."
        else:
            assert got == want, f"{page}:{line}: printed {got!r}, the page shows {want!r}"


@pytest.mark.parametrize("page", PAGES)
def test_python_examples_run(page, doc_sandbox):
    runnable = [b for b in blocks(page, "python") if b.runs]
    assert len(runnable) >= MIN_RUNNABLE[page], f"only {len(runnable)} runnable examples found in {page}"
    filename = str(DOCS / page)
    printed: dict[int, list[str]] = {}

    def recording_print(*args, sep=" ", end="\n", file=None, flush=False):
        caller = sys._getframe(1)
        if caller.f_code.co_filename == filename:
            printed.setdefault(caller.f_lineno, []).append(sep.join(str(a) for a in args))
        print(*args, sep=sep, end=end, file=file, flush=flush)

    namespace = {"__name__": f"docs.{page.removesuffix('.md').replace('-', '_')}", "print": recording_print}
    expected: dict[int, str] = {}
    for block in runnable:
        expected.update(expected_prints(block))
        exec(block.compiled(), namespace)
    assert expected, f"no printed output is checked in {page}"
    check_printed(page, expected, printed)


@pytest.mark.parametrize("page", PAGES)
def test_no_run_examples_import_what_exists(page):
    for block in blocks(page, "python"):
        if block.runs:
            continue
        tree = ast.parse(block.code)  # a syntax error fails here
        imports = [node for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))]
        assert imports, f"{page}:{block.line}: a no-run example without imports checks nothing"
        exec(block.compiled(ast.unparse(ast.Module(body=imports, type_ignores=[]))), {})


def shell_commands() -> list[tuple[str, int, list[str]]]:
    """(page, line, argv after `attnlab`) of every command in the runnable ```bash blocks."""
    commands = []
    for page in PAGES:
        for block in blocks(page, "bash"):
            if not block.runs:
                continue
            for offset, line in enumerate(block.code.splitlines()):
                if not line.strip() or line.lstrip().startswith("#"):
                    continue
                words = shlex.split(line)
                while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", words[0]):  # VAR=value prefixes
                    words.pop(0)
                assert words[:1] == ["attnlab"], f"{page}:{block.line + offset}: not an attnlab command: {line}"
                commands.append((page, block.line + offset, words[1:]))
    return commands


def test_shell_commands_are_accepted_by_the_cli(monkeypatch, tmp_path, capsys):
    from attnlab.train import engine, rundir
    from attnlab.train.config import resolve

    monkeypatch.chdir(tmp_path)
    fitted = []

    def fit_without_training(experiment, model=None, overrides=(), *, run_dir=None, **_):
        experiment_cls = registry.get_experiment(experiment)
        model_name, spec = registry.get_model(experiment_cls, model)
        config = resolve(experiment_cls, model_name, spec, overrides)
        fitted.append(config)
        return engine.RunResult(Path(run_dir or "runs/x"), experiment_cls.name, model_name, {}, {}, 0, 0.0, 0)

    monkeypatch.setattr(engine, "fit", fit_without_training)
    monkeypatch.setattr(rundir, "check", lambda *args, **kwargs: rundir.State.EMPTY)  # no run folder exists here
    commands = shell_commands()
    assert sum(argv[:1] == ["fit"] for _, _, argv in commands) >= 10
    for page, line, argv in commands:
        where = f"{page}:{line}: attnlab {shlex.join(argv)}"
        if argv[:1] == ["bench"]:  # the benchmark's own parser accepts the options (nothing is run)
            parser, module = benchmark_parser(argv[1])
            parser.parse_args(argv[2:])
            assert callable(module.run), where
            continue
        n_fitted = len(fitted)
        status = cli.main(argv)
        assert status == 0, f"{where}\n{capsys.readouterr().err}"
        if argv[:1] == ["fit"]:
            assert len(fitted) == n_fitted + 1, where
    assert not (tmp_path / "runs").exists()  # nothing was trained or written


def test_list_excerpt_is_what_attnlab_list_prints(capsys):
    excerpts = [b for b in blocks("training.md", "text") if b.code.startswith("experiments and their models")]
    assert len(excerpts) == 1
    assert cli.main(["list"]) == 0
    printed = capsys.readouterr().out.splitlines()
    for line in excerpts[0].code.splitlines():
        assert line in printed, f"training.md quotes a line `attnlab list` does not print: {line!r}"
