"""The README's two set-up commands are exactly what CI runs."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _setup_lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip().startswith("python3 -m venv .venv")]


def test_ci_runs_the_readme_setup_commands_verbatim():
    readme = _setup_lines((ROOT / "README.md").read_text())
    ci = _setup_lines((ROOT / ".ci" / "run").read_text())
    assert len(readme) == 2, "the README must show exactly two set-up commands"
    assert ci == readme
    assert readme[0].endswith("attnlab demo") and readme[1].endswith("pytest")
    assert all("pip install -q torch==2.13.0 &&" in line for line in readme)  # CPU torch before anything else
