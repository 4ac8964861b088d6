"""Refitting a trained bundle's flow prior without retraining its networks.

The flow prior of a VAE is fitted after the networks, to the aggregate posterior of the
training split (Lanusse et al. 2021, MNRAS 504, 5543, sect. 3.3).  Its fit has settings
of its own (couplings, widths, epochs, the encodings it is fitted to), and a bundle whose
training checkpoints are gone can still have its prior refitted: :func:`refit_prior`
encodes a data set with the bundle's encoder, fits a new flow and writes a copy of the
bundle with the same networks and the new prior.

The data set must be the one the networks were trained on, or one prepared the same way:
the same stamp size, pixel scale and flux scale, and the same standardisation of every
condition (a network sees ``(value - mean) / std`` with the training split's mean and std).
Further data sets of the same population (``extra_data``: another survey of the same
simulator, another field of the same instrument) add galaxies to the flow's fit: they need
the same stamp size, pixel scale and flux units and the condition columns, and are
encoded in the bundle's normalisation whatever their own (their own flux scale and
condition statistics come from their own training split).  The networks are not
retrained, so the report's memorization test still compares with their training split.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Sequence

from ..errors import BundleError, InputDataError
from ..isotropy import ORIENTED
from ..models.posterior import is_refine_rate
from .encodings import REFINE_RATE

#: Relative tolerance of the data set's condition standardisation against the bundle's.
STANDARDISATION_RTOL = 1e-5


def check_dataset_matches(spec, dataset) -> None:
    """Refuse a data set whose stamps or condition standardisation differ from the
    bundle's: the encodings of other stamps would not be those of the training set.

    Raises:
        InputDataError: naming the data set, the quantity, its value and the bundle's.
    """
    check_columns(spec, dataset)
    pairs = stamp_pairs(spec, dataset) + [("flux scale", dataset.flux_scale, spec.flux.scale)]
    for condition in spec.conditions:
        own = dataset.condition(condition.name)
        pairs += [(f"mean of {condition.name!r}", own.mean, condition.mean),
                  (f"std of {condition.name!r}", own.std, condition.std)]
    refuse_mismatch(f"data set {str(dataset.path)!r}", pairs,
                    "; refit the prior on the data set the bundle was trained on")


def stamp_pairs(spec, dataset) -> list[tuple[str, float, float]]:
    """(quantity, the data set's, the bundle's) of the stamps' size and pixel scale."""
    return [("stamp size (pixels)", dataset.stamp_size, spec.stamp_size),
            ("pixel scale (arcsec)", dataset.pixel_scale, spec.pixel_scale)]


def refuse_mismatch(where: str, pairs, hint: str = "") -> None:
    """Raise InputDataError at the first (quantity, got, wanted) of ``pairs`` that differ
    (texts exactly, numbers by :data:`STANDARDISATION_RTOL`)."""
    for what, got, want in pairs:
        same = (got == want if isinstance(want, str) else
                math.isclose(float(got), float(want), rel_tol=STANDARDISATION_RTOL,
                             abs_tol=1e-12))
        if not same:
            shown = [repr(v) if isinstance(v, str) else v for v in (got, want)]
            raise InputDataError(f"{where}: {what} is {shown[0]}, the bundle's is "
                                 f"{shown[1]}{hint}")


def check_columns(spec, dataset) -> None:
    """Refuse a data set without a column of each of the bundle's conditions."""
    for condition in spec.conditions:
        if condition.name not in dataset.catalog.colnames:
            raise InputDataError(f"data set {str(dataset.path)!r} has no column "
                                 f"{condition.name!r}, a condition of the bundle")


def extra_dataset(spec, path: str | os.PathLike, trained_on):
    """Data set ``path`` in the bundle's normalisation, for more flow encodings.

    Raises:
        InputDataError: the data set is the one the bundle was trained on, or its stamp
            size, pixel scale or flux units differ from the bundle's, or it lacks a
            condition column (naming the data set, the quantity and both values).
    """
    from ..data import Dataset

    dataset = Dataset(path)
    where = f"extra data set {str(dataset.path)!r}"
    if dataset.path.resolve() == Path(trained_on.path).resolve():
        raise InputDataError(f"{where} is the data set the flow is refitted on already")
    check_columns(spec, dataset)
    refuse_mismatch(where, stamp_pairs(spec, dataset)
                    + [("flux units", dataset.flux_units, spec.flux.units)])
    return dataset.normalised_as(spec.flux.scale, spec.conditions)


