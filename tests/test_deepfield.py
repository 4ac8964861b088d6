"""Deep-field training sets: sep detection, centred stamps, rejections, PSF, errors, CLI."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from conftest import TEST_DATA
from galsim_vae.cli import main
from galsim_vae.data import Dataset
from galsim_vae.data.deepfield import detect_sources, prepare_deepfield
from galsim_vae.data.deepfield_io import XDF_PIXEL_SCALE, load_deepfield
from galsim_vae.errors import InputDataError, MissingInputError, OutputExistsError

ABELL = TEST_DATA / "abell2744"
DWARF = ABELL / "abell_2744_dwarf_galaxy_f105w.fits.gz"
DWARF_RMS = ABELL / "abell_2744_dwarf_galaxy_f105w_rms.fits.gz"
F105W_PSF = ABELL / "f105w_psf.fits.gz"
#: AB zero point of WFC3/IR F105W in e-/s from the header's PHOTFLAM, PHOTPLAM.
F105W_ZEROPOINT = 26.2688

SCALE = 0.05  # arcsec/pixel of the synthetic fields
SHAPE = (160, 180)  # ny, nx of the synthetic fields


def tan_header(pixel_scale: float, shape=SHAPE):
    """A celestial TAN WCS header with square pixels of ``pixel_scale`` arcsec."""
    from astropy.wcs import WCS

    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [150.1, 2.2]
    wcs.wcs.crpix = [shape[1] / 2, shape[0] / 2]
    wcs.wcs.cdelt = [-pixel_scale / 3600, pixel_scale / 3600]
    return wcs.to_header()


def write_fits(path: Path, array: np.ndarray, *, pixel_scale: float | None = SCALE) -> Path:
    from astropy.io import fits

    header = tan_header(pixel_scale, array.shape) if pixel_scale else None
    fits.PrimaryHDU(np.asarray(array, dtype=np.float32), header=header).writeto(path)
    return path


def synthetic_field(sources, *, sigma: float = 0.2, seed: int = 3, shape=SHAPE,
                    background: float = 5.0) -> np.ndarray:
    """Gaussian noise + a flat sky + GalSim Gaussians; ``sources`` = [(x, y, flux, sigma_px)]
    with (x, y) 0-based pixel positions."""
    import galsim

    image = galsim.ImageD(shape[1], shape[0], scale=SCALE)
    centre = image.true_center  # 1-based
    for x, y, flux, size in sources:
        gal = galsim.Gaussian(sigma=size * SCALE, flux=flux)
        gal.drawImage(image, offset=(x + 1 - centre.x, y + 1 - centre.y), add_to_image=True)
    rng = np.random.default_rng(seed)
    return image.array + background + rng.normal(0.0, sigma, size=shape)


def stamp_centroid(stamp: np.ndarray, noise_sigma: float) -> tuple[float, float]:
    """Light-weighted centroid (0-based x, y) of the source's footprint found in the stamp
    alone: the connected pixels above 3 sigma that include the brightest central pixel."""
    from scipy import ndimage

    labels, _ = ndimage.label(stamp > 3 * noise_sigma)
    c = stamp.shape[0] // 2
    core = (slice(c - 2, c + 1), slice(c - 2, c + 1))  # the 3x3 pixels around true_center
    iy, ix = np.unravel_index(np.argmax(stamp[core]), (3, 3))
    label = labels[c - 2 + iy, c - 2 + ix]
    assert label > 0, "no pixel above 3 sigma at the stamp centre"
    weights = np.where(labels == label, stamp, 0.0)
    yy, xx = np.indices(stamp.shape)
    return float((weights * xx).sum() / weights.sum()), float((weights * yy).sum() / weights.sum())


def check_stamps_against_detection(ds: Dataset, image, **detect_kwargs) -> None:
    """Every stamp is the crop of the background-subtracted image at (stamp_x0, stamp_y0),
    lies inside the image, and holds no pixel of another detected source's segment."""
    field = load_deepfield(image, **{k: detect_kwargs.pop(k) for k in ("rms", "weight")
                                     if k in detect_kwargs})
    _, segmap, subtracted, _ = detect_sources(field, **detect_kwargs)
    ny, nx = subtracted.shape
    s = ds.stamp_size
    for row, stamp in zip(ds.catalog, ds.images):
        x0, y0 = int(row["stamp_x0"]), int(row["stamp_y0"])
        assert 0 <= x0 and x0 + s <= nx and 0 <= y0 and y0 + s <= ny
        box = (slice(y0, y0 + s), slice(x0, x0 + s))
        np.testing.assert_allclose(stamp, subtracted[box], rtol=1e-6, atol=1e-6)
        labels = np.unique(segmap[box])
        assert set(labels.tolist()) <= {0, int(row["ident"])}, (row["ident"], labels)
        assert int(row["ident"]) in labels


