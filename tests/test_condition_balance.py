"""Weights that balance a flow prior's fit across its conditions."""

from __future__ import annotations

import numpy as np
import pytest

from galsim_vae.errors import InputDataError
from galsim_vae.training.condition_balance import condition_weights


def test_sparse_conditions_are_weighed_up_and_the_weights_are_bounded():
    """A skewed condition (lognormal, like flux_radius): the rows of its sparse tail weigh
    more than the rows of its dense core, by about the inverse density to the power; the
    weights have mean 1, at most ``max_ratio`` times their median, and rows repeated for
    orientations get their galaxy's weight; held-out rows are weighed on the same scale."""
    rng = np.random.default_rng(0)
    values = rng.lognormal(0.0, 0.6, size=(3000, 1))
    repeated = np.repeat(values, 8, axis=0)                 # 8 orientations per galaxy
    held_out = np.array([[1.0], [np.quantile(values, 0.995)]])
    train, other = condition_weights(repeated, held_out, power=0.5, max_ratio=10.0)
    assert train.shape == (24000,) and other.shape == (2,)
    assert train.mean() == pytest.approx(1.0)
    np.testing.assert_allclose(train.reshape(3000, 8), train[::8, None] * np.ones((1, 8)))
    core = np.abs(np.log(values[:, 0])) < 0.1
    tail = values[:, 0] > np.quantile(values, 0.98)
    ratio = train[::8][tail].mean() / train[::8][core].mean()
    assert 2.0 < ratio <= 10.0
    assert train.max() <= 10.0 * np.median(train) * (1 + 1e-9)
    assert other[1] > 2.0 * other[0]
    # power 1 weighs the tail up more than power 0.5
    full = condition_weights(repeated, power=1.0, max_ratio=1000.0)[0]
    assert full[::8][tail].mean() / full[::8][core].mean() > ratio


def test_bad_conditions_and_settings_are_refused():
    with pytest.raises(InputDataError, match=r"finite \(N, k\)"):
        condition_weights(np.array([[0.0], [np.nan]]))
    with pytest.raises(InputDataError, match="balance power must be in"):
        condition_weights(np.zeros((4, 1)) + np.arange(4)[:, None], power=1.5)
    with pytest.raises(InputDataError, match="at least 2 distinct rows"):
        condition_weights(np.ones((5, 2)))
    with pytest.raises(InputDataError, match=r"finite \(M, 2\)"):
        condition_weights(np.random.default_rng(1).normal(size=(50, 2)), np.zeros((3, 1)))


def test_flow_fit_with_unit_weights_is_the_unweighted_fit():
    """Weights of 1 change nothing (the same seed gives the same flow); non-positive or
    misshapen weights are refused with their count and minimum."""
    from galsim_vae.models.prior_fit import fit_flow_prior

    rng = np.random.default_rng(2)
    latents, cond = rng.normal(size=(256, 2)), rng.normal(size=(256, 1))
    common = dict(epochs=2, batch_size=64, seed=3, n_couplings=2, hidden_units=(8,))
    plain = fit_flow_prior(latents, cond, **common)
    weighted = fit_flow_prior(latents, cond, sample_weights=np.full(256, 3.0), **common)
    np.testing.assert_allclose(plain.training_losses, weighted.training_losses, rtol=1e-5)
    with pytest.raises(InputDataError, match=r"sample weights must be 256 finite positive "
                                             r"numbers, got 256 \(minimum -1\)"):
        fit_flow_prior(latents, cond, sample_weights=-np.ones(256), **common)
    with pytest.raises(InputDataError, match="validation weights must be 10 finite"):
        fit_flow_prior(latents, cond, validation=(latents[:10], cond[:10], np.ones(9)),
                       **common)
