"""squares: corner data, the four encoder–decoders, free-running evaluation, KV-cached generation, figures."""

from __future__ import annotations

import json
import math

import pytest
import torch

from attnlab.catalog.squares import MultiHeadSeq2SeqConfig, PointTransformerConfig, Seq2SeqConfig
from attnlab.data.squares import CLOCKWISE, CORNERS, make_squares, signed_area, square_splits
from attnlab.errors import UserError
from attnlab.experiments.squares import Squares, decoder_alphas
from attnlab.models.seq2seq_points import MultiHeadSeq2Seq, PointTransformer, Seq2Seq, Seq2SeqAttention

pytestmark = pytest.mark.usefixtures("torch_single_thread")

MODELS = {
    "seq2seq": lambda: Seq2Seq(Seq2SeqConfig(hidden_dim=8)),
    "seq2seq_attention": lambda: Seq2SeqAttention(Seq2SeqConfig(hidden_dim=8)),
    "seq2seq_multihead": lambda: MultiHeadSeq2Seq(MultiHeadSeq2SeqConfig(d_model=8, num_heads=2)),
    "transformer": lambda: PointTransformer(PointTransformerConfig(d_model=8, num_heads=2, num_layers=2, d_ff=16)),
}


# ---------------------------------------------------------------------------------------------- data


def test_clean_corners_form_a_square_in_the_stated_direction():
    points, clean, direction = make_squares(200, noise=0.1, generator=torch.Generator().manual_seed(0))
    assert points.shape == clean.shape == (200, 4, 2) and direction.shape == (200,)
    sides = (clean.roll(-1, dims=1) - clean).norm(dim=-1)  # (n, 4): the 4 sides, closing the loop
    torch.testing.assert_close(sides, torch.full_like(sides, 2.0))
    diagonals = torch.stack([(clean[:, 2] - clean[:, 0]).norm(dim=-1), (clean[:, 3] - clean[:, 1]).norm(dim=-1)])
    torch.testing.assert_close(diagonals, torch.full_like(diagonals, 2 * math.sqrt(2)))
    # Every corner is one of the 4 canonical corners, all 4 used once.
    assert all(sorted(map(tuple, sq.tolist())) == sorted(map(tuple, CORNERS.tolist())) for sq in clean)
    # Shoelace area: -4 for clockwise, +4 for counter-clockwise (x right, y up).
    area = signed_area(clean)
    torch.testing.assert_close(area, torch.where(direction == CLOCKWISE, -4.0, 4.0))
    assert 0 < direction.sum() < 200  # both directions occur
    noise = points - clean
    assert 0.08 < noise.std().item() < 0.12


def test_known_clockwise_order():
    # From (-1, -1), clockwise (x right, y up) goes up to (-1, 1) first.
    assert signed_area(CORNERS).item() == -4.0


def test_splits_are_deterministic_sized_and_source_precedes_target():
    train, val, test = square_splits(10, 4, 6, noise=0.1, seed=3)
    assert (len(train), len(val), len(test)) == (10, 4, 6)
    source, target, direction, clean = train.tensors
    assert source.shape == (10, 2, 2) and target.shape == (10, 2, 2) and clean.shape == (10, 2, 2)
    again = square_splits(10, 4, 6, noise=0.1, seed=3)[0]
    for a, b in zip(train.tensors, again.tensors, strict=True):
        assert torch.equal(a, b)
    other = square_splits(10, 4, 6, noise=0.1, seed=4)[0]
    assert not torch.equal(train.tensors[0], other.tensors[0])
    # Target noise is small: the clean corners are within a few std of the noisy ones.
    assert (target - clean).abs().max() < 0.6


def test_bad_data_options_are_user_errors():
    with pytest.raises(UserError, match="n_train"):
        Squares(Squares.Config(n_train=0)).data(0)


# ---------------------------------------------------------------------------------------------- models


@pytest.mark.parametrize("name", list(MODELS))
def test_output_shapes_train_and_eval(name):
    torch.manual_seed(0)
    model = MODELS[name]()
    source, target = torch.randn(5, 2, 2), torch.randn(5, 2, 2)
    model.train()
    assert model(source, target).shape == (5, 2, 2)
    model.eval()
    with torch.no_grad():
        assert model(source).shape == (5, 2, 2)  # default target_len
        assert model(source, steps=3).shape == (5, 3, 2)


@pytest.mark.parametrize("name", list(MODELS))
def test_teacher_forcing_is_off_at_eval(name):
    torch.manual_seed(0)
    model = MODELS[name]()
    if hasattr(model, "teacher_forcing"):
        model.teacher_forcing = 1.0
    source, target = torch.randn(4, 2, 2), torch.randn(4, 2, 2)
    model.eval()
    with torch.no_grad():
        free = model(source, steps=2)
        torch.testing.assert_close(model(source, target), free)
        torch.testing.assert_close(model(source, target + 100.0), free)
    # While training, the true previous point is fed: the second step depends on the target.
    model.train()
    with torch.no_grad():
        forced = model(source, target)
        shifted = model(source, target + 100.0)
    torch.testing.assert_close(forced[:, 0], shifted[:, 0])  # the first step sees only the source
    assert not torch.allclose(forced[:, 1], shifted[:, 1])


