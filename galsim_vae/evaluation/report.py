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
with a held-out galaxy (random pairing, seeded) whose PSF and noise level it receives
(:func:`galsim_vae.evaluation.observe_like_data`) and, for conditional models, whose
redshift it is generated at, so both samples share the PSF, noise and redshift
distributions.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputDataError
from ..io_utils import atomic_directory, check_output_path, progress
from .render import observe_like_data

#: Default cap on the number of generated galaxies (``n_generated=None``).
MAX_DEFAULT_GENERATED = 2000
#: Galaxies shown in the reconstruction figure and the generated grids.
N_SHOWN_RECONSTRUCTIONS = 6
N_SHOWN_GENERATED = 24
#: Steps of the redshift strip.
N_STRIP = 8
#: Equal-count redshift bins of the per-bin medians.
N_REDSHIFT_BINS = 5
#: Statistics always compared (HSM moments, flux, half-light radius).
MOMENT_STATISTICS = ("flux", "sigma_arcsec", "hlr_arcsec", "g", "rho4")
#: Statistics added with ``nonparametric=True`` (statmorph).
NONPARAMETRIC_STATISTICS = ("gini", "m20", "concentration", "asymmetry")
#: Statistics whose per-redshift-bin medians are reported.
BINNED_STATISTICS = ("sigma_arcsec", "hlr_arcsec", "flux")
#: Galaxies measured per call of measure_morphology (bounds memory on big held-out sets).
MORPHOLOGY_CHUNK = 512
#: Generated galaxies convolved with their PSFs per FFT call.
OBSERVE_CHUNK = 256
#: File names.
REPORT_FILE = "report.md"
METRICS_FILE = "metrics.json"
FIGURES = {"loss": "loss.png", "reconstructions": "reconstructions.png",
           "generated": "generated.png", "generated_observed": "generated_observed.png",
           "redshift_strip": "redshift_strip.png", "latent": "latent.png",
           "morphology": "morphology.png", "redshift_bins": "redshift_bins.png"}


