"""Trainer: real short training runs, resume after interruption, seeding, evidential output."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import Splits, mean_predictor_mae, perovskite_graph_splits, short_training

from fusion.batching import GraphLoader
from fusion.models import build_model
from fusion.train import TrainConfig, TrainResult, eval_batch_size, predict, seed_everything, train


@pytest.fixture(scope="module")
def perov() -> Splits:
    """~300 perovskites (heat_all, eV/cell) split 70/15/15 with seed 0."""
    return perovskite_graph_splits(400)


def _y(graphs) -> np.ndarray:
    return np.array([float(g.y) for g in graphs])


def _fit(name, data, **kwargs) -> TrainResult:
    """:func:`conftest.short_training` on one thread."""
    return short_training(name, data, num_threads=1, **kwargs)


# (epochs, batch size, peak lr) that learn from 280 crystals in a few seconds.
RECIPES = {"cgcnn": (30, 32, 3e-3), "schnet": (30, 32, 3e-3), "megnet": (40, 32, 5e-3)}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(RECIPES))
def test_short_training_beats_the_mean_predictor(perov, name):
    epochs, bs, lr = RECIPES[name]
    res = _fit(name, perov, epochs=epochs, batch_size=bs, lr=lr)
    baseline = mean_predictor_mae(perov.train, perov.test)
    print(f"{name}: test MAE {res.test_mae:.4f} vs train-mean predictor {baseline:.4f}")
    assert res.test_mae < 0.85 * baseline, (res.test_mae, baseline)
    # The reported MAE is the MAE of predict() in target units.
    pred = predict(res.model, perov.test, res.target_mean, res.target_std)
    assert pred.shape == (len(perov.test),)
    assert np.mean(np.abs(pred - _y(perov.test))) == pytest.approx(res.test_mae, rel=1e-5)
    assert res.best_epoch >= 1
    assert res.graphs_per_second > 0


def _small(perov, n=64):
    return Splits(perov.train[:n], perov.val[:24], perov.test[:24])


def test_resume_after_interrupt_matches_uninterrupted_run(perov, tmp_path):
    data = _small(perov)
    cfg = {"epochs": 4, "batch_size": 16, "lr": 3e-3}
    full = _fit("cgcnn", data, **cfg)

    class InterruptError(Exception):
        pass

    def stop_after_two(epoch, record):
        if epoch == 2:
            raise InterruptError

    ckpt = tmp_path / "run.pt"
    seed_everything(0)
    with pytest.raises(InterruptError):
        train(
            build_model("cgcnn", "cpu"),
            data.train,
            data.val,
            data.test,
            TrainConfig(progress=False, checkpoint_path=ckpt, **cfg),
            callback=stop_after_two,
        )
    assert ckpt.exists()
    # A fresh process would build a fresh model: a different init must not matter.
    resumed = _fit("cgcnn", data, model_seed=123, checkpoint_path=ckpt, **cfg)

    assert resumed.epochs_run == full.epochs_run == 4
    assert len(resumed.history) == 4
    assert resumed.best_epoch == full.best_epoch
    assert resumed.val_mae == pytest.approx(full.val_mae, rel=1e-6, abs=1e-8)
    assert resumed.test_mae == pytest.approx(full.test_mae, rel=1e-6, abs=1e-8)
    for key in ("train_loss", "val_mae", "lr"):
        assert [h[key] for h in resumed.history] == pytest.approx([h[key] for h in full.history])
    for (k, a), b in zip(full.model.state_dict().items(), resumed.model.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7, msg=k)


def test_checkpoint_from_another_config_is_refused(perov, tmp_path):
    data = _small(perov, 32)
    ckpt = tmp_path / "run.pt"
    _fit("schnet", data, epochs=1, batch_size=16, checkpoint_path=ckpt)
    with pytest.raises(ValueError, match="another configuration"):
        _fit("schnet", data, epochs=1, batch_size=8, checkpoint_path=ckpt)


def test_same_seed_same_mae_and_other_seed_differs(perov):
    data = _small(perov)
    cfg = {"epochs": 3, "batch_size": 16, "lr": 3e-3}
    a = _fit("schnet", data, **cfg)
    b = _fit("schnet", data, **cfg)
    c = _fit("schnet", data, seed=1, **cfg)
    assert a.val_mae == b.val_mae
    assert a.test_mae == b.test_mae
    assert c.test_mae != a.test_mae  # the shuffling seed is used


def test_early_stopping_restores_the_best_epoch(perov):
    # lr = 0 and no batch norm: the validation MAE never improves after epoch 1.
    res = _fit("schnet", _small(perov, 32), epochs=10, batch_size=16, lr=0.0, patience=2)
    assert res.epochs_run == 3
    assert res.best_epoch == 1
    assert [h["val_mae"] for h in res.history] == pytest.approx([res.val_mae] * 3)


def test_evidential_training_gives_positive_uncertainties(perov):
    data = _small(perov)
    res = _fit("megnet", data, head="evidential", epochs=3, batch_size=16, lr=3e-3)
    assert all(math.isfinite(h["train_loss"]) for h in res.history)
    out = predict(res.model, data.test, res.target_mean, res.target_std)
    assert out.shape == (len(data.test), 4)
    gamma, v, alpha, beta = out.T
    assert np.isfinite(out).all()
    assert (v > 0).all()
    assert (alpha > 1).all()
    assert (beta > 0).all()
    aleatoric = beta / (alpha - 1)
    epistemic = beta / (v * (alpha - 1))
    assert (aleatoric > 0).all()
    assert (epistemic > 0).all()
    assert np.mean(np.abs(gamma - _y(data.test))) == pytest.approx(res.test_mae, rel=1e-5)


def test_loss_choice_is_checked(perov):
    data = _small(perov, 16)
    with pytest.raises(ValueError, match="evidential"):
        _fit("cgcnn", data, epochs=1, loss="evidential")
    with pytest.raises(ValueError, match="unknown loss"):
        _fit("cgcnn", data, epochs=1, loss="huber")


def test_predict_rescales_evidential_outputs(perov):
    data = _small(perov, 16)
    seed_everything(0)
    model = build_model("schnet", "cpu", head="evidential").eval()
    unit = predict(model, data.test, 0.0, 1.0)
    scaled = predict(model, data.test, 2.0, 3.0)
    np.testing.assert_allclose(scaled[:, 0], unit[:, 0] * 3.0 + 2.0, rtol=1e-6)
    np.testing.assert_allclose(scaled[:, 1:3], unit[:, 1:3])
    np.testing.assert_allclose(scaled[:, 3], unit[:, 3] * 9.0, rtol=1e-6)


def test_flushing_subnormals_leaves_the_training_unchanged(perov):
    """Training with float32 subnormals flushed (the default) gives the unflushed run's model.

    The check is meaningful: CGCNN's Gaussian basis holds subnormals for these
    crystals, and these are what the flush removes. A subnormal is below 1.2e-38,
    so flushing can move a result only where a sum consists of subnormals alone:
    weights and MAEs are compared to 1e-6 (float32 rounding of the updates),
    far below any difference a study could read. On the study's real runs the
    results are identical to the last printed digit (``tools/check_rows.py``).
    """
    data = _small(perov)
    basis = build_model("cgcnn", "cpu").basis(torch.cat([g.edge_dist for g in data.train]))
    assert ((basis > 0) & (basis < torch.finfo(torch.float32).tiny)).any()
    cfg = {"epochs": 3, "batch_size": 16, "lr": 3e-3}
    flushed = _fit("cgcnn", data, **cfg)
    plain = _fit("cgcnn", data, flush_denormals=False, **cfg)
    assert flushed.val_mae == pytest.approx(plain.val_mae, rel=1e-6)
    assert flushed.test_mae == pytest.approx(plain.test_mae, rel=1e-6)
    for (name, a), b in zip(
        flushed.model.state_dict().items(), plain.model.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6, msg=name)
    # Outside train() the CPU is back to PyTorch's default: subnormals survive.
    assert float(torch.tensor([1e-40]) * 1.0) > 0


@pytest.mark.parametrize("name", ["cgcnn", "deepergatgnn"])
def test_eval_outputs_do_not_depend_on_the_batch(perov, name):
    """In eval mode a crystal's prediction ignores the other crystals of its batch.

    So the evaluation batch size (:func:`fusion.train.eval_batch_size`) is a speed
    choice only. A model whose eval-mode output mixed the graphs of a batch (a
    batch norm left in training mode, a normalisation over the batch) would
    differ here by far more than the 1e-5 allowed, which covers float32 rounding
    of sums taken over differently blocked matrix products (at most 1.2e-7
    measured on 190 phonons records).
    """
    data = _small(perov, 48)
    seed_everything(0)
    model = build_model(name, "cpu")
    with torch.no_grad():  # move the batch-norm running statistics off their initial values
        for start in range(0, len(data.train), 16):
            model(next(iter(GraphLoader(data.train[start : start + 16], 16))))
    model.eval()
    one_by_one = predict(model, data.test, 0.0, 1.0, batch_size=1)
    together = predict(model, data.test, 0.0, 1.0, batch_size=256)
    np.testing.assert_allclose(one_by_one, together, rtol=0, atol=1e-5)
    assert eval_batch_size(64, torch.device("cpu")) == 64
