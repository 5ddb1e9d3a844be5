"""digits_vit: stratified splits, augmentation, ViT / MLP shapes, patch embedding, class-token attention."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from attnlab.catalog.digits_vit import MLPConfig, ViTConfig
from attnlab.data.digits import DigitImages, RandomAffine, digit_splits
from attnlab.errors import UserError
from attnlab.experiments.digits_vit import DigitsViT
from attnlab.models.vit import MLPClassifier, PatchEmbedding, ViT, class_token_attention

pytestmark = pytest.mark.usefixtures("torch_single_thread")

SMALL = ViTConfig(d_model=16, num_heads=2, num_layers=2, d_ff=32)


@pytest.fixture(scope="module")
def splits():
    return digit_splits(0.1, 0.2, seed=0)


# ---------------------------------------------------------------------------------------------- data


def test_split_sizes_and_no_overlap(splits):
    train, val, test = splits
    assert len(train) + len(val) + len(test) == 1797
    assert len(test) == 360 and len(val) == 180  # 20 % and 10 % of 1797, rounded up by scikit-learn
    ids = [set(s.indices.tolist()) for s in splits]
    assert not (ids[0] & ids[1]) and not (ids[0] & ids[2]) and not (ids[1] & ids[2])
    assert set().union(*ids) == set(range(1797))


def test_splits_are_stratified(splits):
    overall = np.bincount(torch.cat([s.labels for s in splits]).numpy(), minlength=10) / 1797
    for split in splits:
        share = np.bincount(split.labels.numpy(), minlength=10) / len(split)
        np.testing.assert_allclose(share, overall, atol=1.5 / len(split) + 1e-9)  # within one image per class


def test_images_match_scikit_learn_and_are_scaled(splits):
    from sklearn.datasets import load_digits

    digits = load_digits()
    test = splits[2]
    i = int(test.indices[7])
    image, label = test[7]
    assert image.shape == (1, 8, 8) and image.dtype == torch.float32
    np.testing.assert_allclose(image[0].numpy(), digits.images[i] / 16.0, rtol=1e-6)
    assert int(label) == digits.target[i]


def test_splits_are_deterministic_per_seed(splits):
    again = digit_splits(0.1, 0.2, seed=0)
    other = digit_splits(0.1, 0.2, seed=1)
    assert torch.equal(splits[2].indices, again[2].indices)
    assert not torch.equal(splits[2].indices, other[2].indices)


def test_only_training_images_are_augmented():
    train, val, test = digit_splits(0.1, 0.2, seed=0, augment=RandomAffine(10, 0.1, 0.5))
    assert val.augment is None and test.augment is None and train.augment is not None
    torch.manual_seed(0)
    batch = train.__getitems__([0, 1, 2])
    assert len(batch) == 3 and batch[0][0].shape == (1, 8, 8)
    assert not torch.allclose(torch.stack([b[0] for b in batch]), train.images[:3])
    assert [int(b[1]) for b in batch] == train.labels[:3].tolist()


def test_random_affine_identity_and_pure_shift():
    images = torch.rand(4, 1, 8, 8)
    assert not RandomAffine()  # all zero: no augmentation
    assert DigitImages(images, torch.zeros(4, dtype=torch.long), torch.arange(4), RandomAffine()).augment is None
    # No rotation or zoom and a zero shift: the image comes back unchanged.
    torch.testing.assert_close(RandomAffine(0.0, 0.0, 1e-9)(images), images, atol=1e-6, rtol=0)
    # A whole-pixel shift moves the content by one pixel and keeps the ink (away from the border).
    image = torch.zeros(1, 1, 8, 8)
    image[0, 0, 3, 4] = 1.0
    torch.manual_seed(0)
    shifted = RandomAffine(0.0, 0.0, 1.0)(image.repeat(64, 1, 1, 1))
    torch.testing.assert_close(shifted.sum((1, 2, 3)), torch.ones(64), atol=1e-5, rtol=0)


def test_bad_fractions_are_user_errors():
    with pytest.raises(UserError, match="val_fraction"):
        DigitsViT(DigitsViT.Config(val_fraction=0.5, test_fraction=0.6)).data(0)


# ---------------------------------------------------------------------------------------------- models


def test_vit_and_mlp_output_shapes():
    images = torch.rand(5, 1, 8, 8)
    assert ViT(SMALL)(images).shape == (5, 10)
    assert MLPClassifier(MLPConfig(hidden_dim=32))(images).shape == (5, 10)


def test_patch_embedding_without_overlap_is_a_linear_map_of_flattened_patches():
    torch.manual_seed(0)
    embed = PatchEmbedding(image_size=8, patch_size=2, in_channels=1, d_model=6, overlap=0)
    images = torch.rand(3, 1, 8, 8)
    tokens = embed(images)  # (B, 16, 6)
    assert tokens.shape == (3, 16, 6)
    weight, bias = embed.proj.weight.reshape(6, 4), embed.proj.bias  # (D, p·p)
    for row in range(4):
        for col in range(4):
            patch = images[:, 0, 2 * row : 2 * row + 2, 2 * col : 2 * col + 2].reshape(3, 4)  # (B, 4)
            torch.testing.assert_close(tokens[:, 4 * row + col], patch @ weight.T + bias)


def test_overlapping_patches_keep_the_grid():
    embed = PatchEmbedding(8, 2, 1, 6, overlap=1)
    assert embed.proj.kernel_size == (4, 4)
    assert embed(torch.rand(2, 1, 8, 8)).shape == (2, 16, 6)


def test_bad_sizes_are_value_errors():
    with pytest.raises(ValueError, match="not divisible by num_heads=3"):
        ViT(ViTConfig(d_model=16, num_heads=3))
    with pytest.raises(ValueError, match="patch_size=3 must divide image_size=8"):
        ViT(ViTConfig(patch_size=3))


def test_class_token_attention_shape_and_values():
    torch.manual_seed(0)
    model = ViT(SMALL).eval()
    images = torch.rand(3, 1, 8, 8)
    logits, attention = class_token_attention(model, images)
    assert logits.shape == (3, 10) and attention.shape == (3, 4, 4)
    assert (attention >= 0).all() and (attention.sum((1, 2)) <= 1 + 1e-6).all()
    with torch.no_grad():
        torch.testing.assert_close(logits, model(images), atol=1e-5, rtol=1e-5)
    # Layer 0 is different from the last layer.
    _, first = class_token_attention(model, images, layer=0)
    assert not torch.allclose(first, attention)


# ---------------------------------------------------------------------------------------------- end to end


@pytest.mark.slow
@pytest.mark.parametrize("model", ["vit", "mlp"])
def test_fit_end_to_end(tmp_path, model):
    from attnlab.train import fit

    overrides = ["max_epochs=1", "batch_size=128"]
    if model == "vit":
        overrides += ["d_model=16", "num_heads=2", "num_layers=1", "d_ff=32"]
    result = fit("digits_vit", model, overrides, run_dir=tmp_path / "run", progress=False)
    assert set(result.metrics) == {"loss", "accuracy"}
    assert 0.0 <= result.metrics["accuracy"] <= 1.0
    names = {p.name for p in result.figures}
    assert names == ({"digits_confusion.png", "digits_cls_attention.png"} if model == "vit"
                     else {"digits_confusion.png"})
    assert all(p.is_file() and p.stat().st_size > 0 for p in result.figures)
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert saved["test"]["accuracy"] == pytest.approx(result.metrics["accuracy"])
