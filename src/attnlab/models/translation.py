"""Translation models (token ids in, next-token logits out), forward-only: no Lightning, no files.

=============  ====================================================================================
name           model
=============  ====================================================================================
``seq2seq``    GRU encoder–decoder (d2l 10.7): the decoder sees the encoder's final state as a fixed
               context at every step — no attention.
``bahdanau``   GRU decoder with additive attention over the encoder states (d2l 11.4): the previous
               decoder state queries the encoder states before each GRU step.
``luong``      GRU decoder with dot or general attention *after* the RNN step and the attentional
               hidden state ``h̃ = tanh(W_c [c; h])`` (Luong et al., 2015), optional input feeding.
``transformer``  pre-norm Transformer encoder–decoder (attnlab.nn Encoder/Decoder), sinusoidal
               positions, optionally tied decoder embeddings; KV cache at inference.
=============  ====================================================================================

Every model implements the same interface, :class:`Translator`:

* ``forward(src, src_lens, tgt_in) -> logits (B, T, V)`` — teacher-forced training;
* ``start(src, src_lens, use_cache=True) -> state`` — encode once;
* ``step(tokens (B,), state) -> (logits (B, V), state)`` — one decoding step;
* ``reorder(state, index) -> state`` — select / repeat batch rows (beam search).

so one decoder (:mod:`attnlab.decode`) does greedy and beam search for all of them. All attention layers
are :class:`attnlab.nn.Attention` or :class:`attnlab.nn.MultiHeadAttention` named ``cross_attn`` /
``self_attn``, so :func:`attnlab.nn.record_attention` records them.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from attnlab.catalog.translate import LuongConfig, RNNTranslatorConfig, TransformerTranslatorConfig
from attnlab.data.text import PAD_ID
from attnlab.nn import (
    AdditiveScore,
    Attention,
    Decoder,
    DotScore,
    Dropout,
    Encoder,
    GeneralScore,
    KVCache,
    SinusoidalPositionalEncoding,
    check_heads,
)

State = dict[str, Any]


def _check_vocab(src_vocab_size: int, tgt_vocab_size: int) -> None:
    if src_vocab_size < 5 or tgt_vocab_size < 5:
        raise ValueError(
            f"vocabulary sizes are not set (src_vocab_size={src_vocab_size}, tgt_vocab_size={tgt_vocab_size}); "
            "they come from the corpus: train with `attnlab translate fit --corpus FILE`"
        )


# ---------------------------------------------------------------------------------------------- interface


class Translator(nn.Module):
    """The interface every translation model implements (see the module docstring)."""

    tgt_vocab_size: int

    def forward(self, src: Tensor, src_lens: Tensor, tgt_in: Tensor) -> Tensor:
        """Teacher forcing: src (B, S), src_lens (B,), tgt_in (B, T) = ``<bos> y₁ …`` → logits (B, T, V)."""
        raise NotImplementedError

    def start(self, src: Tensor, src_lens: Tensor, use_cache: bool = True) -> State:
        """Encode src (B, S) once; the returned state feeds :meth:`step`."""
        raise NotImplementedError

    def step(self, tokens: Tensor, state: State) -> tuple[Tensor, State]:
        """Feed the previous tokens (B,) → next-token logits (B, V) and the new state."""
        raise NotImplementedError

    def reorder(self, state: State, index: Tensor) -> State:
        """Rows ``index`` (B',) of every batch-major tensor of ``state`` (beam search: repeat / pick beams)."""
        out = {}
        for key, value in state.items():
            if isinstance(value, Tensor):
                out[key] = value.index_select(1 if key == "hidden" else 0, index)
            else:
                out[key] = value
        return out


# ---------------------------------------------------------------------------------------------- GRU models


class GRUEncoder(nn.Module):
    """Embedding + multi-layer GRU over packed sequences (padding never enters the recurrence).

    Forward: src (B, S), src_lens (B,) → outputs (B, S, H) (zeros at padding) and the final hidden state
    of every layer (num_layers, B, H) taken at each sentence's last real token.
    """

    def __init__(self, vocab_size: int, embed_dim: int, hidden_dim: int, num_layers: int, dropout: float) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=PAD_ID)
        self.dropout = Dropout(dropout)
        self.rnn = nn.GRU(embed_dim, hidden_dim, num_layers, batch_first=True,
                          dropout=dropout if num_layers > 1 else 0.0)

    def forward(self, src: Tensor, src_lens: Tensor) -> tuple[Tensor, Tensor]:
        x = self.dropout(self.embedding(src))  # (B, S, E)
        packed = pack_padded_sequence(x, src_lens.cpu(), batch_first=True, enforce_sorted=False)
        outputs, hidden = self.rnn(packed)  # hidden (num_layers, B, H)
        outputs, _ = pad_packed_sequence(outputs, batch_first=True, total_length=src.shape[1])  # (B, S, H)
        return outputs, hidden


