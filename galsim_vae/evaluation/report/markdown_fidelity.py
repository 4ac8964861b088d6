"""The "Where fidelity is lost" part of ``report.md`` (from ``metrics["fidelity"]``)."""

from __future__ import annotations

from typing import Any, Mapping

SAMPLES = (("data", "held-out data"), ("recon_mean", "reconstruction (posterior mean)"),
           ("recon_sample", "reconstruction (posterior sample)"),
           ("prior", "prior samples, same conditions"))
STATISTICS = (("mean_abs_g", "mean \\|g\\|"), ("mean_size_arcsec", "mean size [\"]"),
              ("mean_flux", "mean flux"), ("median_flux", "median flux"))
#: KS statistics against the data (fidelity.column_means ``ks``) shown after them.
KS_STATISTICS = (("g", "KS \\|g\\|"), ("sigma_arcsec", "KS size"))


def _f(value: Any, digits: int = 4) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def _relative(ratio: float | None) -> str:
    """`` (+12%)`` from a ratio to the data (empty without one)."""
    if ratio is None:
        return ""
    return f" ({100.0 * (ratio - 1.0):+.1f}%)"


def _block(title: str, block: Mapping[str, Any]) -> list[str]:
    headers = [s for _, s in STATISTICS] + [s for _, s in KS_STATISTICS]
    lines = [f"**{title}**", "", "| sample | n | " + " | ".join(headers) + " |",
             "|---|---|" + "---|" * len(headers)]
    for key, label in SAMPLES:
        stats = block.get(key)
        if not stats:
            continue
        ratio = stats.get("ratio") or {}
        ks = stats.get("ks") or {}  # reports before 2026-12-04 have no KS columns
        cells = [_f(stats[name]) + _relative(ratio.get(name)) for name, _ in STATISTICS]
        cells += ["" if key == "data" else _f(ks.get(name), 3) for name, _ in KS_STATISTICS]
        lines.append(f"| {label} | {stats['n']} | " + " | ".join(cells) + " |")
    return lines + [""]


