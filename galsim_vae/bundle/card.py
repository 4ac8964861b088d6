"""The model card (``README.md``) of a bundle, generated from its metadata."""

from __future__ import annotations

import json
from typing import Any, Mapping


def _fmt(value: Any, digits: int = 4) -> str:
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def make_model_card(meta: Mapping[str, Any]) -> str:
    """The model card (``README.md``) of a bundle, generated from its metadata: what it
    generates, the data, cuts and splits, hyper-parameters, training time and hardware,
    final losses, and the limits of use."""
    training = dict(meta.get("training") or {})
    data = dict(training.get("data") or {})
    conditions = meta.get("conditions") or []
    lines = [f"# {meta['name']}: galsim-vae {meta['architecture']} model", ""]
    lines += [
        f"A `{meta['architecture']}` variational autoencoder generating "
        f"{meta['stamp_size']}x{meta['stamp_size']}-pixel galaxy stamps at "
        f"{meta['pixel_scale']} arcsec/pixel, pixel values in {meta['flux']['units']} "
        f"(network output x {_fmt(meta['flux']['scale'], 6)}).",
        "",
        ("Samples are PSF-free profiles (the likelihood convolved the decoder output with "
         "each galaxy's own HST PSF, Lanusse et al. 2021): convolve them with your survey PSF."
         if meta["psf_free"] else
         f"Samples still carry the HST PSF (`{meta.get('hst_psf')}`); `VAEGalaxy` deconvolves "
         "it, as GalSim's RealGalaxy does, so only PSFs broader than it are meaningful."
         if meta.get("hst_psf") else
         "Samples carry the PSF of the training images, which was not recorded (the data set "
         "had no PSF images): they cannot be deconvolved."),
        "",
        "Load with `galsim_vae.load_model(...)` or in GalSim YAML "
        "(`input: {vae_model: {file_name: ...}}`, `gal: {type: VAEGalaxy}`).",
        "", "## Conditions", ""]
    if conditions:
        lines.append("| name | training min | training max | mean | std |")
        lines.append("|---|---|---|---|---|")
        for c in conditions:
            lines.append(f"| {c['name']} | {_fmt(c['min'])} | {_fmt(c['max'])} | "
                         f"{_fmt(c['mean'])} | {_fmt(c['std'])} |")
    else:
        lines.append("None: an unconditional model.")
    lines += ["", "## Training data", ""]
    if data:
        for key in ("path", "source", "n_galaxies", "splits", "cuts", "stamp_size",
                    "psf_size", "pixel_scale", "flux_units"):
            if key in data:
                lines.append(f"- {key}: {json.dumps(data[key]) if not isinstance(data[key], str) else data[key]}")
    else:
        lines.append("Not recorded.")
    lines += ["", "## Hyper-parameters", "", "```json",
              json.dumps(meta.get("hyperparameters", {}), indent=2), "```"]
    prior = meta.get("prior") or {}
    lines += ["", f"Latent prior: {prior.get('kind', 'normal')}"
              + (" (RealNVP normalizing flow fitted to the posterior means of the training "
                 "split, Lanusse et al. 2021)" if prior.get("kind") == "flow" else " N(0, I)") + "."]
    settings = {k: v for k, v in training.items()
                if k not in ("data", "final", "hardware", "history")}
    if settings:
        lines += ["", "## Training", ""]
        for key, value in settings.items():
            lines.append(f"- {key}: {_fmt(value) if not isinstance(value, (dict, list)) else json.dumps(value)}")
    hardware = training.get("hardware")
    if hardware:
        gpus = ", ".join(hardware.get("gpus") or []) or "none"
        lines.append(f"- hardware: {hardware.get('cpu')} ({hardware.get('cpu_count')} cores), "
                     f"GPUs: {gpus}")
    final = training.get("final") or {}
    if final:
        lines += ["", "## Final losses (nats per galaxy)", "", "| quantity | value |", "|---|---|"]
        for key, value in final.items():
            lines.append(f"| {key} | {_fmt(value, 6)} |")
    lines += ["", "## Limits", "",
              "- Conditions outside the training ranges above are refused (or clipped on "
              "request): the model has not seen them.",
              f"- Stamps are {meta['stamp_size']} pixels wide: galaxies larger than "
              f"{meta['stamp_size'] * meta['pixel_scale']:.2f} arcsec are truncated.",
              "- The model reproduces the population it was trained on (selection, depth, "
              "band); it is not a physical model of galaxies outside it.",
              "- Generated images include no noise; add the survey's own.", ""]
    return "\n".join(lines)