class Seq2Seq(Translator):
    """GRU encoder–decoder without attention (d2l): the decoder input at every step is the embedded previous
    token concatenated with the context c = the encoder's final top-layer state; the decoder GRU starts
    from the encoder's final states.

    Args:
        config: its sizes (:class:`~attnlab.catalog.translate.RNNTranslatorConfig`); the experiment fills
            the vocabulary sizes from the corpus.
    """

    def __init__(self, config: RNNTranslatorConfig) -> None:
        super().__init__()
        c = config
        _check_vocab(c.src_vocab_size, c.tgt_vocab_size)
        self.tgt_vocab_size = c.tgt_vocab_size
        self.encoder = GRUEncoder(c.src_vocab_size, c.embed_dim, c.hidden_dim, c.num_layers, c.dropout)
        self.embedding = nn.Embedding(c.tgt_vocab_size, c.embed_dim, padding_idx=PAD_ID)
        self.dropout = Dropout(c.dropout)
        self.rnn = nn.GRU(c.embed_dim + c.hidden_dim, c.hidden_dim, c.num_layers, batch_first=True,
                          dropout=c.dropout if c.num_layers > 1 else 0.0)
        self.head = nn.Linear(c.hidden_dim, c.tgt_vocab_size)

    def _decode(self, tokens: Tensor, hidden: Tensor, context: Tensor) -> tuple[Tensor, Tensor]:
        x = self.dropout(self.embedding(tokens))  # (B, T, E)
        x = torch.cat([x, context.unsqueeze(1).expand(-1, x.shape[1], -1)], dim=-1)  # (B, T, E + H)
        out, hidden = self.rnn(x, hidden)  # (B, T, H), (num_layers, B, H)
        return self.head(self.dropout(out)), hidden  # (B, T, V)

    def forward(self, src: Tensor, src_lens: Tensor, tgt_in: Tensor) -> Tensor:
        _, hidden = self.encoder(src, src_lens)  # (num_layers, B, H)
        return self._decode(tgt_in, hidden, hidden[-1])[0]  # (B, T, V)

    def start(self, src: Tensor, src_lens: Tensor, use_cache: bool = True) -> State:
        _, hidden = self.encoder(src, src_lens)
        return {"hidden": hidden, "context": hidden[-1]}

    def step(self, tokens: Tensor, state: State) -> tuple[Tensor, State]:
        logits, hidden = self._decode(tokens.unsqueeze(1), state["hidden"], state["context"])
        return logits[:, 0], {**state, "hidden": hidden}  # (B, V)


