"""docs/extending.md works as written: its ``mymodels.py`` registers a forecaster from outside the package, and
its commands train, predict, report and export it through the real CLI (in a fresh process, as a user runs
them), on a small CSV instead of ETTh1."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

PAGE = Path(__file__).resolve().parents[1] / "docs" / "extending.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```[ \t]*$", re.S | re.M)


def page_blocks(lang: str) -> list[str]:
    return [m.group(2) for m in FENCE.finditer(PAGE.read_text()) if m.group(1) == lang]


def page_commands() -> list[list[str]]:
    """The ``attnlab`` commands of the page's bash block, continuation lines joined."""
    text = "\n".join(page_blocks("bash")).replace("\\\n", " ")
    return [shlex.split(line) for line in text.splitlines() if line.strip().startswith("attnlab ")]


@pytest.fixture
def user_folder(tmp_path: Path) -> Path:
    """A folder holding the page's mymodels.py and a small hourly CSV named like the page's."""
    module = next(b for b in page_blocks("python") if b.startswith("# doc: file mymodels.py"))
    (tmp_path / "mymodels.py").write_text(module)
    t = np.arange(600)
    rng = np.random.default_rng(0)
    pd.DataFrame({
        "date": pd.date_range("2024-01-01", periods=len(t), freq="h"),
        "HUFL": np.cos(2 * np.pi * t / 24) + 0.1 * rng.standard_normal(len(t)),
        "OT": np.sin(2 * np.pi * t / 24) + 0.01 * t + 0.1 * rng.standard_normal(len(t)),
    }).to_csv(tmp_path / "ETTh1.csv", index=False)
    return tmp_path


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(cwd)}
    return subprocess.run([sys.executable, "-m", "attnlab", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def test_an_out_of_package_model_trains_predicts_and_reports_through_the_cli(user_folder):
    commands = page_commands()
    assert [c[:3] for c in commands] == [["attnlab", "--import", "mymodels"]] * 2 + [
        ["attnlab", "predict", "--run"], ["attnlab", "report", "runs/mine"], ["attnlab", "attention", "runs/mine"]]
    outputs = []
    for command in commands:
        args = ["max_epochs=2" if a.startswith("max_epochs=") else a for a in command[1:]]  # a short budget
        proc = run(args, user_folder)
        assert proc.returncode == 0, f"{shlex.join(command)} failed:\n{proc.stderr[-2000:]}"
        outputs.append(proc.stdout)

    assert "horizon_queries" in outputs[0] and "mymodels.py" in outputs[0]  # listed with its summary
    run_dir = user_folder / "runs" / "mine"
    config = json.loads((run_dir / "config.json").read_text())
    assert config["model"] == "horizon_queries" and config["model_module"] == "mymodels"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert np.isfinite(metrics["test"]["mse"]) and metrics["epochs"] == 2

    # predict (no --import: the run names its module): the 24 steps after the last time stamp
    predicted = pd.read_csv(__import__("io").StringIO(outputs[2]))
    assert len(predicted) == 24 and predicted["ds"].iloc[0] == "2024-01-26 00:00:00"
    assert np.isfinite(predicted.select_dtypes("number").to_numpy()).all()

    assert (run_dir / "report.html").stat().st_size > 10_000
    weights = pd.read_csv(user_folder / "mine.csv")
    assert set(weights["layer_name"]) == {"attn"} and set(weights["kind"]) == {"cross"}  # 24 queries over 96 keys
    sums = weights.groupby(["sample", "head", "query"])["weight"].sum()
    assert np.allclose(sums, 1, atol=1e-4) and weights["query"].nunique() == 24


def test_the_page_python_example_imports_the_registered_model(user_folder):
    code = next(b for b in page_blocks("python") if "import mymodels" in b).split("\n", 1)[1]  # no "# doc:" line
    code += "print(fc.models)\n"
    proc = subprocess.run([sys.executable, "-c", code], cwd=user_folder, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(user_folder)}, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "['linear', 'horizon_queries']"


def test_registering_a_taken_name_or_a_plain_class_is_refused():
    import attnlab
    from attnlab.catalog.forecast import ForecastSizes

    with pytest.raises(ValueError, match="already has a model 'linear'; choose another name"):
        attnlab.register_model("forecast", "linear", object, ForecastSizes)
    with pytest.raises(ValueError, match="must be a @dataclass"):
        attnlab.register_model("forecast", "mine_plain", object, object)