# -- the scikit-image XDF ------------------------------------------------------------------

@pytest.fixture(scope="module")
def xdf_dataset(tmp_path_factory) -> Dataset:
    out = tmp_path_factory.mktemp("xdf") / "xdf"
    return Dataset(prepare_deepfield("xdf", out, stamp_size=32, threshold=5.0))


def test_xdf_gives_many_centred_isolated_stamps(xdf_dataset):
    ds = xdf_dataset
    n = ds.n_galaxies
    assert 24 <= n <= 1000
    assert ds.images.shape == (n, 32, 32)
    assert ds.pixel_scale == pytest.approx(XDF_PIXEL_SCALE)
    assert "arbitrary" in ds.flux_units and "JPEG" in ds.flux_units
    source = ds.meta["source"]
    assert "2.3 x 2.0 arcmin" in source["pixel_scale_origin"]
    assert "mean of the R, G, B" in source["band"]
    assert source["detected"] == source["kept"] + sum(source["rejected"].values())
    assert source["kept"] == n
    assert ds.psf_size is None and ds.psfs is None
    catalog = ds.catalog
    assert np.all(np.isnan(catalog["mag_auto"]))  # uncalibrated
    assert np.all(np.isnan(catalog["ra"]))  # no WCS
    assert np.all(catalog["flux_auto"] > 0) and np.all(catalog["flux_radius"] > 0)
    assert len(set(catalog["ident"])) == n
    centre = (32 - 1) / 2
    for row, stamp in zip(catalog, ds.images):
        cx, cy = stamp_centroid(np.asarray(stamp), math.sqrt(row["noise_variance"]))
        assert abs(cx - centre) < 1.0 and abs(cy - centre) < 1.0, (row["ident"], cx, cy)
        assert abs(row["offset_x"]) <= 0.5 and abs(row["offset_y"]) <= 0.5
    check_stamps_against_detection(ds, "xdf", threshold=5.0)


def test_xdf_pixel_scale_argument_overrides_the_default(tmp_path):
    ds = Dataset(prepare_deepfield("xdf", tmp_path / "x", stamp_size=32, threshold=8.0,
                                   pixel_scale=0.06, max_galaxies=5))
    assert ds.pixel_scale == 0.06 and ds.n_galaxies == 5
    assert ds.meta["source"]["pixel_scale_origin"] == "pixel_scale argument"
    assert ds.meta["source"]["rejected"]["max_galaxies"] > 0
    # the five brightest of the kept sources
    assert np.min(ds.catalog["flux_auto"]) > 0


# -- Abell 2744 with its RMS map and PSF ----------------------------------------------------

