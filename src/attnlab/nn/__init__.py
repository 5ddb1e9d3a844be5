"""attnlab.nn: attention building blocks in plain PyTorch (no Lightning).

Masking and scores, fast dropout, attention pooling, multi-head attention with a fused fast path and weights on
request (formed from the fused kernel's log-sum-exp), a KV cache, positional encodings, Transformer blocks and
stacks, attention recording with filters, and one switch that forces the reference path everywhere.
"""

from attnlab.nn.attention import Attention
from attnlab.nn.dropout import Dropout, fast_dropout
from attnlab.nn.masking import causal_mask, masked_softmax, sequence_mask
from attnlab.nn.mha import KVCache, MultiHeadAttention, check_heads, reference_attention
from attnlab.nn.positional import (
    LearnedPositionalEncoding,
    RotaryEmbedding,
    SinusoidalPositionalEncoding,
    sinusoidal_table,
)
from attnlab.nn.record import AttentionRecord, record_attention
from attnlab.nn.scoring import KERNELS, AdditiveScore, DotScore, GeneralScore, KernelScore, ScaledDotScore
from attnlab.nn.switch import reference_attention_enabled, set_reference_attention, use_reference_attention
from attnlab.nn.transformer import Decoder, DecoderBlock, Encoder, EncoderBlock, FeedForward, TokenMean
from attnlab.nn.weights import TopKWeights

__all__ = [
    "KERNELS",
    "AdditiveScore",
    "Attention",
    "AttentionRecord",
    "Decoder",
    "DecoderBlock",
    "DotScore",
    "Dropout",
    "Encoder",
    "EncoderBlock",
    "FeedForward",
    "GeneralScore",
    "KVCache",
    "KernelScore",
    "LearnedPositionalEncoding",
    "MultiHeadAttention",
    "RotaryEmbedding",
    "ScaledDotScore",
    "SinusoidalPositionalEncoding",
    "TokenMean",
    "TopKWeights",
    "causal_mask",
    "check_heads",
    "fast_dropout",
    "masked_softmax",
    "record_attention",
    "reference_attention",
    "reference_attention_enabled",
    "sequence_mask",
    "set_reference_attention",
    "sinusoidal_table",
    "use_reference_attention",
]
