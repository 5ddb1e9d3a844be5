"""Forecast accuracy, the way forecasting competitions and papers score it.

All functions take original-unit arrays of windows: ``truth`` and ``forecast`` (N, H, T) and the MASE scale of
each window's series (N, T), the mean absolute seasonal difference of its training values.

* **MASE** = mean |y − ŷ| / scale, per window, then averaged;
* **sMAPE** = 200 · mean |y − ŷ| / (|y| + |ŷ|) (0 where both are 0: where |y| + |ŷ| is below
  ``ZERO_TOL`` times the series' MASE scale, so that a zero read back from float32 as ±1e-8 is still 0/0);
* **OWA** = ½ (sMAPE / sMAPE_Naive2 + MASE / MASE_Naive2) of the averages (M4);
* **MSIS** (level 1 − a) = mean over steps of (U − L) + (2/a)(L − y)·[y < L] + (2/a)(y − U)·[y > U], over the
  same scale as MASE; **coverage** is the share of y inside [L, U].
"""

from __future__ import annotations

import numpy as np

# sMAPE's 0/0 = 0 holds where |y| + |ŷ| is below this fraction of the series' MASE scale: the training data are
# standardised in float32, so a true 0 (and a forecast of 0) comes back as about 1e-8 of the series' scale, and
# sMAPE, 200 for any forecast against an exact 0, would score the same forecast 0 or 200 by rounding.
ZERO_TOL = 1e-6


def smape_values(truth: np.ndarray, forecast: np.ndarray, scale: np.ndarray | float = 0.0) -> np.ndarray:
    """200 |y − ŷ| / (|y| + |ŷ|) of each value; 0 where both are 0, that is where |y| + |ŷ| <= ``ZERO_TOL`` ·
    ``scale`` (the MASE scale of each value's series, broadcast to ``truth``; 0: exact zeros only)."""
    denominator = np.abs(truth) + np.abs(forecast)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > ZERO_TOL * np.asarray(scale), 200 * np.abs(truth - forecast) / denominator,
                        0.0)


def point_scores(truth: np.ndarray, forecast: np.ndarray, scale: np.ndarray) -> dict[str, float]:
    """``mase``, ``smape``, ``mae_orig``, ``rmse_orig`` of (N, H, T) forecasts, averaged over windows (and
    channels), the M4 way: each window's score first, then their mean."""
    error = np.abs(forecast - truth)
    return {
        "mase": float((error / scale[:, None, :]).mean()),
        "smape": float(smape_values(truth, forecast, scale[:, None, :]).mean()),
        "mae_orig": float(error.mean()),
        "rmse_orig": float(np.sqrt((error ** 2).mean())),
    }


def interval_scores(truth: np.ndarray, lower: np.ndarray, upper: np.ndarray, level: float, scale: np.ndarray
                    ) -> dict[str, float]:
    """``coverage``, ``width`` (mean U − L, original units), ``width_scaled`` (over the MASE scale) and ``msis``
    of (N, H, T) intervals at ``level`` percent."""
    a = 1 - level / 100
    below, above = truth < lower, truth > upper
    penalty = (upper - lower) + (2 / a) * (lower - truth) * below + (2 / a) * (truth - upper) * above
    scaled = scale[:, None, :]
    return {
        "coverage": float(1 - (below | above).mean()),
        "width": float((upper - lower).mean()),
        "width_scaled": float(((upper - lower) / scaled).mean()),
        "msis": float((penalty / scaled).mean()),
    }


def owa(smape: float, mase: float, naive2_smape: float, naive2_mase: float) -> float:
    """The M4 competition's overall weighted average of sMAPE and MASE against Naive2's."""
    return 0.5 * (smape / naive2_smape + mase / naive2_mase)
