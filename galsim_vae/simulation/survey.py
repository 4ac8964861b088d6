"""A simulated COSMOS survey in GalSim's COSMOS catalog format.

:func:`simulate_survey` writes a folder that ``galsim.COSMOSCatalog(file_name=...,
dir=...)`` reads exactly as it reads the real I<25.2 / I<23.5 training samples
(Mandelbaum et al. 2012, 2014): main catalog, ``_fits`` parametric catalog,
``_selection`` file, multi-HDU galaxy and PSF image files (at most 1000 HDUs each, like the
real ``_n1``, ``_n2``, ... files), GalSim's COSMOS noise correlation function file, plus
``truth.fits`` (the PSF-free parameters of every galaxy) and ``simulation.json``
(provenance).  The galaxy population follows the scaling relations of
:mod:`galsim_vae.simulation.scaling_relations`; each galaxy is simulated by
:func:`galsim_vae.simulation.galaxy.simulate_galaxy`.

Like the real samples the survey is flux limited on the *measured* MAG_AUTO: candidate
galaxies are drawn to 0.5 mag beyond the limit and kept when their measured mag_auto is
brighter than it.  Candidate ``i`` depends only on ``(seed, i)``, so the survey is the
same for any number of processes.
"""

from __future__ import annotations

import functools
import itertools
import json
import math
import multiprocessing
import os
from pathlib import Path
from typing import Iterator

from .._version import __version__
from ..errors import InputDataError
from ..io_utils import atomic_directory, check_output_path, progress
from . import cosmos_format as cf
from . import scaling_relations as sr
from .galaxy import simulate_galaxy

#: Offset of simulated IDENT values (IDENT = IDENT_OFFSET + candidate index), above the
#: real COSMOS identifiers (< 300000) so simulated and real galaxies never share one.
IDENT_OFFSET = 1_000_000

#: Candidates per task batch when running in several processes.
BATCH = 64


def _candidate_stream(seed: int, mag_limit: float, processes: int) -> Iterator[dict | None]:
    """Simulated candidates 0, 1, 2, ... in order (None when not in the sample)."""
    work = functools.partial(simulate_galaxy, seed=seed, mag_limit=mag_limit)
    if processes == 1:
        for index in itertools.count():
            yield work(index)
        return
    # "spawn", not "fork": a forked child deadlocks when the parent has already run
    # GalSim's OpenMP-parallel code (seen with pytest); spawn starts clean interpreters.
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        for start in itertools.count(0, BATCH * processes):
            yield from pool.map(work, range(start, start + BATCH * processes), chunksize=BATCH // 4)


def _accepted(seed: int, mag_limit: float, processes: int, n: int) -> Iterator[dict]:
    accepted = 0
    for record in _candidate_stream(seed, mag_limit, processes):
        if record is not None:
            yield record
            accepted += 1
            if accepted == n:
                return


def _validate(n, seed, sample, processes, file_hdus) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise InputDataError(f"number of galaxies n={n!r} is invalid: give an integer >= 1 "
                             "(--n on the command line)")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise InputDataError(f"seed={seed!r} is invalid: give an integer >= 0 (--seed)")
    if sample not in cf.SAMPLES:
        raise InputDataError(f"sample={sample!r} is unknown: allowed {sorted(cf.SAMPLES)} "
                             "(--sample)")
    if isinstance(processes, bool) or not isinstance(processes, int) or processes < 1:
        raise InputDataError(f"processes={processes!r} is invalid: give an integer >= 1 "
                             "(--processes)")
    if isinstance(file_hdus, bool) or not isinstance(file_hdus, int) or file_hdus < 1:
        raise InputDataError(f"file_hdus={file_hdus!r} is invalid: give an integer >= 1")


def simulate_survey(out_dir: str | os.PathLike, n: int, *, seed: int = 0, sample: str = "25.2",
                    overwrite: bool = False, processes: int = 1,
                    file_hdus: int = cf.FILE_HDUS) -> Path:
    """Simulate ``n`` COSMOS galaxies and write them as a GalSim COSMOS catalog folder.

    Parameters:
        out_dir:    output folder (created atomically; must not exist unless ``overwrite``).
        n:          number of galaxies in the catalog (>= 1).
        seed:       random seed (>= 0); the same seed gives identical files.
        sample:     '25.2' (F814W < 25.2 sample, default) or '23.5': the MAG_AUTO limit and
                    the file names (``real_galaxy_catalog_<sample>.fits``, ...).
        overwrite:  replace an existing ``out_dir``. [default: False]
        processes:  worker processes; the result does not depend on it. [default: 1]
        file_hdus:  largest number of HDUs per image file. [default: 1000, as the real
                    samples]

    Returns:
        Path of the folder.  Read it with
        ``galsim.COSMOSCatalog(file_name=f"real_galaxy_catalog_{sample}.fits", dir=out_dir)``.

    Raises:
        InputDataError: bad ``n``, ``seed``, ``sample``, ``processes`` or ``file_hdus``.
        OutputExistsError: ``out_dir`` exists and ``overwrite`` is False.
    """
    _validate(n, seed, sample, processes, file_hdus)
    out_dir = check_output_path(out_dir, overwrite=overwrite)
    mag_limit = cf.SAMPLES[sample]
    records: list[dict] = []
    batch: list[dict] = []
    with atomic_directory(out_dir, overwrite=overwrite) as tmp:

        def flush() -> None:
            number = batch[0]["file_number"]
            cf.write_image_file(tmp / cf.image_file_name(sample, number),
                                [r.pop("image") for r in batch], "float32")
            cf.write_image_file(tmp / cf.psf_file_name(sample, number),
                                [r.pop("psf") for r in batch], "float64")
            batch.clear()

        stream = _accepted(seed, mag_limit, processes, n)
        for record in progress(stream, total=n, desc="simulate"):
            record["ident"] = IDENT_OFFSET + record["candidate"]
            record["file_number"] = len(records) // file_hdus + 1
            record["hdu"] = len(records) % file_hdus
            records.append(record)
            batch.append(record)
            if len(batch) == file_hdus:
                flush()
        if batch:
            flush()
        meta = {"SIMSEED": seed, "SAMPLE": sample, "MAGLIM": mag_limit,
                "ZEROPNT": sr.ZERO_POINT, "GENERATR": f"galsim-vae {__version__}"}
        cf.write_catalogs(tmp, sample, records, pixel_scale=sr.PIXEL_SCALE, meta=meta)
        cf.copy_noise_file(tmp)
        n_candidates = records[-1]["candidate"] + 1
        provenance = {
            "generator": f"galsim-vae {__version__} galsim_vae.simulation.survey.simulate_survey",
            "n_galaxies": n, "seed": seed, "sample": sample, "mag_limit": mag_limit,
            "n_candidates": n_candidates, "zero_point": sr.ZERO_POINT,
            "pixel_scale": sr.PIXEL_SCALE, "flux_units": "counts/s (HST ACS F814W, 1 s)",
            "catalog": cf.catalog_name(sample), "truth": "truth.fits",
            "psfs": "real COSMOS HST PSFs (GalSim example catalog), unit sum",
            "noise": f"COSMOS correlated noise ({cf.NOISE_FILE}) with real NOISE_VARIANCE values",
        }
        (tmp / "simulation.json").write_text(json.dumps(provenance, indent=2) + "\n")
    return Path(out_dir)


def expected_file_count(n: int, file_hdus: int = cf.FILE_HDUS) -> int:
    """Number of galaxy (and PSF) image files for ``n`` galaxies."""
    return math.ceil(n / file_hdus)
