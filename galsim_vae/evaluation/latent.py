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
