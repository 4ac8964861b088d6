"""Figures of the evaluation report (matplotlib, Agg canvas, PNG written atomically).

Stamps are shown with an arcsinh stretch (Lupton et al. 2004) scaled per panel row to the
data's noise level, so faint outskirts and bright cores are both visible; residuals are
shown in units of the noise on a fixed -5..5 scale.
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from ..io_utils import atomic_file

#: Residuals are shown on this symmetric range (units of the noise sigma).
RESIDUAL_RANGE = 5.0


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _save(figure, path: str | os.PathLike) -> None:
    with atomic_file(path, overwrite=True) as tmp:
        figure.savefig(tmp, format="png", dpi=100)


def _asinh(image: np.ndarray, softening: float, peak: float) -> np.ndarray:
    """arcsinh stretch of ``image`` to [0, 1] with linear range ``softening``."""
    softening = max(float(softening), 1e-12)
    top = np.arcsinh(max(float(peak), softening) / softening)
    return np.clip(np.arcsinh(np.asarray(image) / softening) / top, -0.1, 1.0)


def plot_reconstructions(data: np.ndarray, model: np.ndarray, profile: np.ndarray | None,
                         noise_sigma: np.ndarray, path: str | os.PathLike, *,
                         pixel_scale: float, chi2: np.ndarray | None = None) -> None:
    """One row per galaxy: data, model image the likelihood compares with the data,
    the PSF-free profile (when given), and the residual (data - model) / sigma.

    Parameters:
        data, model:  (n, S, S) in the same units.
        profile:      (n, S, S) PSF-free profiles or None (model already carries the PSF).
        noise_sigma:  (n,) noise std, same units.
        path:         Output PNG.
        pixel_scale:  arcsec/pixel (axis labels).
        chi2:         (n,) chi-square per pixel shown in the residual titles.
    """
    columns = ["data", "model (PSF-convolved)" if profile is not None else "model",
               *(["PSF-free profile"] if profile is not None else []),
               "residual / sigma"]
    n = data.shape[0]
    figure = _figure(2.4 * len(columns), 2.3 * n + 0.4)
    axes = figure.subplots(n, len(columns), squeeze=False)
    extent = np.array([-0.5, 0.5, -0.5, 0.5]) * data.shape[-1] * pixel_scale
    for i in range(n):
        sigma, peak = float(noise_sigma[i]), float(np.max(data[i]))
        panels = [_asinh(data[i], sigma, peak), _asinh(model[i], sigma, peak)]
        if profile is not None:
            panels.append(_asinh(profile[i], sigma, max(peak, float(np.max(profile[i])))))
        residual = (data[i] - model[i]) / sigma
        for j, panel in enumerate(panels):
            axes[i, j].imshow(panel, origin="lower", cmap="gray", vmin=-0.1, vmax=1.0,
                              extent=extent)
        image = axes[i, -1].imshow(residual, origin="lower", cmap="RdBu_r",
                                   vmin=-RESIDUAL_RANGE, vmax=RESIDUAL_RANGE, extent=extent)
        for j, ax in enumerate(axes[i]):
            if (i, j) == (n - 1, 0):
                ax.tick_params(labelsize=6)
            else:
                ax.set_xticks([])
                ax.set_yticks([])
            title = columns[j] if i == 0 else ""
            if j == len(columns) - 1 and chi2 is not None:
                title = (title + "\n" if title else "") + f"chi2/pix = {chi2[i]:.3g}"
            ax.set_title(title, fontsize=8)
    figure.colorbar(image, ax=axes[:, -1], shrink=0.6, label="(data - model) / sigma")
    axes[-1, 0].set_xlabel("arcsec", fontsize=8)
    _save(figure, path)


def plot_stamp_grid(stamps: np.ndarray, path: str | os.PathLike, *, softening: float,
                    titles: Sequence[str] | None = None, ncols: int = 6,
                    suptitle: str = "") -> None:
    """A grid of stamps (arcsinh stretch with linear range ``softening``, one common
    peak: the 99.5th percentile of the stamps' maxima)."""
    n = stamps.shape[0]
    ncols = max(1, min(ncols, n))
    nrows = -(-n // ncols)
    figure = _figure(1.7 * ncols, 1.8 * nrows + (0.4 if suptitle else 0.0))
    axes = figure.subplots(nrows, ncols, squeeze=False).ravel()
    peak = float(np.percentile(stamps.max(axis=(1, 2)), 99.5)) if n else 1.0
    for k, ax in enumerate(axes):
        ax.set_xticks([])
        ax.set_yticks([])
        if k >= n:
            ax.set_visible(False)
            continue
        ax.imshow(_asinh(stamps[k], softening, peak), origin="lower", cmap="gray",
                  vmin=-0.1, vmax=1.0)
        if titles is not None:
            ax.set_title(titles[k], fontsize=7)
    if suptitle:
        figure.suptitle(suptitle, fontsize=10)
    _save(figure, path)


def plot_latent_maps(pca: np.ndarray, tsne: np.ndarray | None, path: str | os.PathLike, *,
                     colour: np.ndarray | None, colour_label: str | None,
                     explained: Sequence[float]) -> None:
    """PCA and t-SNE maps side by side, points coloured by ``colour`` (e.g. redshift)."""
    maps = [("PCA", pca, f"PC1 ({explained[0]:.0%})",
             f"PC2 ({explained[1]:.0%})" if len(explained) > 1 else "PC2")]
    if tsne is not None:
        maps.append(("t-SNE", tsne, "t-SNE 1", "t-SNE 2"))
    figure = _figure(4.4 * len(maps) + 0.8, 4.0)
    axes = figure.subplots(1, len(maps), squeeze=False).ravel()
    points = None
    for ax, (title, xy, xlabel, ylabel) in zip(axes, maps):
        if colour is not None:
            points = ax.scatter(xy[:, 0], xy[:, 1], c=colour, s=8, cmap="viridis")
        else:
            ax.scatter(xy[:, 0], xy[:, 1], s=8, color="tab:blue")
        ax.set_title(f"{title} of the posterior means ({xy.shape[0]} galaxies)", fontsize=9)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
    if points is not None:
        figure.colorbar(points, ax=list(axes), label=colour_label or "")
    _save(figure, path)


def plot_binned_medians(table, columns: Sequence[str], path: str | os.PathLike, *,
                        by_label: str = "redshift") -> None:
    """Median of each statistic per redshift bin, generated against held-out, with the
    generated/held-out ratio and the +-5% band underneath."""
    centres = 0.5 * (np.asarray(table["bin_low"]) + np.asarray(table["bin_high"]))
    figure = _figure(4.2 * len(columns), 5.0)
    axes = figure.subplots(2, len(columns), squeeze=False, sharex=True,
                           gridspec_kw={"height_ratios": [2, 1]})
    for j, column in enumerate(columns):
        top, bottom = axes[0, j], axes[1, j]
        top.plot(centres, table[f"median_{column}_reference"], "o-", label="held-out")
        top.plot(centres, table[f"median_{column}_generated"], "s--", label="generated")
        top.set_ylabel(f"median {column}")
        top.legend(fontsize=8)
        bottom.axhspan(0.95, 1.05, color="0.85")
        bottom.axhline(1.0, color="0.4", lw=0.8)
        bottom.plot(centres, table[f"ratio_{column}"], "ko-")
        bottom.set_ylabel("generated / held-out")
        bottom.set_xlabel(f"{by_label} (bin centre; equal-count bins)")
    _save(figure, path)
