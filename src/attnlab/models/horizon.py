"""Horizon attention: patches of the past as keys, patches of the future as queries, covariates on both.

A global, channel-independent forecaster for panels (the design of PatchTST's encoder with CATS-style horizon
queries, Lu et al. 2024):

* each channel's window is normalised by its own mean (or last value) and standard deviation (RevIN), and cut
  into patches of ``patch_len`` steps, aligned on the forecast origin (the first patch is padded with the
  window's first value);
* each input patch is a token: its values, its historical and future-known covariates, embedded to
  ``d_model``, plus a learned position and the series' static covariates;
* an encoder of self-attention layers mixes the input patches;
* one query per output patch (learned, plus the future-known covariates over that patch and the static
  covariates) attends to the encoded input patches (``decoder_layers`` of self- and cross-attention);
* each query becomes ``patch_len`` forecast steps (``Q`` quantiles each with quantile heads), plus a linear map
  of the normalised input (``linear_skip``), so the model starts from a linear forecaster and attention adds what
  the linear map cannot see.

``attention="mean"`` is the attention-free twin: the encoder keeps its feed-forward layers but no self-attention,
and each query reads the mean of the encoded patches instead of attending to them.

Shapes: x (B, L, C), hist (B, L, Ch), futr (B, L + H, Cf), static (B, Cs) → (B, H, C), or (B, H, C, Q) with
quantile heads. ``record_attention`` gives the encoder's (B·C, heads, P_in, P_in) and the decoder's
cross-attention (B·C, heads, P_out, P_in) per layer.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnlab.catalog.forecast import HorizonAttentionConfig
from attnlab.nn.dropout import Dropout
from attnlab.nn.mha import check_heads
from attnlab.nn.transformer import Decoder, Encoder, FeedForward


def patches(x: Tensor, patch_len: int) -> Tensor:
    """(N, T, K) steps → (N, ceil(T / P), P·K) patches aligned on the last step (the first padded with copies of
    the first step)."""
    n, t, k = x.shape
    pad = (-t) % patch_len
    if pad:
        x = torch.cat([x[:, :1].expand(n, pad, k), x], dim=1)  # (N, T + pad, K)
    return x.reshape(n, (t + pad) // patch_len, patch_len * k)  # (N, P_n, P·K)


class MeanMixer(nn.Module):
    """The attention-free twin of a transformer stack: residual feed-forward layers on each token alone, and
    (with a memory) the mean of the memory's tokens added to every token."""

    def __init__(self, num_layers: int, d_model: int, d_ff: int, dropout: float) -> None:
        super().__init__()
        self.norms = nn.ModuleList(nn.LayerNorm(d_model) for _ in range(num_layers))
        self.ffs = nn.ModuleList(FeedForward(d_model, d_ff, dropout) for _ in range(num_layers))
        self.dropout = Dropout(dropout)
        self.norm = nn.LayerNorm(d_model)

    def forward(self, x: Tensor, memory: Tensor | None = None) -> Tensor:
        for norm, ff in zip(self.norms, self.ffs, strict=True):
            if memory is not None:
                x = x + memory.mean(dim=1, keepdim=True)  # (N, T, D): every token reads the same summary
            x = x + self.dropout(ff(norm(x)))
        return self.norm(x)


