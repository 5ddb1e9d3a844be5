"""The patch-based attention forecaster: PatchTST's recipe.

It is channel-independent: each of the C channels of a window is its own univariate series,
normalised by its own mean and standard deviation (instance normalisation, "RevIN"), cut into
overlapping patches that become the tokens of a Transformer encoder, and mapped to the horizon.

Shapes: input (B, L, C) standardised values → output (B, H, C).

With ``record_attention`` a patch model records (B·C, heads, P, P) per layer: one P × P map per channel
of every window, P = :func:`num_patches`. ``attention="mean"`` is its attention-free twin: each layer's
self-attention becomes the mean of the patches (:class:`attnlab.nn.TokenMean`), all else unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from attnlab.catalog.forecast import PatchTransformerConfig
from attnlab.models.forecast import InstanceNorm
from attnlab.nn.dropout import Dropout
from attnlab.nn.mha import check_heads
from attnlab.nn.transformer import Encoder


def num_patches(input_len: int, patch_len: int, stride: int) -> int:
    """Patches of a series of ``input_len`` after padding its end with ``stride`` copies of the last value."""
    return (input_len + stride - patch_len) // stride + 1


def patchify(x: Tensor, patch_len: int, stride: int) -> Tensor:
    """Cut series into overlapping patches: (N, L) → (N, P, patch_len), the end padded by repeating the
    last value ``stride`` times (as PatchTST), so the newest values get a patch of their own."""
    x = torch.cat([x, x[:, -1:].expand(-1, stride)], dim=1)  # (N, L + stride)
    return x.unfold(1, patch_len, stride)  # (N, P, patch_len)


class BatchNormTokens(nn.Module):
    """BatchNorm over the feature dimension of (B, T, D) tokens — PatchTST's choice over LayerNorm for
    time series, where statistics shared across windows are more stable than per-token ones."""

    def __init__(self, d_model: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm1d(d_model)

    def forward(self, x: Tensor) -> Tensor:
        return self.bn(x.transpose(1, 2)).transpose(1, 2)


class PatchTransformer(nn.Module):
    """PatchTST (Nie et al. 2023): patches as tokens, channel-independent, instance-normalised.

    Forward: x (B, L, C) → (B, H, C), or (B, H, C, Q) with quantile heads (``quantiles`` set: the median
    first, trained with the pinball loss by ``intervals=quantile``). The encoder's self-attention runs over the
    P patches of each channel; ``record_attention`` gives (B·C, heads, P, P) per layer.
    """

    def __init__(self, config: PatchTransformerConfig) -> None:
        super().__init__()
        c = config
        seq_len, pred_len, n_channels = c.sizes()
        check_heads(c.d_model, c.num_heads)
        if not 1 <= c.patch_len <= seq_len:
            raise ValueError(f"patch_len={c.patch_len} must be between 1 and the input length {seq_len}")
        if not 1 <= c.stride <= c.patch_len:
            raise ValueError(f"stride={c.stride} must be between 1 and patch_len={c.patch_len} (patches must cover "
                             "the series)")
        self.config = c
        self.seq_len = seq_len
        self.revin = InstanceNorm(n_channels, affine=c.affine, center=c.center)
        self.num_patches = num_patches(seq_len, c.patch_len, c.stride)
        self.embed = nn.Linear(c.patch_len, c.d_model)
        self.position = nn.Parameter(torch.empty(self.num_patches, c.d_model).uniform_(-0.02, 0.02))
        self.dropout = Dropout(c.dropout)
        norm_layer = {"batch": BatchNormTokens, "layer": nn.LayerNorm}[c.norm]
        self.encoder = Encoder(c.num_layers, c.d_model, c.num_heads, c.d_ff, c.dropout, norm_first=False,
                               norm_layer=norm_layer, attn_dropout=c.attn_dropout, attention=c.attention)
        self.n_q = max(1, len(c.quantiles))  # quantile heads: Q values per step, the median first
        self.head = nn.Sequential(nn.Flatten(1), Dropout(c.head_dropout),
                                  nn.Linear(self.num_patches * c.d_model, pred_len * self.n_q))

    def encode(self, z: Tensor) -> Tensor:
        """Normalised windows (B, L, C) → patch tokens (B·C, P, D) after the encoder."""
        b, length, ch = z.shape
        series = z.transpose(1, 2).reshape(b * ch, length)  # (B·C, L)
        patches = patchify(series, self.config.patch_len, self.config.stride)  # (B·C, P, patch_len)
        tokens = self.dropout(self.embed(patches) + self.position)  # (B·C, P, D)
        return self.encoder(tokens)  # (B·C, P, D)

    def forward(self, x: Tensor) -> Tensor:
        b, _, ch = x.shape
        z, stats = self.revin.normalize(x)  # (B, L, C)
        y = self.head(self.encode(z))  # (B·C, H·Q)
        y = y.reshape(b, ch, -1, self.n_q).permute(3, 0, 2, 1)  # (Q, B, H, C)
        y = self.revin.denormalize(y, stats).permute(1, 2, 3, 0)  # (B, H, C, Q)
        return y if self.config.quantiles else y[..., 0]

    def patch_spans(self) -> list[tuple[int, int]]:
        """The [start, end) input steps each patch covers. Patches that run into the end padding are cut at the
        last step; one made only of padding (stride = patch_len) covers the last step, whose copies it holds."""
        c, spans = self.config, []
        for i in range(self.num_patches):
            start = min(i * c.stride, self.seq_len - 1)
            spans.append((start, max(min(i * c.stride + c.patch_len, self.seq_len), start + 1)))
        return spans

    def token_labels(self, timestamps: Sequence[str]) -> list[str]:
        """One label per patch, "p<i> <first time>–<last time>", given the L input time stamps."""
        return [f"p{i} {timestamps[a]}–{timestamps[b - 1]}" for i, (a, b) in enumerate(self.patch_spans())]
