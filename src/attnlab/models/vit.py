"""A small Vision Transformer (Dosovitskiy et al.) for tiny images, and the MLP baseline it is compared with.

The image is cut into p×p patches (each read through a window that may overlap its neighbours), each
projected to d_model; a learned class token
is put in front, learned positions are added, pre-norm encoder blocks mix the tokens, and a linear
head classifies the class token's final state.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from attnlab.catalog.digits_vit import MLPConfig, ViTConfig
from attnlab.nn import Dropout, Encoder, LearnedPositionalEncoding, check_heads, record_attention


class PatchEmbedding(nn.Module):
    """Cut images into p×p patches and project each to D (a Conv2d with stride p).

    With ``overlap`` = 0 this is the ViT patch embedding: a linear map of each flattened,
    non-overlapping patch. With ``overlap`` = o each patch's window reaches o pixels into its
    neighbours (kernel p + 2o, zero padding o), the small convolutional stem that helps
    Transformers on small data sets (Hassani et al., 2021); the token grid is unchanged.

    Forward: images (B, C, H, W) → tokens (B, N, D), N = (H/p)·(W/p), patches in row-major order.
    """

    def __init__(self, image_size: int, patch_size: int, in_channels: int, d_model: int, overlap: int = 0) -> None:
        super().__init__()
        if patch_size <= 0 or image_size % patch_size:
            raise ValueError(
                f"patch_size={patch_size} must divide image_size={image_size}; "
                f"choose one of {[p for p in range(1, image_size + 1) if image_size % p == 0]}"
            )
        if overlap < 0:
            raise ValueError(f"patch overlap must be >= 0 pixels, got {overlap}")
        self.patch_size = patch_size
        self.grid_size = image_size // patch_size
        self.num_patches = self.grid_size**2
        self.proj = nn.Conv2d(in_channels, d_model, kernel_size=patch_size + 2 * overlap, stride=patch_size,
                              padding=overlap)

    def forward(self, images: Tensor) -> Tensor:
        tokens = self.proj(images)  # (B, D, H/p, W/p)
        return tokens.flatten(2).transpose(1, 2)  # (B, N, D)


class ViT(nn.Module):
    """Vision Transformer: patch embedding, class token, learned positions, pre-norm encoder, linear head.

    Args:
        config: its hyper-parameters (:class:`~attnlab.catalog.digits_vit.ViTConfig`); ``patch_size`` must divide
            ``image_size`` and ``num_heads`` must divide ``d_model`` (a ValueError says so).

    Forward: images (B, C, H, W) → logits (B, num_classes). Self-attention layers are
    ``encoder.layers.<i>.self_attn``; token 0 is the class token, tokens 1… the patches.
    """

    def __init__(self, config: ViTConfig) -> None:
        super().__init__()
        c = config
        check_heads(c.d_model, c.num_heads)
        self.patch_embed = PatchEmbedding(c.image_size, c.patch_size, c.in_channels, c.d_model, c.patch_overlap)
        self.cls_token = nn.Parameter(torch.randn(1, 1, c.d_model) * 0.02)
        self.pos = LearnedPositionalEncoding(c.d_model, max_len=self.patch_embed.num_patches + 1, dropout=c.dropout)
        self.encoder = Encoder(c.num_layers, c.d_model, c.num_heads, c.d_ff, c.dropout, norm_first=True)
        self.head = nn.Linear(c.d_model, c.num_classes)

    @property
    def grid_size(self) -> int:
        """Patches per side."""
        return self.patch_embed.grid_size

    def forward(self, images: Tensor) -> Tensor:
        tokens = self.patch_embed(images)  # (B, N, D)
        cls = self.cls_token.expand(tokens.shape[0], -1, -1)  # (B, 1, D)
        x = self.pos(torch.cat([cls, tokens], dim=1))  # (B, 1 + N, D)
        x = self.encoder(x)  # (B, 1 + N, D), final LayerNorm included (pre-norm)
        return self.head(x[:, 0])  # (B, classes)


def class_token_attention(model: ViT, images: Tensor, layer: int = -1) -> tuple[Tensor, Tensor]:
    """How much the class token attends to each patch.

    Args:
        model: a :class:`ViT`.
        images: (B, C, H, W).
        layer: which encoder block (default: the last).

    Returns:
        ``(logits, attention)``: logits (B, classes) and the class token's attention over the
        patches in that block, averaged over heads, as a (B, g, g) patch grid (its sum plus the
        class token's weight on itself is 1).
    """
    with torch.no_grad(), record_attention(model) as record:
        logits = model(images)
    index = range(len(model.encoder.layers))[layer]
    weights = record[f"encoder.layers.{index}.self_attn"][-1]  # (B, H, 1 + N, 1 + N)
    cls_row = weights[:, :, 0, 1:].mean(dim=1)  # (B, N): class token -> patches, mean over heads
    g = model.grid_size
    return logits, cls_row.reshape(-1, g, g)  # (B, g, g)


class MLPClassifier(nn.Module):
    """Fully connected baseline: flattened pixels → hidden layers (GELU, dropout) → logits.

    Args:
        config: its sizes (:class:`~attnlab.catalog.digits_vit.MLPConfig`).

    Forward: images (B, C, H, W) → logits (B, num_classes).
    """

    def __init__(self, config: MLPConfig) -> None:
        super().__init__()
        c = config
        layers: list[nn.Module] = [nn.Flatten()]
        width = c.in_channels * c.image_size**2
        for _ in range(c.num_layers):
            layers += [nn.Linear(width, c.hidden_dim), nn.GELU(), Dropout(c.dropout)]
            width = c.hidden_dim
        layers.append(nn.Linear(width, c.num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, images: Tensor) -> Tensor:
        return self.net(images)  # (B, classes)

