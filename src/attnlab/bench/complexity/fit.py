"""What the measured curves say: growth exponents fitted on log–log axes, and where attention overtakes the GRU."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from attnlab.bench.complexity.config import BASELINE
from attnlab.bench.complexity.result import ComplexityResult


@dataclass
class Crossover:
    """Where a slower-growing curve is overtaken: ``length`` (interpolated), or None with ``text`` saying why."""

    length: float | None
    text: str


def fit_exponent(lengths: Sequence[float], times: Sequence[float]) -> float | None:
    """Least-squares slope of log(time) on log(length): p in time ≈ c·length^p. None with < 2 points."""
    if len(lengths) != len(times):
        raise ValueError(f"{len(lengths)} lengths but {len(times)} times")
    if len(set(lengths)) < 2:
        return None
    if min(lengths) <= 0 or min(times) <= 0:
        raise ValueError("lengths and times must be positive to fit on log-log axes")
    return statistics.linear_regression([math.log(n) for n in lengths], [math.log(t) for t in times]).slope


def upper_half(lengths: Sequence[int]) -> list[int]:
    """The upper half of the sorted lengths (the median included for an odd count), at least two when
    there are two."""
    ordered = sorted(set(lengths))
    return ordered[min(len(ordered) // 2, max(0, len(ordered) - 2)):]


def fit_over(lengths: Sequence[int], times: Sequence[float], keep: Sequence[int]) -> tuple[float | None, int]:
    """:func:`fit_exponent` over the points whose length is in ``keep``; also the number of points."""
    pairs = [(n, t) for n, t in zip(lengths, times, strict=True) if n in set(keep)]
    return fit_exponent([n for n, _ in pairs], [t for _, t in pairs]), len(pairs)


def crossover(lengths: Sequence[int], slow_growing: Sequence[float], fast_growing: Sequence[float]) -> Crossover:
    """The length from which ``fast_growing`` (e.g. attention) takes longer than ``slow_growing`` (the GRU).

    Both are times at the same sorted ``lengths``. Between the last length where ``fast_growing`` is
    not slower and the next one, where it is, log(time ratio) is interpolated linearly in log(length)
    (exact for two power laws). If it is slower at every length, or at none, ``length`` is None.
    """
    if not lengths:
        return Crossover(None, "not measured")
    diff = [math.log(f / s) for s, f in zip(slow_growing, fast_growing, strict=True)]  # > 0: fast_growing slower
    if all(d > 0 for d in diff):
        return Crossover(None, f"slower at every measured length (from L={lengths[0]})")
    if diff[-1] <= 0:
        return Crossover(None, f"none in range (not slower up to L={lengths[-1]})")
    i = max(j for j in range(len(diff)) if diff[j] <= 0)  # the last length where it is not slower
    a, b = math.log(lengths[i]), math.log(lengths[i + 1])
    at = math.exp(a + (b - a) * (-diff[i]) / (diff[i + 1] - diff[i]))
    return Crossover(at, f"L ≈ {at:.0f} (between {lengths[i]} and {lengths[i + 1]})")


def crossover_of(result: ComplexityResult, layer: str, mode: str, baseline: str = BASELINE) -> Crossover:
    """:func:`crossover` of ``layer`` against ``baseline`` over the lengths where both were measured."""
    base = dict(zip(*result.curve(baseline, mode), strict=True))
    other = dict(zip(*result.curve(layer, mode), strict=True))
    common = sorted(set(base) & set(other))
    return crossover(common, [base[n] for n in common], [other[n] for n in common])


def exponents(result: ComplexityResult, layer: str, mode: str) -> tuple[tuple[float | None, int], ...]:
    """(exponent, points) over the upper half of the configured lengths, and over the top three."""
    lengths, ms = result.curve(layer, mode)
    configured = sorted(result.config.lengths)
    return fit_over(lengths, ms, upper_half(configured)), fit_over(lengths, ms, configured[-3:])
