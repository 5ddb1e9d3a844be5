"""`attnlab bench attention` on tiny sizes: structure of the results, skip logic, targets and the CLI."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from attnlab.bench.attention import (
    IMPLS,
    AttentionBenchConfig,
    AttentionBenchResult,
    KVCacheResult,
    Row,
    attention_flops,
    config_from_args,
    core_matmuls,
    estimate_bytes,
    evaluate_targets,
    format_report,
    measure_kvcache,
    naive_attention,
    naive_mha,
    recorded,
    recording_targets,
    reference,
    run_attention_bench,
)
from attnlab.bench.command import benchmark_parser
from attnlab.bench.measure import peak_rss_supported
from attnlab.cli import main
from attnlab.nn import MultiHeadAttention

TINY = ["--lengths", "32", "--batch", "1", "--heads", "2", "--head-dim", "8", "--repeats", "1",
        "--matmul-n", "64", "--no-kvcache"]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny ops on 2 threads of a shared, busy machine mostly measure scheduling; 1 thread keeps these fast."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_config(**overrides) -> AttentionBenchConfig:
    cfg = AttentionBenchConfig(lengths=(32, 64), batch=1, heads=2, head_dim=8, repeats=1, warmup=1,
                               budget_s=0.05, kvcache=False, matmul_n=64)
    for key, value in overrides.items():
        setattr(cfg, key, value)
    return cfg


@pytest.fixture(scope="module")
def tiny_result() -> AttentionBenchResult:
    return run_attention_bench(tiny_config())


def test_every_cell_is_timed_with_consistent_gflops(tiny_result):
    res = tiny_result
    assert res.matmul_gflops > 0 and math.isclose(res.matmul_gflops, 2 * 64**3 / res.matmul_ms / 1e6, rel_tol=1e-9)
    assert len(res.matmul_gflops_runs) == 2 and res.matmul_gflops == pytest.approx(max(res.matmul_gflops_runs))
    cells = {(r.length, r.mode, r.impl) for r in res.rows}
    assert cells == {(L, m, i) for L in (32, 64) for m in ("fwd", "fwdbwd") for i in IMPLS if m in IMPLS[i].modes}
    assert ("fwdbwd", "write-weights") not in {(r.mode, r.impl) for r in res.rows}  # a buffer fill has no backward
    for r in res.rows:
        assert r.note == "" and r.ms is not None and r.ms > 0 and r.repeats >= 1
        if r.impl == "write-weights":  # no arithmetic: no GFLOP/s
            assert r.flops == 0 and r.gflops is None and r.x_matmul is None
            continue
        assert math.isclose(r.gflops, r.flops / (r.ms * 1e-3) / 1e9, rel_tol=1e-9)
        assert math.isclose(r.x_matmul, r.gflops / res.matmul_gflops, rel_tol=1e-9)
        assert (r.peak_mib is not None) == res.peak_memory_supported
        if r.peak_mib is not None:
            assert r.peak_mib >= 0


def test_flop_conventions():
    B, H, L, D = 2, 3, 10, 4
    E = H * D
    core = 4 * B * H * L * L * D
    assert attention_flops("core", B, H, L, D, "fwd") == core
    assert attention_flops("memory", B, H, L, D, "fwd") == 0
    assert attention_flops("mha", B, H, L, D, "fwd") == core + 8 * B * L * E * E
    assert attention_flops("mha", B, H, L, D, "fwdbwd") == 3 * (core + 8 * B * L * E * E)


def test_tiny_memory_limit_skips_only_materialising_impls():
    res = run_attention_bench(tiny_config(lengths=(32,), max_memory_gb=1e-9))
    assert len(res.rows) == sum(len(impl.modes) for impl in IMPLS.values())
    for r in res.rows:
        if not IMPLS[r.impl].materialises(r.mode):
            assert r.ms is not None and r.ms > 0 and r.note == ""
        else:
            assert r.ms is None and r.gflops is None and r.note.startswith("skipped: needs ~"), r
    fast = [r for r in res.rows if r.impl == "attnlab-fast"]
    assert len(fast) == 2 and all(r.ms for r in fast)
    assert "skipped: needs ~" in format_report(res, evaluate_targets(res))


def test_naive_implementations_match_attnlab_and_sdpa():
    torch.manual_seed(0)
    mha = MultiHeadAttention(16, 4).eval()
    x = torch.randn(2, 7, 16)
    with torch.no_grad():
        expected = mha(x, x, x)[0]
        torch.testing.assert_close(naive_mha(x, mha.in_proj, mha.out_proj, 4), expected, atol=1e-5, rtol=1e-5)
    q, k, v = (torch.randn(6, 7, 4) for _ in range(3))
    torch.testing.assert_close(naive_attention(q, k, v), F.scaled_dot_product_attention(q, k, v), atol=1e-5,
                               rtol=1e-5)
    # the ceiling row: the two products alone, (q kᵀ) v, by hand
    by_hand = torch.einsum("nqk,nkd->nqd", torch.einsum("nqd,nkd->nqk", q, k), v)
    torch.testing.assert_close(core_matmuls(q, k, v), by_hand, atol=1e-5, rtol=1e-5)
    buffers = {}
    with torch.no_grad():
        first = core_matmuls(q, k, v, buffers)
        assert core_matmuls(q, k, v, buffers).data_ptr() == first.data_ptr()  # the same output tensor each call
    torch.testing.assert_close(first, by_hand, atol=1e-5, rtol=1e-5)


def test_kvcache_section_reports_positions_and_ratio():
    kv = measure_kvcache(tiny_config(kv_repeats=1))
    assert set(kv.ms_at) == {20, 200} and all(ms > 0 for ms in kv.ms_at.values())
    assert kv.ratio == pytest.approx(kv.ms_at[200] / kv.ms_at[20])
    assert kv.nocache_position == 200 and kv.nocache_ms > 0


def _row(length: int, impl: str, ms: float, peak: float | None = None, mode: str = "fwd") -> Row:
    flops = 1e9
    return Row(length, 4, mode, impl, flops, ms=ms, gflops=flops / ms / 1e6, x_matmul=flops / ms / 1e6 / 100,
               peak_mib=peak, repeats=1)


def test_targets_pass_fail_and_not_measured():
    res = AttentionBenchResult(AttentionBenchConfig(), "x", 2, 16.0, True, matmul_ms=1.0, matmul_gflops=100.0,
                               matmul_gflops_runs=[100.0, 90.0])
    assert [t.status for t in evaluate_targets(res)] == ["not measured"] * 7
    res.rows = [
        _row(4096, "attnlab-fast", 100.0), _row(4096, "torch-noweights", 110.0), _row(4096, "torch-default", 200.0),
        _row(1024, "core-sdpa", 10.0),  # 100 GFLOP/s = 1.0x matmul
        _row(16384, "attnlab-fast", 1000.0, peak=2100.0),
    ]
    res.kvcache = KVCacheResult(512, 8, {20: 0.1, 200: 0.12}, 1.2, 200, 1.0)
    assert [t.status for t in evaluate_targets(res)][:4] == ["FAIL", "PASS", "FAIL", "PASS"]  # 2.0x < 2.5x default
    res.rows[2].ms = 300.0
    res.rows[4].peak_mib = 300.0
    assert [t.status for t in evaluate_targets(res)][:4] == ["PASS"] * 4
    res.rows.append(_row(1024, "core-gemm", 12.5))  # 80 GFLOP/s: the matmuls alone, shown beside the core
    detail = evaluate_targets(res)[1].detail
    assert detail.endswith("= 1.00x; its two matmuls alone, without softmax (core-gemm): 0.80x")


def test_recording_targets_pass_fail_and_not_measured():
    res = AttentionBenchResult(AttentionBenchConfig(), "x", 2, 16.0, True, matmul_ms=1.0, matmul_gflops=100.0,
                               matmul_gflops_runs=[100.0, 90.0])
    assert [t.status for t in recording_targets(res)] == ["not measured"] * 3
    res.rows = [
        _row(4096, "attnlab-fast", 100.0, peak=257.0), _row(4096, "attnlab-recorded", 131.0),
        _row(4096, "write-weights", 40.0), _row(4096, "attnlab-recorded-avg", 120.0, peak=565.0),
        *(_row(L, impl, ms) for L in (1024, 256)
          for impl, ms in (("attnlab-fast", 10.0), ("attnlab-recorded", 15.0), ("attnlab-recorded-avg", 14.0))),
    ]
    # B*L*S*4 bytes at B=4, L=S=4096: 256 MiB; limit 1.2 * 256 + 257 = 564 MiB
    targets = recording_targets(res)
    assert [t.status for t in targets] == ["FAIL", "FAIL", "PASS"]
    assert targets[0].detail == "1.31x (writing the weights alone, write-weights: 0.40x)"
    assert targets[1].detail == "565 MiB; limit 1.2 x 256 + 257 = 564 MiB"
    assert targets[2].detail == ("L=1024 recorded 1.50x, L=1024 recorded-avg 1.40x, L=256 recorded 1.50x, "
                                 "L=256 recorded-avg 1.40x")
    res.rows[1].ms, res.rows[3].peak_mib, res.rows[-2].ms = 130.0, 564.0, 15.1
    assert [t.status for t in recording_targets(res)] == ["PASS", "PASS", "FAIL"]
    assert evaluate_targets(res)[4:] == recording_targets(res)


def test_recorded_and_reference_helpers_run_their_paths(monkeypatch):
    """The recorded rows run the fused kernel and record; the reference row runs the textbook path."""
    import attnlab.nn.mha as mha_module

    torch.manual_seed(0)
    mha = MultiHeadAttention(16, 4).eval()
    x = torch.randn(2, 7, 16)
    calls = []
    real = mha_module.reference_attention
    monkeypatch.setattr(mha_module, "reference_attention", lambda *a: calls.append(1) or real(*a))
    with torch.no_grad():
        fast = mha(x, x, x)[0]
        for average in (False, True):
            torch.testing.assert_close(recorded(mha, x, average_heads=average), fast, atol=0, rtol=0)
        assert calls == []
        torch.testing.assert_close(reference(mha, x), fast, atol=1e-5, rtol=1e-5)
        assert calls == [1]
    per_head, averaged = IMPLS["attnlab-recorded"], IMPLS["attnlab-recorded-avg"]
    assert estimate_bytes(per_head, "fwd", 4, 8, 4096, 64, 4) - estimate_bytes(averaged, "fwd", 4, 8, 4096, 64, 4) \
        == 4 * 7 * 4096**2 * 4  # averaged weights: (B, L, L), not (B, H, L, L)


def test_cli_tiny_run_prints_table_and_writes_json(capsys, tmp_path):
    out_file = tmp_path / "bench.json"
    assert main(["bench", "attention", *TINY, "--modes", "fwd", "--json", str(out_file)]) == 0
    out = capsys.readouterr()
    assert "L=32  B=1  H=2  D=8  fwd" in out.out and "attnlab-fast" in out.out and "targets" in out.out
    assert "FLOPs: attention core forward = 4*B*H*L^2*D" in out.out
    assert f"[1/{len(IMPLS)}] L=32" in out.err.replace("[ ", "[")  # progress, one line per cell
    data = json.loads(out_file.read_text())
    assert [r["impl"] for r in data["rows"]] == list(IMPLS) and len(data["targets"]) == 7
    if peak_rss_supported():
        assert all(r["peak_mib"] is not None for r in data["rows"])


def test_options_build_the_config():
    parser, _ = benchmark_parser("attention")
    full = config_from_args(parser.parse_args([]))
    assert full.lengths == (256, 1024, 4096, 16384) and full.batch_for(4096) == 4 and full.batch_for(16384) == 1
    assert full.max_memory_gb is None and full.kvcache and full.impls == tuple(IMPLS)
    args = parser.parse_args(["--quick", "--lengths", "512, 64", "--impls", "core-sdpa,attnlab-fast,core-sdpa",
                              "--max-memory-gb", "0.5", "--no-kvcache"])
    cfg = config_from_args(args)
    assert cfg.lengths == (512, 64) and cfg.repeats == 3 and cfg.impls == ("core-sdpa", "attnlab-fast")
    assert cfg.max_memory_gb == 0.5 and not cfg.kvcache


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--lengths", "abc"], "--lengths must be an integer, got 'abc'"),
        (["--lengths", "64,0"], "--lengths must be at least 1"),
        (["--dtype", "fp64"], "--dtype must be one of fp32, bf16, got 'fp64'"),
        (["--impls", "attnlab-fast,flash"], "--impls: unknown 'flash'"),
        (["--modes", "bwd"], "--modes: unknown 'bwd'"),
        (["--max-memory-gb", "-1"], "--max-memory-gb must be positive"),
    ],
)
def test_cli_bad_input_exits_2_with_one_line(cli_error, args, message):
    assert message in cli_error(["bench", "attention", *args])


@pytest.mark.slow  # a fresh interpreter imports torch: seconds on a busy machine
def test_python_dash_m_bench_is_the_same_command():
    proc = subprocess.run([sys.executable, "-m", "attnlab.bench", "attention", "--dtype", "fp64"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr == "attnlab: error: --dtype must be one of fp32, bf16, got 'fp64'\n"