def test_abell2744_dwarf_field_with_rms_map_and_psf(tmp_path):
    import sep
    from astropy.io import fits
    from astropy.wcs import WCS

    # a 200x200 cutout of a cluster core: a 32-pixel background mesh follows the
    # intra-cluster light (with 64 the outskirts are over-subtracted and Kron fails)
    ds = Dataset(prepare_deepfield(DWARF, tmp_path / "dwarf", rms=DWARF_RMS, stamp_size=32,
                                   psf_file=F105W_PSF, background_box=32))
    source = ds.meta["source"]
    assert ds.pixel_scale == pytest.approx(0.06, rel=1e-5)
    assert source["pixel_scale_origin"].startswith("FITS WCS")
    assert source["noise_map"] == "rms"
    assert ds.flux_units.startswith("ELECTRONS/S")
    # the dwarf at (138.6, 89.3) is deblended from its bright neighbours: rejected
    catalog = ds.catalog
    assert not np.any(np.hypot(catalog["x"] - 138.6, catalog["y"] - 89.3) < 3)
    assert source["rejected"]["blended"] >= 1
    assert ds.n_galaxies >= 2
    # PSF: the F105W image, unit sum, no resampling (both 0.06"/pixel)
    psf = fits.getdata(F105W_PSF).astype(np.float64)
    assert ds.psf_size == 50 and source["psf_resampled"] is False
    for p in ds.psfs:
        assert p.sum() == pytest.approx(1.0, rel=1e-5)
        np.testing.assert_allclose(p, psf / psf.sum(), rtol=1e-5, atol=1e-9)
    rms = fits.getdata(DWARF_RMS).astype(np.float64)
    wcs = WCS(fits.getheader(DWARF)).celestial
    for row, stamp in zip(catalog, ds.images):
        x0, y0 = int(row["stamp_x0"]), int(row["stamp_y0"])
        expected_var = np.median(rms[y0:y0 + 32, x0:x0 + 32] ** 2)
        assert row["noise_variance"] == pytest.approx(expected_var, rel=1e-6)
        ra, dec = wcs.all_pix2world(row["x"], row["y"], 0)
        assert row["ra"] == pytest.approx(float(ra), abs=1e-9)
        assert row["dec"] == pytest.approx(float(dec), abs=1e-9)
        assert row["mag_auto"] == pytest.approx(
            F105W_ZEROPOINT - 2.5 * math.log10(row["flux_auto"]), abs=1e-3)
        # stamp flux = sep's Kron flux: same ellipse measured on the stamp alone
        stamp = np.ascontiguousarray(stamp, dtype=np.float64)
        kron_flux, _, _ = sep.sum_ellipse(
            stamp, *(np.array([v]) for v in (row["x"] - x0, row["y"] - y0, row["a"], row["b"],
                                             row["theta"], 2.5 * row["kron_radius"])), subpix=1)
        kron_flux = float(kron_flux[0])
        if 2.5 * row["kron_radius"] * math.sqrt(row["a"] * row["b"]) >= 2.5 * 1.75:
            assert kron_flux == pytest.approx(row["flux_auto"], rel=1e-4)
        noise_sum = math.sqrt(row["noise_variance"]) * 32
        assert abs(stamp.sum() - row["flux_auto"]) < 0.2 * row["flux_auto"] + 4 * noise_sum
    check_stamps_against_detection(ds, DWARF, rms=DWARF_RMS, background_box=32)


# -- injected synthetic sources --------------------------------------------------------------

def test_injected_gaussian_found_with_its_flux_position_and_size(tmp_path):
    x, y, flux, size = 83.3, 71.6, 2000.0, 2.0
    image = write_fits(tmp_path / "field.fits", synthetic_field([(x, y, flux, size)]))
    ds = Dataset(prepare_deepfield(image, tmp_path / "out", stamp_size=64, threshold=3.0))
    assert ds.n_galaxies == 1
    row = ds.catalog[0]
    assert row["x"] == pytest.approx(x, abs=0.05) and row["y"] == pytest.approx(y, abs=0.05)
    assert row["flux_auto"] == pytest.approx(flux, rel=0.03)
    # half-light radius of a Gaussian: sigma * sqrt(2 ln 2)
    assert row["flux_radius"] == pytest.approx(size * math.sqrt(2 * math.log(2)), rel=0.08)
    assert row["noise_variance"] == pytest.approx(0.2**2, rel=0.15)
    assert ds.pixel_scale == pytest.approx(SCALE, rel=1e-6)
    assert np.isfinite(row["ra"]) and np.isfinite(row["dec"])
    stamp = np.asarray(ds.images[0], dtype=np.float64)
    # background subtracted, total flux in the stamp, peak at the centre
    assert stamp.sum() == pytest.approx(flux, abs=0.03 * flux + 4 * 0.2 * 64)
    cx, cy = stamp_centroid(stamp, 0.2)
    assert cx == pytest.approx(x - row["stamp_x0"], abs=0.05)
    assert cy == pytest.approx(y - row["stamp_y0"], abs=0.05)
    assert abs(cx - 31.5) <= 0.55 and abs(cy - 31.5) <= 0.55
    assert row["offset_x"] == pytest.approx(cx - 31.5, abs=0.05)
    assert row["offset_y"] == pytest.approx(cy - 31.5, abs=0.05)


def test_weight_map_gives_the_noise_variance(tmp_path):
    image = write_fits(tmp_path / "field.fits", synthetic_field([(90.0, 80.0, 1500.0, 2.5)]))
    weight = write_fits(tmp_path / "weight.fits", np.full(SHAPE, 1 / 0.2**2), pixel_scale=None)
    ds = Dataset(prepare_deepfield(image, tmp_path / "out", weight=weight, stamp_size=48))
    assert ds.meta["source"]["noise_map"] == "weight"
    assert ds.catalog["noise_variance"][0] == pytest.approx(0.04, rel=1e-5)