def test_teacher_forcing_zero_is_free_running_in_training():
    torch.manual_seed(0)
    model = Seq2SeqAttention(Seq2SeqConfig(hidden_dim=8, teacher_forcing=0.0)).train()
    source, target = torch.randn(3, 2, 2), torch.randn(3, 2, 2)
    with torch.no_grad():
        torch.testing.assert_close(model(source, target), model(source, steps=2))


def test_transformer_generation_with_kv_cache_equals_without():
    torch.manual_seed(0)
    model = MODELS["transformer"]().eval()
    assert isinstance(model, PointTransformer)
    source = torch.randn(6, 2, 2)
    with torch.no_grad():
        cached = model.generate(source, steps=5, use_cache=True)
        full = model.generate(source, steps=5, use_cache=False)
    assert cached.shape == (6, 5, 2)
    torch.testing.assert_close(cached, full, atol=1e-5, rtol=1e-5)


def test_transformer_teacher_forced_step_matches_generation_when_fed_its_own_points():
    # Parallel causal decoding on the model's own predictions reproduces free-running generation.
    torch.manual_seed(0)
    model = MODELS["transformer"]()
    source = torch.randn(3, 2, 2)
    with torch.no_grad():
        model.eval()
        generated = model.generate(source, steps=3)
        model.train()  # dropout is 0, so train mode only switches on the parallel path
        parallel = model(source, generated)
    torch.testing.assert_close(parallel, generated, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("factory", [
    lambda: MultiHeadSeq2Seq(MultiHeadSeq2SeqConfig(d_model=10, num_heads=4)),
    lambda: PointTransformer(PointTransformerConfig(d_model=10, num_heads=4)),
])
def test_heads_not_dividing_d_model_is_a_value_error(factory):
    with pytest.raises(ValueError, match="not divisible by num_heads=4"):
        factory()


@pytest.mark.parametrize("name", ["seq2seq_attention", "seq2seq_multihead", "transformer"])
def test_decoder_alphas_are_distributions_over_encoder_steps(name):
    torch.manual_seed(0)
    model = MODELS[name]().eval()
    source = torch.randn(5, 2, 2)
    prediction, alphas = decoder_alphas(model, source, steps=2)
    assert alphas is not None and alphas.shape == (5, 2, 2)  # (B, decoder step, encoder step)
    assert (alphas >= 0).all()
    torch.testing.assert_close(alphas.sum(-1), torch.ones(5, 2))
    with torch.no_grad():  # recording (reference path) does not change the prediction
        torch.testing.assert_close(prediction, model(source, steps=2), atol=1e-5, rtol=1e-5)


def test_decoder_alphas_read_the_attention_each_step_used():
    # The single-head model: recompute step 1's weights by hand from the decoder state.
    torch.manual_seed(0)
    model = MODELS["seq2seq_attention"]().eval()
    source = torch.randn(4, 2, 2)
    _, alphas = decoder_alphas(model, source, steps=1)
    with torch.no_grad():
        states, hidden = model.encoder(source)
        hidden = model.decoder(source[:, -1], hidden[0])  # (B, H)
        q = model.cross_attn.linear_query(hidden)  # (B, H)
        k = model.cross_attn.linear_key(states)  # (B, S, H)
        expected = torch.softmax((k @ q.unsqueeze(-1)).squeeze(-1) / math.sqrt(q.shape[-1]), dim=-1)  # (B, S)
    torch.testing.assert_close(alphas[:, 0], expected)


def test_plain_seq2seq_has_no_alphas():
    _, alphas = decoder_alphas(MODELS["seq2seq"]().eval(), torch.randn(2, 2, 2), steps=2)
    assert alphas is None


def test_evaluate_is_free_running_mse():
    torch.manual_seed(0)
    experiment = Squares(Squares.Config(n_train=8, n_val=4, n_test=4))
    model = MODELS["seq2seq"]().eval()
    batch = experiment.data(0).test.tensors
    with torch.no_grad():
        metrics = experiment.evaluate(model, batch)
        prediction = model(batch[0], steps=2)
    torch.testing.assert_close(metrics["mse"], ((prediction - batch[1]) ** 2).mean())
    torch.testing.assert_close(metrics["mse_clean"], ((prediction - batch[3]) ** 2).mean())
    assert metrics["loss"] is metrics["mse"]


# ---------------------------------------------------------------------------------------------- end to end


@pytest.mark.slow
@pytest.mark.parametrize("model", ["seq2seq", "transformer"])
def test_fit_end_to_end(tmp_path, model):
    from attnlab.train import fit

    result = fit("squares", model, ["max_epochs=1", "n_train=64", "n_val=16", "n_test=16", "batch_size=16"],
                 run_dir=tmp_path / "run", progress=False)
    assert set(result.metrics) == {"loss", "mse", "mse_clean"}
    assert all(math.isfinite(v) for v in result.metrics.values())
    names = {p.name for p in result.figures}
    assert "squares_predictions.png" in names
    assert ("squares_alphas.png" in names) == (model == "transformer")
    assert all(p.is_file() and p.stat().st_size > 0 for p in result.figures)
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert saved["test"]["mse"] == pytest.approx(result.metrics["mse"])