class Bahdanau(Translator):
    """GRU decoder with additive attention (d2l 11.4, Bahdanau et al. 2015).

    At step t the previous top-layer decoder state s_{t-1} queries the encoder states h_1..h_S:
    ``c_t = Σ_s softmax(wᵥᵀ tanh(W_q s_{t-1} + W_k h_s)) h_s``; the GRU reads ``[c_t; embed(y_{t-1})]``.
    Teacher-forced training runs the same step T times (the query depends on the previous step).

    Args:
        config: its sizes (:class:`~attnlab.catalog.translate.RNNTranslatorConfig`); the experiment fills
            the vocabulary sizes from the corpus.
    """

    def __init__(self, config: RNNTranslatorConfig) -> None:
        super().__init__()
        c = config
        _check_vocab(c.src_vocab_size, c.tgt_vocab_size)
        self.tgt_vocab_size = c.tgt_vocab_size
        self.encoder = GRUEncoder(c.src_vocab_size, c.embed_dim, c.hidden_dim, c.num_layers, c.dropout)
        self.cross_attn = Attention(AdditiveScore(c.hidden_dim, c.hidden_dim, c.hidden_dim))
        self.embedding = nn.Embedding(c.tgt_vocab_size, c.embed_dim, padding_idx=PAD_ID)
        self.dropout = Dropout(c.dropout)
        self.rnn = nn.GRU(c.embed_dim + c.hidden_dim, c.hidden_dim, c.num_layers, batch_first=True,
                          dropout=c.dropout if c.num_layers > 1 else 0.0)
        self.head = nn.Linear(c.hidden_dim, c.tgt_vocab_size)

    def start(self, src: Tensor, src_lens: Tensor, use_cache: bool = True) -> State:
        memory, hidden = self.encoder(src, src_lens)  # (B, S, H), (num_layers, B, H)
        return {"hidden": hidden, "memory": memory, "src_lens": src_lens}

    def _step_features(self, tokens: Tensor, state: State) -> tuple[Tensor, Tensor]:
        query = state["hidden"][-1].unsqueeze(1)  # (B, 1, H)
        context, _ = self.cross_attn(query, state["memory"], state["memory"], valid_lens=state["src_lens"])  # (B,1,H)
        x = torch.cat([context, self.dropout(self.embedding(tokens)).unsqueeze(1)], dim=-1)  # (B, 1, H + E)
        out, hidden = self.rnn(x, state["hidden"])  # (B, 1, H)
        return out[:, 0], hidden

    def step(self, tokens: Tensor, state: State) -> tuple[Tensor, State]:
        out, hidden = self._step_features(tokens, state)
        return self.head(self.dropout(out)), {**state, "hidden": hidden}  # (B, V)

    def forward(self, src: Tensor, src_lens: Tensor, tgt_in: Tensor) -> Tensor:
        state = self.start(src, src_lens)
        outs = []
        for t in range(tgt_in.shape[1]):
            out, state["hidden"] = self._step_features(tgt_in[:, t], state)
            outs.append(out)
        return self.head(self.dropout(torch.stack(outs, dim=1)))  # (B, T, V)


