"""Recurrent sequence models: a GRU baseline and a GRU that attends over its own past hidden states.

Both map a (B, L, input_dim) series to one (B, L, output_dim) output per step and are causal:
the output at step t depends on inputs 0..t only, so right padding never changes valid outputs.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from attnlab.nn.attention import Attention
from attnlab.nn.masking import causal_mask, sequence_mask
from attnlab.nn.scoring import AdditiveScore, GeneralScore, ScaledDotScore

SCORES = ("general", "scaled_dot", "additive")


def check_score(score: str) -> None:
    """A ValueError naming the choices if ``score`` is not one of :data:`SCORES`."""
    if score not in SCORES:
        raise ValueError(f"unknown score {score!r}; choose one of {', '.join(SCORES)}")


def make_score(score: str, hidden_dim: int) -> nn.Module:
    """The scoring module of a hidden state attending over hidden states of the same size."""
    check_score(score)
    if score == "general":
        return GeneralScore(hidden_dim, hidden_dim)
    if score == "scaled_dot":
        return ScaledDotScore()
    return AdditiveScore(hidden_dim, hidden_dim, hidden_dim)


class GRURegressor(nn.Module):
    """GRU → Linear (→ optional activation) at every step.

    A building block: :class:`attnlab.models.sine.SineGRU` is the classic "GRU predicts the next value of a
    sine wave" network made of it (``nn.GRU(1, 4, num_layers=2) → nn.Linear(4, 1) → tanh``), and
    :class:`attnlab.models.count.GRUClassifier` reads its last step.

    Args:
        input_dim: features per step.
        hidden_dim: GRU state size.
        num_layers: stacked GRU layers.
        output_dim: outputs per step.
        output_activation: class applied to the head's output (``None`` = identity).
        dropout: dropout between GRU layers.

    Forward: x (B, L, input_dim); ``lengths`` (B,) is accepted for a uniform interface and not needed
    (the GRU is causal, so padding after a sequence's end cannot reach its valid steps)
    → (B, L, output_dim).
    """

    def __init__(self, input_dim: int, hidden_dim: int, num_layers: int, output_dim: int,
                 output_activation: type[nn.Module] | None = None, dropout: float = 0.0) -> None:
        super().__init__()
        self.gru = nn.GRU(input_dim, hidden_dim, num_layers=num_layers, batch_first=True,
                          dropout=dropout if num_layers > 1 else 0.0)
        self.head = nn.Linear(hidden_dim, output_dim)
        self.activation = nn.Identity() if output_activation is None else output_activation()

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        h, _ = self.gru(x)  # (B, L, hidden)
        return self.activation(self.head(h))  # (B, L, output_dim)


class AttentiveGRU(nn.Module):
    """A GRU whose step t attends over its own hidden states h_0..h_t, then predicts from [h_t; context_t].

    ``context_t = Σ_{s ≤ t} softmax_s(score(h_t, h_s)) · h_s``; the head is a Linear on the
    concatenation (the "RNN + attention" forecaster of the usual Q&A). Attention weights can be
    recorded with :func:`attnlab.nn.record_attention` (layer name ``"attention"``, (B, L, L)). A building block:
    :class:`attnlab.models.sine.SineAttentiveRNN` is the registry's model made of it.

    Args:
        input_dim: features per step.
        hidden_dim: GRU state size H.
        num_layers: stacked GRU layers.
        output_dim: outputs per step.
        score: ``general`` (Luong, hᵀ W h), ``scaled_dot`` or ``additive`` (Bahdanau, H hidden units).
        dropout: dropout between GRU layers and on the attention weights.

    Forward: x (B, L, input_dim); ``lengths`` (B,) valid steps (padding keys are masked; causal
    masking already keeps them away from valid steps) → (B, L, output_dim).
    """

    def __init__(self, input_dim: int, hidden_dim: int, num_layers: int, output_dim: int, score: str,
                 dropout: float = 0.0) -> None:
        super().__init__()
        check_score(score)
        self.gru = nn.GRU(input_dim, hidden_dim, num_layers=num_layers, batch_first=True,
                          dropout=dropout if num_layers > 1 else 0.0)
        self.attention = Attention(make_score(score, hidden_dim), dropout=dropout)
        self.head = nn.Linear(2 * hidden_dim, output_dim)

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        h, _ = self.gru(x)  # (B, L, H)
        L = h.shape[1]
        mask = causal_mask(L, device=h.device).unsqueeze(0)  # (1, L, L): step t sees 0..t
        if lengths is not None:
            mask = mask & sequence_mask(lengths.to(h.device), L).unsqueeze(1)  # (B, L, L)
        context, _ = self.attention(h, h, h, mask=mask)  # (B, L, H)
        return self.head(torch.cat([h, context], dim=-1))  # (B, L, 2H) -> (B, L, output_dim)