def test_blends_and_edge_sources_rejected_max_galaxies_keeps_brightest(tmp_path):
    sources = [(40.0, 40.0, 900.0, 1.5),                           # isolated, faint
               (130.0, 40.0, 3000.0, 1.5),                         # isolated, bright
               (90.0, 125.0, 2000.0, 1.5),                         # isolated, middle
               (40.0, 118.0, 1500.0, 2.0), (46.0, 120.0, 1500.0, 2.0),  # a blended pair
               (176.0, 80.0, 1500.0, 1.5)]                         # at the right edge
    image = write_fits(tmp_path / "field.fits", synthetic_field(sources))
    ds = Dataset(prepare_deepfield(image, tmp_path / "all", stamp_size=32, threshold=3.0))
    kept_x = sorted(np.round(ds.catalog["x"]).astype(int).tolist())
    assert kept_x == [40, 90, 130]
    rejected = ds.meta["source"]["rejected"]
    assert rejected["edge"] >= 1
    assert rejected["blended"] + rejected["neighbour"] >= 2
    two = Dataset(prepare_deepfield(image, tmp_path / "two", stamp_size=32, threshold=3.0,
                                    max_galaxies=2))
    assert sorted(np.round(two.catalog["x"]).astype(int).tolist()) == [90, 130]
    assert two.meta["source"]["rejected"]["max_galaxies"] == 1


def test_nan_pixels_are_masked_and_their_stamps_rejected(tmp_path):
    data = synthetic_field([(40.0, 40.0, 1500.0, 1.5), (130.0, 100.0, 1500.0, 1.5)])
    data[86:92, 140:145] = np.nan  # inside the second source's stamp, off its core
    data[0, 0] = np.inf
    image = write_fits(tmp_path / "field.fits", data)
    ds = Dataset(prepare_deepfield(image, tmp_path / "out", stamp_size=32, threshold=3.0))
    assert ds.n_galaxies == 1 and round(float(ds.catalog["x"][0])) == 40
    source = ds.meta["source"]
    assert source["masked_pixels"] == 31
    assert source["rejected"]["masked"] == 1
    assert np.all(np.isfinite(ds.images[:]))


def test_psf_is_resampled_to_the_image_pixel_scale(tmp_path):
    import galsim

    psf_sigma = 0.08  # arcsec
    fine = galsim.Gaussian(sigma=psf_sigma).drawImage(nx=41, ny=41, scale=SCALE / 2).array
    psf_file = write_fits(tmp_path / "psf.fits", fine, pixel_scale=SCALE / 2)
    image = write_fits(tmp_path / "field.fits", synthetic_field([(90.0, 80.0, 1500.0, 2.0)]))
    ds = Dataset(prepare_deepfield(image, tmp_path / "out", stamp_size=32, psf_file=psf_file))
    assert ds.meta["source"]["psf_resampled"] is True
    assert ds.psf_size == 20  # round(41 * 0.025 / 0.05)
    psf = np.asarray(ds.psfs[0], dtype=np.float64)
    assert psf.sum() == pytest.approx(1.0, rel=1e-5)
    moments = galsim.hsm.FindAdaptiveMom(galsim.Image(psf, scale=SCALE))
    # the drawn PSF includes the 0.025" pixel: sigma^2 + p^2/12 in arcsec
    expected = math.sqrt(psf_sigma**2 + (SCALE / 2) ** 2 / 12)
    assert moments.moments_sigma * SCALE == pytest.approx(expected, rel=0.03)


def test_psf_without_wcs_is_assumed_at_the_image_scale(tmp_path):
    import galsim

    psf = galsim.Moffat(beta=3, fwhm=0.15).drawImage(nx=25, ny=25, scale=SCALE).array
    psf_file = write_fits(tmp_path / "psf.fits", psf, pixel_scale=None)
    image = write_fits(tmp_path / "field.fits", synthetic_field([(90.0, 80.0, 1500.0, 2.0)]))
    ds = Dataset(prepare_deepfield(image, tmp_path / "out", stamp_size=32, psf_file=psf_file))
    assert ds.psf_size == 25 and ds.meta["source"]["psf_resampled"] is False
    assert "assumed" in ds.meta["source"]["psf_pixel_scale_origin"]
    np.testing.assert_allclose(ds.psfs[0], psf / psf.sum(), rtol=1e-5, atol=1e-8)


# -- errors --------------------------------------------------------------------------------

@pytest.fixture()
def good_image(tmp_path) -> Path:
    return write_fits(tmp_path / "good.fits", synthetic_field([(90.0, 80.0, 1500.0, 2.0)]))