class Luong(Translator):
    """GRU decoder with Luong attention after the RNN step.

    ``h_t = GRU(embed(y_{t-1}) [; h̃_{t-1}], h_{t-1})``, ``c_t = attend(h_t, encoder states)`` with a dot or
    general score, ``h̃_t = tanh(W_c [c_t; h_t])``, ``logits = W_s h̃_t``. Without input feeding the GRU and the
    attention run over all target positions at once during training.

    Args:
        config: its sizes (:class:`~attnlab.catalog.translate.LuongConfig`); the experiment fills
            the vocabulary sizes from the corpus.
    """

    def __init__(self, config: LuongConfig) -> None:
        super().__init__()
        c = config
        _check_vocab(c.src_vocab_size, c.tgt_vocab_size)
        self.tgt_vocab_size = c.tgt_vocab_size
        self.input_feeding = c.input_feeding
        H = c.hidden_dim
        self.encoder = GRUEncoder(c.src_vocab_size, c.embed_dim, H, c.num_layers, c.dropout)
        self.cross_attn = Attention(DotScore() if c.score == "dot" else GeneralScore(H, H))
        self.embedding = nn.Embedding(c.tgt_vocab_size, c.embed_dim, padding_idx=PAD_ID)
        self.dropout = Dropout(c.dropout)
        self.rnn = nn.GRU(c.embed_dim + (H if c.input_feeding else 0), H, c.num_layers, batch_first=True,
                          dropout=c.dropout if c.num_layers > 1 else 0.0)
        self.combine = nn.Linear(2 * H, H, bias=False)  # W_c
        self.head = nn.Linear(H, c.tgt_vocab_size)  # W_s

    def _block(self, tokens: Tensor, state: State) -> tuple[Tensor, Tensor]:
        """tokens (B, T) → attentional states h̃ (B, T, H) and the GRU's last hidden state."""
        x = self.dropout(self.embedding(tokens))  # (B, T, E)
        if self.input_feeding:
            x = torch.cat([x, state["feed"].unsqueeze(1)], dim=-1)  # T == 1: (B, 1, E + H)
        out, hidden = self.rnn(x, state["hidden"])  # (B, T, H)
        context, _ = self.cross_attn(out, state["memory"], state["memory"], valid_lens=state["src_lens"])  # (B,T,H)
        attentional = torch.tanh(self.combine(torch.cat([context, out], dim=-1)))  # (B, T, H)
        return attentional, hidden

    def start(self, src: Tensor, src_lens: Tensor, use_cache: bool = True) -> State:
        memory, hidden = self.encoder(src, src_lens)
        state: State = {"hidden": hidden, "memory": memory, "src_lens": src_lens}
        if self.input_feeding:
            state["feed"] = memory.new_zeros(memory.shape[0], memory.shape[2])  # (B, H)
        return state

    def step(self, tokens: Tensor, state: State) -> tuple[Tensor, State]:
        attentional, hidden = self._block(tokens.unsqueeze(1), state)  # (B, 1, H)
        new = {**state, "hidden": hidden}
        if self.input_feeding:
            new["feed"] = attentional[:, 0]
        return self.head(self.dropout(attentional[:, 0])), new  # (B, V)

    def forward(self, src: Tensor, src_lens: Tensor, tgt_in: Tensor) -> Tensor:
        state = self.start(src, src_lens)
        if not self.input_feeding:
            attentional, _ = self._block(tgt_in, state)  # (B, T, H)
            return self.head(self.dropout(attentional))  # (B, T, V)
        outs = []
        for t in range(tgt_in.shape[1]):
            attentional, state["hidden"] = self._block(tgt_in[:, t : t + 1], state)
            state["feed"] = attentional[:, 0]
            outs.append(attentional[:, 0])
        return self.head(self.dropout(torch.stack(outs, dim=1)))  # (B, T, V)


# ---------------------------------------------------------------------------------------------- Transformer


def _reorder_cache(cache: KVCache, index: Tensor) -> KVCache:
    """A new cache holding rows ``index`` of ``cache`` (through KVCache's public keys/values/append)."""
    new = KVCache(static=cache.static)
    if cache.length:
        new.append(cache.keys.index_select(0, index), cache.values.index_select(0, index))  # type: ignore[union-attr]
    new.queries_seen = cache.queries_seen
    return new