def refit_prior(source: str | os.PathLike, dataset_path: str | os.PathLike,
                out: str | os.PathLike, *, hidden_units: Sequence[int] | None = None,
                n_couplings: int | None = None, epochs: int | None = None,
                orientations: int | None = None, refine_steps: int | None = None,
                refine_rate: float | None = None, noise_correlation: bool | None = None, select: str = "nll",
                spline_bins: int | None = None, condition_shift: bool | None = None,
                fresh_samples: bool | None = None, balance: float | None = None,
                orientation: str | None = None,
                extra_data: Sequence[str | os.PathLike] = (),
                seed: int | None = None, batch_size: int = 64,
                cache_dir: str | os.PathLike | None = None,
                overwrite: bool = False) -> Path:
    """Write a copy of bundle ``source`` at ``out`` with a flow prior fitted anew to the
    encodings of the training split of ``dataset_path``, early-stopped on the validation
    split's (:func:`galsim_vae.training.record.fit_flow_prior_to_encodings`).

    Parameters:
        source:       Bundle folder or shipped bundle name.
        dataset_path: The data set the bundle was trained on (same standardisation).
        out:          Bundle folder to write (the source is never changed).
        hidden_units, n_couplings, epochs: The flow's coupling widths, couplings, most epochs
                      (default: those of the bundle's own flow, the latest refit's
                      if it was refitted, else 128-128, 8, 100).
        orientations: Orientations of each stamp encoded (1-8; default: the bundle's, else
                      8 for a bundle trained with ``augment``, else 1).
        spline_bins:  0: affine couplings; K >= 2: rational-quadratic spline couplings of K
                      bins (default: the bundle's own flow's kind).
        condition_shift: Shift the latents by a linear function of the conditions
                      (:class:`galsim_vae.models.prior.FlowPrior`; default: as the bundle's
                      own flow).
        fresh_samples: Fit the flow to a fresh posterior sample of each encoding every
                      epoch (:func:`galsim_vae.models.prior_fit.fit_flow_prior`'s
                      ``latent_scales``; default: as the bundle's own flow).
        balance:      Weigh each encoding by its conditions' inverse density to this power
                      (0: off; :mod:`.condition_balance`; default: as the bundle's own flow).
        orientation:  "all": fit every encoded orientation; "canonical": the two of each
                      galaxy's eight whose shear has g1, g2 >= 0
                      (:mod:`.canonical_orientation`; default: as the bundle's own flow).
        extra_data:   Further data sets of the same population whose training and
                      validation splits add encodings (:func:`extra_dataset`; not
                      inherited by a next refit).
        refine_steps: Semi-amortized refinement steps of each encoding (default: the
                      bundle's, else 0).
        refine_rate:  Their Adam step in latent units per coordinate (default: the
                      bundle's, else 0.3).
        noise_correlation: Refine with the correlated-noise likelihood (default: as the
                      bundle was trained, ``training.noise_correlation``).
        select:       "nll": keep the flow's epoch of lowest validation NLL; "observed": the
                      epoch whose samples, observed like validation galaxies, are closest
                      to them by the report's targets; "morphology":
                      the epoch whose decoded samples' |g| and sizes are closest to the
                      decoded validation encodings' (:mod:`.flow_selection`).
        seed:         Seed of the encodings' samples and the flow (default: the training's).
        batch_size:   Stamps per encoder call.
        cache_dir:    Folder keeping the encodings (a second refit reads them back).
        overwrite:    Replace ``out`` if it exists.

    Returns:
        The written bundle's folder.  Its training record gains ``prior_refit`` (the settings,
        the source and the flow's training and validation NLL in nats per latent).
    """
    from ..bundle import resolve_bundle
    from ..bundle.edit import save_copy
    from ..bundle.reader import load_bundle
    from ..data import Dataset
    from .record import fit_flow_prior_to_encodings

    path = resolve_bundle(source)
    if Path(out).resolve() == path.resolve():
        raise BundleError(f"--out {str(out)!r} is the source bundle; write the refitted "
                          "bundle to another folder")
    if Path(out).exists() and not overwrite:
        raise BundleError(f"{str(out)!r} exists; pass overwrite=True (--overwrite) to replace it")
    network, spec = load_bundle(path)
    dataset = Dataset(dataset_path)
    check_dataset_matches(spec, dataset)
    extra = [extra_dataset(spec, extra_path, dataset) for extra_path in extra_data]
    training = dict(spec.training)
    own = dict(training.get("prior_refit") or training.get("flow_prior") or {})  # the latest fit
    hidden_units = hidden_units or own.get("units") or (128, 128)
    n_couplings = n_couplings or own.get("couplings") or 8
    epochs = epochs or own.get("max_epochs") or 100
    refine_steps = own.get("refine_steps", 0) if refine_steps is None else refine_steps
    refine_rate = float(own.get("refine_rate", REFINE_RATE) if refine_rate is None
                        else refine_rate)
    spline_bins = own.get("spline_bins", 0) if spline_bins is None else spline_bins
    if condition_shift is None:
        condition_shift = bool(own.get("condition_shift", False))
    if fresh_samples is None:
        fresh_samples = bool(own.get("fresh_samples", False))
    balance = float(own.get("balance", 0.0) if balance is None else balance)
    if not 0.0 <= balance <= 1.0:
        raise InputDataError(f"flow balance must be 0 (off) to 1, got {balance}")
    if orientations is None:
        orientations = own.get("orientations") or (8 if training.get("augment") else 1)
    orientation = orientation or own.get("orientation") or "all"
    symmetry = spec.hyperparameters.get("sample_symmetry", "none")
    if orientation == "canonical" and symmetry not in ORIENTED:
        raise InputDataError(f"bundle {str(path)!r} samples galaxies upright (sample_symmetry "
                             f"{symmetry!r}): a flow of canonical orientations would draw "
                             "every galaxy with g1, g2 >= 0; use --flow-orientation all, or a "
                             "bundle trained with --augment")
    if not 1 <= int(orientations) <= 8:
        raise InputDataError(f"orientations must be 1 to 8, got {orientations}")
    if int(n_couplings) < 1 or int(epochs) < 1 or int(refine_steps) < 0:
        raise InputDataError(f"the flow needs couplings >= 1 and epochs >= 1, and refine "
                             f"steps >= 0; got {n_couplings}, {epochs}, {refine_steps}")
    if not is_refine_rate(refine_rate):
        raise InputDataError(f"the flow's refine rate must be > 0, got {refine_rate}")
    if int(spline_bins) < 0 or int(spline_bins) == 1:
        raise InputDataError(f"spline bins must be 0 (affine couplings) or >= 2, got "
                             f"{spline_bins}")
    if seed is None:
        seed = int(training.get("seed") or 0)
    with_psf = bool(spec.psf_free)      # a PSF-free model's likelihood convolves the PSF
    if noise_correlation is None:
        noise_correlation = bool(training.get("noise_correlation", False))
    if cache_dir is not None:
        Path(cache_dir).mkdir(parents=True, exist_ok=True)
    final_beta = float((training.get("final") or {}).get("beta", 0.0))
    prior = fit_flow_prior_to_encodings(
        network, dataset, [c.name for c in spec.conditions], with_psf, int(batch_size),
        epochs=int(epochs), seed=int(seed), orientations=int(orientations),
        hidden_units=tuple(int(u) for u in hidden_units), n_couplings=int(n_couplings),
        refine_steps=int(refine_steps), refine_rate=refine_rate, prior_weight=final_beta,
        cache_dir=cache_dir,
        noise_correlation=bool(noise_correlation), select=select,
        spline_bins=int(spline_bins), condition_shift=bool(condition_shift),
        fresh_samples=bool(fresh_samples), balance=balance, orientation=orientation,
        extra_datasets=extra)
    network.attach_prior(prior)
    record = {"from": str(path), "data": str(Path(dataset.path).resolve()),
              "orientations": int(orientations), "refine_steps": int(refine_steps),
              "refine_rate": refine_rate,
              "units": [int(u) for u in hidden_units], "couplings": int(n_couplings),
              "max_epochs": int(epochs), "seed": int(seed), "select": select,
              "spline_bins": int(spline_bins), "condition_shift": prior.condition_shift,
              "fresh_samples": bool(fresh_samples), "balance": balance,
              "orientation": orientation,
              "extra_data": [str(Path(x.path).resolve()) for x in extra],
              "best_epoch": int(prior.best_epoch),
              "nll": float(prior.training_losses[prior.best_epoch - 1])}
    if getattr(prior, "validation_losses", None):
        record["val_nll"] = float(prior.validation_losses[prior.best_epoch - 1])
    if getattr(prior, "scores", None):
        record["scores"] = [[int(e), float(v)] for e, v in prior.scores]
    training["prior_refit"] = record
    return save_copy(network, spec, path, out, training=training, prior=prior,
                     overwrite=overwrite)