def _bad_inputs(tmp_path: Path, good: Path):
    """(description, image, kwargs, error class, text the message must contain)."""
    corrupt = tmp_path / "corrupt.fits"
    corrupt.write_bytes(b"this is not a FITS file " * 200)
    truncated = tmp_path / "truncated.fits"
    truncated.write_bytes(good.read_bytes()[:len(good.read_bytes()) // 2])
    all_nan = write_fits(tmp_path / "nan.fits", np.full(SHAPE, np.nan))
    no_wcs = write_fits(tmp_path / "nowcs.fits", synthetic_field([(90, 80, 1500, 2)]),
                        pixel_scale=None)
    small_weight = write_fits(tmp_path / "w.fits", np.ones((50, 50)), pixel_scale=None)
    empty = write_fits(tmp_path / "empty.fits", synthetic_field([]))
    return [
        ("missing", tmp_path / "nope.fits", {}, MissingInputError, "nope.fits"),
        ("corrupt", corrupt, {}, InputDataError, "corrupt.fits"),
        ("truncated", truncated, {}, InputDataError, "truncated.fits"),
        ("all NaN", all_nan, {}, InputDataError, "no finite pixel"),
        ("no pixel scale", no_wcs, {}, InputDataError, "pixel_scale"),
        ("scale disagrees with WCS", good, {"pixel_scale": 0.1}, InputDataError, "disagrees"),
        ("weight shape", good, {"weight": small_weight}, InputDataError, "(50, 50)"),
        ("weight and rms", good, {"weight": small_weight, "rms": small_weight},
         InputDataError, "not both"),
        ("missing weight", good, {"weight": tmp_path / "w_missing.fits"}, MissingInputError,
         "w_missing.fits"),
        ("stamp too big", good, {"stamp_size": 200}, InputDataError, "larger than the image"),
        ("no sources", empty, {"threshold": 5.0}, InputDataError, "no source detected"),
        ("none kept", good, {"stamp_size": 160}, InputDataError, "none of the"),
        ("missing PSF", good, {"psf_file": tmp_path / "psf_missing.fits"}, MissingInputError,
         "psf_missing.fits"),
    ]


def test_bad_inputs_raise_clear_errors_and_leave_no_output(tmp_path, good_image):
    for what, image, kwargs, error, text in _bad_inputs(tmp_path, good_image):
        out = tmp_path / f"out_{what.replace(' ', '_')}"
        with pytest.raises(error) as info:
            prepare_deepfield(image, out, **kwargs)
        assert text in str(info.value), (what, str(info.value))
        assert not out.exists(), what
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]


def test_existing_output_is_refused_unless_overwrite(tmp_path, good_image):
    out = tmp_path / "out"
    prepare_deepfield(good_image, out, stamp_size=32)
    with pytest.raises(OutputExistsError, match="exists already"):
        prepare_deepfield(good_image, out, stamp_size=32)
    prepare_deepfield(good_image, out, stamp_size=48, overwrite=True)
    assert Dataset(out).stamp_size == 48


# -- command line --------------------------------------------------------------------------

def test_cli_prepares_a_deepfield(tmp_path, good_image, capsys):
    out = tmp_path / "cli"
    assert main(["--quiet", "prepare", "deepfield", str(good_image), "--out", str(out),
                 "--stamp-size", "40", "--threshold", "3", "--max-galaxies", "1"]) == 0
    ds = Dataset(out)
    assert ds.stamp_size == 40 and ds.n_galaxies == 1
    assert "kept 1" in capsys.readouterr().out


def test_cli_bad_inputs_exit_2_without_output(tmp_path, good_image, capsys):
    flags = {"pixel_scale": "--pixel-scale", "weight": "--weight", "rms": "--rms",
             "stamp_size": "--stamp-size", "threshold": "--threshold", "psf_file": "--psf-file"}
    for what, image, kwargs, _, text in _bad_inputs(tmp_path, good_image):
        out = tmp_path / f"cli_{what.replace(' ', '_')}"
        argv = ["--quiet", "prepare", "deepfield", str(image), "--out", str(out)]
        for key, value in kwargs.items():
            argv += [flags[key], str(value)]
        if what == "weight and rms":  # argparse refuses the pair itself (exit 2)
            with pytest.raises(SystemExit) as info:
                main(argv)
            assert info.value.code == 2
        else:
            assert main(argv) == 2, what
            assert text in capsys.readouterr().err, what
        assert not out.exists(), what
    existing = tmp_path / "existing"
    existing.mkdir()
    assert main(["--quiet", "prepare", "deepfield", str(good_image), "--out",
                 str(existing)]) == 2
    assert "exists already" in capsys.readouterr().err
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]
