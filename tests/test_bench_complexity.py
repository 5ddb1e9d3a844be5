"""`attnlab bench complexity`: exponent fit, crossover, memory skips, timing rounds, report, CSV/PNG and the CLI."""

from __future__ import annotations

import csv
import math
import time

import pytest
import torch

from attnlab.bench.complexity.config import LAYERS, ComplexityConfig, default_heads
from attnlab.bench.complexity.fit import crossover, crossover_of, fit_exponent, fit_over, upper_half
from attnlab.bench.complexity.layers import CHANNELS_FIRST, build_layers, estimate_bytes, layer_flops, skip_reason
from attnlab.bench.complexity.measurement import MAX_SETTLE_CALLS, run_complexity_bench, time_cell
from attnlab.bench.complexity.report import evaluate_targets, format_report
from attnlab.bench.complexity.result import Cell, ComplexityResult
from attnlab.bench.measure import GIB
from attnlab.cli import main

pytestmark = pytest.mark.usefixtures("torch_single_thread")

LENGTHS = (64, 128, 256, 512, 1024, 2048, 4096, 8192)
TINY = ["--lengths", "16,32", "--d-model", "8", "--batch", "1", "--repeats", "1", "--rounds", "1",
        "--budget-s", "0.005"]


def tiny_config(**overrides) -> ComplexityConfig:
    cfg = ComplexityConfig(lengths=(16, 32), d_model=8, batch=1, repeats=1, rounds=1, budget_s=0.005)
    for key, value in overrides.items():
        setattr(cfg, key, value)
    return cfg


def synthetic_result(laws: dict[str, tuple[float, float]], lengths=LENGTHS, modes=("fwd",),
                     elapsed_s: float = 100.0) -> ComplexityResult:
    """A result whose times are exactly c * n**p (ms) for each layer's (c, p)."""
    cfg = ComplexityConfig(lengths=tuple(lengths), layers=tuple(laws), modes=tuple(modes))
    res = ComplexityResult(cfg, "x", 2, 16 * GIB, True, elapsed_s=elapsed_s)
    for mode in modes:
        for layer, (c, p) in laws.items():
            for n in lengths:
                res.cells.append(Cell(layer, mode, n, flops=1e9, estimate_bytes=0, round_ms=[c * n**p]))
    return res


# ---------------------------------------------------------------------------------------------- analysis
@pytest.mark.parametrize("p", [0.5, 1.0, 2.0, 2.7])
def test_fit_recovers_the_exponent_of_a_power_law(p):
    c = 3.2e-4
    assert fit_exponent(LENGTHS, [c * n**p for n in LENGTHS]) == pytest.approx(p, abs=1e-9)


def test_fit_is_the_least_squares_slope_and_needs_two_lengths():
    # log2 times 0, 1, 3 at log2 lengths 0, 1, 2: least-squares slope 1.5 (in log space, any base)
    assert fit_exponent([1, 2, 4], [1, 2, 8]) == pytest.approx(1.5)
    assert fit_exponent([64], [1.0]) is None
    assert fit_exponent([], []) is None
    with pytest.raises(ValueError, match="positive"):
        fit_exponent([0, 2], [1.0, 2.0])


def test_upper_half_and_fit_over_skipped_lengths():
    assert upper_half(LENGTHS) == [1024, 2048, 4096, 8192]
    assert upper_half([1, 2, 3, 4, 5, 6, 7]) == [4, 5, 6, 7]  # odd count: median included
    assert upper_half([32, 16]) == [16, 32]  # two lengths: both, so a slope exists
    assert upper_half([16]) == [16]
    # the top length was skipped: the fit uses the measured lengths of the upper half only
    measured = LENGTHS[:-1]
    p, points = fit_over(measured, [n**2 for n in measured], upper_half(LENGTHS))
    assert p == pytest.approx(2.0) and points == 3


def test_crossover_of_two_power_laws_is_exact():
    # GRU-like t = n, attention-like t = n^2 / 1000: equal at n = 1000, between 512 and 1024
    cross = crossover(LENGTHS, [float(n) for n in LENGTHS], [n**2 / 1000 for n in LENGTHS])
    assert cross.length == pytest.approx(1000.0, rel=1e-9)
    assert cross.text == "L ≈ 1000 (between 512 and 1024)"
    # equal at a measured length: the crossing is that length
    assert crossover([100, 200, 400], [1.0, 2.0, 4.0], [0.5, 2.0, 8.0]).length == pytest.approx(200.0)


