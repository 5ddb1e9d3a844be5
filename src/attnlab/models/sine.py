"""Self-attention in place of a GRU for a series whose input dimension is 1.

The answer to "how do I replace my GRU with self-attention?": project each step's input to
``d_model`` features (heads split ``d_model``, never the 1-D input), add position information, and
let a stack of causal self-attention blocks look back over the past; a Linear head reads the
prediction at every step.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from attnlab.catalog.sine import AttentiveRNNConfig, SineGRUConfig, SineTransformerConfig
from attnlab.models.rnn import AttentiveGRU, GRURegressor
from attnlab.nn.masking import sequence_mask
from attnlab.nn.mha import check_heads
from attnlab.nn.positional import SinusoidalPositionalEncoding
from attnlab.nn.transformer import Encoder

POSITIONAL = ("rotary", "sinusoidal", "none")


class CausalWindowLinear(nn.Module):
    """A Linear map of each step's last ``window`` inputs to ``out_dim`` features (a causal Conv1d).

    ``window=1`` is the plain per-step ``nn.Linear(input_dim, out_dim)``. A window of a few steps
    hands each position its local shape (value, slope, curvature) precisely, which attention alone
    recovers only approximately. The features at step t use inputs t−window+1..t only; before the
    start the series is taken to hold its first value (replicate padding), so a linear
    extrapolation over the window is already a sensible guess at the first steps.

    Forward: x (B, L, input_dim) → (B, L, out_dim).
    """

    def __init__(self, input_dim: int, out_dim: int, window: int = 1) -> None:
        super().__init__()
        if window < 1:
            raise ValueError(f"input window must be >= 1 step, got {window}")
        self.window = window
        self.conv = nn.Conv1d(input_dim, out_dim, kernel_size=window)

    def forward(self, x: Tensor) -> Tensor:
        x = x.transpose(1, 2)  # (B, input_dim, L)
        if self.window > 1:
            x = F.pad(x, (self.window - 1, 0), mode="replicate")  # (B, input_dim, window − 1 + L)
        return self.conv(x).transpose(1, 2)  # (B, L, out_dim)


class CausalTransformer(nn.Module):
    """Next-step regressor: input projection → positions → causal self-attention encoder → Linear.

    A building block for any number of input features; :class:`SineTransformer` is the registry's model for a
    1-D series, built from its config.

    Args:
        input_dim: features per step (1 for a univariate series).
        output_dim: outputs per step.
        d_model: model width; must be divisible by ``num_heads``.
        num_heads: attention heads.
        num_layers: encoder blocks.
        d_ff: feed-forward hidden size (default 4·d_model).
        dropout: dropout in the encoder.
        positional: ``rotary`` (RoPE in every attention layer: scores depend on the offset t − s,
            which suits a stationary signal), ``sinusoidal`` (added to the input projection) or ``none``.
        input_window: steps seen by the input projection (1 = the per-step ``nn.Linear(input_dim, d_model)``).

    Forward: x (B, L, input_dim); ``lengths`` (B,) valid steps, padding after them is masked out of
    attention → (B, L, output_dim). Causal: output t depends on x[:, :t + 1] only. The attention
    layers are :class:`attnlab.nn.MultiHeadAttention` (``encoder.layers.{i}.self_attn``), so
    :func:`attnlab.nn.record_attention` shows their weights.
    """

    def __init__(self, input_dim: int, output_dim: int, d_model: int, num_heads: int, num_layers: int,
                 d_ff: int | None = None, dropout: float = 0.0, positional: str = "rotary",
                 input_window: int = 1) -> None:
        super().__init__()
        if positional not in POSITIONAL:
            raise ValueError(f"unknown positional encoding {positional!r}; choose one of {', '.join(POSITIONAL)}")
        check_heads(d_model, num_heads)
        self.input_proj = CausalWindowLinear(input_dim, d_model, input_window)
        self.positional = SinusoidalPositionalEncoding(d_model) if positional == "sinusoidal" else nn.Identity()
        self.encoder = Encoder(num_layers, d_model, num_heads, d_ff=d_ff, dropout=dropout,
                               rotary=positional == "rotary")
        self.head = nn.Linear(d_model, output_dim)

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        h = self.positional(self.input_proj(x))  # (B, L, D)
        padding = None if lengths is None else ~sequence_mask(lengths.to(x.device), x.shape[1])  # (B, L) True = pad
        h = self.encoder(h, key_padding_mask=padding, is_causal=True)  # (B, L, D)
        return self.head(h)  # (B, L, output_dim)


# ------------------------------------------------------------------------------------ the registry's models


class SineGRU(GRURegressor):
    """The classic GRU of the question, for a 1-D series: ``nn.GRU(1, hidden_dim, num_layers) → Linear(hidden_dim, 1)
    → tanh`` (the seed's network with the defaults: hidden size 4, 2 layers).

    Args:
        config: its sizes (:class:`~attnlab.catalog.sine.SineGRUConfig`).

    Forward: x (B, L, 1); ``lengths`` (B,) accepted and not needed (causal) → (B, L, 1), in (−1, 1).
    """

    def __init__(self, config: SineGRUConfig) -> None:
        super().__init__(1, config.hidden_dim, config.num_layers, 1, output_activation=nn.Tanh)


class SineTransformer(CausalTransformer):
    """A :class:`CausalTransformer` for a 1-D series: one input and one output per step.

    Args:
        config: its hyper-parameters (:class:`~attnlab.catalog.sine.SineTransformerConfig`).

    Forward: x (B, L, 1); ``lengths`` (B,) valid steps → (B, L, 1).
    """

    def __init__(self, config: SineTransformerConfig) -> None:
        c = config
        super().__init__(1, 1, c.d_model, c.num_heads, c.num_layers, c.d_ff, c.dropout, c.positional, c.input_window)


class SineAttentiveRNN(AttentiveGRU):
    """An :class:`~attnlab.models.rnn.AttentiveGRU` for a 1-D series: a GRU attending over its own past hidden
    states.

    Args:
        config: its sizes and score (:class:`~attnlab.catalog.sine.AttentiveRNNConfig`).

    Forward: x (B, L, 1); ``lengths`` (B,) valid steps → (B, L, 1).
    """

    def __init__(self, config: AttentiveRNNConfig) -> None:
        super().__init__(1, config.hidden_dim, config.num_layers, 1, config.score)