class HorizonAttention(nn.Module):
    """Horizon-query attention forecaster (see the module docstring).

    Args:
        config: a filled :class:`attnlab.catalog.forecast.HorizonAttentionConfig` (the forecast experiment fills
            the sizes, covariate widths, season and quantiles from the data).
    """

    def __init__(self, config: HorizonAttentionConfig) -> None:
        super().__init__()
        c = config
        seq_len, pred_len, _ = c.sizes()
        check_heads(c.d_model, c.num_heads)
        p = c.patch_len or (c.season if c.season and 1 < c.season <= seq_len else 16)
        self.config, self.patch_len = c, min(p, seq_len)
        self.seq_len, self.pred_len = seq_len, pred_len
        self.n_in = math.ceil(seq_len / self.patch_len)
        self.n_out = math.ceil(pred_len / self.patch_len)
        self.n_q = max(1, len(c.quantiles))
        P = self.patch_len
        self.embed = nn.Linear(P * (1 + c.n_hist + c.n_futr), c.d_model)
        self.position = nn.Parameter(torch.empty(self.n_in, c.d_model).uniform_(-0.02, 0.02))
        self.queries = nn.Parameter(torch.empty(self.n_out, c.d_model).uniform_(-0.02, 0.02))
        self.future = nn.Linear(P * c.n_futr, c.d_model) if c.n_futr else None
        self.static = nn.Linear(c.n_static, c.d_model) if c.n_static else None
        self.dropout = Dropout(c.dropout)
        if c.attention == "full":
            self.encoder: nn.Module = Encoder(c.encoder_layers, c.d_model, c.num_heads, c.d_ff, c.dropout)
            self.decoder: nn.Module = Decoder(c.decoder_layers, c.d_model, c.num_heads, c.d_ff, c.dropout)
        else:
            self.encoder = MeanMixer(c.encoder_layers, c.d_model, c.d_ff, c.dropout)
            self.decoder = MeanMixer(c.decoder_layers, c.d_model, c.d_ff, c.dropout)
        self.head = nn.Linear(c.d_model, P * self.n_q)
        self.skip = nn.Linear(seq_len, pred_len) if c.linear_skip else None

    def forward(self, x: Tensor, hist: Tensor | None = None, futr: Tensor | None = None,
                static: Tensor | None = None) -> Tensor:
        c, L, H, P = self.config, self.seq_len, self.pred_len, self.patch_len
        b, _, ch = x.shape
        z = x.transpose(1, 2).reshape(b * ch, L)  # (N, L), N = B·C: one row per channel
        centre = z[:, -1:] if c.center == "last" else z.mean(dim=1, keepdim=True)  # (N, 1)
        scale = z.std(dim=1, keepdim=True, unbiased=False).clamp_min(1e-5)  # (N, 1)
        zn = (z - centre) / scale  # (N, L)
        steps = [zn.unsqueeze(-1)]  # (N, L, 1 + Ch + Cf) per input step
        if c.n_hist:
            steps.append(_per_channel(hist, ch))  # (N, L, Ch)
        if c.n_futr:
            futr_n = _per_channel(futr, ch)  # (N, L + H, Cf)
            steps.append(futr_n[:, :L])
        tokens = self.embed(patches(torch.cat(steps, dim=-1), P)) + self.position  # (N, P_in, D)
        queries = self.queries.expand(b * ch, -1, -1)  # (N, P_out, D)
        if self.future is not None:
            ahead = futr_n[:, L:]
            ahead = F.pad(ahead, (0, 0, 0, self.n_out * P - H), mode="replicate") if self.n_out * P > H else ahead
            queries = queries + self.future(ahead.reshape(b * ch, self.n_out, P * c.n_futr))
        if self.static is not None:
            s = self.static(static.repeat_interleave(ch, dim=0)).unsqueeze(1)  # (N, 1, D)
            tokens, queries = tokens + s, queries + s
        memory = self.encoder(self.dropout(tokens))  # (N, P_in, D)
        if c.attention == "full":
            out = self.decoder(self.dropout(queries), memory, is_causal=False)  # (N, P_out, D)
        else:
            out = self.decoder(self.dropout(queries), memory)
        y = self.head(out).reshape(b * ch, self.n_out, P, self.n_q)  # (N, P_out, P, Q)
        y = y.reshape(b * ch, self.n_out * P, self.n_q)[:, :H]  # (N, H, Q)
        if self.skip is not None:
            y = y + self.skip(zn).unsqueeze(-1)  # the linear forecast under every quantile
        y = y * scale.unsqueeze(-1) + centre.unsqueeze(-1)  # (N, H, Q), back to the input's scale
        y = y.reshape(b, ch, H, self.n_q).permute(0, 2, 1, 3)  # (B, H, C, Q)
        return y if c.quantiles else y[..., 0]

    def token_labels(self, timestamps: Sequence[str]) -> list[str]:
        """One label per input patch: its first and last time stamp."""
        pad = (-self.seq_len) % self.patch_len
        labels = []
        for i in range(self.n_in):
            a = max(0, i * self.patch_len - pad)
            b = min(self.seq_len, (i + 1) * self.patch_len - pad)
            labels.append(f"p{i + 1} {timestamps[a]}–{timestamps[b - 1]}" if len(timestamps) == self.seq_len
                          else f"input patch {i + 1}")
        return labels

    def query_labels(self, timestamps: Sequence[str]) -> list[str]:
        """One label per output patch (the steps it forecasts)."""
        return [f"steps {i * self.patch_len + 1}–{min(self.pred_len, (i + 1) * self.patch_len)}"
                for i in range(self.n_out)]


def _per_channel(values: Tensor, channels: int) -> Tensor:
    """Covariates (B, T, K) repeated for each of the C channels: (B·C, T, K), rows in channel-major order per
    window like the targets."""
    return values.repeat_interleave(channels, dim=0)
