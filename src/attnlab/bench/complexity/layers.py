"""The layers under test, built and called the way they are timed, and what one call costs in FLOPs and memory."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from attnlab.bench import attention as attention_bench
from attnlab.bench.complexity.config import ATTENTION, ComplexityConfig
from attnlab.bench.measure import GIB
from attnlab.nn import MultiHeadAttention, use_reference_attention


# ---------------------------------------------------------------------------------------------- cost models
def layer_flops(layer: str, mode: str, batch: int, length: int, d_model: int, kernel_size: int) -> float:
    """Forward FLOPs (a multiply-add is 2) of the matrix products: GRU 12·B·n·d² (3 gates, input and
    hidden weights), LSTM 16·B·n·d², convolution 2·k·B·n·d², self-attention 8·B·n·d² (4 projections)
    + 4·B·n²·d (q kᵀ and weights·v). Forward+backward = 3 × forward."""
    B, n, d = batch, length, d_model
    fwd = {
        "gru": 12 * B * n * d**2,
        "lstm": 16 * B * n * d**2,
        "conv": 2 * kernel_size * B * n * d**2,
        "attn-fused": 8 * B * n * d**2 + 4 * B * n**2 * d,
        "attn-ref": 8 * B * n * d**2 + 4 * B * n**2 * d,
    }[layer]
    return float(fwd * (3 if mode == "fwdbwd" else 1))


# (B, n, d)-sized tensors alive at the peak of one call of the linear-cost layers: input, output and
# the per-step gate pre-activations (3 or 4 × d per step); forward+backward keeps them all plus grads.
_ACTIVATIONS = {"gru": (8, 24), "lstm": (10, 30), "conv": (4, 12)}


def estimate_bytes(layer: str, mode: str, batch: int, length: int, d_model: int, heads: int, itemsize: int) -> int:
    """Rough peak memory of one call; for attention, the (B, H, n, n) matrices the path materialises
    plus its activations (the same estimate as ``attnlab bench attention``)."""
    if layer in ATTENTION:
        impl = attention_bench.IMPLS["attnlab-fast" if layer == "attn-fused" else "attnlab-ref"]
        return attention_bench.estimate_bytes(impl, mode, batch, heads, length, d_model // heads, itemsize)
    return _ACTIVATIONS[layer][mode == "fwdbwd"] * batch * length * d_model * itemsize


def skip_reason(estimate: int, limit: float) -> str:
    """Why a cell is not run ("" if it fits): its estimated memory exceeds ``limit`` bytes."""
    if estimate <= limit:
        return ""
    return f"skipped: needs ~{estimate / GIB:.1f} GiB (limit {limit / GIB:.1f} GiB)"


# ---------------------------------------------------------------------------------------------- layers
CHANNELS_FIRST = frozenset({"conv"})  # layers timed on (B, d, n) inputs, their native layout


def build_layers(cfg: ComplexityConfig) -> tuple[nn.ModuleDict, dict[str, Callable[[Tensor], Tensor]]]:
    """The modules (on ``cfg.device``) and, per layer name, its forward: (B, n, d) → (B, n, d), or
    (B, d, n) → (B, d, n) for the layers in :data:`CHANNELS_FIRST`."""
    torch.manual_seed(cfg.seed)
    d = cfg.d_model
    modules = nn.ModuleDict({
        "gru": nn.GRU(d, d, batch_first=True),
        "lstm": nn.LSTM(d, d, batch_first=True),
        "conv": nn.Conv1d(d, d, cfg.kernel_size, padding=cfg.kernel_size // 2),  # odd k keeps the length
        "mha": MultiHeadAttention(d, cfg.num_heads),
    }).to(cfg.device)
    mha = modules["mha"]

    def reference(x: Tensor) -> Tensor:
        with use_reference_attention():
            return mha(x, x, x)[0]

    forwards = {
        "gru": lambda x: modules["gru"](x)[0],
        "lstm": lambda x: modules["lstm"](x)[0],
        "conv": modules["conv"],
        "attn-fused": lambda x: mha(x, x, x, need_weights=False)[0],
        "attn-ref": reference,
    }
    return modules, forwards


def make_step(forward: Callable[[Tensor], Tensor], x: Tensor, modules: nn.Module, mode: str,
              device: str) -> Callable[[], None]:
    """One timed call: the forward under no_grad, or forward + backward of ``output.sum()`` with fresh
    gradients (as after ``zero_grad(set_to_none=True)``). On CUDA it waits for the kernels to finish."""
    leaves = [x, *modules.parameters()]
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def run() -> None:
        if mode == "fwd":
            with torch.no_grad():
                forward(x)
        else:
            for t in leaves:
                t.grad = None
            forward(x).sum().backward()
        sync()

    return run