class TransformerTranslator(Translator):
    """Pre-norm Transformer encoder–decoder (Vaswani et al.) on token ids.

    Embeddings are scaled by √D and get sinusoidal positions (source and target each from 0). The encoder
    ignores padded source positions (key padding mask); the decoder is causal and cross-attends to the
    non-padded encoder outputs. With ``use_cache`` in :meth:`start`, each :meth:`step` feeds one token and
    reuses the keys and values of earlier steps (and the projected memory); without it every step re-runs
    the whole prefix. Both give the same logits.

    Args:
        config: its sizes (:class:`~attnlab.catalog.translate.TransformerTranslatorConfig`); the experiment fills
            the vocabulary sizes from the corpus.
    """

    def __init__(self, config: TransformerTranslatorConfig) -> None:
        super().__init__()
        c = config
        _check_vocab(c.src_vocab_size, c.tgt_vocab_size)
        check_heads(c.d_model, c.num_heads)
        self.tgt_vocab_size = c.tgt_vocab_size
        self.scale = math.sqrt(c.d_model)
        self.src_embed = nn.Embedding(c.src_vocab_size, c.d_model, padding_idx=PAD_ID)
        self.tgt_embed = nn.Embedding(c.tgt_vocab_size, c.d_model, padding_idx=PAD_ID)
        for emb in (self.src_embed, self.tgt_embed):  # N(0, 1/D): unit-variance after the √D scale
            nn.init.normal_(emb.weight, std=c.d_model**-0.5)
            with torch.no_grad():
                emb.weight[PAD_ID].zero_()
        self.pos = SinusoidalPositionalEncoding(c.d_model, max_len=256, dropout=c.dropout)
        self.encoder = Encoder(c.num_layers, c.d_model, c.num_heads, c.d_ff, c.dropout, norm_first=True)
        self.decoder = Decoder(c.num_layers, c.d_model, c.num_heads, c.d_ff, c.dropout, norm_first=True)
        self.head = nn.Linear(c.d_model, c.tgt_vocab_size)
        if c.tie_embeddings:
            self.head.weight = self.tgt_embed.weight

    def _embed(self, embedding: nn.Embedding, ids: Tensor, offset: int = 0) -> Tensor:
        return self.pos(embedding(ids) * self.scale, offset=offset)  # (B, L, D)

    def encode(self, src: Tensor, src_lens: Tensor) -> tuple[Tensor, Tensor]:
        """src (B, S) → memory (B, S, D) and its key padding mask (B, S), True = padding."""
        pad = torch.arange(src.shape[1], device=src.device) >= src_lens.unsqueeze(1)  # (B, S)
        return self.encoder(self._embed(self.src_embed, src), key_padding_mask=pad), pad

    def forward(self, src: Tensor, src_lens: Tensor, tgt_in: Tensor) -> Tensor:
        memory, pad = self.encode(src, src_lens)  # (B, S, D)
        hidden = self.decoder(self._embed(self.tgt_embed, tgt_in), memory, memory_key_padding_mask=pad)  # (B, T, D)
        return self.head(hidden)  # (B, T, V)

    def start(self, src: Tensor, src_lens: Tensor, use_cache: bool = True) -> State:
        memory, pad = self.encode(src, src_lens)
        state: State = {"memory": memory, "pad": pad, "offset": 0}
        if use_cache:
            state["cache"] = self.decoder.new_cache()
        else:
            state["prefix"] = src.new_zeros(src.shape[0], 0)  # (B, 0): tokens fed so far
        return state

    def step(self, tokens: Tensor, state: State) -> tuple[Tensor, State]:
        offset = state["offset"]
        if "cache" in state:
            x = self._embed(self.tgt_embed, tokens.unsqueeze(1), offset=offset)  # (B, 1, D)
            hidden = self.decoder(x, state["memory"], memory_key_padding_mask=state["pad"], cache=state["cache"])
            new = {**state, "offset": offset + 1}
        else:
            prefix = torch.cat([state["prefix"], tokens.unsqueeze(1)], dim=1)  # (B, t + 1)
            hidden = self.decoder(self._embed(self.tgt_embed, prefix), state["memory"],
                                  memory_key_padding_mask=state["pad"])  # (B, t + 1, D)
            new = {**state, "prefix": prefix, "offset": offset + 1}
        return self.head(hidden[:, -1]), new  # (B, V)

    def reorder(self, state: State, index: Tensor) -> State:
        out = {**state, "memory": state["memory"].index_select(0, index), "pad": state["pad"].index_select(0, index)}
        if "cache" in state:
            out["cache"] = [(_reorder_cache(s, index), _reorder_cache(c, index)) for s, c in state["cache"]]
        else:
            out["prefix"] = state["prefix"].index_select(0, index)
        return out

