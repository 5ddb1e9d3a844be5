"""Decoding for every translation model through its step interface: greedy and beam search.

A model implements ``start(src, src_lens, use_cache) -> state``, ``step(tokens, state) -> (logits, state)``
and ``reorder(state, index) -> state`` (:class:`attnlab.models.translation.Translator`); nothing here
depends on which model it is.

Beam search keeps ``beam`` live hypotheses per sentence (batched: B·beam rows), finalises a hypothesis
when ``<eos>`` is among the best ``beam`` candidates of a step (as fairseq does), stops a sentence once it
has ``beam`` finished hypotheses, and ranks finished hypotheses by ``log p(y) / lp(y)`` with the GNMT
length penalty ``lp(y) = ((5 + |y|) / 6)^α`` (|y| counts ``<eos>``; α = 0: raw log-probability). With
``beam=1`` it returns exactly the greedy output.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from attnlab.data.text import BOS_ID, EOS_ID, PAD_ID


def length_penalty(length: int | Tensor, alpha: float) -> float | Tensor:
    """GNMT length penalty ``((5 + length) / 6) ** alpha``."""
    return ((5 + length) / 6) ** alpha


def _mask_logits(logits: Tensor, allow_eos: bool) -> Tensor:
    """Log-probabilities over the vocabulary with ``<pad>``/``<bos>`` (and ``<eos>`` if not allowed) excluded."""
    logits = logits.float().clone()
    logits[:, PAD_ID] = float("-inf")
    logits[:, BOS_ID] = float("-inf")
    if not allow_eos:
        logits[:, EOS_ID] = float("-inf")
    return torch.log_softmax(logits, dim=-1)  # (B, V)


def default_max_len(src_lens: Tensor) -> int:
    """Output length limit for a batch: twice the longest source plus 10 tokens."""
    return int(src_lens.max()) * 2 + 10


@torch.no_grad()
def greedy(model, src: Tensor, src_lens: Tensor, max_len: int | None = None, min_len: int = 0,
           use_cache: bool = True) -> list[list[int]]:
    """Greedy decoding of a batch.

    Args:
        model: a :class:`~attnlab.models.translation.Translator` (in eval mode).
        src: (B, S) source ids; src_lens: (B,).
        max_len: output tokens at most (default :func:`default_max_len`), ``<eos>`` included.
        min_len: forbid ``<eos>`` before this many tokens (``min_len = max_len`` forces the length; used to
            time decoding at a fixed length).
        use_cache: Transformer: KV cache (True) or re-run the whole prefix every step (False).

    Returns:
        B lists of token ids without ``<bos>``/``<eos>``.
    """
    max_len = default_max_len(src_lens) if max_len is None else max_len
    B = src.shape[0]
    state = model.start(src, src_lens, use_cache=use_cache)
    tokens = torch.full((B,), BOS_ID, dtype=torch.long, device=src.device)
    done = torch.zeros(B, dtype=torch.bool, device=src.device)
    out = []
    for t in range(max_len):
        logits, state = model.step(tokens, state)  # (B, V)
        tokens = _mask_logits(logits, allow_eos=t >= min_len).argmax(dim=-1)  # (B,)
        tokens = tokens.masked_fill(done, PAD_ID)
        out.append(tokens)
        done = done | (tokens == EOS_ID)
        if bool(done.all()):
            break
    ids = torch.stack(out, dim=1).tolist()  # (B, T)
    return [[i for i in row if i not in (EOS_ID, PAD_ID)] for row in ids]


@dataclass
class Hypothesis:
    """A finished beam hypothesis: token ids (no ``<eos>``), summed log-probability, normalised score."""

    tokens: list[int]
    logprob: float
    score: float


@torch.no_grad()
def beam_search(model, src: Tensor, src_lens: Tensor, beam: int = 4, alpha: float = 0.6,
                max_len: int | None = None) -> list[list[int]]:
    """Beam search of a batch; returns the best hypothesis of each sentence (ids without ``<bos>``/``<eos>``).

    See :func:`beam_search_hypotheses` for the arguments.
    """
    return [hyps[0].tokens for hyps in beam_search_hypotheses(model, src, src_lens, beam, alpha, max_len)]


@torch.no_grad()
def beam_search_hypotheses(model, src: Tensor, src_lens: Tensor, beam: int = 4, alpha: float = 0.6,
                           max_len: int | None = None) -> list[list[Hypothesis]]:
    """Batched beam search (see the module docstring).

    Args:
        model: a :class:`~attnlab.models.translation.Translator` (in eval mode).
        src: (B, S) source ids; src_lens: (B,).
        beam: hypotheses kept per sentence (≥ 1).
        alpha: length-penalty exponent (0 = rank by raw log-probability).
        max_len: output tokens at most, ``<eos>`` included (default :func:`default_max_len`); live
            hypotheses still open then are finalised as they are.

    Returns:
        Per sentence, its finished hypotheses, best first.
    """
    if beam < 1:
        raise ValueError(f"beam must be at least 1, got {beam}")
    max_len = default_max_len(src_lens) if max_len is None else max_len
    B, device = src.shape[0], src.device
    state = model.start(src, src_lens, use_cache=True)
    state = model.reorder(state, torch.arange(B, device=device).repeat_interleave(beam))  # B·beam rows
    scores = torch.full((B, beam), float("-inf"), device=device)
    scores[:, 0] = 0.0  # only the first copy of each sentence is live at the start
    tokens = torch.full((B * beam,), BOS_ID, dtype=torch.long, device=device)
    history = torch.zeros(B * beam, 0, dtype=torch.long, device=device)
    finished: list[list[Hypothesis]] = [[] for _ in range(B)]
    done = [False] * B
    for t in range(max_len):
        logits, state = model.step(tokens, state)  # (B·beam, V)
        logp = _mask_logits(logits, allow_eos=True)  # (B·beam, V)
        V = logp.shape[-1]
        candidates = (scores.view(-1, 1) + logp).view(B, beam * V)  # (B, beam·V)
        top_scores, top_index = candidates.topk(min(2 * beam, beam * V), dim=-1)  # (B, 2·beam)
        top_beam, top_token = top_index // V, top_index % V
        last = t == max_len - 1
        lp = length_penalty(t + 1, alpha)
        next_scores = torch.full((B, beam), float("-inf"), device=device)
        next_rows = torch.zeros(B, beam, dtype=torch.long, device=device)
        next_tokens = torch.full((B, beam), PAD_ID, dtype=torch.long, device=device)
        ts, tb, tt = top_scores.tolist(), top_beam.tolist(), top_token.tolist()
        for b in range(B):
            if done[b]:
                continue
            kept = 0
            for rank in range(len(ts[b])):
                score = ts[b][rank]
                if score == float("-inf"):
                    break
                row = b * beam + tb[b][rank]
                if tt[b][rank] == EOS_ID or last:
                    if rank < beam:  # <eos> counts only among the best `beam` candidates
                        seq = history[row].tolist() + ([] if tt[b][rank] == EOS_ID else [tt[b][rank]])
                        finished[b].append(Hypothesis(seq, score, score / lp))
                    continue
                if kept < beam:
                    next_scores[b, kept], next_rows[b, kept], next_tokens[b, kept] = score, row, tt[b][rank]
                    kept += 1
            if len(finished[b]) >= beam or last or kept == 0:
                done[b] = True
                next_scores[b] = float("-inf")
        if all(done):
            break
        rows = next_rows.view(-1)  # (B·beam,)
        state = model.reorder(state, rows)
        history = torch.cat([history.index_select(0, rows), next_tokens.view(-1, 1)], dim=1)  # (B·beam, t + 1)
        tokens = next_tokens.view(-1)
        scores = next_scores
    return [sorted(hyps, key=lambda h: h.score, reverse=True) for hyps in finished]


def translate_ids(model, src: Tensor, src_lens: Tensor, beam: int = 1, alpha: float = 0.6,
                  max_len: int | None = None, use_cache: bool = True) -> list[list[int]]:
    """Greedy (``beam == 1``) or beam search, whichever ``beam`` asks for."""
    if beam == 1:
        return greedy(model, src, src_lens, max_len=max_len, use_cache=use_cache)
    return beam_search(model, src, src_lens, beam=beam, alpha=alpha, max_len=max_len)


@dataclass
class AttentionTrace:
    """Greedy output of one sentence with the attention of every layer.

    Attributes:
        tokens: generated ids without ``<eos>``.
        steps: decoding steps taken (``len(tokens) + 1`` when ``<eos>`` was produced).
        attention: layer name -> (H, Q, K) weights (H = 1 for single-head layers). Cross-attention:
            (H, steps, S); decoder self-attention: (H, steps, steps) (lower triangular); encoder
            self-attention: (H, S, S).
    """

    tokens: list[int]
    steps: int
    attention: dict[str, Tensor]


@torch.no_grad()
def greedy_with_attention(model, src_ids: list[int], max_len: int | None = None) -> AttentionTrace:
    """Greedy-decode one encoded source (ids ending in ``<eos>``) with the KV cache, recording attention.

    Each decoding step records one query row per decoder layer; the rows are stacked into (steps, K)
    matrices (decoder self-attention rows are right-padded with zeros to a square).
    """
    from attnlab.nn import Attention, MultiHeadAttention, record_attention

    device = next(model.parameters()).device
    src = torch.tensor([src_ids], dtype=torch.long, device=device)  # (1, S)
    lens = torch.tensor([len(src_ids)], device=device)
    if not any(isinstance(m, (Attention, MultiHeadAttention)) for m in model.modules()):  # seq2seq: nothing to show
        tokens = greedy(model, src, lens, max_len=max_len, use_cache=True)[0]
        return AttentionTrace(tokens, len(tokens) + 1, {})
    with record_attention(model) as record:
        tokens = greedy(model, src, lens, max_len=max_len, use_cache=True)[0]
    decoder_calls = [len(calls) for name, calls in record.items() if not name.startswith("encoder")]
    steps = min([len(tokens) + 1, *decoder_calls])  # len(tokens) when max_len stopped it before <eos>
    attention: dict[str, Tensor] = {}
    for name, calls in record.items():
        calls = [w if w.dim() == 4 else w.unsqueeze(1) for w in calls]  # (1, H, Q, K)
        if name.startswith("encoder"):
            attention[name] = calls[0][0].float()  # (H, S, S)
            continue
        calls = calls[:steps]  # one call per decoding step; its last query row is the newest position
        width = max(w.shape[-1] for w in calls)
        rows = [torch.nn.functional.pad(w[0, :, -1], (0, width - w.shape[-1])) for w in calls]  # (H, K) each
        attention[name] = torch.stack(rows, dim=1).float()  # (H, steps, K)
    return AttentionTrace(tokens, steps, attention)