def test_crossover_outside_the_range():
    lengths = [64, 128, 256]
    never = crossover(lengths, [10.0, 20.0, 40.0], [1.0, 2.0, 4.0])
    assert never.length is None and never.text == "none in range (not slower up to L=256)"
    always = crossover(lengths, [1.0, 2.0, 4.0], [10.0, 20.0, 40.0])
    assert always.length is None and always.text == "slower at every measured length (from L=64)"
    assert crossover([], [], []).text == "not measured"


def test_crossover_of_a_result_uses_lengths_both_measured():
    res = synthetic_result({"gru": (1.0, 1.0), "attn-fused": (1e-3, 2.0), "attn-ref": (2e-3, 2.0)})
    assert crossover_of(res, "attn-fused", "fwd").length == pytest.approx(1000.0)
    assert crossover_of(res, "attn-ref", "fwd").length == pytest.approx(500.0)
    for c in res.cells:
        if c.layer == "gru" and c.length in (512, 1024):
            c.round_ms, c.note = [], "skipped: test"
    # without 512 and 1024 the interpolation runs between 256 and 2048, still exact for power laws
    assert crossover_of(res, "attn-fused", "fwd").text == "L ≈ 1000 (between 256 and 2048)"


def test_targets_pass_fail_and_not_measured():
    laws = {"gru": (1.0, 1.0), "lstm": (1.0, 1.0), "conv": (0.1, 1.1), "attn-fused": (1e-3, 1.95),
            "attn-ref": (1e-3, 2.3)}
    res = synthetic_result(laws, modes=("fwd", "fwdbwd"))
    got = [(t.name, t.status) for t in evaluate_targets(res)]
    assert got == [
        (f"{layer} exponent, {mode}, in [{lo}, {hi}]", status)
        for mode in ("forward", "forward+backward")
        for layer, lo, hi, status in (("gru", 0.8, 1.2, "PASS"), ("conv", 0.8, 1.2, "PASS"),
                                      ("attn-fused", 1.7, 2.2, "PASS"), ("attn-ref", 1.7, 2.2, "FAIL"))
    ] + [("total run time <= 300 s", "PASS")]  # lstm is shown, not a target
    targets = evaluate_targets(res)
    assert len(targets) == 9 and targets[3].detail == "2.30 over 4 lengths"
    assert targets[-1].status == "PASS" and targets[-1].detail == "100 s"
    res.elapsed_s = 301.0
    assert evaluate_targets(res)[-1].status == "FAIL"
    one = synthetic_result({"gru": (1.0, 1.0)}, lengths=(64,))
    assert [t.status for t in evaluate_targets(one)] == ["not measured", "PASS"]


def test_report_shows_tables_exponents_crossover_and_targets():
    res = synthetic_result({"gru": (1.0, 1.0), "attn-fused": (1e-3, 2.0)}, modes=("fwd", "fwdbwd"))
    out = format_report(res, evaluate_targets(res))
    assert "forward: median ms per call" in out and "forward+backward: median ms per call" in out
    assert "exponent, upper half L 1024-8192" in out and "exponent, top 3 L 2048-8192" in out
    lines = out.splitlines()
    row = lines[lines.index("  exponent, upper half L 1024-8192") + 1]
    assert row.split() == ["1.00", "2.00"]
    assert "attn-fused  L ≈ 1000 (between 512 and 1024)" in out
    assert "PASS         attn-fused exponent, forward, in [1.7, 2.2]: 2.00 over 4 lengths" in out


# ---------------------------------------------------------------------------------------------- cost models
def test_flops_conventions():
    B, n, d, k = 2, 10, 4, 3
    assert layer_flops("gru", "fwd", B, n, d, k) == 12 * B * n * d * d
    assert layer_flops("lstm", "fwd", B, n, d, k) == 16 * B * n * d * d
    assert layer_flops("conv", "fwd", B, n, d, k) == 2 * k * B * n * d * d
    attn = 8 * B * n * d * d + 4 * B * n * n * d
    assert layer_flops("attn-fused", "fwd", B, n, d, k) == attn == layer_flops("attn-ref", "fwd", B, n, d, k)
    assert layer_flops("gru", "fwdbwd", B, n, d, k) == 3 * 12 * B * n * d * d


def test_memory_estimates_grow_quadratically_only_for_the_reference_path():
    def est(layer: str, n: int, mode: str = "fwd") -> int:
        return estimate_bytes(layer, mode, 8, n, 64, 4, 4)

    ref = est("attn-ref", 4096) - est("attn-fused", 4096)  # the materialised (B, H, n, n) matrices
    assert ref == 3 * 8 * 4 * 4096**2 * 4
    assert est("attn-ref", 4096, "fwdbwd") > 2 * ref
    for layer in ("gru", "lstm", "conv", "attn-fused"):
        assert est(layer, 8192) == 2 * est(layer, 4096)  # linear in n
    assert est("attn-ref", 8192) > 24 * GIB > est("attn-ref", 4096)


