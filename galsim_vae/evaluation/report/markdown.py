"""``report.md`` of the evaluation report, rendered from its metrics (``metrics.json``).

Every number in the text comes from the metrics dict, so the Markdown and the JSON never
disagree.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

from .markdown_fidelity import render_conditioning, render_fidelity


def _f(value: Any, digits: int = 4) -> str:
    """A number for a table cell (``n/a`` for None)."""
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def _cell(text: Any) -> str:
    """Text for a Markdown table cell (pipes escaped)."""
    return str(text).replace("|", "\\|")


def _figure(metrics: Mapping[str, Any], key: str, caption: str) -> list[str]:
    name = (metrics.get("figures") or {}).get(key)
    return [f"![{caption}]({name})", ""] if name else []


def _training(metrics: Mapping[str, Any]) -> list[str]:
    lines = ["## Training history", ""]
    training = metrics["training"]
    if not training.get("has_history"):
        return lines + ["The bundle has no `history.csv`: no loss curves are available.", ""]
    final = training["final"]
    lines += [f"{training['n_epochs']} epochs; the lowest validation loss "
              f"({_f(training['best_val_loss'])} nats/galaxy) was at epoch "
              f"{training['best_epoch']}.  Last epoch (nats per galaxy):", "",
              "| split | loss | NLL | KL |", "|---|---|---|---|"]
    for split in ("train", "val"):
        lines.append(f"| {split} | {_f(final.get(f'{split}_loss'))} | "
                     f"{_f(final.get(f'{split}_nll'))} | {_f(final.get(f'{split}_kl'))} |")
    lines.append("")
    return lines + _figure(metrics, "loss", "training and validation loss, NLL and KL per epoch")


def _reconstruction(metrics: Mapping[str, Any]) -> list[str]:
    rec = metrics["reconstruction"]
    psf_free = metrics["bundle"]["psf_free"]
    lines = ["## Reconstructions of held-out galaxies", "",
             f"Held-out set: the **{rec['split']}** split, {rec['n_galaxies']} galaxies.  "
             "Reconstruction = the decoded posterior mean (posterior: "
             + rec.get("posterior", "the encoder's q(z | x)") + ")"
             + ("; the likelihood compares the data with it convolved with each galaxy's own "
                "HST PSF (second column); the third column is the PSF-free profile" if psf_free
                else "") + ".  Residuals are in units of each galaxy's pixel noise.", "",
             f"Chi-square per pixel ({rec['definition']}): mean **{_f(rec['chi2_per_pixel'])}**, "
             f"median {_f(rec['chi2_per_pixel_median'])} (1 for a perfect noise-free model "
             "and white noise).", ""]
    return lines + _figure(metrics, "reconstructions",
                           "data, reconstruction, residual / sigma of held-out galaxies")


def _generation(metrics: Mapping[str, Any]) -> list[str]:
    gen = metrics["generation"]
    lines = ["## Generated galaxies", "",
             f"{gen['n_generated']} prior samples, random seed {gen['seed']} (not hand-picked; "
             f"the grids show the first ones): {gen['path']}.  For the comparisons "
             f"{gen['pairing']}" + (f"; noise: {gen['noise']}" if gen.get("noise") else "")
             + ".", ""] + _selection(gen.get("selection"))
    lines += _figure(metrics, "generated", "generated galaxies")
    lines += _figure(metrics, "generated_observed",
                     "generated galaxies observed like the data (PSF and noise)")
    strip = metrics.get("redshift_strip")
    if strip:
        lines += ["### One latent across redshift", "",
                  "The same latent draw decoded from the lowest to the highest training "
                  "redshift:", "", "| redshift | flux | half-light radius [arcsec] |",
                  "|---|---|---|"]
        for z, flux, hlr in zip(strip["redshift"], strip["flux"], strip["hlr_arcsec"]):
            lines.append(f"| {_f(z, 3)} | {_f(flux)} | {_f(hlr)} |")
        lines.append("")
        lines += _figure(metrics, "redshift_strip", "one latent across the redshift range")
    return lines


def _selection(selection: Mapping[str, Any] | None) -> list[str]:
    if not selection or not selection.get("active"):
        return ["The data set records no noise-dependent sample cut: each generated galaxy "
                "is observed with one fresh noise draw.", ""]
    return [f"The held-out galaxies passed their sample's cuts on their own noise "
            f"({selection['cuts']}), so each generated galaxy is observed with noise drawn "
            "given that it passes them: fresh draws until it does (the data's noise given "
            f"selection).  {_f(100 * selection['fraction_redrawn'], 3)}% needed more than one "
            f"draw (mean {_f(selection['mean_draws'], 4)}); {selection['n_not_selected']} passed "
            f"in none of {selection['max_draws']} and are left out of the comparisons.", ""]


def _typicality(metrics: Mapping[str, Any]) -> list[str]:
    typ = metrics.get("prior_typicality")
    if not typ:
        return []
    return ["### Held-out encodings under the prior", "",
            f"Log-density of the posterior means under the model's prior, at each galaxy's "
            f"conditions: median {_f(typ['median_log_density'])} nats, against "
            f"{_f(typ['median_log_density_prior_samples'])} for prior samples drawn at the same "
            f"conditions; **{_f(100 * typ['fraction_typical'], 3)}%** of the "
            f"{typ['n_galaxies']} galaxies lie above the prior samples' "
            f"{_f(typ['percentile'], 2)}st percentile ({_f(typ['threshold'])} nats).  Galaxies drawn "
            "like the training set give close to 99%; a low fraction means the model encodes these "
            "galaxies where its prior puts little mass (they are unlike its training set).", ""]


def _latent(metrics: Mapping[str, Any]) -> list[str]:
    latent = metrics.get("latent")
    if not latent:
        return _typicality(metrics)
    ratios = ", ".join(_f(r, 3) for r in latent["pca_explained_variance_ratio"][:5])
    colour = (f"coloured by `{latent['colour']}`" if latent.get("colour")
              else "uncoloured (unconditional model, no redshift in the data set)")
    perplexity = (f"t-SNE perplexity {_f(latent['tsne_perplexity'], 3)}"
                  if latent.get("tsne_perplexity") else "too few galaxies for t-SNE")
    lines = ["## Latent space of the held-out set", "",
             f"Posterior means of {latent['n_galaxies']} held-out galaxies, {colour}.  PCA "
             f"explained-variance ratios of the first components: {ratios}; {perplexity}.", ""]
    return (lines + _figure(metrics, "latent", "PCA and t-SNE maps of the latent space")
            + _typicality(metrics))


def _morphology(metrics: Mapping[str, Any]) -> list[str]:
    morph = metrics["morphology"]
    lines = ["## Morphology: generated against held-out", "",
             "Both samples are measured the same way on stamps with the held-out galaxies' "
             "PSFs and noise (`measure_morphology`: flux = stamp sum; HSM adaptive-moment "
             "size `sigma_arcsec`; curve-of-growth `hlr_arcsec`; HSM `|g|` (`g`) and `rho4`"
             + ("; statmorph Gini, M20, C, A" if morph["nonparametric"] else "") + ").  "
             f"Flagged measurements: {morph['n_flagged_generated']} generated, "
             f"{morph['n_flagged_heldout']} held-out.", "",
             "| statistic | mean generated | mean held-out | ratio of means | s.e. | "
             "median generated | median held-out | KS | KS p | KS if identical |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for column in morph["columns"]:
        row = morph["statistics"][column]
        lines.append(f"| {column} | {_f(row['mean_generated'])} | {_f(row['mean_reference'])} | "
                     f"{_f(row['mean_ratio'])} | {_f(row.get('mean_ratio_sem'), 2)} | "
                     f"{_f(row['median_generated'])} | "
                     f"{_f(row['median_reference'])} | {_f(row['ks_statistic'], 3)} | "
                     f"{_f(row['ks_pvalue'], 3)} | {_f(row.get('ks_null_median'), 3)} |")
    lines += ["", "*s.e.*: the standard error of the ratio of means for two independent "
              "samples (to first order, from each sample's scatter): a model whose mean is "
              "right still misses the ratio by more than 2 s.e. in ~5% of evaluations.", "",
              "*KS if identical*: the median KS statistic of two samples of these sizes "
              "drawn from one distribution (0.8276 / sqrt(n1 n2 / (n1 + n2))); a KS below the "
              "0.05 target needs this well below 0.05 (over ~550 galaxies per sample).", ""]
    unselected = morph.get("without_selection")
    if unselected:
        lines += ["Without the selection (one fresh noise draw per generated galaxy, not "
                  "given the data's cuts): "
                  + ", ".join(f"{column} ratio of means {_f(row['mean_ratio'])}, KS "
                              f"{_f(row['ks_statistic'], 3)}"
                              for column, row in unselected.items()) + ".", ""]
    lines += _figure(metrics, "morphology", "distributions of the morphology statistics")
    bins = metrics.get("redshift_bins")
    if bins:
        lines += [f"### Per redshift bin ({len(bins['bin_low'])} equal-count bins of "
                  f"held-out `{bins['by']}`)", "",
                  "| bin | n gen. | n held-out | median size gen. | held-out | ratio | "
                  "median flux gen. | held-out | ratio |", "|---|---|---|---|---|---|---|---|---|"]
        for i in range(len(bins["bin_low"])):
            lines.append(
                f"| {_f(bins['bin_low'][i], 3)}-{_f(bins['bin_high'][i], 3)} | "
                f"{bins['n_generated'][i]} | {bins['n_reference'][i]} | "
                f"{_f(bins['median_sigma_arcsec_generated'][i])} | "
                f"{_f(bins['median_sigma_arcsec_reference'][i])} | "
                f"{_f(bins['ratio_sigma_arcsec'][i])} | {_f(bins['median_flux_generated'][i])} | "
                f"{_f(bins['median_flux_reference'][i])} | {_f(bins['ratio_flux'][i])} |")
        lines.append("")
        lines += _figure(metrics, "redshift_bins", "median size and flux per redshift bin")
    return lines


def _truth(metrics: Mapping[str, Any]) -> list[str]:
    truth = metrics.get("truth")
    if not metrics["dataset"].get("simulated_survey") or not metrics["bundle"]["psf_free"]:
        return []
    if not truth:
        return ["## Against the simulation truth", "",
                "The data set comes from a simulated survey, but no held-out galaxy was "
                "found in its truth table.", ""]
    lines = ["## Against the simulation truth", "",
             f"The data set was prepared from a simulated survey (`{truth['truth_table']}`); "
             f"{truth['n_matched']} generated galaxies were paired with held-out galaxies found in "
             "its truth table.  Generated PSF-free profiles against the PSF-free truth of "
             "the held-out galaxies they were paired with (same redshifts):", "",
             "| statistic | what is compared | mean generated | mean truth | ratio | KS |",
             "|---|---|---|---|---|---|"]
    for name, row in truth["statistics"].items():
        lines.append(f"| {name} | {_cell(truth['definitions'][name])} | "
                     f"{_f(row['mean_generated'])} | "
                     f"{_f(row['mean_reference'])} | {_f(row['mean_ratio'])} | "
                     f"{_f(row['ks_statistic'], 3)} |")
    return lines + [""]


def _targets(metrics: Mapping[str, Any]) -> list[str]:
    anchor = metrics["anchor"]
    g, size = anchor["mean_abs_g"], anchor["mean_size_arcsec"]
    lines = ["## Targets", "",
             f"Anchor: {anchor['reference']}: generated mean |g| {g['generated']} vs "
             f"{g['real']} real (+{g['generated'] / g['real'] - 1:.1%}), mean size "
             f"{size['generated']}\" vs {size['real']}\" "
             f"(+{size['generated'] / size['real'] - 1:.1%}).", "",
             "| target | value | requirement | met |", "|---|---|---|---|"]
    for target in metrics["targets"]:
        lines.append(f"| {_cell(target['target'])} | {_f(target['value'])} | "
                     f"{_cell(target['requirement'])} | "
                     f"{'met' if target['met'] else '**not met**'} |")
    met = sum(bool(t["met"]) for t in metrics["targets"])
    lines += ["", f"{met} of {len(metrics['targets'])} targets met.", ""]
    stats = metrics["morphology"]["statistics"]
    sems = [(label, (stats.get(column) or {}).get("mean_ratio_sem"))
            for label, column in (("mean |g|", "g"), ("mean size", "sigma_arcsec"))]
    if all(isinstance(sem, float) and math.isfinite(sem) for _, sem in sems):
        lines += ["Standard errors of the two mean ratios on this evaluation (two independent "
                  "samples of these sizes): " + ", ".join(f"{label} {sem:.2%}"
                                                          for label, sem in sems)
                  + ".", ""]
    extra = metrics.get("fidelity_targets") or []
    if extra:
        lines += ["Fidelity targets (isotropy, posterior predictive check, memorization, "
                  "conditions):", "", "| target | value | requirement | met |",
                  "|---|---|---|---|"]
        lines += [f"| {_cell(t['target'])} | {_f(t['value'])} | {_cell(t['requirement'])} | "
                  f"{'met' if t['met'] else '**not met**'} |" for t in extra]
        lines += ["", f"{sum(bool(t['met']) for t in extra)} of {len(extra)} met.", ""]
    null = (metrics["morphology"]["statistics"].get("flux") or {}).get("ks_null_median")
    if null is not None and null > 0.05:
        lines += [f"The samples are too small to meet the KS targets even for a perfect model: "
                  f"two samples of these sizes from one distribution give a KS statistic of "
                  f"{null:.3f} in median (see the morphology table).", ""]
    return lines


def render_report(metrics: Mapping[str, Any]) -> str:
    """The Markdown report for a metrics dict (as :func:`evaluate` returns it)."""
    bundle, dataset = metrics["bundle"], metrics["dataset"]
    conditions = ", ".join(
        c["name"] + ("" if not c.get("drawn") else
                     f" (drawn from its training distribution"
                     f"{' given ' + c['drawn']['given'] if c['drawn'].get('given') else ''}"
                     ", as for users who leave it out)")
        for c in bundle["conditions"]) or "none"
    psf = "PSF-free profiles" if bundle["psf_free"] else "samples carry the HST PSF"
    lines = [f"# Evaluation of `{bundle['name']}` on `{dataset['path']}`", "",
             f"- model: `{bundle['architecture']}`, latent size {bundle['latent_size']}, "
             f"{bundle['stamp_size']}x{bundle['stamp_size']} stamps at {bundle['pixel_scale']} "
             f"arcsec/pixel, {psf}, "
             f"prior: {bundle['prior']}, conditions: {conditions}",
             f"- flux: {dataset['flux_units']} (data set); bundle {bundle['flux_units']}, "
             f"scale {_f(bundle['flux_scale'])} per network unit",
             f"- held-out: {dataset['n_heldout']} galaxies of the {dataset['heldout_split']} split "
             f"(of {dataset['n_galaxies']})",
             f"- random seed: {metrics['seed']}; run time {_f(metrics.get('elapsed_s'), 3)} s",
             ""]
    if metrics.get("notes"):
        lines += ["Notes:", ""] + [f"- {note}" for note in metrics["notes"]] + [""]
    for section in (_targets, _training, _reconstruction, _generation, _latent, _morphology,
                    render_conditioning, render_fidelity, _truth):
        lines += section(metrics)
    lines += ["All numbers are in `metrics.json`.", ""]
    return "\n".join(lines)
