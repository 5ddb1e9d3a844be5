"""Attention benchmark: attnlab's multi-head attention against torch's and a naive one, on CPU.

For each sequence length L and mode (forward, forward+backward) it times self-attention
(query = key = value, one tensor) with:

* ``attnlab-fast``: :class:`attnlab.nn.MultiHeadAttention`, ``need_weights=False`` (fused SDPA);
* ``attnlab-recorded`` / ``attnlab-recorded-avg``: the same layer inside :func:`attnlab.nn.record_attention`,
  recording per-head weights (B, H, L, L) / head-averaged weights (B, L, L): the fused kernel's output, the
  weights formed from its log-sum-exp;
* ``attnlab-ref``: the same layer on the reference path (:func:`attnlab.nn.use_reference_attention`,
  ``need_weights=True``: ``softmax(q kᵀ/√d) v`` written out, materialises the weights);
* ``torch-noweights`` / ``torch-default``: ``torch.nn.MultiheadAttention`` with ``need_weights=False``
  and with its default ``need_weights=True``;
* ``naive-mha``: the same projections around a bmm-softmax-bmm core on (B·H, L, D) tensors;
* ``core-gemm``: the core's two batched matmuls alone (no scaling, no softmax): not attention, but the
  speed of the core's matrix products alone at these shapes;
* ``core-sdpa`` / ``core-naive``: the attention core alone, ``F.scaled_dot_product_attention`` on
  (B, H, L, D) and bmm-softmax-bmm on (B·H, L, D);
* ``write-weights`` (forward only): a fresh (B, H, L, L) buffer filled with one value: not attention, but
  what writing the per-head weights alone costs.

Each time is compared with a matrix product (``torch.mm`` of two N×N matrices) measured in the same
run, the machine's practical GEMM rate. A KV-cache decoding section times one token at a time.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import math
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnlab.bench.cli import choices, fmt, number, output_path
from attnlab.bench.measure import GIB, Target, available_memory_bytes, is_out_of_memory, peak_rss_supported, time_call
from attnlab.errors import UserError
from attnlab.nn import KVCache, MultiHeadAttention, record_attention, use_reference_attention

MODES = ("fwd", "fwdbwd")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
LONG_LENGTH = 16384  # from this length on, the batch is --long-batch (default 1)
KV_POSITIONS = (20, 200)  # decoding positions whose per-token times are compared


@dataclass(frozen=True)
class Impl:
    """An implementation under test.

    ``kind`` is ``"mha"`` (projections + core, input (B, L, E)), ``"core"`` (q, k, v given as
    (B, H, L, D)) or ``"memory"`` (no arithmetic). ``score_copies`` is how many (B, H, L, L) matrices
    ((B, L, L) if not ``per_head``) are alive at the peak, for (fwd, fwdbwd); 0 means a fused kernel that
    never materialises them.
    """

    name: str
    kind: str
    score_copies: tuple[int, int]
    baseline: str  # the implementation the ratio column compares against
    per_head: bool = True
    modes: tuple[str, ...] = ("fwd", "fwdbwd")

    def materialises(self, mode: str) -> bool:
        return self.score_copies[mode == "fwdbwd"] > 0


IMPLS = {
    impl.name: impl
    for impl in (
        Impl("attnlab-fast", "mha", (0, 0), "attnlab-fast"),
        Impl("attnlab-recorded", "mha", (1, 1), "attnlab-fast"),  # the weights; detached, so none for backward
        Impl("attnlab-recorded-avg", "mha", (1, 1), "attnlab-fast", per_head=False),
        Impl("attnlab-ref", "mha", (3, 6), "attnlab-fast"),
        Impl("torch-noweights", "mha", (1, 0), "attnlab-fast"),  # its inference fast path materialises
        Impl("torch-default", "mha", (2, 3), "attnlab-fast"),
        Impl("naive-mha", "mha", (2, 3), "attnlab-fast"),
        Impl("core-sdpa", "core", (0, 0), "core-sdpa"),
        Impl("core-naive", "core", (2, 3), "core-sdpa"),
        Impl("core-gemm", "core", (1, 2), "core-sdpa"),  # the two matmuls alone: a ceiling, not attention
        Impl("write-weights", "memory", (1, 1), "attnlab-fast", modes=("fwd",)),  # a floor for recording
    )
}
# Ratio summary: attnlab-fast (or core-sdpa) against each of these, per L and mode.
COMPARISONS = (
    ("attnlab-fast", "attnlab-recorded"),
    ("attnlab-fast", "attnlab-recorded-avg"),
    ("attnlab-fast", "torch-noweights"),
    ("attnlab-fast", "torch-default"),
    ("attnlab-fast", "attnlab-ref"),
    ("attnlab-fast", "naive-mha"),
    ("core-sdpa", "core-naive"),
)


@dataclass
class AttentionBenchConfig:
    """What to measure. Defaults are the issue's full run."""

    lengths: tuple[int, ...] = (256, 1024, 4096, 16384)
    batch: int = 4
    long_batch: int = 1  # batch for L >= LONG_LENGTH
    heads: int = 8
    head_dim: int = 64
    dtype: str = "fp32"
    modes: tuple[str, ...] = MODES
    impls: tuple[str, ...] = tuple(IMPLS)
    warmup: int = 1
    repeats: int = 10
    budget_s: float = 3.0  # per cell: stop repeating once measured runs add up to this
    max_memory_gb: float | None = None  # None: 70% of MemAvailable
    kvcache: bool = True
    kv_repeats: int = 7
    matmul_n: int = 2048
    seed: int = 0

    @property
    def embed_dim(self) -> int:
        return self.heads * self.head_dim

    def batch_for(self, length: int) -> int:
        return self.long_batch if length >= LONG_LENGTH else self.batch


