"""kernel_regression: data, Nadaraya–Watson against a direct numpy formula, leave-one-out, the sweep metrics."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from attnlab.catalog.kernel_regression import LearnedNadarayaWatsonConfig, NadarayaWatsonConfig
from attnlab.data.kernel_regression import CollateWithKeys, regression_splits, true_function
from attnlab.errors import UserError
from attnlab.experiments.kernel_regression import SWEEP_SIGMAS, KernelRegression, sweep_key
from attnlab.models.kernel_regression import LearnedNadarayaWatson, NadarayaWatson, leave_one_out_mask
from attnlab.nn import KERNELS

pytestmark = pytest.mark.usefixtures("torch_single_thread")

NUMPY_KERNELS = {
    "gaussian": lambda u: np.exp(-(u**2) / 2),
    "boxcar": lambda u: (np.abs(u) <= 1).astype(float),
    "constant": lambda u: np.ones_like(u),
    "epanechikov": lambda u: np.maximum(0.0, 1 - u**2),
}


def numpy_nw(x, xs, ys, kernel, sigma, exclude_self=False):
    """Σ K((x − xi)/σ) yi / Σ K((x − xi)/σ), written out; optionally without the diagonal (x = xs)."""
    weights = NUMPY_KERNELS[kernel]((x[:, None] - xs[None, :]) / sigma)  # (Q, K)
    if exclude_self:
        np.fill_diagonal(weights, 0.0)
    return (weights * ys[None, :]).sum(1) / weights.sum(1)


# ---------------------------------------------------------------------------------------------- data


def test_data_follows_d2l():
    train, val, test = regression_splits(40, 50, 200, noise=0.5, seed=0)
    assert (len(train), len(val), len(test)) == (40, 50, 200)
    assert torch.all(train.x[1:] >= train.x[:-1]) and 0 <= train.x.min() and train.x.max() <= 5
    torch.testing.assert_close(val.x, torch.arange(0, 5, 0.1), atol=1e-6, rtol=0)  # d2l's grid
    torch.testing.assert_close(val.y, true_function(val.x))  # held-out targets are noise-free
    torch.testing.assert_close(test.y, true_function(test.x))
    residual = train.y - true_function(train.x)
    assert 0.3 < residual.std().item() < 0.7  # N(0, 0.5) noise on the training targets
    # Every split attends over the same training keys and values.
    for split in (val, test):
        assert torch.equal(split.keys, train.x) and torch.equal(split.values, train.y)
    torch.testing.assert_close(true_function(torch.tensor([0.0, math.pi / 2])), torch.tensor([0.0, 2 + math.pi / 2]))


def test_data_is_deterministic_per_seed():
    a, b, c = regression_splits(40, 50, 20, 0.5, seed=1)[0], regression_splits(40, 50, 20, 0.5, seed=1)[0], \
        regression_splits(40, 50, 20, 0.5, seed=2)[0]
    assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)
    assert not torch.equal(a.x, c.x)


def test_batches_carry_the_training_set_and_key_indices():
    train, val, _ = regression_splits(6, 5, 5, 0.5, seed=0)
    collate = CollateWithKeys(train.keys, train.values)
    x, y, index, keys, values = collate([train[i] for i in (4, 1)])
    assert torch.equal(x, train.x[[4, 1]]) and torch.equal(y, train.y[[4, 1]])
    assert index.tolist() == [4, 1]
    assert torch.equal(keys, train.x) and torch.equal(values, train.y)
    assert collate([val[0], val[3]])[2].tolist() == [-1, -1]  # held-out points are not keys


# ---------------------------------------------------------------------------------------------- model


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("sigma", [0.5, 1.0, 2.0])
def test_prediction_equals_direct_numpy_formula(kernel, sigma):
    rng = np.random.default_rng(0)
    xs = np.sort(rng.uniform(0, 5, 30))
    ys = 2 * np.sin(xs) + xs + rng.normal(0, 0.5, 30)
    x = np.linspace(0.3, 4.7, 17)  # every query has training points within σ ≥ 0.5
    model = NadarayaWatson(NadarayaWatsonConfig(kernel=kernel, sigma=sigma))
    as_t = lambda a: torch.tensor(a, dtype=torch.float64)  # noqa: E731  (σ itself is stored as a float32 log)
    with torch.no_grad():
        prediction = model.double()(as_t(x), as_t(xs), as_t(ys))
    np.testing.assert_allclose(prediction.numpy(), numpy_nw(x, xs, ys, kernel, sigma), rtol=1e-6, atol=1e-9)


def test_batched_queries_and_no_support_gives_zero():
    model = NadarayaWatson(NadarayaWatsonConfig("boxcar", sigma=0.1))
    keys, values = torch.tensor([[0.0, 1.0, 2.0]]), torch.tensor([[1.0, 2.0, 3.0]])
    prediction = model(torch.tensor([[0.05, 0.5, 1.95]]), keys, values)  # (B, Q)
    torch.testing.assert_close(prediction, torch.tensor([[1.0, 0.0, 3.0]]))  # 0.5 has no key within 0.1


def test_fixed_model_has_no_parameters_learned_has_one():
    assert list(NadarayaWatson(NadarayaWatsonConfig()).parameters()) == []
    learned = LearnedNadarayaWatson(LearnedNadarayaWatsonConfig(sigma=0.7))
    assert [p.numel() for p in learned.parameters()] == [1]
    assert learned.sigma.item() == pytest.approx(0.7)


def test_bad_kernel_lists_the_valid_ones():
    with pytest.raises(ValueError, match="gaussian, boxcar, constant, epanechikov"):
        NadarayaWatson(NadarayaWatsonConfig(kernel="triangle"))


def test_leave_one_out_mask_excludes_the_diagonal():
    mask = leave_one_out_mask(torch.arange(5), 5)
    assert torch.equal(mask, ~torch.eye(5, dtype=torch.bool))
    held_out = leave_one_out_mask(torch.tensor([-1, 2]), 4)
    assert held_out[0].all() and held_out[1].tolist() == [True, True, False, True]


def test_training_loss_is_leave_one_out():
    experiment = KernelRegression(KernelRegression.Config(n_train=12, n_val=5, n_test=5))
    data = experiment.data(0)
    batch = data.collate_fn([data.train[i] for i in range(12)])
    model = LearnedNadarayaWatson(LearnedNadarayaWatsonConfig(sigma=0.3))
    loss = experiment.loss(model, batch)
    xs, ys = data.train.x.double().numpy(), data.train.y.double().numpy()
    expected = np.mean((numpy_nw(xs, xs, ys, "gaussian", 0.3, exclude_self=True) - ys) ** 2)
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    # Without leave-one-out a tiny σ would make every point predict itself (zero loss).
    tiny = NadarayaWatson(NadarayaWatsonConfig("gaussian", sigma=1e-4))
    assert experiment.loss(tiny, batch).item() > 0.1
    with torch.no_grad():
        assert torch.allclose(tiny(batch[0], batch[3], batch[4]), batch[1])
    # σ gets a gradient.
    loss.backward()
    assert model.attention.score.log_sigma.grad is not None and model.attention.score.log_sigma.grad != 0


def test_evaluate_reports_the_sweep():
    experiment = KernelRegression(KernelRegression.Config())
    data = experiment.data(0)
    batch = data.collate_fn([data.val[i] for i in range(len(data.val))])
    model = NadarayaWatson(NadarayaWatsonConfig(kernel="epanechikov", sigma=0.5))
    with torch.no_grad():
        metrics = experiment.evaluate(model, batch)
    assert len([k for k in metrics if k.startswith("mse_")]) == len(KERNELS) * len(SWEEP_SIGMAS) == 16
    assert sweep_key("gaussian", 0.5) == "mse_gaussian_s0.5" and sweep_key("boxcar", 1.0) == "mse_boxcar_s1"
    # The model is one of the sweep's combinations: same number.
    torch.testing.assert_close(metrics["mse"], metrics["mse_epanechikov_s0.5"])
    torch.testing.assert_close(metrics["sigma"], torch.tensor(0.5))
    xs, ys = data.train.x.double().numpy(), data.train.y.double().numpy()
    expected = np.mean((numpy_nw(data.val.x.double().numpy(), xs, ys, "gaussian", 1.0) - data.val.y.numpy()) ** 2)
    assert metrics["mse_gaussian_s1"].item() == pytest.approx(expected, rel=1e-4)


def test_bad_data_options_are_user_errors():
    with pytest.raises(UserError, match="n_train >= 2"):
        KernelRegression(KernelRegression.Config(n_train=1)).data(0)


# ---------------------------------------------------------------------------------------------- end to end


@pytest.mark.slow
def test_fit_learned_sigma_end_to_end(tmp_path):
    from attnlab.train import fit

    result = fit("kernel_regression", "nadaraya_watson_learned", ["max_epochs=30", "lr=0.1"],
                 run_dir=tmp_path / "run", progress=False)
    assert result.epochs == 30
    assert result.metrics["sigma"] != pytest.approx(1.0)  # σ moved from its initial value
    worst = max(v for k, v in result.val_metrics.items() if k.startswith("mse_"))
    assert result.val_metrics["mse"] < worst
    names = {p.name for p in result.figures}
    assert names == {"kernel_fits.png", "kernel_attention.png", "kernel_model_attention.png", "kernel_sweep.png"}
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert saved["val"]["mse_gaussian_s0.5"] == pytest.approx(result.val_metrics["mse_gaussian_s0.5"])


@pytest.mark.slow
def test_fixed_kernel_is_evaluated_without_training(tmp_path):
    from attnlab.errors import UserError
    from attnlab.train import fit

    result = fit("kernel_regression", "nadaraya_watson", ["kernel=boxcar", "sigma=0.5"], run_dir=tmp_path / "run",
                 progress=False, figures=False)
    assert result.epochs == 0 and result.params == 0
    assert result.metrics["mse"] == pytest.approx(result.metrics["mse_boxcar_s0.5"])
    with pytest.raises(UserError, match="choose one of gaussian, boxcar, constant, epanechikov"):
        fit("kernel_regression", "nadaraya_watson", ["kernel=triangle"], run_dir=tmp_path / "bad", progress=False)
