"""What a run records: the conditions and training record of the bundle, the mean PSF of
a noise-likelihood model, the flow prior fitted after training, and the error that
names a damaged stamp when the loss diverges."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import InputDataError
from .encodings import REFINE_RATE
from .errors import TrainingConfigError


def condition_metadata(dataset, conditions: Sequence[str],
                       drawn: Sequence[str] = ()) -> list[dict[str, Any]]:
    """The bundle's ``conditions`` entries; each of ``drawn`` also gets its training-split
    distribution (:class:`~galsim_vae.condition_draw.ConditionDraw`) given the redshift
    condition among the others, if there is one (else alone)."""
    from dataclasses import replace

    from ..condition_draw import ConditionDraw
    from ..conditions import redshift_condition

    entries = [dataset.condition(name) for name in conditions]
    required = [c for c in entries if c.name not in drawn]
    given = redshift_condition(required) if required else None
    if given is not None and given.role != "redshift":
        given = None
    rows = dataset.indices("train", require_finite=list(conditions))
    catalog = dataset.catalog
    out = []
    for cond in entries:
        if cond.name in drawn:
            values = np.asarray(catalog[cond.name], dtype=float)[rows]
            given_values = (None if given is None
                            else np.asarray(catalog[given.name], dtype=float)[rows])
            cond = replace(cond, drawn=ConditionDraw.fit(
                values, given_values, None if given is None else given.name))
        out.append(cond.to_dict())
    return out


def mean_psf(dataset, indices: np.ndarray) -> np.ndarray:
    """Mean unit-sum PSF over the given rows (chunked reads of the memory map)."""
    total = np.zeros(dataset.psfs.shape[1:], dtype=np.float64)
    for start in range(0, indices.size, 1024):
        total += np.asarray(dataset.psfs[np.sort(indices[start:start + 1024])],
                            dtype=np.float64).sum(axis=0)
    return total / total.sum()


def first_nonfinite_row(dataset, indices: np.ndarray) -> int | None:
    """First of ``indices`` whose stamp or PSF has a NaN/inf pixel (chunked reads), or None."""
    indices = np.sort(np.asarray(indices, dtype=np.int64))
    for start in range(0, indices.size, 1024):
        rows = indices[start:start + 1024]
        for arrays in (dataset.images, dataset.psfs):
            if arrays is None:
                continue
            bad = ~np.isfinite(np.asarray(arrays[rows])).reshape(len(rows), -1).all(axis=1)
            if bad.any():
                return int(rows[np.argmax(bad)])
    return None


def divergence_error(dataset, indices: np.ndarray, epoch: int, loss, lr: float):
    """The error for a non-finite training loss: names a damaged stamp when there is one."""
    row = first_nonfinite_row(dataset, indices)
    if row is not None:
        ident = dataset.catalog["ident"][row]
        return InputDataError(
            f"training loss became {loss} in epoch {epoch} because data set "
            f"{str(dataset.path)!r} has NaN/inf pixels (first in row {row}, ident {ident}) "
            "in its images or PSFs; the data set is damaged: make it again with 'galsim-vae "
            "prepare' (whose --skip-invalid leaves such galaxies out)")
    return TrainingConfigError(
        f"training diverged in epoch {epoch} (loss {loss}); "
        f"lower the learning rate (now {lr:g}) or beta, or check the data set")


def fit_flow_prior_to_encodings(model, dataset, conditions, with_psf: bool, batch_size: int, *,
                                epochs: int, seed: int, orientations: int = 1,
                                hidden_units: Sequence[int] = (64, 64), n_couplings: int = 6,
                                refine_steps: int = 0, prior_weight: float = 0.0,
                                cache_dir=None, noise_correlation: bool = False,
                                select: str = "nll", spline_bins: int = 0,
                                condition_shift: bool = False, fresh_samples: bool = False,
                                balance: float = 0.0, orientation: str = "all",
                                extra_datasets: Sequence = (),
                                refine_rate: float = REFINE_RATE):
    """Fit the flow prior to the aggregate posterior of the training split, stopped early
    on that of the validation split (when the data set has one).

    The encodings are kept in ``cache_dir`` (the run's checkpoint folder) when given: a
    run resumed with other flow settings on the same weights fits its flow in minutes
    instead of re-encoding (:func:`galsim_vae.training.encodings.cached_encodings`).

    The flow is fitted to one posterior *sample* per galaxy and orientation: the prior a
    VAE generates from should be the aggregate posterior ``q(z) = E_x q(z | x)`` (Lanusse
    et al. 2021, MNRAS 504, 5543, sect. 3.3), not the narrower cloud of posterior means.
    A model trained on the eight orientations of each stamp (``augment``) is encoded in all
    of them (``orientations=8``): eight times the latents, which keeps a flow fitted to
    ~1e4 galaxies from learning them one by one (the report's memorization test), and a
    prior whose samples keep the elongated, bright galaxies the means under-represent.

    ``refine_steps`` > 0 first moves each posterior mean by that many Adam steps up
    ``log p(x | z) - prior_weight |z|^2 / 2`` (the training objective for one latent,
    ``prior_weight`` the final KL weight; steps of ``refine_rate`` latent units per
    coordinate), then samples around it with the encoder's
    width: a semi-amortized encoding (Kim et al. 2018, ICML, arXiv:1802.02550).  The
    encoder of a faint galaxy under-fits it: on the shipped flagship, for mag_auto
    24.7-25.3, the decoded posterior means are 6.8% rounder than the data (paired |g|
    slope 0.79) while the refined latents match it (+0.9%, slope 0.91; 25 nats better)
    -- ``benchmarks/amortization_gap.py``, 2026-12-03.

    ``spline_bins`` K >= 2 makes each coupling a rational-quadratic spline of K bins
    (:class:`galsim_vae.models.prior.FlowPrior`), 0 affine; ``condition_shift`` shifts the
    latents by a linear function of the conditions.  ``fresh_samples`` fits the flow to a
    fresh posterior sample of every galaxy and orientation each epoch (the posterior
    centres and widths, :func:`galsim_vae.models.prior_fit.fit_flow_prior`'s
    ``latent_scales``) instead of one fixed sample; the validation split keeps its fixed
    sample, so that its NLL compares epochs.  ``balance`` > 0 weighs each row by its
    conditions' inverse density to that power (:mod:`.condition_balance`; the validation
    NLL is weighted alike): the flow's capacity moves to the sparse conditions without
    changing the conditional density it converges to.  ``orientation`` "canonical" keeps
    the two of each galaxy's eight orientations whose shear has g1, g2 >= 0, for the
    training and the validation split (:mod:`.canonical_orientation`; with
    ``orientations`` 1 the first of the pair only), and encodes only those; "all" encodes
    the first ``orientations`` of the eight.  ``extra_datasets`` (data sets presented in ``dataset``'s
    normalisation, :meth:`galsim_vae.data.Dataset.normalised_as`) add the encodings of
    their training and validation splits to ``dataset``'s: more galaxies of the same
    population for the flow, the networks unchanged.

    ``select`` "nll" keeps the epoch of the lowest validation NLL; "observed" the epoch
    whose samples, observed like 2,000 validation galaxies (PSF, noise), are closest to
    those galaxies' stamps by the report's targets; "morphology" the epoch
    whose decoded samples' |g| and sizes are closest to those of the decoded validation
    encodings (:mod:`.flow_selection`, scored every 5 epochs; needs a validation split).
    """
    import keras

    from ..models.prior_fit import fit_flow_prior
    from .canonical_orientation import FLOW_ORIENTATIONS, canonical_orientations
    from .encodings import Encodings, cached_encodings
    from .flow_selection import SELECTIONS

    if select not in SELECTIONS:     # before the encodings, which take minutes
        raise InputDataError(f"flow selection {select!r} is not one of {list(SELECTIONS)}")
    if orientation not in FLOW_ORIENTATIONS:
        raise InputDataError(f"flow orientation {orientation!r} is not one of "
                             f"{list(FLOW_ORIENTATIONS)}")

    def encodings(split: str, split_seed: int):
        parts = []
        for number, source in enumerate([dataset, *extra_datasets]):
            if not source.indices(split, require_finite=conditions or ()).size:
                continue
            codes = (canonical_orientations(source, split, conditions, min(orientations, 2))
                     if orientation == "canonical" else None)
            parts.append(cached_encodings(
                model, source, split, conditions, with_psf, batch_size,
                orientations=orientations, seed=split_seed + 2 * number,
                refine_steps=refine_steps, prior_weight=prior_weight, refine_rate=refine_rate,
                cache_dir=cache_dir, noise_correlation=noise_correlation,
                orientation_codes=codes))
        return Encodings.concatenate(parts) if parts else None

    train = encodings("train", seed)
    if train is None:
        raise InputDataError(f"data set {str(dataset.path)!r} has no training galaxies with "
                             f"finite {list(conditions or ())}")
    validation = None
    held_out = encodings("validation", seed + 1)
    if held_out is not None:
        validation = (held_out.latents, held_out.conditions)
    weights = {}
    if balance and train.conditions is not None:
        from .condition_balance import condition_weights

        balanced = condition_weights(train.conditions,
                                     *([] if validation is None else [validation[1]]),
                                     power=float(balance))
        weights = {"sample_weights": balanced[0]}
        if validation is not None:
            validation = validation + (balanced[1],)
    selection = {}
    if select != "nll":
        from .flow_selection import morphology_score, observed_morphology_score

        if validation is None:
            raise InputDataError(f"data set {str(dataset.path)!r} has no validation split: "
                                 "the flow's epoch cannot be chosen by its morphology")
        score = (morphology_score(model, validation[0], validation[1],
                                  pixel_scale=dataset.pixel_scale,
                                  n=3000, seed=seed) if select == "morphology" else
                 observed_morphology_score(model, [dataset, *extra_datasets], conditions,
                                           psf_free=with_psf, seed=seed))
        selection = {"patience": None, "score": score}
    keras.utils.set_random_seed(seed)
    fitted = ({"latents": train.centres, "latent_scales": train.scales} if fresh_samples
              else {"latents": train.latents})
    return fit_flow_prior(conditions=train.conditions, epochs=epochs, batch_size=256,
                          learning_rate=1e-3, seed=seed % (2**31), validation=validation,
                          hidden_units=hidden_units, n_couplings=n_couplings,
                          spline_bins=spline_bins, condition_shift=condition_shift,
                          **fitted, **weights, **selection)


def training_record(dataset, settings: Mapping[str, Any], history: list[dict[str, float]], *,
                   final_epoch: int, elapsed: float, prior, strategy,
                   workers: int = 1) -> dict[str, Any]:
    """The ``training`` block of model.json: provenance, settings, final losses."""
    meta = dataset.meta
    final_row = next(r for r in history if int(r["epoch"]) == final_epoch)
    info = {
        "data": {"path": settings["dataset"], "n_galaxies": dataset.n_galaxies,
                 "stamp_size": dataset.stamp_size, "psf_size": dataset.psf_size,
                 "pixel_scale": dataset.pixel_scale, "flux_units": dataset.flux_units,
                 "splits": meta.get("split", {}), "source": meta.get("source", {}),
                 "cuts": (meta.get("source") or {}).get("cuts", "see source")},
        "galsim_vae_version": settings["galsim_vae_version"],
        "architecture": settings["architecture"],
        "conditions": settings["conditions"],
        "epochs_requested": settings["epochs"],
        "epochs_trained": len(history),
        "weights_epoch": final_epoch,
        "batch_size": settings["batch_size"],          # global: all replicas together
        "beta": settings["beta"],
        "learning_rate": settings["learning_rate"],
        "lr_decay": settings["lr_decay"], "clip_norm": settings["clip_norm"],
        "early_stopping_patience": settings["early_stopping_patience"],
        "seed": settings["seed"],
        "max_steps_per_epoch": settings["max_steps_per_epoch"],
        "monitor": settings["monitor"], "augment": settings["augment"],
        "noise_correlation": bool(settings.get("noise_correlation", False)),
        "mixed_precision": settings["mixed_precision"],
        "xla": settings["xla"],
        "replicas": int(strategy.num_replicas_in_sync),
        "workers": int(workers),
        "batch_size_per_replica": int(settings["batch_size"])
                                  // int(strategy.num_replicas_in_sync),
        "training_time_s": round(float(elapsed), 2),
        "final": {k: float(v) for k, v in final_row.items()
                  if k.startswith(("train_", "val_")) or k in ("beta", "lr")},
    }
    if prior is not None:
        info["flow_prior"] = {"orientations": settings.get("flow_orientations", 1),
                              "refine_steps": settings.get("flow_refine_steps", 0),
                              "refine_rate": settings.get("flow_refine_rate", REFINE_RATE),
                              "units": settings["flow_prior_units"],
                              "couplings": settings["flow_prior_couplings"],
                              "max_epochs": settings["flow_prior_epochs"],
                              "select": settings.get("flow_select", "nll"),
                              "spline_bins": settings.get("flow_prior_spline_bins", 0),
                              "condition_shift": prior.condition_shift,
                              "fresh_samples": bool(settings.get("flow_fresh_samples",
                                                                 False)),
                              "balance": float(settings.get("flow_balance", 0.0)),
                              "orientation": settings.get("flow_orientation", "all")}
    if prior is not None and getattr(prior, "training_losses", None):
        info["final"]["flow_prior_nll"] = float(prior.training_losses[prior.best_epoch - 1])
        info["final"]["flow_prior_epoch"] = int(prior.best_epoch)
        if getattr(prior, "validation_losses", None):
            info["final"]["flow_prior_val_nll"] = float(
                prior.validation_losses[prior.best_epoch - 1])
    return info