def test_skip_reason_names_the_estimate_and_the_limit():
    assert skip_reason(10, 10.0) == ""
    assert skip_reason(int(3 * GIB), 2 * GIB) == "skipped: needs ~3.0 GiB (limit 2.0 GiB)"


def test_memory_limit_skips_only_cells_over_it():
    cfg = tiny_config(lengths=(128, 256), d_model=4)
    # the reference path at L=128 forward fits; what it needs beyond that does not; every other layer fits
    limit = estimate_bytes("attn-ref", "fwd", 1, 128, 4, 1, 4)
    assert all(estimate_bytes(layer, mode, 1, n, 4, 1, 4) <= limit
               for layer in ("gru", "lstm", "conv", "attn-fused") for mode in ("fwd", "fwdbwd") for n in (128, 256))
    cfg.max_memory_gb = limit / GIB
    messages: list[str] = []
    res = run_complexity_bench(cfg, progress=messages.append)
    assert len(res.cells) == 20 and len(messages) == 20
    skipped = {(c.layer, c.mode, c.length) for c in res.cells if c.note}
    assert skipped == {("attn-ref", "fwdbwd", 128), ("attn-ref", "fwd", 256), ("attn-ref", "fwdbwd", 256)}
    for c in res.cells:
        if c.note:
            assert c.ms is None and c.round_ms == [] and c.note.startswith("skipped: needs ~")
        else:
            assert c.ms is not None and c.ms > 0 and c.samples == [1]
    assert any("attn-ref   skipped: needs ~" in m for m in messages)


# ---------------------------------------------------------------------------------------------- layers, timing
def test_layers_keep_their_layout_and_both_attention_paths_agree(sdpa_spy):
    cfg = tiny_config(d_model=16, heads=2)
    modules, forwards = build_layers(cfg)
    assert set(forwards) == set(LAYERS) and CHANNELS_FIRST == {"conv"}
    x = torch.randn(3, 11, 16)  # (B, n, d)
    with torch.no_grad():
        # (B, n, d) -> (B, n, d); the convolution in its own layout, (B, d, n) -> (B, d, n)
        outs = {name: f(x.transpose(1, 2).contiguous()).transpose(1, 2) if name in CHANNELS_FIRST else f(x)
                for name, f in forwards.items()}
        assert all(out.shape == (3, 11, 16) for out in outs.values())
        sdpa_spy.reset()
        forwards["attn-ref"](x)
        assert sdpa_spy.calls == 0  # the reference path does not call the fused kernel
        forwards["attn-fused"](x)
        assert sdpa_spy.calls == 1
    torch.testing.assert_close(outs["attn-ref"], outs["attn-fused"], atol=1e-5, rtol=1e-5)
    # the convolution keeps the length and mixes only neighbours (kernel 3)
    y = x.clone()
    y[:, 5] += 1.0
    with torch.no_grad():
        changed = (forwards["conv"](y.transpose(1, 2)).transpose(1, 2) - outs["conv"]).abs().amax(dim=(0, 2)) > 0
    assert changed.nonzero().flatten().tolist() == [4, 5, 6]


def test_default_heads():
    assert [default_heads(d) for d in (64, 128, 512, 32, 8, 24)] == [4, 8, 8, 2, 1, 1]


def test_slow_calls_get_min_samples_and_fast_calls_fill_the_budget():
    calls = []

    def slow() -> None:
        calls.append(1)
        time.sleep(0.03)

    cfg = ComplexityConfig(repeats=10, budget_s=0.01, min_samples=2, max_cell_s=30.0)
    timing, warmup_s, (user_s, system_s) = time_cell(slow, cfg, measure_memory=False)
    assert timing.repeats == 2 and timing.inner == 1 and len(calls) == 3  # warm-up + 2 samples
    assert 0 <= user_s + system_s < 0.05  # two sleeps: CPU time of the samples only, almost none
    assert warmup_s >= 0.03 and timing.median_s >= 0.03
    calls.clear()
    timing, *_ = time_cell(slow, ComplexityConfig(repeats=10, budget_s=0.01, min_samples=3, max_cell_s=0.07),
                           measure_memory=False)
    assert timing.repeats == 2  # int(0.07 / 0.03): the cap wins over min_samples
    timing, *_ = time_cell(lambda: None, ComplexityConfig(repeats=4, budget_s=10.0), measure_memory=False)
    assert timing.repeats == 4 and timing.inner > 1  # fast calls: batched, up to `repeats` samples


