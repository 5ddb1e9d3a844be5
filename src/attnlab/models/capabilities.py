"""What a model can do beyond ``forward``, declared, so that tasks ask ``isinstance(model, Capability)`` and never
probe a model's attributes by name.

* :class:`ClosedFormFit` — maps solved from the training windows rather than learned by gradient descent;
* :class:`LabelsTokens` / :class:`LabelsQueries` — names for the keys and queries of its attention (patch spans,
  horizon steps) instead of one label per time step;
* :class:`PatchModel` — its tokens cover spans of the input (a figure draws each key over its span);
* :class:`PoolsWithAttention` — classifies by pooling with one learned query and can return that query's weights.

Forecasting models also declare, on their config class (:class:`~attnlab.catalog.forecast.ForecastSizes`), the
covariate kinds their ``forward`` accepts (``COVARIATES``) and whether they have quantile heads (``QUANTILES``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import ClassVar, Protocol, runtime_checkable

from torch import Tensor

# windows() -> batches of (inputs (B, L, C), targets (B, H, C)), iterated once per pass
Windows = Callable[[], Iterable[tuple[Tensor, Tensor]]]

__all__ = ["ClosedFormFit", "LabelsQueries", "LabelsTokens", "PatchModel", "PoolsWithAttention"]


@runtime_checkable
class ClosedFormFit(Protocol):
    """A model whose maps are solved, not trained: the forecasting task calls ``fit_closed_form`` once the model is
    built and before training starts."""

    def fit_closed_form(self, train: Windows, val: Windows, memory: Tensor | None = None) -> dict[str, float]:
        """Solve the maps on the training windows, choose settings on the validation windows; ``memory`` (R, C) is
        the training part of a single series (None for a panel). Returns the settings chosen, for the log."""
        ...


@runtime_checkable
class LabelsTokens(Protocol):
    """A model whose attention keys are not one per input step."""

    def token_labels(self, timestamps: Sequence[str]) -> list[str]:
        """One label per key, from the input window's L time stamps."""
        ...


@runtime_checkable
class LabelsQueries(Protocol):
    """A model whose attention queries are not its keys (e.g. one query per horizon step or output patch)."""

    def query_labels(self, timestamps: Sequence[str]) -> list[str]:
        """One label per query, from the input window's L time stamps."""
        ...


@runtime_checkable
class PatchModel(Protocol):
    """A model whose tokens are patches of the input."""

    def patch_spans(self) -> list[tuple[int, int]]:
        """``(start, stop)`` input steps of each patch, in token order."""
        ...


@runtime_checkable
class PoolsWithAttention(Protocol):
    """A classifier that pools a sequence with one learned query (class attribute ``pools_with_attention =
    True``): ``forward(X, need_weights=True)`` returns ``(logits, weights)`` with the pooling weights (B, L)."""

    pools_with_attention: ClassVar[bool]
