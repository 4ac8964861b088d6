"""The evaluation report of a model bundle on a data set (``galsim-vae evaluate``).

:func:`evaluate` writes, atomically, a folder with ``report.md``, PNG figures and
``metrics.json`` (every number of the report):

=====================  ===================================================================
``loss.png``           training and validation loss, NLL and KL per epoch, with beta
                       (from the bundle's ``history.csv``; absent, and said so, without it)
``reconstructions.png`` held-out galaxies: data, the model image the likelihood compares
                       with the data (PSF-convolved for PSF-free models), the PSF-free
                       profile, residual / sigma
``generated.png``      prior samples (eps ~ N(0, I), seeded numpy Generator ->
                       ``prior_transform`` -> ``decode``): the generated profiles
``generated_observed.png``  the same galaxies observed like the data (held-out PSF + noise)
``redshift_strip.png`` conditional models: one latent draw from the lowest to the highest
                       training redshift
``latent.png``         PCA and t-SNE maps of the held-out posterior means, coloured by
                       redshift
``morphology.png``     distributions of the morphology statistics, generated vs held-out
``redshift_bins.png``  conditional models: median size and flux per redshift bin
=====================  ===================================================================

``metrics.json`` keys: ``bundle``, ``dataset``, ``seed``, ``training`` (``has_history``;
with it ``n_epochs``, ``final`` (last epoch's row), ``best_epoch``, ``best_val_loss``),
``reconstruction`` (``chi2_per_pixel`` mean over the held-out galaxies,
``chi2_per_pixel_median``, ``n_galaxies``, ``split``), ``generation`` (``n_generated``,
``seed``, ``pairing``), ``redshift_strip`` (conditional: ``redshift``, ``flux``,
``hlr_arcsec`` of the strip's profiles), ``latent`` (``pca_explained_variance_ratio``,
``tsne_perplexity``, ``colour``), ``prior_typicality`` (the held-out posterior means'
log-density under the prior against prior samples': ``median_log_density``,
``median_log_density_prior_samples``, ``threshold``, ``fraction_typical``; see
:func:`galsim_vae.evaluation.latent.prior_typicality`), ``morphology`` (``columns``, ``statistics``: per column
the :func:`compare_distributions` row plus ``ks_null_median`` (the median KS statistic of
two samples of those sizes from one distribution), ``nonparametric``, ``seconds_per_stamp``,
``n_flagged_generated``, ``n_flagged_heldout``), ``redshift_bins`` (conditional: the
:func:`binned_medians` table as lists), ``truth`` (simulated surveys, else null),
``targets`` (list of ``target``, ``value``, ``requirement``, ``met``), ``anchor``,
``figures`` (name -> file), ``notes``, ``elapsed_s``.  Non-finite numbers are written as
null.

Generated galaxies are rendered like the data before they are measured: each is paired
with a held-out galaxy (random pairing, seeded) whose PSF and noise it receives (its
variance, and its correlation when the data set records its noise power spectra:
:func:`galsim_vae.evaluation.observe_like_data`) and, for conditional models, whose
redshift it is generated at, so both samples share the PSF, noise and redshift
distributions.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import InputDataError
from ...io_utils import atomic_directory, check_output_path
from .context import (FIGURES, METRICS_FILE, N_ISOTROPY, REPORT_FILE, Context, check_count,
                      plain)
from .section_conditioning import conditioning_section
from .section_fidelity import fidelity_section
from .section_generation import generation_section
from .section_morphology import morphology_section
from .section_reconstruction import reconstruction_section
from .section_training import history_metrics


def evaluate(bundle_path: str | os.PathLike, dataset_path: str | os.PathLike,
             out_dir: str | os.PathLike, *, n_generated: int | None = None,
             max_heldout: int | None = None, nonparametric: bool = False, seed: int = 0,
             overwrite: bool = False, batch_size: int = 64,
             split: str = "auto", n_isotropy: int | None = N_ISOTROPY,
             selection: bool = True) -> dict[str, Any]:
    """Evaluate a model bundle on a data set's held-out galaxies and write the report.

    Parameters:
        bundle_path:    Bundle folder or name of a shipped bundle.
        dataset_path:   Data set folder (same stamp size, pixel scale and convertible flux
                        units as the bundle; PSFs for PSF-free models; the condition
                        columns the model takes).
        out_dir:        Report folder to create (atomically).
        n_generated:    Generated galaxies for the morphology comparison (None: as many
                        as held-out galaxies, at most 2000).
        max_heldout:    Use at most this many held-out galaxies (a seeded random subset).
        nonparametric:  Also compare Gini, M20, concentration and asymmetry (statmorph;
                        ~0.15 s per stamp).
        seed:           Seed of every random number of the report (numpy Generator).
        overwrite:      Replace an existing ``out_dir``.
        batch_size:     Galaxies per network call.
        split:          Galaxies to evaluate on: ``"auto"`` (the test split, else the
                        validation split), ``"test"``, ``"validation"``, ``"train"`` or
                        ``"all"`` (every row: for a data set the model was not trained on,
                        e.g. real COSMOS galaxies for a model trained on a simulation).
        n_isotropy:     Generated galaxies of the isotropy test of the fidelity section
                        (default 40,000: see ``context.N_ISOTROPY``); 0 or None: no fidelity section.
        selection:      Observe each generated galaxy with noise drawn given that it
                        passes the data set's sample cuts (COSMOS: measured MAG_AUTO below
                        the sample's limit, ``sn_ellip_gauss`` >= 10), as the data were
                        selected on their own noise (:mod:`galsim_vae.evaluation.selection`);
                        False: one fresh draw each.  The report also shows the moment
                        statistics of the one-draw observation.

    Returns:
        The metrics (what ``metrics.json`` holds; see the module docstring).

    Raises:
        InputDataError: bundle and data set disagree, nothing held out, bad options.
        BundleError: the bundle is invalid.
        OutputExistsError: ``out_dir`` exists and not ``overwrite``.
    """
    from ...data import Dataset
    from ...generator import load_model
    from .inputs import (check_compatibility, condition_range_notes, load_heldout,
                                select_heldout, training_data_notes)
    from .markdown import render_report

    started = time.time()
    n_generated = check_count(n_generated, "n_generated")
    max_heldout = check_count(max_heldout, "max_heldout")
    batch_size = check_count(batch_size, "batch_size")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputDataError(f"seed must be a whole number >= 0, got {seed!r}")
    out_dir = check_output_path(out_dir, overwrite=overwrite)
    galaxy_model = load_model(bundle_path)
    spec, bundle_path = galaxy_model.spec, galaxy_model.path
    dataset = Dataset(dataset_path)
    compat = check_compatibility(spec, dataset, bundle_path=str(bundle_path))
    rows, split, notes = select_heldout(dataset, compat.condition_names,
                                        max_heldout=max_heldout, seed=seed, split=split)
    heldout = load_heldout(dataset, spec, rows, split, compat.condition_names)
    notes = (compat.notes + notes + training_data_notes(spec, dataset, split)
             + condition_range_notes(spec, heldout.raw_conditions))

    with atomic_directory(out_dir, overwrite=overwrite) as tmp:
        metrics = _run(galaxy_model, dataset, heldout, compat, tmp, notes,
                       n_generated=n_generated, nonparametric=bool(nonparametric),
                       seed=int(seed), batch_size=batch_size,
                       n_isotropy=check_count(n_isotropy or None, "n_isotropy"),
                       selection=bool(selection))
        metrics["elapsed_s"] = round(time.time() - started, 2)
        metrics = plain(metrics)
        (tmp / METRICS_FILE).write_text(json.dumps(metrics, indent=2) + "\n")
        (tmp / REPORT_FILE).write_text(render_report(metrics))
    return metrics


def _run(model, dataset, heldout, compat, out: Path, notes: list[str], *,
         n_generated: int | None, nonparametric: bool, seed: int,
         batch_size: int, n_isotropy: int | None, selection: bool) -> dict[str, Any]:
    """Compute every number and figure of the report into the folder ``out``."""
    from ..selection import NO_SELECTION, dataset_selection
    from .targets import LANUSSE_2021, evaluate_targets, fidelity_targets
    from .truth import compare_with_truth, find_truth_table

    ctx = Context(model=model, dataset=dataset, heldout=heldout, compat=compat,
                   out=out, seed=seed, batch_size=batch_size, notes=notes)
    ctx.results["selection"] = dataset_selection(dataset) if selection else NO_SELECTION
    spec, bundle_path = model.spec, model.path
    pair_rng, eps_rng, noise_rng, strip_rng, fidelity_rng = (
        np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(5))
    metrics: dict[str, Any] = {
        "bundle": {"path": str(bundle_path), "name": spec.name,
                   "architecture": spec.architecture, "psf_free": spec.psf_free,
                   "latent_size": spec.latent_size, "stamp_size": spec.stamp_size,
                   "pixel_scale": spec.pixel_scale, "flux_units": spec.flux.units,
                   "flux_scale": spec.flux.scale,
                   "conditions": [c.to_dict() for c in spec.conditions],
                   "prior": spec.prior.kind},
        "dataset": {"path": str(dataset.path), "n_galaxies": dataset.n_galaxies,
                    "flux_units": dataset.flux_units, "flux_scale": dataset.flux_scale,
                    "unit_factor": compat.unit_factor, "heldout_split": heldout.split,
                    "n_heldout": len(heldout)},
        "seed": seed,
    }
    metrics["training"] = history_metrics(bundle_path, out / FIGURES["loss"], notes)
    if metrics["training"]["has_history"]:
        ctx.figure("loss")
    metrics.update(reconstruction_section(ctx))
    pairs, profiles, observed = generation_section(ctx, metrics, n_generated,
                                                    (pair_rng, eps_rng, noise_rng, strip_rng))
    statistics, binned_ratios = morphology_section(ctx, metrics, pairs, observed,
                                                    nonparametric)
    ctx.results.update(pairs=pairs, generated_observed=observed)
    conditioning_section(ctx, metrics, pairs, profiles)
    if n_isotropy:
        fidelity_section(ctx, metrics, pairs, profiles, fidelity_rng, n_isotropy=n_isotropy)
    truth_path = find_truth_table(dataset)
    metrics["dataset"]["simulated_survey"] = truth_path is not None
    metrics["truth"] = None
    if truth_path is not None and not model.psf_free:
        ctx.notes.append("the data set comes from a simulated survey, but this model's samples "
                         "carry the HST PSF: they are not compared with the PSF-free truth")
    elif truth_path is not None:
        metrics["truth"] = compare_with_truth(truth_path, heldout.idents[pairs], profiles,
                                              pixel_scale=dataset.pixel_scale)
    metrics["targets"] = evaluate_targets(statistics, metrics["reconstruction"]["chi2_per_pixel"],
                                          binned_ratios)
    metrics["fidelity_targets"] = fidelity_targets(metrics)
    metrics["anchor"] = {
        "reference": "Lanusse et al. 2021, MNRAS 504, 5543 (COSMOS I<25.2)",
        "mean_abs_g": {"generated": LANUSSE_2021["mean_abs_g"][0],
                       "real": LANUSSE_2021["mean_abs_g"][1]},
        "mean_size_arcsec": {"generated": LANUSSE_2021["mean_size_arcsec"][0],
                             "real": LANUSSE_2021["mean_size_arcsec"][1]}}
    metrics["figures"] = ctx.figures
    metrics["notes"] = ctx.notes
    return metrics
