"""How cost grows with sequence length: one layer each of GRU, LSTM, convolution and self-attention.

The textbook table (d2l 11.6) compares, per layer on n tokens of size d: convolution O(k·n·d²), RNN
O(n·d²) with O(n) sequential steps, self-attention O(n²·d) with O(1) sequential steps. This benchmark
measures the same layers on one machine, for a range of lengths n, and fits the growth exponent p of
``time ≈ c·n^p`` (least-squares slope on log–log axes over the upper half of the lengths):

* ``gru`` / ``lstm``: ``torch.nn.GRU`` / ``torch.nn.LSTM`` (one layer, hidden size d, batch_first);
* ``conv``: ``torch.nn.Conv1d`` (d → d channels, kernel k, padding that keeps the length);
* ``attn-fused``: :class:`attnlab.nn.MultiHeadAttention` self-attention, ``need_weights=False``
  (fused scaled_dot_product_attention, never materialises the n×n weights);
* ``attn-ref``: the same layer on the reference path (:func:`attnlab.nn.use_reference_attention`),
  which materialises the (B, H, n, n) weights.

Each layer runs in its native layout: the RNNs and attention on (B, n, d), the convolution on a contiguous
(B, d, n), the layout a stack of convolutions keeps. (Feeding it (B, n, d) and transposing around it makes
oneDNN convert layouts on every call: memory-bound copies that doubled its time at L=8192, where each
activation is 16 MiB, in a probe on the project's machine.) Forward runs under ``torch.no_grad()``;
forward+backward back-propagates ``output.sum()`` to the input and the parameters. The cells (length ×
mode × layer) are measured in rounds, and each keeps its fastest round, so that a burst of other work on a
shared machine does not bend one curve. It reports the exponents, where attention becomes slower than the
GRU, peak memory, and PASS/FAIL against the textbook's exponents.

The process keeps the memory it frees (:func:`~attnlab.bench.measure.keep_freed_memory`, on by default;
``--no-keep-freed-memory`` turns it off). With glibc's defaults, every tensor over 32 MiB is unmapped when it is
freed and paged in again, zeroed by the kernel, on the next call; the reference path's (B, H, n, n) matrices
then spend most of their time in the kernel, and on a VM that hands freed memory back to its host the cost per
page grows with the memory cycled, which bent that curve above n². Timing the layer, not the OS, is what a
caching allocator (PyTorch's own on CUDA, jemalloc or tcmalloc on CPU) gives in training loops.
"""

# The parts: config (what to measure), layers (the layers under test and their cost models), measurement (timing
# the cells), fit (exponents and crossover), report (targets, text report, CSV), plot, command (the options).
from attnlab.bench.complexity.command import add_arguments, config_from_args, run
from attnlab.bench.complexity.config import LAYERS, ComplexityConfig
from attnlab.bench.complexity.fit import crossover, crossover_of, fit_exponent
from attnlab.bench.complexity.measurement import run_complexity_bench
from attnlab.bench.complexity.plot import write_plot
from attnlab.bench.complexity.report import evaluate_targets, format_report, write_csv
from attnlab.bench.complexity.result import Cell, ComplexityResult

__all__ = ["LAYERS", "Cell", "ComplexityConfig", "ComplexityResult", "add_arguments", "config_from_args", "crossover",
           "crossover_of", "evaluate_targets", "fit_exponent", "format_report", "run", "run_complexity_bench",
           "write_csv", "write_plot"]