def render_fidelity(metrics: Mapping[str, Any]) -> list[str]:
    """Markdown lines of the fidelity section ([] when the report has none)."""
    fid = metrics.get("fidelity")
    if not fid:
        return []
    edges = [_f(e, 3) for e in fid["snr_quartile_edges"]]
    lines = ["## Where fidelity is lost", "",
             f"{fid['n_reconstructed']} held-out galaxies reconstructed (posterior mean and one "
             "posterior sample, observed like the data with their PSF and "
             + fid.get("reconstruction_noise", "fresh noise") + "); "
             "prior samples at the same conditions beside them.  In parentheses: the "
             "relative difference from the data; KS: the two-sample KS statistic of the "
             "sample's |g| or size distribution against the data's.  S/N = " + fid["snr_definition"] + "; "
             f"quartile edges {', '.join(edges)}.", ""]
    lines += _block("all galaxies", fid["columns"]["all"])
    for i, block in enumerate(fid["columns"]["bins"]):
        lines += _block(f"S/N quartile {i + 1} (faintest first)", block)
    lines += ["Paired slopes (reconstructed against data, galaxy by galaxy; 1 is faithful):", "",
              "| reconstruction | \\|g\\| | size | \\|g\\| per S/N quartile | "
              f"\\|g\\| at S/N > {_f(fid['high_snr'])} |", "|---|---|---|---|---|"]
    for key, label in SAMPLES[1:3]:
        slope = fid["paired_slopes"][key]
        lines.append(f"| {label} | {_f(slope['g_all'], 3)} | {_f(slope['size_all'], 3)} | "
                     + ", ".join(_f(s, 3) for s in slope["g_bins"])
                     + f" | {_f(slope['g_high_snr'], 3)} |")
    chi2 = fid["chi2"]
    lines += ["", "Reconstruction chi-square per pixel, percentiles: "
              + ", ".join(f"{p}%: {_f(v, 3)}" for p, v in chi2["percentiles"].items())
              + "; worst galaxies: "
              + ", ".join(f"{w['ident']} ({_f(w['chi2_per_pixel'], 3)})" for w in chi2["worst"])
              + ".", ""]
    outer = fid["outer_flux_fraction"]
    lines += [f"Median share of the flux beyond {outer['radius_stamp_sides']} stamp sides from "
              f"the centre: generated profiles {_f(outer['generated_profiles_median'], 3)}, "
              f"reconstructed profiles {_f(outer['reconstructed_profiles_median'], 3)}, noisy "
              f"data {_f(outer['data_median'], 3)}.", ""]
    stacked = outer.get("stacked_by_snr_quartile")
    if stacked is not None:  # reports written before 2026-12-03 (session 24) lack it
        lines += [f"Share of the summed flux beyond {outer['stacked_radius_stamp_sides']} stamp "
                  "sides, per S/N quartile (stamps observed like the data and summed, so "
                  "that the noise averages out; a halo of the model shows as a larger share "
                  "than the data's):", "",
                  "| S/N quartile | held-out data | reconstruction (posterior mean) | "
                  "prior samples |", "|---|---|---|---|"]
        for i, shares in enumerate(zip(stacked["data"], stacked["recon_mean"],
                                       stacked["prior"])):
            lines.append(f"| {i + 1} | " + " | ".join(_f(v, 3) for v in shares) + " |")
        lines.append("")
    iso = fid["isotropy"]
    lines += ["Isotropy (mean g1, g2 with standard errors; KS test of the position angles "
              "against uniform):", "", "| sample | n | mean g1 | mean g2 | angle KS | p |",
              "|---|---|---|---|---|---|"]
    for key, label in (("generated", "generated (PSF-free)"), ("data", "held-out data")):
        s = iso.get(key) or {}
        if s.get("n", 0) >= 2:
            lines.append(f"| {label} | {s['n']} | {s['mean_g1']:+.4f} +- {s['sem_g1']:.4f} | "
                         f"{s['mean_g2']:+.4f} +- {s['sem_g2']:.4f} | {_f(s['angle_ks'], 3)} | "
                         f"{_f(s['angle_ks_p'], 3)} |")
    mem = fid["memorization"]
    lines += [""]
    if "p_value_generated_closer" in mem:
        lines += [f"Memorization: median distance of {mem['n_generated']} generated galaxies "
                  f"to the nearest of {mem['n_reference']} training galaxies "
                  f"{_f(mem['median_distance_training'], 4)}, to the nearest of as many "
                  f"held-out galaxies {_f(mem['median_distance_heldout'], 4)} (median ratio "
                  f"{_f(mem['median_ratio'], 4)}); {mem['test']}: p = "
                  f"{_f(mem['p_value_generated_closer'], 3)} (small p: generated galaxies sit "
                  "closer to the training set than to unseen galaxies).", ""]
        if "p_value_closer_than_heldout" in mem:
            lines += [f"Against the held-out galaxies' own distances: median distance of "
                      f"the held-out galaxies to the nearest training galaxy "
                      f"{_f(mem['median_heldout_to_training'], 4)} (generated / held-out "
                      f"{_f(mem['heldout_ratio'], 4)}); {mem['test_heldout']}: p = "
                      f"{_f(mem['p_value_closer_than_heldout'], 3)} (small p: generated "
                      "galaxies sit closer to the training set than unseen galaxies do).", ""]
    else:
        lines += [f"Memorization: {mem.get('note')}.", ""]
    return lines


def render_conditioning(metrics: Mapping[str, Any]) -> list[str]:
    """Markdown lines of the conditioning section ([] without one)."""
    cond = metrics.get("conditioning")
    if not cond:
        return []
    lines = ["## Generated galaxies against their conditions", ""]
    mag = cond.get("magnitude")
    if mag:
        lines += [f"Magnitude ({mag['definition']}); worst bin offset "
                  f"{_f(mag['worst_offset_mag'], 3)} mag (target <= 0.2: "
                  f"{'met' if mag['met'] else 'NOT MET'}).", "",
                  f"| n | median {mag['condition']} | median generated magnitude | "
                  "median held-out stamp magnitude |", "|---|---|---|---|"]
        lines += [f"| {r['n']} | {_f(r['median_condition'])} | {_f(r['median_generated'])} | "
                  f"{_f(r.get('median_data'))} |" for r in mag["bins"]]
        lines.append("")
    size = cond.get("size")
    if size:
        lines += [f"Size: slope of the {size['definition']} ({size['condition']}): generated "
                  f"{_f(size['slope_generated'], 3)}, data {_f(size['slope_data'], 3)}, ratio "
                  f"{_f(size['ratio'], 3)} (target within 10%: "
                  f"{'met' if size['met'] else 'NOT MET'}).", ""]
    return lines
