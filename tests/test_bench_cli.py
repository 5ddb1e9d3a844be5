"""The benchmarks' shared option checks and number formatting (attnlab.bench.cli)."""

from __future__ import annotations

import pytest

from attnlab.bench.cli import choices, fmt, number, output_path
from attnlab.errors import UserError


def test_fmt_formats_or_says_missing():
    assert fmt(3.14159, ".2f") == "3.14" and fmt(None, ".2f") == "-" and fmt(None, ".1f", "n/a") == "n/a"
    assert fmt(0.0, ".0%") == "0%"  # zero is a value, not a missing one


@pytest.mark.parametrize(("args", "value"), [
    (("lengths", "64"), 64),
    (("lengths", " 64 "), 64),
    (("budget-s", "0.5", float), 0.5),
    (("warmup", "0", int, 0), 0),
    (("lengths", "1", int, 1), 1),
])
def test_number_accepts(args, value):
    result = number(*args)
    assert result == value and type(result) is type(value)


@pytest.mark.parametrize(("args", "message"), [
    (("lengths", "abc"), "--lengths must be an integer, got 'abc'"),
    (("rounds", "1.5"), "--rounds must be an integer, got '1.5'"),
    (("budget-s", "x", float), "--budget-s must be a number, got 'x'"),
    (("lengths", "0"), "--lengths must be positive, got '0'"),
    (("max-memory-gb", "-1", float), "--max-memory-gb must be positive, got '-1'"),
    (("max-memory-gb", "nan", float), "--max-memory-gb must be positive, got 'nan'"),
    (("lengths", "0", int, 1), "--lengths must be at least 1, got '0'"),
    (("warmup", "-1", int, 0), "--warmup must be at least 0, got '-1'"),
])
def test_number_refuses_with_the_options_name(args, message):
    with pytest.raises(UserError) as err:
        number(*args)
    assert str(err.value) == message


def test_choices_keep_the_given_order_once_and_name_the_valid_ones():
    assert choices("modes", "fwdbwd, fwd,fwdbwd", ("fwd", "fwdbwd")) == ("fwdbwd", "fwd")
    with pytest.raises(UserError, match=r"^--modes: unknown 'x', 'y'; choose from fwd,fwdbwd$"):
        choices("modes", "fwd,x,y", ("fwd", "fwdbwd"))
    with pytest.raises(UserError, match=r"^--layers: unknown empty list; choose from gru$"):
        choices("layers", " , ", ("gru",))


def test_output_path_checks_suffix_and_folder(tmp_path):
    assert output_path("plot", None) is None
    assert output_path("plot", str(tmp_path / "a.PNG"), (".png", ".svg")) == tmp_path / "a.PNG"
    assert output_path("csv", str(tmp_path / "cells")) == tmp_path / "cells"
    with pytest.raises(UserError, match=r"^--plot: 'a.jpg' must end in .png, .svg$"):
        output_path("plot", "a.jpg", (".png", ".svg"))
    with pytest.raises(UserError, match=r"^--csv: folder .*missing does not exist; create it or pick another path$"):
        output_path("csv", str(tmp_path / "missing" / "x.csv"))