def _check_count(value: Any, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise InputDataError(f"{name} must be a whole number >= 1 (or None), got {value!r}")
    return int(value)


def _plain(value: Any) -> Any:
    """JSON-able copy: numpy scalars/arrays to Python, non-finite floats to None."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(float(value)) else None
    if isinstance(value, (str, type(None))):
        return value
    return str(value)


def _table_rows(table, key: str = "statistic") -> dict[str, dict[str, Any]]:
    return {str(row[key]): {name: row[name] for name in table.colnames if name != key}
            for row in table}


def _history_metrics(bundle_path: Path, figure_path: Path, notes: list[str]) -> dict[str, Any]:
    """Loss curves from the bundle's history.csv (figure + numbers)."""
    from ..history import plot_loss_curves, read_history_csv

    path = bundle_path / "history.csv"
    if not path.is_file():
        notes.append("the bundle has no history.csv: no loss curves")
        return {"has_history": False}
    history = read_history_csv(path)
    if not history:
        notes.append("the bundle's history.csv is empty: no loss curves")
        return {"has_history": False}
    plot_loss_curves(history, figure_path, title=f"training history of {bundle_path.name}")
    monitored = [row.get("val_monitor", row.get("val_loss", math.nan)) for row in history]
    best = int(np.nanargmin(monitored)) if np.isfinite(monitored).any() else len(history) - 1
    return {"has_history": True, "n_epochs": len(history), "final": dict(history[-1]),
            "best_epoch": int(history[best]["epoch"]), "best_val_loss": monitored[best]}


def _measure_heldout(dataset, heldout, nonparametric: bool):
    """Morphology of the held-out stamps, in chunks of MORPHOLOGY_CHUNK."""
    from astropy.table import vstack

    from .morphology import measure_morphology
    from .report_inputs import read_images

    tables, seconds = [], 0.0
    for start in range(0, len(heldout), MORPHOLOGY_CHUNK):
        stop = min(start + MORPHOLOGY_CHUNK, len(heldout))
        table = measure_morphology(
            read_images(dataset, heldout.rows[start:stop]), pixel_scale=dataset.pixel_scale,
            noise_sigma=heldout.noise_sigma[start:stop],
            psf=None if heldout.psfs is None else heldout.psfs[start:stop],
            nonparametric=nonparametric, desc="held-out morphology")
        seconds += table.meta["seconds_per_stamp"] * (stop - start)
        tables.append(table)
    table = vstack(tables, metadata_conflicts="silent") if len(tables) > 1 else tables[0]
    table.meta["seconds_per_stamp"] = seconds / len(heldout)
    return table


def _observe(profiles: np.ndarray, psfs: np.ndarray | None, noise_sigma: np.ndarray,
             rng: np.random.Generator) -> np.ndarray:
    """Generated profiles observed like the data, in chunks (bounded FFT memory).

    PSF-free profiles get their paired galaxy's PSF and noise; profiles that carry the
    HST PSF already (``psfs`` None) get the noise only.
    """
    observed = np.empty(profiles.shape, dtype=np.float32)
    starts = range(0, profiles.shape[0], OBSERVE_CHUNK)
    for start in progress(starts, total=len(starts), desc="observe like the data"):
        stop = min(start + OBSERVE_CHUNK, profiles.shape[0])
        psf = np.ones((1, 1)) if psfs is None else psfs[start:stop]
        observed[start:stop] = observe_like_data(profiles[start:stop], psf,
                                                 noise_sigma[start:stop], rng)
    return observed


def evaluate(bundle_path: str | os.PathLike, dataset_path: str | os.PathLike,
             out_dir: str | os.PathLike, *, n_generated: int | None = None,
             max_heldout: int | None = None, nonparametric: bool = False, seed: int = 0,
             overwrite: bool = False, batch_size: int = 64,
             split: str = "auto") -> dict[str, Any]:
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

    Returns:
        The metrics (what ``metrics.json`` holds; see the module docstring).

    Raises:
        InputDataError: bundle and data set disagree, nothing held out, bad options.
        BundleError: the bundle is invalid.
        OutputExistsError: ``out_dir`` exists and not ``overwrite``.
    """
    from ..data import Dataset
    from ..generator import load_model
    from .report_inputs import (check_compatibility, condition_range_notes, load_heldout,
                                select_heldout, training_data_notes)
    from .report_markdown import render_report

    started = time.time()
    n_generated = _check_count(n_generated, "n_generated")
    max_heldout = _check_count(max_heldout, "max_heldout")
    batch_size = _check_count(batch_size, "batch_size")
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
                       seed=int(seed), batch_size=batch_size)
        metrics["elapsed_s"] = round(time.time() - started, 2)
        metrics = _plain(metrics)
        (tmp / METRICS_FILE).write_text(json.dumps(metrics, indent=2) + "\n")
        (tmp / REPORT_FILE).write_text(render_report(metrics))
    return metrics


@dataclass
class _Context:
    """What every section of the report uses."""

    model: Any              # the GalaxyModel: generation and spec
    dataset: Any
    heldout: Any
    compat: Any
    out: Path
    seed: int
    batch_size: int
    figures: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)

    @property
    def net(self) -> float:
        """Network units per data-set flux unit."""
        return self.compat.net_per_data

    @property
    def conditional(self) -> bool:
        return bool(self.compat.condition_names)

    def figure(self, key: str) -> Path:
        """Path of figure ``key``, recorded as written."""
        self.figures[key] = FIGURES[key]
        return self.out / FIGURES[key]


def _run(model, dataset, heldout, compat, out: Path, notes: list[str], *,
         n_generated: int | None, nonparametric: bool, seed: int,
         batch_size: int) -> dict[str, Any]:
    """Compute every number and figure of the report into the folder ``out``."""
    from .report_targets import LANUSSE_2021, evaluate_targets
    from .report_truth import compare_with_truth, find_truth_table

    ctx = _Context(model=model, dataset=dataset, heldout=heldout, compat=compat,
                   out=out, seed=seed, batch_size=batch_size, notes=notes)
    spec, bundle_path = model.spec, model.path
    pair_rng, eps_rng, noise_rng, strip_rng = (
        np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(4))
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
    metrics["training"] = _history_metrics(bundle_path, out / FIGURES["loss"], notes)
    if metrics["training"]["has_history"]:
        ctx.figure("loss")
    metrics.update(_reconstruction_section(ctx))
    pairs, profiles, observed = _generation_section(ctx, metrics, n_generated,
                                                    (pair_rng, eps_rng, noise_rng, strip_rng))
    statistics, binned_ratios = _morphology_section(ctx, metrics, pairs, observed,
                                                    nonparametric)
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
    metrics["anchor"] = {
        "reference": "Lanusse et al. 2021, MNRAS 504, 5543 (COSMOS I<25.2)",
        "mean_abs_g": {"generated": LANUSSE_2021["mean_abs_g"][0],
                       "real": LANUSSE_2021["mean_abs_g"][1]},
        "mean_size_arcsec": {"generated": LANUSSE_2021["mean_size_arcsec"][0],
                             "real": LANUSSE_2021["mean_size_arcsec"][1]}}
    metrics["figures"] = ctx.figures
    metrics["notes"] = ctx.notes
    return metrics


def _reconstruction_section(ctx: _Context) -> dict[str, Any]:
    """Reconstructions, their chi-square per pixel and the latent maps of the held-out set."""
    from .latent import latent_maps, prior_typicality
    from .plots import plot_latent_maps, plot_reconstructions
    from .reconstruction import reconstruct
    from .report_inputs import read_images

    heldout, net, psf_free = ctx.heldout, ctx.net, bool(ctx.model.psf_free)

    def images_fn(start: int, stop: int) -> np.ndarray:
        return read_images(ctx.dataset, heldout.rows[start:stop]) * net

    recon = reconstruct(ctx.model, images_fn, len(heldout), noise_sigma=heldout.noise_sigma * net,
                        psfs=heldout.psfs if psf_free else None,
                        conditions=heldout.raw_conditions if ctx.conditional else None,
                        batch_size=ctx.batch_size,
                        n_show=N_SHOWN_RECONSTRUCTIONS)
    model_image = "psf*profile" if psf_free else "profile"
    out: dict[str, Any] = {"reconstruction": {
        "chi2_per_pixel": float(np.mean(recon.chi2)),
        "chi2_per_pixel_median": float(np.median(recon.chi2)),
        "n_galaxies": len(heldout), "split": heldout.split,
        "definition": f"mean over galaxies of sum((x - {model_image})^2 / sigma^2) / S^2, "
                      "profile = decode(posterior mean)"}}
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


def _generation_section(ctx: _Context, metrics: dict[str, Any], n_generated: int | None,
                        rngs) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Prior samples paired with held-out galaxies, their grids and the redshift strip.

    Returns:
        (pairs: held-out position of each generated galaxy's partner, PSF-free (or
        as-generated) profiles and the observed-like stamps, both in data-set flux units).
    """
    from .morphology import measure_morphology
    from .plots import plot_stamp_grid
    from .report_generate import generate_profiles, redshift_strip

    pair_rng, eps_rng, noise_rng, strip_rng = rngs
    heldout, model, net = ctx.heldout, ctx.model, ctx.net
    n_heldout = len(heldout)
    n_gen = n_generated or min(n_heldout, MAX_DEFAULT_GENERATED)
    pairs = pair_rng.choice(n_heldout, size=n_gen, replace=n_gen > n_heldout)
    eps = eps_rng.standard_normal((n_gen, int(model.noise_size)))
    gen_conditions = heldout.raw_conditions[pairs] if ctx.conditional else None
    profiles = (generate_profiles(model, eps, gen_conditions, batch_size=ctx.batch_size)
                / net).astype(np.float32)
    observed = _observe(profiles, heldout.psfs[pairs] if model.psf_free else None,
                        heldout.noise_sigma[pairs], noise_rng)
    metrics["generation"] = {
        "n_generated": n_gen, "seed": ctx.seed,
        "pairing": "each generated galaxy takes the PSF, noise level"
                   + (" and conditions" if ctx.conditional else "")
                   + " of a randomly drawn held-out galaxy"
                   + (" (drawn with replacement)" if n_gen > n_heldout else ""),
        "path": "eps ~ N(0, I) (numpy Generator) -> GalaxyModel.decode_batch (prior "
                "transform and decoder, as sample/VAEGalaxy/YAML)"}
    softening = float(np.median(heldout.noise_sigma))
    shown = min(N_SHOWN_GENERATED, n_gen)
    titles = ([f"{heldout.redshift_name}={heldout.raw_conditions[p, 0]:.2f}"
               for p in pairs[:shown]] if ctx.conditional else None)
    kind = "PSF-free profiles" if model.psf_free else "galaxies"
    plot_stamp_grid(profiles[:shown], ctx.figure("generated"), softening=softening,
                    titles=titles, suptitle=f"generated {kind} (seed {ctx.seed}, first {shown})")
    plot_stamp_grid(observed[:shown], ctx.figure("generated_observed"), softening=softening,
                    titles=titles,
                    suptitle="the same, observed like the held-out data (their PSF and noise)")
    if ctx.conditional:
        redshifts, strip = redshift_strip(model, strip_rng, n_steps=N_STRIP)
        strip = strip / net
        plot_stamp_grid(strip, ctx.figure("redshift_strip"), softening=softening,
                        titles=[f"{ctx.compat.condition_names[0]}={z:.2f}" for z in redshifts],
                        ncols=N_STRIP,
                        suptitle="one latent draw across the training redshift range")
        strip_stats = measure_morphology(strip, pixel_scale=ctx.dataset.pixel_scale,
                                         noise_sigma=0.0, nonparametric=False,
                                         desc="redshift strip")
        metrics["redshift_strip"] = {"redshift": redshifts,
                                     "flux": np.asarray(strip_stats["flux"]),
                                     "hlr_arcsec": np.asarray(strip_stats["hlr_arcsec"])}
    return pairs, profiles, observed


def _morphology_section(ctx: _Context, metrics: dict[str, Any], pairs: np.ndarray,
                        observed: np.ndarray, nonparametric: bool):
    """Morphology of generated against held-out galaxies, overall and per redshift bin.

    Returns:
        (per-statistic comparison rows, per-bin median ratios or None).
    """
    from .compare import binned_medians, compare_distributions, plot_distributions
    from .morphology import measure_morphology
    from .plots import plot_binned_medians
    from .report_targets import ks_null_median

    heldout = ctx.heldout
    reference = _measure_heldout(ctx.dataset, heldout, nonparametric)
    generated = measure_morphology(observed, pixel_scale=ctx.dataset.pixel_scale,
                                   noise_sigma=heldout.noise_sigma[pairs],
                                   psf=None if heldout.psfs is None else heldout.psfs[pairs],
                                   nonparametric=nonparametric, desc="generated morphology")
    columns = list(MOMENT_STATISTICS) + (list(NONPARAMETRIC_STATISTICS) if nonparametric else [])
    comparison = compare_distributions(generated, reference, columns)
    plot_distributions(generated, reference, columns, ctx.figure("morphology"),
                       labels=("generated", f"held-out ({heldout.split})"), overwrite=True)
    statistics = _table_rows(comparison)
    for row in statistics.values():
        row["ks_null_median"] = ks_null_median(int(row["n_generated"]), int(row["n_reference"]))
    metrics["morphology"] = {
        "columns": columns, "statistics": statistics, "nonparametric": nonparametric,
        "seconds_per_stamp": float(generated.meta["seconds_per_stamp"]),
        "n_flagged_generated": int(generated.meta["n_flagged"]),
        "n_flagged_heldout": int(reference.meta["n_flagged"])}
    if not ctx.conditional:
        return statistics, None
    if np.isfinite(heldout.redshift).sum() < N_REDSHIFT_BINS:
        ctx.notes.append(f"fewer than {N_REDSHIFT_BINS} held-out galaxies with a redshift: "
                         "no per-redshift-bin medians")
        return statistics, None
    reference["redshift"] = heldout.redshift
    generated["redshift"] = heldout.raw_conditions[pairs, 0]
    bins = binned_medians(generated, reference, by="redshift", bins=N_REDSHIFT_BINS,
                          columns=BINNED_STATISTICS)
    plot_binned_medians(bins, ("sigma_arcsec", "flux"), ctx.figure("redshift_bins"),
                        by_label=heldout.redshift_name)
    metrics["redshift_bins"] = {"by": heldout.redshift_name,
                                **{name: np.asarray(bins[name]) for name in bins.colnames}}
    return statistics, {f"ratio_{c}": list(np.asarray(bins[f"ratio_{c}"], dtype=float))
                        for c in ("sigma_arcsec", "flux")}
