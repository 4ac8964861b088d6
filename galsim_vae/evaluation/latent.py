"""Two-dimensional maps of the latent space (posterior means of held-out galaxies).

PCA (linear; its explained-variance ratios say how many latent directions the model
uses) and t-SNE (van der Maaten & Hinton 2008; non-linear neighbourhoods), both from
scikit-learn.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputDataError

#: t-SNE perplexity used when there are enough points (scikit-learn's default).
TSNE_PERPLEXITY = 30.0


@dataclass
class LatentMaps:
    """PCA and t-SNE embeddings of latents (N, 2) and the PCA explained-variance ratios."""

    pca: np.ndarray
    tsne: np.ndarray | None
    explained_variance_ratio: np.ndarray
    tsne_perplexity: float | None


def latent_maps(latents: np.ndarray, *, seed: int = 0) -> LatentMaps:
    """PCA to 2-d (all principal components' variance ratios kept) and t-SNE to 2-d.

    Parameters:
        latents: (N, d) posterior means, N >= 2.
        seed:    Random state of t-SNE (PCA initialisation, so nearly deterministic).

    Returns:
        :class:`LatentMaps`; ``tsne`` is None for fewer than 5 points (t-SNE needs the
        perplexity below N; it is ``min(30, (N - 1) / 3)``).
    """
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    latents = np.asarray(latents, dtype=np.float64)
    if latents.ndim != 2 or latents.shape[0] < 2 or not np.isfinite(latents).all():
        raise InputDataError(f"latents must be a finite (N >= 2, d) array, got shape "
                             f"{latents.shape}")
    n_components = min(latents.shape)
    pca = PCA(n_components=n_components).fit(latents)
    projected = pca.transform(latents)[:, :2]
    if projected.shape[1] < 2:
        projected = np.column_stack([projected, np.zeros(latents.shape[0])])
    tsne, perplexity = None, None
    if latents.shape[0] >= 5:
        perplexity = float(min(TSNE_PERPLEXITY, (latents.shape[0] - 1) / 3.0))
        tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed,
                    learning_rate="auto").fit_transform(latents)
    return LatentMaps(pca=projected, tsne=tsne,
                      explained_variance_ratio=pca.explained_variance_ratio_,
                      tsne_perplexity=perplexity)


#: Percentile of the prior samples' log-density below which an encoding counts as
#: outside the prior's typical set.
TYPICAL_PERCENTILE = 1.0


def prior_typicality(model, latents: np.ndarray, conditions: np.ndarray | None, *,
                     seed: int = 0, batch_size: int = 256) -> dict:
    """How typical the encodings of a galaxy set are under the model's prior.

    Each posterior mean ``z`` is scored with the prior's log-density ``log p(z [| y])`` at
    its galaxy's conditions, and so is one prior sample per galaxy drawn at the same
    conditions (the reference).  Galaxies like the training set give the same
    distribution as the prior samples (about 99% above their 1st percentile); galaxies
    the model has not learned (e.g. real galaxies for a model trained on a simulation)
    fall outside -- a measure of the domain gap that needs no generated images.

    Parameters:
        model:      A ``galsim_vae.models`` model (with its prior attached, if any).
        latents:    (N, latent_size) posterior means.
        conditions: (N, k) standardised conditions (None for unconditional models).
        seed:       Seed of the prior samples (numpy Generator).
        batch_size: Galaxies per call.

    Returns:
        ``median_log_density`` (nats, held-out), ``median_log_density_prior_samples``,
        ``threshold`` (the prior samples' :data:`TYPICAL_PERCENTILE` percentile),
        ``fraction_typical`` (held-out encodings above it), ``n_galaxies``.
    """
    import tensorflow as tf

    latents = np.asarray(latents, dtype=np.float32)
    k = int(model.prior_conditions)
    eps = np.random.default_rng(seed).standard_normal(latents.shape).astype(np.float32)
    held, sampled = [], []
    for start in range(0, latents.shape[0], batch_size):
        stop = min(start + batch_size, latents.shape[0])
        cond = (None if k == 0 or conditions is None
                else tf.constant(conditions[start:stop, :k], tf.float32))
        prior = model.prior(cond)
        held.append(prior.log_prob(latents[start:stop]).numpy())
        z = model.prior_transform(tf.constant(eps[start:stop]), cond)
        sampled.append(prior.log_prob(z).numpy())
    held_lp, sampled_lp = np.concatenate(held), np.concatenate(sampled)
    threshold = float(np.percentile(sampled_lp, TYPICAL_PERCENTILE))
    return {"median_log_density": float(np.median(held_lp)),
            "median_log_density_prior_samples": float(np.median(sampled_lp)),
            "threshold": threshold, "percentile": TYPICAL_PERCENTILE,
            "fraction_typical": float(np.mean(held_lp > threshold)),
            "n_galaxies": int(latents.shape[0])}
