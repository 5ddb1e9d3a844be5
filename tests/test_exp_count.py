"""The ``count`` experiment ("more 2s than 4s"): data, models, the attention-mass metric, one short fit."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from attnlab import registry
from attnlab.catalog.count import AttentionPoolingConfig, CountGRUConfig, CountTransformerConfig
from attnlab.data.synthetic import make_count_batch
from attnlab.errors import UserError
from attnlab.experiments.count import (
    Count,
    attention_entropy,
    mass_on_digits,
    mean_mass_on_2_4,
    pooling_weights,
)
from attnlab.models.count import AttentionPoolingClassifier, GRUClassifier, TransformerClassifier

pytestmark = pytest.mark.usefixtures("torch_single_thread")


def test_make_count_batch_labels_equal_a_direct_count():
    X, y = make_count_batch(500, torch.Generator().manual_seed(0))
    assert X.shape == (500, 10) and X.dtype == torch.int64
    assert y.shape == (500, 1) and y.dtype == torch.float32
    assert X.min() >= 0 and X.max() <= 9
    for row, label in zip(X.tolist(), y[:, 0].tolist(), strict=True):
        assert label == float(row.count(2) > row.count(4))
    assert 0.3 < y.mean() < 0.45  # P(more 2s than 4s) ≈ 0.37 for uniform digits
    again, _ = make_count_batch(500, torch.Generator().manual_seed(0))
    assert torch.equal(X, again)


def test_mass_on_2_4_on_a_hand_made_pattern():
    X = torch.tensor([
        [2, 1, 4, 0],  # 2 at 0, 4 at 2
        [1, 1, 3, 0],  # no 2 or 4
        [4, 4, 9, 9],  # 4s at 0 and 1
    ])
    weights = torch.tensor([
        [0.5, 0.1, 0.3, 0.1],
        [0.25, 0.25, 0.25, 0.25],
        [0.1, 0.1, 0.4, 0.4],
    ])
    mass, holds = mass_on_digits(weights, X)
    torch.testing.assert_close(mass, torch.tensor([0.8, 0.0, 0.2]))
    assert holds.tolist() == [True, False, True]
    # Averaged over the rows holding a 2 or a 4 only: (0.8 + 0.2) / 2.
    assert mean_mass_on_2_4(weights, X).item() == pytest.approx(0.5)
    assert mean_mass_on_2_4(weights[1:2], X[1:2]).item() == 0.0  # nothing to look at


def test_attention_entropy():
    one_hot = F.one_hot(torch.tensor([3, 0]), 10).float()
    assert attention_entropy(one_hot).item() == pytest.approx(0.0, abs=1e-9)
    assert attention_entropy(torch.full((2, 10), 0.1)).item() == pytest.approx(math.log(10), rel=1e-6)


@pytest.mark.parametrize(("cls", "config"), [(AttentionPoolingClassifier, AttentionPoolingConfig),
                                             (TransformerClassifier, CountTransformerConfig)])
def test_attention_models_pool_their_values(cls, config):
    torch.manual_seed(0)
    model = cls(config()).eval()
    X, _ = make_count_batch(6, torch.Generator().manual_seed(1))
    with torch.no_grad():
        logits, weights = model(X, need_weights=True)
        values = model.values(X)  # (B, L)
    assert logits.shape == (6, 1) and weights.shape == values.shape == (6, 10)
    torch.testing.assert_close(weights.sum(-1), torch.ones(6))
    torch.testing.assert_close(model(X), logits)
    pooled = (weights * values).sum(-1, keepdim=True)  # (B, 1): what the classifier reads
    if cls is AttentionPoolingClassifier:
        torch.testing.assert_close(model.mlp(pooled), logits)
    else:
        torch.testing.assert_close(pooled + model.head.bias, logits)


def test_attention_pooling_has_the_exercise_sizes():
    model = AttentionPoolingClassifier(AttentionPoolingConfig())
    assert model.embedding.embedding_dim == 5 and model.W_K.out_features == 5 and model.W_V.out_features == 1
    assert [m.out_features for m in model.mlp if isinstance(m, torch.nn.Linear)] == [200, 1]


def test_a_model_that_looks_only_at_2s_and_4s_gets_full_mass():
    model = AttentionPoolingClassifier(AttentionPoolingConfig())
    with torch.no_grad():  # keys: digit 2 and 4 score 20, every other digit 0
        model.embedding.weight.zero_()
        model.embedding.weight[2, 0] = model.embedding.weight[4, 0] = 1.0
        model.W_K.weight.zero_()
        model.W_K.weight[0, 0] = 1.0
        model.query.zero_()
        model.query[0] = 20.0 * math.sqrt(5)
    X, _ = make_count_batch(200, torch.Generator().manual_seed(2))
    _, weights = pooling_weights(model, X)
    assert mean_mass_on_2_4(weights, X).item() > 0.999


def test_gru_classifier_and_pooling_weights_of_a_model_without_attention():
    model = GRUClassifier(CountGRUConfig())
    X, _ = make_count_batch(4, torch.Generator().manual_seed(3))
    logits, weights = pooling_weights(model, X)
    assert logits.shape == (4, 1) and weights is None


def test_evaluate_and_loss():
    torch.manual_seed(0)
    experiment = Count(Count.Config(entropy_weight=0.5))
    X, y = make_count_batch(32, torch.Generator().manual_seed(4))
    model = AttentionPoolingClassifier(AttentionPoolingConfig())
    metrics = experiment.evaluate(model, (X, y))
    assert set(metrics) == {"loss", "bce", "accuracy", "mass_on_2_4"}
    _, weights = model(X, need_weights=True)
    expected = metrics["bce"] + 0.5 * attention_entropy(weights)
    torch.testing.assert_close(metrics["loss"], expected)
    torch.testing.assert_close(experiment.loss(model, (X, y)), expected)
    assert experiment.loss(model, (X, y)).requires_grad
    gru_metrics = experiment.evaluate(GRUClassifier(CountGRUConfig()), (X, y))
    assert set(gru_metrics) == {"loss", "bce", "accuracy"} and gru_metrics["loss"] == gru_metrics["bce"]


def test_experiment_data_is_deterministic():
    experiment = Count(Count.Config(n_train=20, n_val=10, n_test=30))
    a, b = experiment.data(seed=5), experiment.data(seed=5)
    assert torch.equal(a.test.tensors[0], b.test.tensors[0]) and torch.equal(a.train.tensors[1], b.train.tensors[1])
    assert not torch.equal(a.test.tensors[0], experiment.data(seed=6).test.tensors[0])
    assert len(a.train) == 20 and len(a.val) == 10 and len(a.test) == 30


def test_transformer_heads_must_divide_d_model():
    from attnlab.train.weights import build_model

    _, spec = registry.get_model(Count, "transformer")
    with pytest.raises(UserError, match="not divisible by num_heads=3"):
        build_model(spec, CountTransformerConfig(d_model=32, num_heads=3))
    with pytest.raises(ValueError, match="entropy_weight"):
        Count.Config(entropy_weight=-1)


@pytest.mark.slow
@pytest.mark.parametrize("model", ["attention_pooling", "gru"])
def test_fit_end_to_end(tmp_path, model):
    from attnlab.train import fit

    overrides = ["n_train=256", "n_val=64", "n_test=64", "max_epochs=1", "figure_rows=4"]
    result = fit("count", model, overrides, run_dir=tmp_path / "run", progress=False)
    expected = {"loss", "bce", "accuracy"} | ({"mass_on_2_4"} if model == "attention_pooling" else set())
    assert set(result.metrics) == expected
    assert 0.0 <= result.metrics["accuracy"] <= 1.0
    names = [p.name for p in result.figures]
    assert names == (["count_attention.png"] if model == "attention_pooling" else ["count_loss.png"])
    assert all(p.is_file() and p.stat().st_size > 0 for p in result.figures)
