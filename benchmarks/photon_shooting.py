"""Photon shooting of a PSF-convolved VAEGalaxy beside GalSim's alternatives: time per
galaxy (FFT and ``method="phot"``), the shot flux as a fraction of the FFT image's, and
the agreement of the shot images with the FFT image in units of their shot noise.

GalSim's ``RealGalaxy`` cannot be photon-shot at all (it deconvolves the HST PSF); the
rows beside VAEGalaxy are GalSim's parametric COSMOS galaxies of the same simulated
catalog (``COSMOSCatalog.makeGalaxy(gal_type="parametric")``) and a plain
``galsim.InterpolatedImage`` of the same generated stamps (what VAEGalaxy would give
without its correction of GalSim 2.8.5's shot flux, ``docs/reliability.md``).

Each galaxy is convolved with a 0.7" Kolmogorov PSF and drawn on a 48x48 stamp at 0.2"
with its flux set to 1e4 (GalSim's default photon count, ``flux / (1 - 2 eta)**2`` for a
profile whose negative share is eta).  ``chi2``: ``--shots`` shot images of each galaxy,
their mean against the FFT image in units of its standard error (the scatter of the
shots / sqrt(shots)), averaged over the pixels above 10% of the peak: ~1 when the shot
images scatter about the FFT image as shot noise does ((shots - 1) / (shots - 3) exactly:
the squared Student t of ``shots - 1`` degrees of freedom).

Usage::

    python benchmarks/photon_shooting.py --model flagship_cosmos_sim --catalog runs/simeval3k \
        [--n 100]
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

FLUX = 1.0e4
DRAW = dict(nx=48, ny=48, scale=0.2)


def measure(galaxies, shots: int, seed: int = 1) -> dict:
    """Median ms per galaxy (FFT, phot), shot flux / FFT flux, chi2 and negative share."""
    import galsim

    psf = galsim.Kolmogorov(fwhm=0.7)
    fft_ms, phot_ms, ratios, chi2s, etas = [], [], [], [], []
    for i, gal in enumerate(galaxies):
        obj = galsim.Convolve(gal.withFlux(FLUX), psf)
        start = time.perf_counter()
        fft = obj.drawImage(**DRAW).array.astype(float)
        fft_ms.append(1e3 * (time.perf_counter() - start))
        start = time.perf_counter()
        phot = np.array([obj.drawImage(method="phot", rng=galsim.BaseDeviate(seed + 1000 * i + r),
                                       **DRAW).array for r in range(shots)], dtype=float)
        phot_ms.append(1e3 * (time.perf_counter() - start) / shots)
        error = phot.std(axis=0, ddof=1) / np.sqrt(shots)
        bright = (fft > 0.1 * fft.max()) & (error > 0)
        ratios.append(phot.sum(axis=(1, 2)).mean() / fft.sum())
        chi2s.append(np.mean(((phot.mean(axis=0) - fft)[bright] / error[bright]) ** 2))
        etas.append(obj.negative_flux / (obj.positive_flux + obj.negative_flux))
    return {"fft_ms": np.median(fft_ms), "phot_ms": np.median(phot_ms),
            "flux_ratio": np.median(ratios), "chi2": np.median(chi2s),
            "eta": np.median(etas), "n": len(fft_ms)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="flagship_cosmos_sim")
    parser.add_argument("--catalog", required=True,
                        help="simulated COSMOS-format survey (galsim-vae simulate)")
    parser.add_argument("--n", type=int, default=50)
    parser.add_argument("--shots", type=int, default=10, help="shot images per galaxy")
    args = parser.parse_args(argv)
    import galsim

    import galsim_vae

    model = galsim_vae.load_model(args.model)
    conditions = {c.name: np.full(args.n, c.mean) for c in model.conditions}
    generated = model.sample(args.n, rng=3, **conditions)
    vae = measure(generated, args.shots)
    plain = measure([galsim.InterpolatedImage(galsim.Image(np.asarray(g.stamp),
                                                           scale=model.pixel_scale))
                     for g in generated], args.shots)
    cosmos = galsim.COSMOSCatalog(dir=args.catalog, exclusion_level="none")
    parametric = measure([cosmos.makeGalaxy(i % cosmos.nobjects, gal_type="parametric")
                          for i in range(args.n)], args.shots)
    print(f"photon shooting, {args.n} galaxies x {args.shots} shot images, flux {FLUX:g}, "
          "0.7\" Kolmogorov PSF, 48x48 at 0.2\" (medians); RealGalaxy cannot be shot "
          "(it deconvolves the HST PSF); chi2 expected from shot noise alone: "
          f"{(args.shots - 1) / (args.shots - 3):.2f} (Student t, {args.shots - 1} d.o.f.)")
    print(f"{'galaxy type':40s} {'FFT ms':>7s} {'phot ms':>8s} {'shot/FFT flux':>14s} "
          f"{'chi2':>6s} {'eta':>6s}")
    for label, row in ((f"VAEGalaxy ({args.model})", vae),
                       ("InterpolatedImage of the same stamps", plain),
                       ("COSMOS parametric (same catalog)", parametric)):
        print(f"{label:40s} {row['fft_ms']:7.2f} {row['phot_ms']:8.2f} "
              f"{row['flux_ratio']:14.4f} {row['chi2']:6.2f} {row['eta']:6.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
