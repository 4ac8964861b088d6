"""Tests of the simulated COSMOS-format survey (galsim_vae.simulation.survey and helpers)."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest

galsim = pytest.importorskip("galsim")
from astropy.io import fits  # noqa: E402
from astropy.table import Table  # noqa: E402

from galsim_vae.cli import main  # noqa: E402
from galsim_vae.simulation import cosmos_format as cf  # noqa: E402
from galsim_vae.simulation import scaling_relations as sr  # noqa: E402
from galsim_vae.simulation.compare import compare_with_real  # noqa: E402
from galsim_vae.simulation.survey import simulate_survey  # noqa: E402
from galsim_vae.simulation.galaxy import draw_truth, psf_library  # noqa: E402
from galsim_vae.errors import InputDataError, OutputExistsError  # noqa: E402

N_GAL = 24
FILE_HDUS = 10
CATALOG = "real_galaxy_catalog_25.2.fits"


@pytest.fixture(scope="module")
def survey(tmp_path_factory):
    """A 24-galaxy simulated survey split into image files of 10 HDUs."""
    return simulate_survey(tmp_path_factory.mktemp("sim") / "survey", N_GAL, seed=11,
                           file_hdus=FILE_HDUS)


@pytest.fixture(scope="module")
def tables(survey):
    return {"main": Table.read(survey / CATALOG),
            "fits": Table.read(survey / CATALOG.replace(".fits", "_fits.fits")),
            "selection": Table.read(survey / CATALOG.replace(".fits", "_selection.fits")),
            "truth": Table.read(survey / "truth.fits")}


def _stamp(survey, row, column="GAL"):
    with fits.open(survey / row[f"{column}_FILENAME"]) as hdus:
        return np.asarray(hdus[row[f"{column}_HDU"]].data, dtype=float)


def test_files_and_columns(survey, tables):
    main_cat = tables["main"]
    assert len(main_cat) == N_GAL
    for col in ("IDENT", "RA", "DEC", "MAG", "BAND", "WEIGHT", "GAL_FILENAME", "PSF_FILENAME",
                "GAL_HDU", "PSF_HDU", "PIXEL_SCALE", "NOISE_MEAN", "NOISE_VARIANCE",
                "NOISE_FILENAME", "stamp_flux"):
        assert col in main_cat.colnames
    assert tables["fits"]["sersicfit"].shape == (N_GAL, 8)
    assert tables["fits"]["bulgefit"].shape == (N_GAL, 16)
    assert tables["fits"]["fit_status"].shape == (N_GAL, 5)
    assert tables["fits"]["hlr"].shape == (N_GAL, 3)
    assert tables["fits"]["flux"].shape == (N_GAL, 4)
    n_files = math.ceil(N_GAL / FILE_HDUS)
    for k in range(1, n_files + 1):
        with fits.open(survey / cf.image_file_name("25.2", k)) as hdus:
            assert len(hdus) == (FILE_HDUS if k < n_files else N_GAL - FILE_HDUS * (n_files - 1))
    assert not (survey / cf.image_file_name("25.2", n_files + 1)).exists()
    assert (survey / cf.NOISE_FILE).is_file()
    assert np.all(main_cat["PIXEL_SCALE"] == 0.03)
    assert np.all(main_cat["MAG"] < 25.2)
    assert len(set(main_cat["IDENT"])) == N_GAL
    sides = [_stamp(survey, row).shape for row in main_cat]
    assert min(min(s) for s in sides) >= 45 and max(max(s) for s in sides) <= 250


def test_cosmoscatalog_reads_survey(survey, tables):
    cat = galsim.COSMOSCatalog(file_name=CATALOG, dir=str(survey), exclusion_level="none")
    assert cat.nobjects == N_GAL
    default = galsim.COSMOSCatalog(file_name=CATALOG, dir=str(survey))  # GalSim's default cuts
    assert 0 < default.nobjects <= N_GAL
    for i in (0, N_GAL - 1):
        real = cat.makeGalaxy(i, gal_type="real", rng=galsim.BaseDeviate(5))
        row = tables["main"][i]
        # RealGalaxy flux is the stamp flux; drawing it with the HST PSF reproduces the stamp
        assert real.flux == pytest.approx(row["stamp_flux"], rel=1e-5)
        image = galsim.Convolve(real, cat.real_cat.getPSF(i)).drawImage(
            nx=60, ny=60, scale=0.03, method="no_pixel")
        assert np.isfinite(image.array).all()
        param = cat.makeGalaxy(i, gal_type="parametric")
        assert param.flux == pytest.approx(tables["truth"]["flux"][i], rel=1e-6)
    noise = cat.real_cat.getNoise(0, rng=galsim.BaseDeviate(1))
    assert noise.getVariance() == pytest.approx(tables["main"]["NOISE_VARIANCE"][0], rel=1e-6)


def _truth_smooth_profile(t):
    """PSF-free truth profile with the knot flux spread over the smooth disk."""
    beta = t["beta"] * galsim.radians
    disk = galsim.Sersic(t["disk_n"], half_light_radius=t["disk_hlr"],
                         flux=t["disk_flux"] + t["knot_flux"])
    gal = disk.shear(q=t["disk_q"], beta=beta)
    if t["bulge_flux"] > 0:
        bulge = galsim.Sersic(t["bulge_n"], half_light_radius=t["bulge_hlr"], flux=t["bulge_flux"])
        gal = gal + bulge.shear(q=t["bulge_q"], beta=beta)
    return gal


def test_parametric_profile_matches_truth(survey, tables):
    cat = galsim.COSMOSCatalog(file_name=CATALOG, dir=str(survey), exclusion_level="none")
    truth, fit = tables["truth"], tables["fits"]
    psf = galsim.Gaussian(fwhm=0.1)
    single_sersic = []
    for i in range(N_GAL):
        t = truth[i]
        param = galsim.Convolve(cat.makeGalaxy(i, gal_type="parametric"), psf)
        true = galsim.Convolve(_truth_smooth_profile(t), psf)
        size = int(min(20 * t["hlr"] / 0.03, 800)) + 32
        a = param.drawImage(nx=size, ny=size, scale=0.03).array
        b = true.drawImage(nx=size, ny=size, scale=0.03).array
        mismatch = np.abs(a - b).sum() / np.abs(b).sum()
        if fit["use_bulgefit"][i]:
            # GalSim's bulge + disk model (de Vaucouleurs + exponential) is the truth itself
            # for an exponential disk, an approximation for other disk Sersic indices
            assert mismatch < (1e-3 if t["disk_n"] == 1.0 else 0.15), (i, mismatch)
            assert truth["bulge_n"][i] == 4.0
        else:
            # single-Sersic approximation of the bulge + disk, same flux and similar size;
            # one component cannot follow a bulge and a disk of different axis ratios
            # (e.g. 0.75 and 0.31 at B/T 0.3: 17%), so the bound is on the typical galaxy
            single_sersic.append(mismatch)
            assert mismatch < 0.25, (i, mismatch)
            assert fit["hlr"][i, 0] == pytest.approx(t["hlr"], rel=0.1)
    assert np.median(single_sersic) < 0.05, single_sersic


def test_truth_consistent_with_fits_catalog(tables):
    truth, fit, main_cat = tables["truth"], tables["fits"], tables["main"]
    assert np.all(truth["IDENT"] == fit["IDENT"]) and np.all(fit["IDENT"] == main_cat["IDENT"])
    assert np.allclose(fit["zphot"], truth["zphot"])
    assert np.allclose(fit["fit_dvc_btt"], truth["bulge_fraction"])
    assert np.allclose(fit["flux"][:, 0], truth["flux"])
    assert np.allclose(fit["mag_auto"], main_cat["MAG"])
    assert np.allclose(truth["flux"], 10 ** (-0.4 * (truth["mag"] - 25.94)))
    assert np.allclose(truth["bulge_flux"] + truth["disk_flux"] + truth["knot_flux"], truth["flux"])
    # hlr column = 0.03" x major-axis r_e x sqrt(q), as in the real catalogs
    s = fit["sersicfit"]
    assert np.allclose(fit["hlr"][:, 0], 0.03 * s[:, 1] * np.sqrt(s[:, 3]))
    # sersicfit[0] is the surface brightness at r_e that gives the catalog flux
    for i in range(N_GAL):
        prof = galsim.Sersic(s[i, 2], half_light_radius=1.0)
        flux = s[i, 0] * s[i, 1] ** 2 * s[i, 3] / prof.xValue(galsim.PositionD(1.0, 0.0))
        assert flux == pytest.approx(fit["flux"][i, 0], rel=1e-6)
    b = fit["bulgefit"]
    assert np.all(b[:, 2] == 1.0)
    use = fit["use_bulgefit"] == 1
    assert np.allclose(b[use, 10], 4.0)
    assert np.allclose(b[use, 11], truth["bulge_q"][use])
    assert np.allclose(fit["hlr"][use, 1], truth["bulge_hlr"][use])
    assert np.all(fit["hlr"][~use, 1:] == 0)


def test_stamp_flux_matches_truth_magnitude(survey, tables):
    main_cat, truth = tables["main"], tables["truth"]
    cn = galsim.getCOSMOSNoise()
    cf_image = cn.drawImage(scale=0.03)
    corr_sum = cf_image.array.sum() / cn.getVariance()  # sum of the correlation coefficients
    for row, t in zip(main_cat, truth):
        flux_truth = 10 ** (-0.4 * (t["mag"] - sr.ZERO_POINT))
        # the noiseless stamp keeps most of the light of the profile
        assert 0.8 * flux_truth < t["noiseless_stamp_flux"] <= flux_truth * 1.001
        n_pix = _stamp(survey, row).size
        sigma_sum = math.sqrt(row["NOISE_VARIANCE"] * n_pix * corr_sum)
        assert abs(row["stamp_flux"] - t["noiseless_stamp_flux"]) < 5 * sigma_sum
        assert row["stamp_flux"] == pytest.approx(_stamp(survey, row).sum(), rel=1e-5)
    # MAG (= mag_auto, measured) is close to the true magnitude; like SExtractor's Kron
    # flux it misses some light of extended galaxies (real COSMOS: ~0.1 mag median)
    offset = main_cat["MAG"] - truth["mag"]
    assert np.all((offset > -0.3) & (offset < 1.0))
    assert 0.0 < np.median(offset) < 0.3


def test_psfs_are_real_and_unit_sum(survey, tables):
    library = psf_library()
    for row, t in zip(tables["main"], tables["truth"]):
        psf = _stamp(survey, row, "PSF")
        assert psf.sum() == pytest.approx(1.0, abs=1e-10)
        assert np.array_equal(psf, library[t["psf_index"]])
    with fits.open(os.path.join(os.path.dirname(__file__), "..", "galsim_vae", "share",
                                "real_galaxy_PSF_images.fits")) as hdus:
        assert len(hdus) == 100


def test_noise_variance_far_from_galaxy(survey, tables):
    ratios, weights = [], []
    for row, fr in zip(tables["main"], tables["fits"]["flux_radius"]):
        image = _stamp(survey, row)
        ny, nx = image.shape
        y, x = np.mgrid[:ny, :nx]
        far = np.hypot(x - (nx - 1) / 2, y - (ny - 1) / 2) > max(5 * fr, 15)
        if far.sum() < 300:
            continue
        ratios.append(np.var(image[far]) / row["NOISE_VARIANCE"])
        weights.append(far.sum())
    assert len(ratios) >= 5
    assert np.average(ratios, weights=weights) == pytest.approx(1.0, abs=0.1)
    variance = tables["main"]["NOISE_VARIANCE"]
    assert np.all((variance > 4e-6) & (variance < 3e-5))


def test_same_seed_identical_files_any_process_count(tmp_path):
    one = simulate_survey(tmp_path / "one", 5, seed=4, file_hdus=3)
    two = simulate_survey(tmp_path / "two", 5, seed=4, file_hdus=3, processes=2)
    other = simulate_survey(tmp_path / "other", 5, seed=5, file_hdus=3)
    names = sorted(os.listdir(one))
    assert names == sorted(os.listdir(two))
    for name in names:
        assert (one / name).read_bytes() == (two / name).read_bytes(), name
    assert (one / CATALOG).read_bytes() != (other / CATALOG).read_bytes()


def test_bad_input_exit_2_no_output(tmp_path, survey, capsys):
    out = tmp_path / "bad"
    assert main(["--quiet", "simulate", "--n", "0", "--out", str(out)]) == 2
    assert "n=0" in capsys.readouterr().err
    assert not out.exists()
    before = sorted(os.listdir(survey))
    assert main(["--quiet", "simulate", "--n", "2", "--out", str(survey)]) == 2
    assert "exists" in capsys.readouterr().err
    assert sorted(os.listdir(survey)) == before
    assert main(["--quiet", "simulate", "--n", "2", "--out", str(out), "--compare",
                 str(tmp_path / "missing_fits.fits")]) == 2
    assert not out.exists()
    assert os.listdir(tmp_path) == []  # no temporary folders left behind
    with pytest.raises(InputDataError, match="sample"):
        simulate_survey(out, 2, sample="24")
    with pytest.raises(OutputExistsError):
        simulate_survey(survey, 2)


def test_cli_sample_235_and_compare(tmp_path, capsys):
    out = tmp_path / "s235"
    assert main(["--quiet", "simulate", "--n", "3", "--out", str(out), "--sample", "23.5",
                 "--seed", "2", "--compare"]) == 0
    text = capsys.readouterr().out
    assert "flux_radius" in text and "sersic_n" in text
    cat = galsim.COSMOSCatalog(file_name="real_galaxy_catalog_23.5.fits", dir=str(out),
                               exclusion_level="none")
    assert cat.nobjects == 3
    assert np.all(Table.read(out / "real_galaxy_catalog_23.5.fits")["MAG"] < 23.5)


def test_compare_table(survey):
    table = compare_with_real(survey)
    assert set(table["quantity"]) == {"mag_auto", "flux_radius", "zphot", "sersic_n"}
    real_rows = table[[c.startswith("real") for c in table["catalog"]]]
    assert np.all((real_rows["ks_d"] >= 0) & (real_rows["ks_d"] <= 1))
    example = table[(table["quantity"] == "zphot")
                    & (table["catalog"] == "real real_galaxy_catalog_23.5_example_fits.fits")]
    assert example["n"][0] == 100 and example["median"][0] == pytest.approx(0.514, abs=0.01)
    matched = table[(table["quantity"] == "flux_radius")
                    & (table["catalog"] == "  sim. mag-matched to "
                                           "real_galaxy_catalog_23.5_example_fits.fits")]
    assert matched["n"][0] == 5 * 100 and 0 <= matched["ks_d"][0] <= 1


def test_sizes_shrink_with_redshift():
    # van der Wel et al. 2014 at fixed stellar mass: R ~ (1+z)^-0.75 (late), ^-1.48 (early)
    for kind, beta in (("late", -0.75), ("early", -1.48)):
        r1, r2 = sr.effective_radius_kpc([10.8, 10.8], [0.5, 1.5], kind)
        assert r2 / r1 == pytest.approx((2.5 / 1.5) ** beta, rel=1e-9)
    # at fixed apparent magnitude the simulated angular sizes shrink with redshift
    rng = np.random.default_rng(3)
    draws = [draw_truth(rng, 23.0) for _ in range(1500)]
    z = np.array([d["zphot"] for d in draws])
    hlr = np.array([d["hlr"] for d in draws])
    kpc = np.array([d["r_eff_kpc"] for d in draws])
    late = np.array([d["kind"] == "late" for d in draws])
    low, high = late & (z > 0.3) & (z < 0.6), late & (z > 1.0) & (z < 1.5)
    assert low.sum() > 50 and high.sum() > 50
    assert np.median(hlr[high]) < 0.95 * np.median(hlr[low])
    # physical sizes follow the relation: residuals from it are centred on zero
    mass = np.array([d["log_mstar"] for d in draws])
    resid = np.log10(kpc[late]) - np.log10(sr.effective_radius_kpc(mass[late], z[late], "late"))
    assert abs(np.mean(resid)) < 0.02 and np.std(resid) == pytest.approx(0.16, abs=0.02)
