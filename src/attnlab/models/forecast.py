"""Multivariate forecasters: a window of L steps of C channels in, the next H steps of all C channels out.

Every model maps standardised inputs x (B, L, C) to forecasts (B, H, C), forward only. Their configs
inherit :class:`ForecastSizes`, whose three sizes (L, H, C) the forecast experiment fills in from the
data; the user sets only the hyper-parameters.

============== =======================================================================================
``linear``     DLinear: moving-average trend + remainder, one Linear L → H for each (shared by channels)
``gru``        GRU over the C-dim steps, last hidden state → Linear → H·C
``lstm``       the same with an LSTM
``attentive    GRU whose final state attends over all its hidden states (attnlab ``Attention``), then
_rnn``         Linear on [state; context] → H·C
``transformer`` Linear C → d_model per step, sinusoidal positions, attnlab Encoder over the L steps,
               flatten (or mean-pool) → Linear → H·C
============== =======================================================================================

Attention models expose ``token_labels(timestamps)``: the labels of the tokens their layers attend over,
given the L input time stamps (time steps here; patch models return patch spans).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnlab.catalog.forecast import AttentiveRNNConfig, DLinearConfig, RNNConfig, TransformerConfig
from attnlab.models.rnn import check_score, make_score
from attnlab.nn.attention import Attention
from attnlab.nn.dropout import Dropout
from attnlab.nn.mha import check_heads
from attnlab.nn.positional import SinusoidalPositionalEncoding
from attnlab.nn.transformer import Encoder


class InstanceNorm(nn.Module):
    """Per-window, per-channel normalisation undone on the forecast (RevIN, Kim et al. 2022).

    ``normalize`` takes x (B, L, C) to (x − c) / σ, with σ (B, 1, C) the standard deviation over L and the
    centre c (B, 1, C) the mean over L (``center="mean"``) or the window's last value (``center="last"``,
    RevIN's ``subtract_last`` in PatchTST), and returns (c, σ) with it; ``denormalize`` takes a forecast
    (B, H, C) back with those statistics. ``affine`` (needs ``channels``) adds a learnable scale and shift
    per channel in between. Helps models that cannot follow level shifts between windows; stateless, so one
    module can serve any number of calls.
    """

    def __init__(self, channels: int | None = None, affine: bool = False, eps: float = 1e-5,
                 center: Literal["mean", "last"] = "mean") -> None:
        super().__init__()
        if affine and channels is None:
            raise ValueError("an affine InstanceNorm needs the number of channels")
        if center not in ("mean", "last"):
            raise ValueError(f"center={center!r} must be 'mean' or 'last'")
        self.eps = eps
        self.center = center
        self.weight = nn.Parameter(torch.ones(channels)) if affine else None
        self.bias = nn.Parameter(torch.zeros(channels)) if affine else None

    def normalize(self, x: Tensor) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        centre = x[:, -1:] if self.center == "last" else x.mean(dim=1, keepdim=True)  # (B, 1, C)
        std = torch.sqrt(x.var(dim=1, keepdim=True, unbiased=False) + self.eps)  # (B, 1, C)
        z = (x - centre) / std
        if self.weight is not None:
            z = z * self.weight + self.bias
        return z, (centre, std)

    def denormalize(self, y: Tensor, stats: tuple[Tensor, Tensor]) -> Tensor:
        centre, std = stats
        if self.weight is not None:
            y = (y - self.bias) / (self.weight + self.eps**2)  # eps² guards a zero scale (as RevIN)
        return y * std + centre


# ---------------------------------------------------------------------------------------------- DLinear


class MovingAverage(nn.Module):
    """Moving average over time with replicate padding at both ends, so the output has the input's length.

    With kernel k, each end is padded with ``(k − 1) // 2`` copies of its first / last value (an even
    k pads one more step at the end, so the length is kept). x (B, L, C) → (B, L, C).
    """

    def __init__(self, kernel_size: int) -> None:
        super().__init__()
        if kernel_size < 1:
            raise ValueError(f"moving-average kernel_size must be >= 1, got {kernel_size}")
        self.kernel_size = kernel_size

    def forward(self, x: Tensor) -> Tensor:
        front = (self.kernel_size - 1) // 2
        back = self.kernel_size - 1 - front
        padded = F.pad(x.transpose(1, 2), (front, back), mode="replicate")  # (B, C, L + k − 1)
        return F.avg_pool1d(padded, self.kernel_size, stride=1).transpose(1, 2)  # (B, L, C)


class DLinear(nn.Module):
    """DLinear (Zeng et al., 2023): series = trend (moving average) + seasonal remainder; each part goes
    through its own Linear map over time, L → H, and the forecast is their sum.

    Args:
        config: :class:`DLinearConfig`: the sizes L, H, C, ``kernel_size`` (the moving-average window, 25 in the
            paper) and ``individual`` (one pair of Linear maps per channel, DLinear-I, instead of one shared pair).

    Forward: x (B, L, C) → (B, H, C).
    """

    def __init__(self, config: DLinearConfig) -> None:
        super().__init__()
        seq_len, pred_len, n_channels = config.sizes()
        self.decompose = MovingAverage(config.kernel_size)
        self.individual = config.individual
        n = n_channels if config.individual else 1
        self.seasonal = nn.ModuleList(nn.Linear(seq_len, pred_len) for _ in range(n))
        self.trend = nn.ModuleList(nn.Linear(seq_len, pred_len) for _ in range(n))

    def forward(self, x: Tensor) -> Tensor:
        trend = self.decompose(x)  # (B, L, C)
        seasonal = (x - trend).transpose(1, 2)  # (B, C, L)
        trend = trend.transpose(1, 2)  # (B, C, L)
        if self.individual:
            out = torch.stack(
                [s(seasonal[:, c]) + t(trend[:, c]) for c, (s, t) in enumerate(zip(self.seasonal, self.trend,
                                                                                 strict=True))],
                dim=1,
            )  # (B, C, H)
        else:
            out = self.seasonal[0](seasonal) + self.trend[0](trend)  # (B, C, H)
        return out.transpose(1, 2)  # (B, H, C)


# ---------------------------------------------------------------------------------------------- RNNs


class RNNForecaster(nn.Module):
    """Sequence-to-vector RNN: encode the C channels of each step, read the last hidden state, and map it
    with one Linear layer to all H·C forecasts.

    Args:
        config: :class:`RNNConfig`: the sizes L, H, C, ``hidden_dim`` (state size), ``num_layers`` (stacked
            layers), ``dropout`` (between layers), ``instance_norm`` (normalise each window per channel, see
            :class:`InstanceNorm`).
        cell: ``"gru"`` or ``"lstm"``.

    Forward: x (B, L, C) → (B, H, C).
    """

    def __init__(self, config: RNNConfig, cell: Literal["gru", "lstm"] = "gru") -> None:
        super().__init__()
        rnn = {"gru": nn.GRU, "lstm": nn.LSTM}.get(cell)
        if rnn is None:
            raise ValueError(f"unknown cell {cell!r}; choose gru or lstm")
        seq_len, pred_len, n_channels = config.sizes()
        self.pred_len, self.n_channels = pred_len, n_channels
        self.norm = InstanceNorm() if config.instance_norm else None
        self.rnn = rnn(n_channels, config.hidden_dim, num_layers=config.num_layers, batch_first=True,
                       dropout=config.dropout if config.num_layers > 1 else 0.0)
        self.head = nn.Linear(config.hidden_dim, pred_len * n_channels)

    def forward(self, x: Tensor) -> Tensor:
        stats = None
        if self.norm is not None:
            x, stats = self.norm.normalize(x)  # (B, L, C)
        h, _ = self.rnn(x)  # (B, L, hidden)
        y = self.head(h[:, -1]).view(-1, self.pred_len, self.n_channels)  # (B, H·C) -> (B, H, C)
        return self.norm.denormalize(y, stats) if self.norm is not None else y


def forecast_gru(config: RNNConfig) -> RNNForecaster:
    """The GRU forecaster of ``config``."""
    return RNNForecaster(config, "gru")


def forecast_lstm(config: RNNConfig) -> RNNForecaster:
    """The LSTM forecaster of ``config``."""
    return RNNForecaster(config, "lstm")


class AttentiveRNNForecaster(nn.Module):
    """A GRU whose final state attends over all of its hidden states, then forecasts from both.

    ``context = Σ_t softmax_t(score(h_L, h_t)) · h_t`` over t = 1..L; the head maps ``[h_L; context]``
    to H·C values. The weights are recordable with :func:`attnlab.nn.record_attention` (layer
    ``"attention"``, (B, 1, L): one query, the final state, over the L steps).

    Args:
        config: :class:`AttentiveRNNConfig`: the sizes L, H, C, ``hidden_dim`` (GRU state size), ``num_layers``
            (stacked GRU layers), ``score`` (``general`` (Luong), ``scaled_dot`` or ``additive`` (Bahdanau)),
            ``dropout`` (between GRU layers and on the attention weights), ``instance_norm`` (normalise each
            window per channel).

    Forward: x (B, L, C) → (B, H, C).
    """

    def __init__(self, config: AttentiveRNNConfig) -> None:
        super().__init__()
        check_score(config.score)
        seq_len, pred_len, n_channels = config.sizes()
        hidden, dropout = config.hidden_dim, config.dropout
        self.pred_len, self.n_channels = pred_len, n_channels
        self.norm = InstanceNorm() if config.instance_norm else None
        self.gru = nn.GRU(n_channels, hidden, num_layers=config.num_layers, batch_first=True,
                          dropout=dropout if config.num_layers > 1 else 0.0)
        self.attention = Attention(make_score(config.score, hidden), dropout=dropout)
        self.head = nn.Linear(2 * hidden, pred_len * n_channels)

    def token_labels(self, timestamps: Sequence[str]) -> list[str]:
        """Keys are the L hidden states, one per input time stamp."""
        return list(timestamps)

    def query_labels(self, timestamps: Sequence[str]) -> list[str]:
        """The one query is the final state."""
        return [f"final state ({timestamps[-1]})"]

    def forward(self, x: Tensor) -> Tensor:
        stats = None
        if self.norm is not None:
            x, stats = self.norm.normalize(x)  # (B, L, C)
        h, _ = self.gru(x)  # (B, L, hidden)
        last = h[:, -1:]  # (B, 1, hidden)
        context, _ = self.attention(last, h, h)  # (B, 1, hidden)
        features = torch.cat([last, context], dim=-1).squeeze(1)  # (B, 2·hidden)
        y = self.head(features).view(-1, self.pred_len, self.n_channels)  # (B, H, C)
        return self.norm.denormalize(y, stats) if self.norm is not None else y


# ---------------------------------------------------------------------------------------------- Transformer


class TimeStepTransformer(nn.Module):
    """The vanilla Transformer forecaster: every time step is a token.

    Each step's C values are projected to d_model features, the sinusoidal encoding adds positions, an
    :class:`attnlab.nn.Encoder` lets every step attend to every other (layers
    ``encoder.layers.{i}.self_attn``, weights (B, heads, L, L)), and a head maps the encoded sequence to
    H·C values: ``flatten`` (Linear on all L·d_model features) or ``mean`` (Linear on the mean over steps).

    Args:
        config: :class:`TransformerConfig`: the sizes L, H, C, ``d_model`` (token width, divisible by
            ``num_heads``), ``num_heads``, ``num_layers`` (encoder blocks), ``d_ff`` (feed-forward width, default
            4·d_model), ``dropout`` (embeddings, residual and head), ``attn_dropout`` (the attention weights:
            none by default, which keeps training on the fused kernel), ``head`` (``flatten`` or ``mean``),
            ``instance_norm`` (normalise each window per channel).

    Forward: x (B, L, C) → (B, H, C).
    """

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        seq_len, pred_len, n_channels = config.sizes()
        d_model, dropout, head = config.d_model, config.dropout, config.head
        check_heads(d_model, config.num_heads)
        if head not in ("flatten", "mean"):
            raise ValueError(f"unknown head {head!r}; choose flatten or mean")
        self.pred_len, self.n_channels, self.head_kind = pred_len, n_channels, head
        self.norm = InstanceNorm() if config.instance_norm else None
        self.embed = nn.Linear(n_channels, d_model)
        self.positions = SinusoidalPositionalEncoding(d_model, max_len=seq_len, dropout=dropout)
        self.encoder = Encoder(config.num_layers, d_model, config.num_heads, config.d_ff, dropout,
                               attn_dropout=config.attn_dropout)
        self.dropout = Dropout(dropout)
        features = seq_len * d_model if head == "flatten" else d_model
        self.head = nn.Linear(features, pred_len * n_channels)

    def token_labels(self, timestamps: Sequence[str]) -> list[str]:
        """One token per input time step."""
        return list(timestamps)

    def forward(self, x: Tensor) -> Tensor:
        stats = None
        if self.norm is not None:
            x, stats = self.norm.normalize(x)  # (B, L, C)
        z = self.positions(self.embed(x))  # (B, L, d_model)
        z = self.encoder(z)  # (B, L, d_model)
        z = z.flatten(1) if self.head_kind == "flatten" else z.mean(dim=1)  # (B, L·d_model) or (B, d_model)
        y = self.head(self.dropout(z)).view(-1, self.pred_len, self.n_channels)  # (B, H, C)
        return self.norm.denormalize(y, stats) if self.norm is not None else y

