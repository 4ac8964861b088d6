"""Report section: reconstructions of the held-out galaxies, their chi-square per pixel,
the prior typicality of their encodings and the latent-space maps."""

from __future__ import annotations

from typing import Any

import numpy as np

from .context import N_SHOWN_RECONSTRUCTIONS, Context


def reconstruction_section(ctx: Context) -> dict[str, Any]:
    """Reconstructions, their chi-square per pixel and the latent maps of the held-out set."""
    from ...models.posterior import describe_posterior
    from ..latent import latent_maps, prior_typicality
    from ..plots import plot_latent_maps, plot_reconstructions
    from ..reconstruction import reconstruct
    from .inputs import read_images

    heldout, net, psf_free = ctx.heldout, ctx.net, bool(ctx.model.psf_free)

    def images_fn(start: int, stop: int) -> np.ndarray:
        return read_images(ctx.dataset, heldout.rows[start:stop]) * net

    recon = reconstruct(ctx.model, images_fn, len(heldout), noise_sigma=heldout.noise_sigma * net,
                        psfs=heldout.psfs if psf_free else None,
                        conditions=heldout.raw_conditions if ctx.conditional else None,
                        batch_size=ctx.batch_size,
                        n_show=N_SHOWN_RECONSTRUCTIONS)
    ctx.results["reconstruction"] = recon
    model_image = "psf*profile" if psf_free else "profile"
    out: dict[str, Any] = {"reconstruction": {
        "chi2_per_pixel": float(np.mean(recon.chi2)),
        "chi2_per_pixel_median": float(np.median(recon.chi2)),
        "n_galaxies": len(heldout), "split": heldout.split,
        "definition": f"mean over galaxies of sum((x - {model_image})^2 / sigma^2) / S^2, "
                      "profile = decode(posterior mean)",
        "posterior": describe_posterior(ctx.model.network.get_config_dict())}}
    plot_reconstructions(recon.shown_data / net, recon.shown_model / net,
                         recon.shown_profile / net if psf_free else None,
                         recon.shown_sigma / net, ctx.figure("reconstructions"),
                         pixel_scale=ctx.dataset.pixel_scale,
                         chi2=recon.chi2[:len(recon.shown_rows)])
    out["prior_typicality"] = prior_typicality(ctx.model.network, recon.latents,
                                               heldout.conditions,
                                               seed=ctx.seed, batch_size=ctx.batch_size)
    if len(heldout) < 2:
        ctx.notes.append("fewer than 2 held-out galaxies: no latent-space maps")
        return out
    maps = latent_maps(recon.latents, seed=ctx.seed)
    plot_latent_maps(maps.pca, maps.tsne, ctx.figure("latent"), colour=heldout.redshift,
                     colour_label=heldout.redshift_name,
                     explained=list(maps.explained_variance_ratio))
    out["latent"] = {"pca_explained_variance_ratio": maps.explained_variance_ratio,
                     "tsne_perplexity": maps.tsne_perplexity,
                     "colour": heldout.redshift_name, "n_galaxies": len(heldout)}
    return out