@pytest.mark.parametrize(("growing_calls", "warmups"), [(3, 4), (0, 2), (99, 1 + MAX_SETTLE_CALLS)])
def test_with_kept_memory_warm_up_repeats_until_a_call_stops_page_faulting(growing_calls, warmups):
    kept: list[bytearray] = []
    calls = []

    def step() -> None:  # touches 16 MiB of new memory on each of its first `growing_calls` calls
        calls.append(1)
        if len(calls) <= growing_calls:
            kept.append(bytearray(16 * 2**20))
        time.sleep(0.03)

    cfg = ComplexityConfig(repeats=10, budget_s=0.01, min_samples=2)
    timing, *_ = time_cell(step, cfg, measure_memory=False, kept_memory=True)
    assert len(calls) == warmups + timing.repeats == warmups + 2
    calls.clear()
    time_cell(step, cfg, measure_memory=False, kept_memory=False)
    assert len(calls) == 1 + 2  # without kept memory: one warm-up call


def test_rounds_keep_the_fastest_median():
    cell = Cell("gru", "fwd", 64, 1.0, 0, round_ms=[5.0, 3.0, 4.0])
    assert cell.ms == 3.0 and Cell("gru", "fwd", 64, 1.0, 0).ms is None
    res = run_complexity_bench(tiny_config(lengths=(16,), layers=("conv",), modes=("fwd",), rounds=2))
    (c,) = res.cells
    assert len(c.round_ms) == 2 and len(c.warmup_ms) == 2 and c.ms == min(c.round_ms)
    assert c.user_s + c.system_s > 0 and 0 <= c.kernel_share <= 1


# ---------------------------------------------------------------------------------------------- command line
def test_cli_tiny_run_writes_csv_and_png(tmp_path, capsys):
    csv_path, png_path = tmp_path / "cx.csv", tmp_path / "cx.png"
    assert main(["bench", "complexity", *TINY, "--csv", str(csv_path), "--plot", str(png_path)]) == 0
    out = capsys.readouterr()
    progress = [line for line in out.err.splitlines() if line.startswith("[1/1] [")]
    assert len(progress) == 20 and "L=16 fwd    gru" in progress[0]
    assert "forward: median ms per call" in out.out and "crossover:" in out.out and "total run time" in out.out
    rows = list(csv.DictReader(csv_path.open()))
    assert len(rows) == 20
    assert {(r["layer"], r["mode"], int(r["length"])) for r in rows} == {
        (layer, mode, n) for layer in LAYERS for mode in ("fwd", "fwdbwd") for n in (16, 32)}
    for r in rows:
        assert r["note"] == "" and float(r["ms"]) > 0 and r["samples"] == "1"
        assert math.isclose(float(r["gflops"]), float(r["flops"]) / (float(r["ms"]) * 1e-3) / 1e9, rel_tol=1e-4)
    assert png_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png_path.stat().st_size > 10_000


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--lengths", "0,abc"], "--lengths must be positive, got '0'"),
        (["--lengths", "64,abc"], "--lengths must be an integer, got 'abc'"),
        (["--device", "tpu"], "--device must be cpu or cuda, got 'tpu'"),
        (["--d-model", "64", "--heads", "3"], "--heads 3 does not divide --d-model 64"),
        (["--layers", "gru,transformer"], "--layers: unknown 'transformer'"),
        (["--budget-s", "-1"], "--budget-s must be positive"),
        (["--plot", "/nonexistent-folder/cx.png"], "--plot: folder /nonexistent-folder does not exist"),
        (["--plot", "cx.jpg"], "--plot: 'cx.jpg' must end in .png, .svg, .pdf"),
        (["--csv", "/nonexistent-folder/cx.csv"], "--csv: folder /nonexistent-folder does not exist"),
    ],
)
def test_cli_bad_input_exits_2_with_one_line(cli_error, args, message):
    assert message in cli_error(["bench", "complexity", *args])


def test_cli_cuda_without_cuda_exits_2(cli_error, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    err = cli_error(["bench", "complexity", "--device", "cuda"])
    assert "--device cuda: CUDA is not available" in err and "use --device cpu" in err



def test_freed_memory_is_kept_by_default_and_the_report_says_so(capsys):
    from attnlab.bench.measure import _glibc

    for flag, expected in (([], _glibc() is not None), (["--no-keep-freed-memory"], False)):
        assert main(["bench", "complexity", *TINY, "--layers", "conv", *flag]) == 0
        out = capsys.readouterr().out
        line = "freed memory: kept and reused by the process" if expected else "freed memory: returned to the OS"
        assert line in out and ("up to 6 more until a call page-faults" in out) == expected