@dataclass
class Row:
    """One cell of the table: an implementation at one length and mode."""

    length: int
    batch: int
    mode: str
    impl: str
    flops: float
    ms: float | None = None  # None when skipped or failed
    gflops: float | None = None
    x_matmul: float | None = None
    peak_mib: float | None = None
    repeats: int = 0  # measured samples
    calls_per_sample: int = 0
    estimate_gib: float = 0.0
    note: str = ""


@dataclass
class KVCacheResult:
    """Per-token decoding times (ms, median) with a KV cache, and the no-cache re-run of the prefix."""

    embed_dim: int
    heads: int
    ms_at: dict[int, float]
    ratio: float  # ms_at[200] / ms_at[20]
    nocache_position: int
    nocache_ms: float


@dataclass
class AttentionBenchResult:
    config: AttentionBenchConfig
    torch_version: str
    threads: int
    max_memory_gb: float
    peak_memory_supported: bool
    matmul_ms: float  # the faster of the two matmul measurements (start and end of the run)
    matmul_gflops: float
    matmul_gflops_runs: list[float] = field(default_factory=list)
    rows: list[Row] = field(default_factory=list)
    kvcache: KVCacheResult | None = None

    def row(self, length: int, mode: str, impl: str) -> Row | None:
        for r in self.rows:
            if (r.length, r.mode, r.impl) == (length, mode, impl):
                return r
        return None


# ---------------------------------------------------------------------------------------------- FLOPs, memory
def attention_flops(kind: str, batch: int, heads: int, length: int, head_dim: int, mode: str) -> float:
    """Core forward = 4·B·H·L²·D (q kᵀ and weights·v); MHA adds 8·B·L·E² (four E×E projections);
    forward+backward = 3 × forward; 0 for ``"memory"``."""
    if kind == "memory":
        return 0.0
    embed = heads * head_dim
    fwd = 4 * batch * heads * length**2 * head_dim
    if kind == "mha":
        fwd += 8 * batch * length * embed**2
    return float(fwd * (3 if mode == "fwdbwd" else 1))


def estimate_bytes(impl: Impl, mode: str, batch: int, heads: int, length: int, head_dim: int, itemsize: int) -> int:
    """Rough peak memory of one call: live (B, H, L, L) (or (B, L, L)) matrices plus (B, L, E)-sized activations."""
    scores = batch * (heads if impl.per_head else 1) * length**2 * itemsize
    activations = (12 if impl.kind == "mha" else 6) * batch * length * heads * head_dim * itemsize
    if mode == "fwdbwd":
        activations *= 2
    return impl.score_copies[mode == "fwdbwd"] * scores + activations


