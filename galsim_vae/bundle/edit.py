"""Editing a trained bundle's generation settings without retraining.

Only hyper-parameters that change how a trained network is *used*, never its weights,
may be edited: ``sample_symmetry`` (``"dihedral"``: each generated galaxy in a random one
of the eight orientations of the square, for a model trained with ``augment``;
``"isotropic"``: in any orientation, :mod:`galsim_vae.isotropy`), and
``posterior_refine_steps``, ``posterior_refine_rate`` and ``posterior_prior_weight`` (the
semi-amortized posterior of reconstructions and of the
report's posterior predictive check, :mod:`galsim_vae.models.posterior`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..errors import BundleError

#: Hyper-parameters :func:`with_generation_settings` may change.
EDITABLE = ("sample_symmetry", "posterior_refine_steps", "posterior_refine_rate",
            "posterior_prior_weight")


def with_generation_settings(source: str | os.PathLike, out: str | os.PathLike, *,
                             overwrite: bool = False, note: str | None = None,
                             **changes: Any) -> Path:
    """Write a copy of bundle ``source`` at ``out`` with the generation settings
    ``changes`` (names of :data:`EDITABLE`), the same weights, prior and logs, and a note
    in its training record.

    Raises:
        BundleError: a setting that is not editable, or a value the architecture refuses.
    """
    from ..models import build_model
    from .names import resolve_bundle
    from .reader import load_bundle

    bad = sorted(set(changes) - set(EDITABLE))
    if bad:
        raise BundleError(f"only {list(EDITABLE)} can be changed without retraining, not "
                          f"{bad}")
    path = resolve_bundle(source)
    network, spec = load_bundle(path)
    try:
        edited = build_model(spec.architecture, **{**spec.hyperparameters, **changes})
    except ValueError as err:
        raise BundleError(f"bundle {str(path)!r}: {err}") from None
    edited.set_weights(network.get_weights())
    edited.attach_prior(network.flow_prior)
    training = dict(spec.training)
    training["edited"] = {"settings": dict(changes), "from": str(path),
                          **({"note": note} if note else {})}
    return save_copy(edited, spec, path, out, training=training, prior=network.flow_prior,
                     overwrite=overwrite)


def save_copy(network, spec, source: Path, out: str | os.PathLike, *, training: dict,
              prior, overwrite: bool = False) -> Path:
    """Save ``network`` with ``prior`` at ``out`` as a bundle described like ``spec`` (the
    bundle at ``source``: name, flux, pixel scale, conditions), with the training record
    ``training``, the source's training logs and its HST PSF (if its samples carry one)."""
    from .reader import read_hst_psf
    from .writer import save_bundle

    extra = {name: source / name for name in ("history.csv", "loss_curve.png")
             if (source / name).is_file()}
    return save_bundle(network, out, name=spec.name, flux_scale=spec.flux.scale,
                       flux_units=spec.flux.units, pixel_scale=spec.pixel_scale,
                       conditions=spec.conditions, psf_free=spec.psf_free,
                       prior=prior, training_info=training,
                       hst_psf=None if spec.hst_psf is None else read_hst_psf(source, spec),
                       extra_files=extra, overwrite=overwrite,
                       band=spec.flux.band, zero_point=spec.flux.zero_point)