# ---------------------------------------------------------------------------------------------- implementations
def core_matmuls(q: Tensor, k: Tensor, v: Tensor, buffers: dict[str, Tensor] | None = None) -> Tensor:
    """The attention core's two batched matmuls, ``(q kᵀ) v``, with no scaling and no softmax: not attention,
    but what the core's matrix products alone cost at these shapes. q, k, v: (N, L, D) → (N, L, D).

    Without autograd, pass ``buffers`` (a dict, filled on the first call) to write into the same scores
    and output tensors every call: the time is then the products' alone, without the first touch of a
    fresh (N, L, L) allocation, which the operating system's page faults would add.
    """
    if buffers is None or torch.is_grad_enabled():
        return torch.bmm(torch.bmm(q, k.transpose(1, 2)), v)  # (N, L, L) scores in between
    n, length, _ = q.shape
    if "scores" not in buffers:
        buffers["scores"] = q.new_empty(n, length, k.shape[1])  # (N, L, L)
        buffers["out"] = q.new_empty(n, length, v.shape[-1])  # (N, L, D)
    torch.bmm(q, k.transpose(1, 2), out=buffers["scores"])
    return torch.bmm(buffers["scores"], v, out=buffers["out"])


def naive_attention(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """``softmax(q kᵀ / √D) v`` with two batched matmuls. q, k, v: (N, L, D) → (N, L, D)."""
    scores = torch.bmm(q * (1.0 / math.sqrt(q.shape[-1])), k.transpose(1, 2))  # (N, L, L)
    return torch.bmm(scores.softmax(dim=-1), v)  # (N, L, D)


def naive_mha(x: Tensor, in_proj: nn.Linear, out_proj: nn.Linear, num_heads: int) -> Tensor:
    """Self-attention with packed projections around :func:`naive_attention`. x: (B, L, E) → (B, L, E)."""
    B, L, E = x.shape
    D = E // num_heads
    q, k, v = in_proj(x).chunk(3, dim=-1)  # 3 × (B, L, E)

    def heads(t: Tensor) -> Tensor:
        return t.reshape(B, L, num_heads, D).transpose(1, 2).reshape(B * num_heads, L, D)  # (B·H, L, D)

    out = naive_attention(heads(q), heads(k), heads(v))  # (B·H, L, D)
    out = out.view(B, num_heads, L, D).transpose(1, 2).reshape(B, L, E)  # (B, L, E)
    return out_proj(out)


def recorded(mha: MultiHeadAttention, x: Tensor, average_heads: bool) -> Tensor:
    """Self-attention output (B, L, E) with the weights recorded (per head or averaged), then dropped."""
    with record_attention(mha, average_heads=average_heads):
        return mha(x, x, x)[0]


def reference(mha: MultiHeadAttention, x: Tensor) -> Tensor:
    """Self-attention output (B, L, E) on the reference path, which materialises the weights."""
    with use_reference_attention():
        return mha(x, x, x, need_weights=True)[0]


class _Subjects:
    """The modules and inputs of one (length, mode) cell, shared by every implementation."""

    def __init__(self, cfg: AttentionBenchConfig, length: int, mode: str, modules: tuple[nn.Module, nn.Module]):
        dtype = DTYPES[cfg.dtype]
        B, H, D = cfg.batch_for(length), cfg.heads, cfg.head_dim
        grad = mode == "fwdbwd"
        self.buffers: dict[str, Tensor] = {}  # core-gemm's reused outputs (forward only)
        self.torch_mha, self.attnlab_mha = modules
        for m in modules:
            m.train(grad)  # eval() for forward-only timing (lets torch take its inference fast path)
        self.x = torch.randn(B, length, H * D, dtype=dtype, requires_grad=grad)  # (B, L, E)
        self.q, self.k, self.v = (torch.randn(B, H, length, D, dtype=dtype, requires_grad=grad) for _ in range(3))
        self.leaves = [self.x, self.q, self.k, self.v, *modules[0].parameters(), *modules[1].parameters()]

    def forward(self, impl: str) -> Callable[[], Tensor]:
        x, q, k, v, tm, am = self.x, self.q, self.k, self.v, self.torch_mha, self.attnlab_mha
        H = am.num_heads
        return {
            "attnlab-fast": lambda: am(x, x, x, need_weights=False)[0],
            "attnlab-recorded": lambda: recorded(am, x, average_heads=False),
            "attnlab-recorded-avg": lambda: recorded(am, x, average_heads=True),
            "attnlab-ref": lambda: reference(am, x),
            "torch-noweights": lambda: tm(x, x, x, need_weights=False)[0],
            "torch-default": lambda: tm(x, x, x)[0],
            "naive-mha": lambda: naive_mha(x, am.in_proj, am.out_proj, H),
            "core-sdpa": lambda: F.scaled_dot_product_attention(q, k, v),
            "core-naive": lambda: naive_attention(*(t.flatten(0, 1) for t in (q, k, v))),  # (B·H, L, D)
            "core-gemm": lambda: core_matmuls(*(t.flatten(0, 1) for t in (q, k, v)), self.buffers),  # (B·H, L, D)
            "write-weights": lambda: q.new_empty(*q.shape[:3], q.shape[2]).fill_(1.0),  # (B, H, L, L)
        }[impl]

    def step(self, impl: str, mode: str) -> Callable[[], None]:
        forward = self.forward(impl)
        if mode == "fwd":

            def run() -> None:
                with torch.no_grad():
                    forward()

        else:

            def run() -> None:
                for t in self.leaves:
                    t.grad = None
                forward().sum().backward()

        return run


# ---------------------------------------------------------------------------------------------- measurement
def measure_matmul(n: int, dtype: torch.dtype, warmup: int, repeats: int, budget_s: float) -> tuple[float, float]:
    """``torch.mm`` of two n×n matrices: (median ms, GFLOP/s at 2·n³ FLOPs)."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    timing = time_call(lambda: torch.mm(a, b), warmup=max(1, warmup), repeats=max(5, repeats),
                       budget_s=budget_s, measure_memory=False)
    return timing.median_s * 1e3, 2 * n**3 / timing.median_s / 1e9


def measure_kvcache(cfg: AttentionBenchConfig, window: int = 5) -> KVCacheResult:
    """Decode one token at a time with a :class:`KVCache` (B=1, ``is_causal=True``, no grad).

    The per-token time at position p is the median, over ``kv_repeats`` decodes, of the steps
    p - window//2 … p + window//2 (token p attends to p + 1 keys). The last position is also timed
    without a cache, re-running the whole prefix.
    """
    torch.manual_seed(cfg.seed)
    dtype = DTYPES[cfg.dtype]
    mha = MultiHeadAttention(cfg.embed_dim, cfg.heads).to(dtype).eval()
    steps = max(KV_POSITIONS) + window // 2 + 1
    x = torch.randn(1, steps, cfg.embed_dim, dtype=dtype)  # (1, T, E)
    times: list[list[float]] = [[] for _ in range(steps)]
    with torch.no_grad():
        for rep in range(cfg.kv_repeats + 1):  # the first decode warms up
            cache = KVCache()
            gc.disable()
            for t in range(steps):
                token = x[:, t : t + 1]  # (1, 1, E)
                start = time.perf_counter()
                mha(token, token, token, is_causal=True, cache=cache)
                if rep:
                    times[t].append(time.perf_counter() - start)
            gc.enable()
        ms_at = {}
        for p in KV_POSITIONS:
            around = [s for t in range(p - window // 2, p + window // 2 + 1) for s in times[t]]
            ms_at[p] = statistics.median(around) * 1e3
        last = max(KV_POSITIONS)
        prefix = x[:, : last + 1]  # (1, last + 1, E)
        nocache = time_call(lambda: mha(prefix, prefix, prefix, is_causal=True), warmup=2,
                            repeats=5 * cfg.kv_repeats, budget_s=1.0, measure_memory=False)
    first = min(KV_POSITIONS)
    return KVCacheResult(cfg.embed_dim, cfg.heads, ms_at, ms_at[last] / ms_at[first], last, nocache.median_s * 1e3)


def run_attention_bench(
    cfg: AttentionBenchConfig, progress: Callable[[str], None] | None = None
) -> AttentionBenchResult:
    """Run every (length, mode, impl) cell of ``cfg``, then the KV-cache section; return all results."""
    say = progress or (lambda _msg: None)
    dtype = DTYPES[cfg.dtype]
    itemsize = torch.empty((), dtype=dtype).element_size()
    if cfg.max_memory_gb is not None:
        limit = cfg.max_memory_gb * GIB
    else:
        available = available_memory_bytes()
        limit = 0.7 * available if available else 8 * GIB
    memory = peak_rss_supported()

    def matmul() -> tuple[float, float]:
        say(f"matmul reference: torch.mm {cfg.matmul_n}x{cfg.matmul_n} {cfg.dtype}")
        return measure_matmul(cfg.matmul_n, dtype, cfg.warmup, cfg.repeats, cfg.budget_s)

    mm_start = matmul()
    result = AttentionBenchResult(cfg, torch.__version__, torch.get_num_threads(), limit / GIB, memory, *mm_start)

    torch.manual_seed(cfg.seed)
    torch_mha = nn.MultiheadAttention(cfg.embed_dim, cfg.heads, batch_first=True, dtype=dtype)
    modules = (torch_mha, MultiHeadAttention.from_torch(torch_mha))  # same weights
    # Call every implementation once at a small size first: a kernel's first call pays one-off costs
    # (thread pool start-up, kernel selection) that would otherwise land in the first measured cell.
    for mode in cfg.modes:
        warm = _Subjects(cfg, min(64, min(cfg.lengths)), mode, modules)
        for name in cfg.impls:
            if mode in IMPLS[name].modes:
                warm.step(name, mode)()
    del warm
    cells = [(L, m, i) for L in cfg.lengths for m in cfg.modes for i in cfg.impls if m in IMPLS[i].modes]
    subjects = None
    for n, (L, mode, name) in enumerate(cells, 1):
        impl, B = IMPLS[name], cfg.batch_for(L)
        if subjects is None or (subjects.x.shape[1], subjects.x.requires_grad) != (L, mode == "fwdbwd"):
            subjects = None  # free the previous cell's inputs first
            subjects = _Subjects(cfg, L, mode, modules)
        row = Row(L, B, mode, name, attention_flops(impl.kind, B, cfg.heads, L, cfg.head_dim, mode))
        estimate = estimate_bytes(impl, mode, B, cfg.heads, L, cfg.head_dim, itemsize)
        row.estimate_gib = estimate / GIB
        if impl.materialises(mode) and estimate > limit:
            row.note = f"skipped: needs ~{estimate / GIB:.1f} GiB (limit {limit / GIB:.1f} GiB)"
        else:
            try:
                timing = time_call(subjects.step(name, mode), cfg.warmup, cfg.repeats, cfg.budget_s, memory)
            except (RuntimeError, MemoryError) as err:
                if not is_out_of_memory(err):
                    raise
                row.note = "failed: out of memory"
            else:
                row.ms, row.peak_mib = timing.median_s * 1e3, timing.peak_mib
                row.repeats, row.calls_per_sample = timing.repeats, timing.inner
                row.gflops = row.flops / timing.median_s / 1e9 if row.flops else None
        result.rows.append(row)
        shown = f"{row.ms:.2f} ms ({row.repeats}x{row.calls_per_sample} calls)" if row.ms is not None else row.note
        say(f"[{n:>2}/{len(cells)}] L={L} B={B} {mode:<6} {name:<20} {shown}")
    del subjects
    if cfg.kvcache:
        say("KV-cache decoding")
        result.kvcache = measure_kvcache(cfg)
    # The machine's practical GEMM rate: the faster of a measurement before and one after the cells.
    mm_end = matmul()
    result.matmul_gflops_runs = [mm_start[1], mm_end[1]]
    result.matmul_ms, result.matmul_gflops = min(mm_start, mm_end)
    for row in result.rows:
        if row.gflops is not None:
            row.x_matmul = row.gflops / result.matmul_gflops
    return result


# ---------------------------------------------------------------------------------------------- targets, report
def speedup(result: AttentionBenchResult, length: int, mode: str, fast: str, other: str) -> float | None:
    """Time of ``other`` / time of ``fast`` (> 1: ``fast`` is faster); None if either was not timed."""
    a, b = result.row(length, mode, fast), result.row(length, mode, other)
    if a is None or b is None or a.ms is None or b.ms is None:
        return None
    return b.ms / a.ms


def evaluate_targets(result: AttentionBenchResult) -> list[Target]:
    """The benchmark's targets, each PASS, FAIL or not measured: the fused path's four, then
    :func:`recording_targets`."""
    targets = []
    s_nw = speedup(result, 4096, "fwd", "attnlab-fast", "torch-noweights")
    s_def = speedup(result, 4096, "fwd", "attnlab-fast", "torch-default")
    name = "attnlab fast fwd at L=4096: >= 1.0x torch need_weights=False and >= 2.5x torch default"
    if s_nw is None or s_def is None:
        targets.append(Target(name, "not measured", "L=4096 fwd with both torch variants was not run"))
    else:
        ok = s_nw >= 1.0 and s_def >= 2.5
        targets.append(Target(name, "PASS" if ok else "FAIL", f"{s_nw:.2f}x and {s_def:.2f}x"))

    core = result.row(1024, "fwd", "core-sdpa")
    name = "attention core fwd at L=1024: >= 0.8x matmul GFLOP/s"
    if core is None or core.x_matmul is None:
        targets.append(Target(name, "not measured", "L=1024 fwd core-sdpa was not run"))
    else:
        gemm = result.row(1024, "fwd", "core-gemm")
        ceiling = "" if gemm is None or gemm.x_matmul is None else \
            f"; its two matmuls alone, without softmax (core-gemm): {gemm.x_matmul:.2f}x"
        detail = f"{core.gflops:.1f} / {result.matmul_gflops:.1f} GFLOP/s = {core.x_matmul:.2f}x{ceiling}"
        targets.append(Target(name, "PASS" if core.x_matmul >= 0.8 else "FAIL", detail))

    fast = result.row(LONG_LENGTH, "fwd", "attnlab-fast")
    name = f"L={LONG_LENGTH} self-attention fwd (attnlab fast) peak memory < 2 GiB"
    if fast is None or fast.ms is None or fast.peak_mib is None:
        why = "peak RSS is not available here" if fast is not None and fast.ms is not None else "not run"
        targets.append(Target(name, "not measured", f"L={LONG_LENGTH} fwd attnlab-fast: {why}"))
    else:
        targets.append(Target(name, "PASS" if fast.peak_mib < 2048 else "FAIL",
                              f"{fast.peak_mib:.0f} MiB at B={fast.batch}"))

    kv = result.kvcache
    name = "KV-cache per-token time at position 200 <= 1.5x at position 20"
    if kv is None:
        targets.append(Target(name, "not measured", "KV-cache section was not run"))
    else:
        targets.append(Target(name, "PASS" if kv.ratio <= 1.5 else "FAIL",
                              f"{kv.ms_at[200]:.3f} ms / {kv.ms_at[20]:.3f} ms = {kv.ratio:.2f}x"))
    return targets + recording_targets(result)


def recording_targets(result: AttentionBenchResult) -> list[Target]:
    """Issue #27's targets for recorded weights: time against the fused forward, and the averaged weights' memory."""
    targets = []
    ratio = speedup(result, 4096, "fwd", "attnlab-fast", "attnlab-recorded")
    name = "attnlab recorded per-head weights fwd at L=4096: <= 1.3x attnlab fast"
    if ratio is None:
        targets.append(Target(name, "not measured", "L=4096 fwd attnlab-recorded and attnlab-fast were not both run"))
    else:
        floor = speedup(result, 4096, "fwd", "attnlab-fast", "write-weights")
        why = "" if floor is None else f" (writing the weights alone, write-weights: {floor:.2f}x)"
        targets.append(Target(name, "PASS" if ratio <= 1.3 else "FAIL", f"{ratio:.2f}x{why}"))

    avg, fast = result.row(4096, "fwd", "attnlab-recorded-avg"), result.row(4096, "fwd", "attnlab-fast")
    name = "attnlab recorded averaged weights fwd at L=4096: peak memory <= 1.2 x B*L*S*itemsize + attnlab fast's"
    if avg is None or fast is None or avg.peak_mib is None or fast.peak_mib is None:
        targets.append(Target(name, "not measured", "L=4096 fwd attnlab-recorded-avg and attnlab-fast peaks: "
                                                    "not both measured"))
    else:
        itemsize = torch.empty((), dtype=DTYPES[result.config.dtype]).element_size()
        averaged_mib = avg.batch * 4096 * 4096 * itemsize / 2**20
        limit = 1.2 * averaged_mib + fast.peak_mib
        targets.append(Target(name, "PASS" if avg.peak_mib <= limit else "FAIL",
                              f"{avg.peak_mib:.0f} MiB; limit 1.2 x {averaged_mib:.0f} + {fast.peak_mib:.0f} = "
                              f"{limit:.0f} MiB"))

    name = "attnlab recorded weights (per head, averaged) fwd at L=1024 and 256: <= 1.5x attnlab fast"
    cells = {(L, impl): speedup(result, L, "fwd", "attnlab-fast", impl)
             for L in (1024, 256) for impl in ("attnlab-recorded", "attnlab-recorded-avg")}
    if any(r is None for r in cells.values()):
        targets.append(Target(name, "not measured", "L=1024 and 256 fwd with attnlab-fast and both recorded "
                                                    "implementations were not all run"))
    else:
        detail = ", ".join(f"L={L} {impl.removeprefix('attnlab-')} {r:.2f}x" for (L, impl), r in cells.items())
        ok = all(r <= 1.5 for r in cells.values())  # type: ignore[operator]
        targets.append(Target(name, "PASS" if ok else "FAIL", detail))
    return targets


def format_report(result: AttentionBenchResult, targets: list[Target]) -> str:
    """The fixed-width tables, ratio summary, KV-cache section, targets and conventions, as text."""
    cfg = result.config
    mem_na = "n/a" if not result.peak_memory_supported else "-"
    out = [
        f"attnlab bench attention: torch {result.torch_version}, {result.threads} threads, {cfg.dtype}, CPU "
        f"({torch.backends.cpu.get_cpu_capability()})",
        f"matmul reference: torch.mm {cfg.matmul_n}x{cfg.matmul_n} {cfg.dtype}: {result.matmul_ms:.2f} ms = "
        f"{result.matmul_gflops:.1f} GFLOP/s (faster of start {result.matmul_gflops_runs[0]:.1f}, "
        f"end {result.matmul_gflops_runs[-1]:.1f})",
        f"memory limit for implementations that materialise weights: {result.max_memory_gb:.1f} GiB",
    ]
    for L in cfg.lengths:
        for mode in cfg.modes:
            rows = [r for r in result.rows if (r.length, r.mode) == (L, mode)]
            if not rows:
                continue
            out += ["", f"L={L}  B={rows[0].batch}  H={cfg.heads}  D={cfg.head_dim}  {mode}",
                    f"  {'impl':<22}{'ms':>10}{'GFLOP/s':>10}{'xmatmul':>9}{'peak MiB':>10}{'t/t_base':>10}  note"]
            for r in rows:
                base = result.row(L, mode, IMPLS[r.impl].baseline)
                ratio = r.ms / base.ms if r.ms is not None and base is not None and base.ms is not None else None
                peak = mem_na if r.ms is not None and r.peak_mib is None else "-"
                out.append(f"  {r.impl:<22}{fmt(r.ms, '.2f'):>10}{fmt(r.gflops, '.1f'):>10}"
                           f"{fmt(r.x_matmul, '.2f'):>9}{fmt(r.peak_mib, '.0f', peak):>10}"
                           f"{fmt(ratio, '.2f'):>10}  {r.note}".rstrip())

    out += ["", "speed-ups: time of the other / time of the first (> 1: the first is faster)"]
    widths = [max(19, len(other) + 5) for _, other in COMPARISONS]
    out.append(f"  {'':<15}" + "".join(f"{fast:>{w}}" for (fast, _), w in zip(COMPARISONS, widths, strict=True)))
    out.append(f"  {'L':>6}  {'mode':<7}"
               + "".join(f"{'vs ' + other:>{w}}" for (_, other), w in zip(COMPARISONS, widths, strict=True)))
    for L in cfg.lengths:
        for mode in cfg.modes:
            cells = [speedup(result, L, mode, fast, other) for fast, other in COMPARISONS]
            out.append(f"  {L:>6}  {mode:<7}" + "".join(f"{fmt(c, '.2f'):>{w}}"
                                                          for c, w in zip(cells, widths, strict=True)))

    kv = result.kvcache
    if kv is not None:
        out += ["", f"KV-cache decoding (E={kv.embed_dim}, H={kv.heads}, B=1, one token per step, no grad, "
                f"is_causal=True; median ms per token)"]
        out += [f"  position {p:>4}: {ms:.3f} ms" for p, ms in kv.ms_at.items()]
        out.append(f"  ratio {max(kv.ms_at)} / {min(kv.ms_at)}: {kv.ratio:.2f}x")
        out.append(f"  position {kv.nocache_position} without cache (re-run the {kv.nocache_position + 1}-token "
                   f"prefix): {kv.nocache_ms:.3f} ms = {kv.nocache_ms / kv.ms_at[kv.nocache_position]:.1f}x "
                   f"the cached step")

    out += ["", "targets"]
    out += [f"  {t.status:<12} {t.name}: {t.detail}" for t in targets]
    out += [
        "",
        "FLOPs: attention core forward = 4*B*H*L^2*D; MHA forward = core + 8*B*L*E^2 (4 projections); "
        "forward+backward = 3x forward.",
        "GFLOP/s = FLOPs / median time; xmatmul = GFLOP/s / matmul GFLOP/s (2*N^3 FLOPs). t/t_base: time over "
        "attnlab-fast (MHA rows, write-weights) or core-sdpa (core rows).",
        "peak MiB: peak RSS during the first measured run minus RSS before it (/proc/self/clear_refs + VmHWM"
        + ("" if result.peak_memory_supported else "; not available here, n/a") + ").",
        f"times: median of up to {cfg.repeats} samples after {cfg.warmup} warm-up call(s), fewer once they add up "
        f"to {cfg.budget_s:g} s per cell (a sample repeats calls under 20 ms); B={cfg.long_batch} for "
        f"L >= {LONG_LENGTH}; self-attention, query = key = value.",
    ]
    return "\n".join(out)


def result_to_json(result: AttentionBenchResult, targets: list[Target]) -> dict:
    data = dataclasses.asdict(result)
    data["targets"] = [dataclasses.asdict(t) for t in targets]
    return data


# ---------------------------------------------------------------------------------------------- command line
QUICK = {"lengths": (256, 1024), "repeats": 3, "warmup": 1, "budget_s": 1.0, "kv_repeats": 3}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``attnlab bench attention``. Values are checked in :func:`config_from_args`."""
    add = parser.add_argument
    add("--lengths", help="comma list of sequence lengths L (default 256,1024,4096,16384; --quick: 256,1024)")
    add("--batch", help="batch size B (default 4)")
    add("--long-batch", help=f"batch size for L >= {LONG_LENGTH} (default 1)")
    add("--heads", help="number of heads H (default 8)")
    add("--head-dim", help="features per head D (default 64, so E = H*D = 512)")
    add("--dtype", help="fp32 or bf16 (default fp32)")
    add("--threads", help="torch.set_num_threads (default: torch's choice)")
    add("--modes", help="comma list of fwd, fwdbwd (default both)")
    add("--impls", help=f"comma list of implementations (default all: {','.join(IMPLS)})")
    add("--repeats", help="measured runs per cell, at most (default 10; --quick: 3)")
    add("--warmup", help="warm-up runs per cell (default 1)")
    add("--max-memory-gb", help="skip implementations that materialise weights above this estimate "
                                "(default 70%% of MemAvailable)")
    add("--matmul-n", help="size N of the N×N matrices of the matmul reference (default 2048)")
    add("--json", metavar="FILE", help="also write all results to FILE as JSON")
    add("--no-kvcache", action="store_true", help="skip the KV-cache decoding section")
    add("--quick", action="store_true", help="L = 256, 1024 and few repeats (well under a minute)")


def config_from_args(args: argparse.Namespace) -> AttentionBenchConfig:
    """Build the config from parsed options, raising UserError on a bad value."""
    cfg = AttentionBenchConfig(**(QUICK if args.quick else {}))
    if args.lengths is not None:
        cfg.lengths = tuple(number("lengths", s, at_least=1) for s in args.lengths.split(","))  # type: ignore[misc]
    for opt in ("batch", "long_batch", "heads", "head_dim", "repeats", "matmul_n"):
        if getattr(args, opt) is not None:
            setattr(cfg, opt, number(opt.replace("_", "-"), getattr(args, opt), at_least=1))
    if args.warmup is not None:
        cfg.warmup = int(number("warmup", args.warmup, at_least=0))
    if args.dtype is not None:
        if args.dtype not in DTYPES:
            raise UserError(f"--dtype must be one of {', '.join(DTYPES)}, got {args.dtype!r}")
        cfg.dtype = args.dtype
    if args.modes is not None:
        cfg.modes = choices("modes", args.modes, MODES)
    if args.impls is not None:
        cfg.impls = choices("impls", args.impls, tuple(IMPLS))
    if args.max_memory_gb is not None:
        cfg.max_memory_gb = float(number("max-memory-gb", args.max_memory_gb, float))
    cfg.kvcache = not args.no_kvcache
    return cfg


def run(args: argparse.Namespace) -> int:
    """``attnlab bench attention``: measure, print the report, optionally write JSON."""
    cfg = config_from_args(args)
    if args.threads is not None:
        torch.set_num_threads(int(number("threads", args.threads, at_least=1)))
    json_path = output_path("json", args.json or None)
    result = run_attention_bench(cfg, progress=lambda msg: print(msg, file=sys.stderr, flush=True))
    targets = evaluate_targets(result)
    print(format_report(result, targets))
    if json_path is not None:
        json_path.write_text(json.dumps(result_to_json(result, targets), indent=2))
    return 0
