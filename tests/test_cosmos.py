"""Preparing data sets from GalSim-format COSMOS catalogs (galsim_vae.data.cosmos).

Uses the real catalogs in tests/data (see its README): cosmos_paltas_23.5 (10 galaxies,
PSF/selection/noise files missing), cosmos_slsim_23.5 (2 galaxies, wrong GAL_HDU) and
the catalogs of GalSim's example sample (no galaxy images).
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from conftest import TEST_DATA
from galsim_vae.cli import main
from galsim_vae.data import Dataset
from galsim_vae.data.cosmos import (COSMOS_F814W_ZEROPOINT, noise_seed_for, place_centred,
                                    prepare_cosmos, select_galaxies)
from galsim_vae.data.cosmos_repair import (PaddingNoise, effective_exclusion_level,
                                           repair_noise_files)
from galsim_vae.errors import InputDataError, MissingInputError, OutputExistsError

PALTAS = TEST_DATA / "cosmos_paltas_23.5"
SLSIM = TEST_DATA / "cosmos_slsim_23.5"
EXAMPLE = TEST_DATA / "cosmos_galsim_example_23.5"
PSF_101 = PALTAS / "psf_101.fits"
CATALOG = "real_galaxy_catalog_23.5.fits"
PARAMS = "real_galaxy_catalog_23.5_fits.fits"


def prepare_quietly(out, directory, **kwargs):
    """prepare_cosmos with its (expected) defect warnings recorded, not shown."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        path = prepare_cosmos(out, directory, **kwargs)
    return path, [str(w.message) for w in caught]


def copy_catalog(src: Path, dst: Path) -> Path:
    """A writable copy of a catalog folder (tests edit the copy, never tests/data)."""
    shutil.copytree(src, dst)
    for path in dst.iterdir():
        path.chmod(0o644)
    return dst


def edit_table(path: Path, **columns) -> None:
    """Rewrite the FITS table ``path`` with some columns replaced or removed (None)."""
    table = Table.read(path, format="fits")
    for name, values in columns.items():
        if values is None:
            table.remove_column(name)
        else:
            table[name] = values
    table.write(path, format="fits", overwrite=True)


def light_centroid(image: np.ndarray) -> np.ndarray:
    """(x, y) light-weighted centroid of the positive pixels, 0-based pixel coordinates."""
    weight = np.clip(image, 0, None)
    y, x = np.indices(image.shape)
    return np.array([(x * weight).sum(), (y * weight).sum()]) / weight.sum()


@pytest.fixture(scope="module")
def paltas(tmp_path_factory):
    """The paltas catalog prepared at 128x128 with the psf_101 fallback PSF."""
    out = tmp_path_factory.mktemp("cosmos") / "paltas"
    path, messages = prepare_quietly(out, PALTAS, psf_file=PSF_101)
    return Dataset(path), messages


def test_place_centred_parities():
    """Whole-pixel centring: exact for equal parities, +-0.5 pixel otherwise."""
    for n, size, expected in ((5, 9, 0.0), (6, 10, 0.0), (5, 10, 0.5), (6, 9, -0.5),
                              (11, 4, 0.5), (12, 5, -0.5), (13, 7, 0.0)):
        array = np.zeros((n, n))
        array[n // 2, n // 2] = 1.0
        out, offsets, kept = place_centred(array, size)
        assert out.shape == (size, size)
        assert offsets == (expected, expected)
        assert out[size // 2, size // 2] == 1.0 and out.sum() == 1.0
        assert kept[0].stop - kept[0].start == min(n, size)


def test_paltas_warns_about_each_defect(paltas):
    _, messages = paltas
    joined = "\n".join(messages)
    assert "real_galaxy_catalog_23.5_selection.fits" in joined
    assert "assuming exclusion_level='bad_fits'" in joined
    assert "real_galaxy_PSF_images_23.5_n1.fits" in joined and "psf_101.fits" in joined
    assert "every galaxy gets the PSF" in joined
    assert "acs_I_unrot_sci_20_cf.fits" in joined and "GalSim ships" in joined


def test_paltas_catalog_values(paltas):
    dataset, _ = paltas
    cat = Table.read(PALTAS / CATALOG)
    par = Table.read(PALTAS / PARAMS)
    out = dataset.catalog
    assert len(dataset) == 10 and dataset.stamp_size == 128 and dataset.psf_size == 41
    assert dataset.pixel_scale == pytest.approx(0.03)
    assert "25.94" in dataset.flux_units and "counts/s" in dataset.flux_units
    assert list(out["ident"]) == list(cat["IDENT"])
    np.testing.assert_array_equal(out["noise_variance"], cat["NOISE_VARIANCE"])
    for name in ("zphot", "mag_auto", "flux_radius"):
        np.testing.assert_allclose(out[name], par[name], rtol=1e-12)
    np.testing.assert_array_equal(out["stamp_flux"], cat["stamp_flux"])
    np.testing.assert_array_equal(out["weight"], cat["WEIGHT"])
    # counts/s with zero point 25.94 reproduce the catalog magnitudes
    mags = COSMOS_F814W_ZEROPOINT - 2.5 * np.log10(np.asarray(out["stamp_flux"]))
    np.testing.assert_allclose(mags, out["mag_auto"], atol=0.15)
    source = dataset.meta["source"]
    assert source["cuts"]["exclusion_level"] == "bad_fits"
    assert source["n_catalog"] == 10 and source["n_written"] == 10
    assert source["n_cropped"] == 2 and source["n_padded"] == 8
    assert len(source["warnings"]) == 4


def test_paltas_stamps_are_the_original_pixels_centred(paltas):
    dataset, _ = paltas
    size = dataset.stamp_size
    cat = dataset.catalog
    with fits.open(PALTAS / "real_galaxy_images_23.5_n1.fits") as hdus:
        for row in range(len(dataset)):
            original = hdus[int(cat["gal_hdu"][row])].data.astype(np.float64)
            stamp = np.asarray(dataset.images[row], dtype=np.float64)
            ny, nx = original.shape
            assert (cat["orig_ny"][row], cat["orig_nx"][row]) == (ny, nx)
            _, offsets, kept = place_centred(original, size)
            np.testing.assert_allclose(stamp[_output_region(original.shape, size)],
                                       original[kept], rtol=1e-6)
            assert tuple(cat["centre_offset_x", "centre_offset_y"][row]) == offsets
            assert cat["cropped"][row] == (max(nx, ny) > size)
            if not cat["cropped"][row]:
                # every pixel of the stamp is kept: its flux is the catalog stamp_flux
                assert cat["flux_in_stamp"][row] == pytest.approx(cat["stamp_flux"][row],
                                                                  rel=1e-6)
            # light-weighted centroid: whole-pixel shift, so relative to the stamp centre it
            # moves by exactly the half-pixel centring offset ...
            shape_xy = np.array([nx, ny])
            region = _output_region(original.shape, size)
            before = (light_centroid(original[kept]) + [kept[1].start, kept[0].start]
                      - (shape_xy - 1) / 2.0)
            after = (light_centroid(stamp[region]) + [region[1].start, region[0].start]
                     - (size - 1) / 2.0)
            np.testing.assert_allclose(after, before + np.array(offsets), atol=1e-4)
            # ... and the galaxies sit near the centre of their catalog stamps
            assert np.all(np.abs(light_centroid(original) - (shape_xy - 1) / 2.0) < 4)
            assert np.all(np.abs(after) < 4.5)


def _output_region(shape, size):
    """Output rows/columns that hold the original stamp (place_centred's mapping)."""
    region = []
    for n in shape:
        k = n // 2 - size // 2
        region.append(slice(max(0, -k), min(size, n - k)))
    return tuple(region)


def test_paltas_padding_is_the_galaxys_own_noise(paltas, tmp_path):
    dataset, _ = paltas
    cat = dataset.catalog
    row = int(np.flatnonzero(np.asarray(cat["ident"]) == 93315)[0])  # 49x50 stamp
    stamp = np.asarray(dataset.images[row], dtype=np.float64)
    mask = np.ones(stamp.shape, bool)
    mask[_output_region((50, 49), dataset.stamp_size)] = False
    variance = stamp[mask].var()
    assert variance == pytest.approx(cat["noise_variance"][row], rel=0.15)
    assert abs(stamp[mask].mean()) < 5 * np.sqrt(cat["noise_variance"][row] / 500)
    lag_x = (stamp[:, 1:] * stamp[:, :-1])[mask[:, 1:] & mask[:, :-1]].mean() / variance
    assert lag_x == pytest.approx(0.476, abs=0.05)  # COSMOS F814W correlation at lag 1
    # the padding depends on the ident and the seed only, not on the other galaxies
    again, _ = prepare_quietly(tmp_path / "subset", PALTAS, psf_file=PSF_101, max_galaxies=3)
    np.testing.assert_array_equal(Dataset(again).images[2], dataset.images[row])
    assert noise_seed_for(93315) != noise_seed_for(93315, seed=1)


def test_padding_noise_has_the_cosmos_correlations():
    """Padding noise: the catalog variance and the lag correlations of GalSim's COSMOS
    F814W noise correlation function (as GalSim's own correlated-noise generator)."""
    import galsim

    rgc = galsim.RealGalaxyCatalog(CATALOG, dir=str(PALTAS))
    with pytest.warns(UserWarning, match="acs_I_unrot_sci_20_cf.fits"):
        repair_noise_files(rgc, np.arange(10), [])
    cf = rgc.getNoise(2).drawImage(galsim.ImageD(9, 9, scale=0.03)).array
    fields = np.array([PaddingNoise(rgc).field(2, (128, 128), seed) for seed in (1, 2, 3)])
    variance = fields.var()
    assert variance == pytest.approx(rgc.variance[2], rel=0.05)
    lag_x = (fields[:, :, 1:] * fields[:, :, :-1]).mean() / variance
    lag_y = (fields[:, 1:, :] * fields[:, :-1, :]).mean() / variance
    lag_xy = (fields[:, 1:, 1:] * fields[:, :-1, :-1]).mean() / variance
    np.testing.assert_allclose([lag_x, lag_y, lag_xy],
                               [cf[4, 5] / cf[4, 4], cf[5, 4] / cf[4, 4], cf[5, 5] / cf[4, 4]],
                               atol=0.03)
    assert cf[4, 5] / cf[4, 4] > 0.4  # strongly correlated, unlike white noise
    np.testing.assert_array_equal(PaddingNoise(rgc).field(2, (16, 16), 7),
                                  PaddingNoise(rgc).field(2, (16, 16), 7))


def test_paltas_psfs_unit_sum_and_centred(paltas):
    dataset, _ = paltas
    psfs = np.asarray(dataset.psfs, dtype=np.float64)
    np.testing.assert_allclose(psfs.sum(axis=(1, 2)), 1.0, rtol=1e-5)
    centre = dataset.psf_size // 2
    for psf in psfs:
        assert np.unravel_index(np.argmax(psf), psf.shape) == (centre, centre)
        np.testing.assert_allclose(light_centroid(psf), [centre, centre], atol=0.5)
    raw = fits.getdata(PSF_101).astype(np.float64)
    np.testing.assert_allclose(psfs[0], raw[29:70, 29:70] / raw[29:70, 29:70].sum(),
                               rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(dataset.catalog["psf_flux_fraction"],
                               raw[29:70, 29:70].sum() / raw.sum(), rtol=1e-6)


def test_each_galaxys_own_psf_is_centred_on_its_peak(tmp_path):
    """Catalog PSF files present: each galaxy gets its own HDU, peak moved to the centre."""
    directory = copy_catalog(PALTAS, tmp_path / "own_psfs")
    raw = fits.getdata(PSF_101).astype(np.float64)
    # COSMOS-like PSF stamps of odd and even sizes whose peak is off their n//2 pixel
    cutouts = [raw[30:67, 30:69], raw[31:69, 29:68], raw[28:67, 31:67]]
    fits.HDUList([fits.PrimaryHDU(cutouts[0])] + [fits.ImageHDU(c) for c in cutouts[1:]]
                 ).writeto(directory / "real_galaxy_PSF_images_23.5_n1.fits")
    edit_table(directory / CATALOG, PSF_HDU=np.arange(10) % 3)
    path, messages = prepare_quietly(tmp_path / "out", directory, max_galaxies=3,
                                     psf_size=25, psf_file=PSF_101)
    psf_messages = [m for m in messages if "PSF" in m]
    assert len(psf_messages) == 1 and "psf_101.fits' is not used" in psf_messages[0]
    dataset = Dataset(path)
    assert dataset.meta["source"]["psf_source"] == "catalog"
    for row, cutout in enumerate(cutouts):
        psf = np.asarray(dataset.psfs[row], dtype=np.float64)
        py, px = np.unravel_index(np.argmax(cutout), cutout.shape)
        expected = cutout[py - 12:py + 13, px - 12:px + 13]
        np.testing.assert_allclose(psf, expected / expected.sum(), rtol=1e-5, atol=1e-9)
        assert np.unravel_index(np.argmax(psf), psf.shape) == (12, 12)


def test_slsim_hdu_repair(tmp_path):
    path, messages = prepare_quietly(tmp_path / "slsim", SLSIM, psf_file=PSF_101,
                                     stamp_size=160)
    repairs = [m for m in messages if "IDENT 97475" in m]
    assert len(repairs) == 1
    assert "HDU 2" in repairs[0] and "using HDU 1" in repairs[0]
    assert not any("IDENT 169753" in m for m in messages)
    dataset = Dataset(path)
    cat = dataset.catalog
    assert list(cat["ident"]) == [97475, 169753]
    assert list(cat["gal_hdu"]) == [1, 2] and list(cat["hdu_repaired"]) == [True, False]
    assert dataset.meta["source"]["hdu_repairs"][0]["repaired_hdu"] == 1
    with fits.open(SLSIM / "test_galaxy_images_23.5.fits") as hdus:
        for row, hdu in enumerate((1, 2)):
            original = hdus[hdu].data.astype(np.float64)
            region = _output_region(original.shape, 160)
            np.testing.assert_allclose(dataset.images[row][region], original, rtol=1e-6)
            assert original.sum() == pytest.approx(cat["stamp_flux"][row], rel=1e-6)
            assert cat["flux_in_stamp"][row] == pytest.approx(cat["stamp_flux"][row], rel=1e-6)
    # GalSim's "original" catalog on disk is untouched
    assert list(Table.read(SLSIM / CATALOG)["GAL_HDU"]) == [2, 2]


def test_slsim_hdu_without_match_fails(tmp_path):
    directory = copy_catalog(SLSIM, tmp_path / "nomatch")
    edit_table(directory / CATALOG, stamp_flux=np.array([1.0, 295.27060361218173]))
    with pytest.raises(InputDataError, match=r"IDENT 97475: HDU 2 of .*test_galaxy_images.*no HDU"):
        prepare_quietly(tmp_path / "out", directory, psf_file=PSF_101)
    assert not (tmp_path / "out").exists()
    path, messages = prepare_quietly(tmp_path / "out", directory, psf_file=PSF_101,
                                     check_hdus=False)
    assert list(Dataset(path).catalog["gal_hdu"]) == [2, 2]


def test_missing_psf_file_fails_naming_it(tmp_path):
    with pytest.raises(MissingInputError,
                       match=r"real_galaxy_PSF_images_23.5_n1.fits.*--psf-file"):
        prepare_quietly(tmp_path / "out", PALTAS)
    assert not (tmp_path / "out").exists()


def test_missing_galaxy_images_fail_naming_file_and_fix(tmp_path):
    with pytest.raises(MissingInputError,
                       match=r"real_galaxy_images.fits.*galsim_download_cosmos"):
        prepare_quietly(tmp_path / "out", EXAMPLE)


def test_selection_fallbacks(tmp_path):
    notes: list[str] = []
    example = EXAMPLE / "real_galaxy_catalog_23.5_example.fits"
    assert effective_exclusion_level(example, "marginal", notes) == "marginal" and not notes
    with pytest.warns(UserWarning, match="selection.fits.*bad_stamp.*'none'"):
        assert effective_exclusion_level(PALTAS / CATALOG, "bad_stamp", notes) == "none"
    assert effective_exclusion_level(PALTAS / CATALOG, "bad_fits", notes) == "bad_fits"


def test_selection_is_galsims_cosmoscatalog():
    """GalSim's own cuts, with the selection file of GalSim's example catalog."""
    import galsim

    name = "real_galaxy_catalog_23.5_example.fits"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing to repair in the selection step
        sel = select_galaxies(EXAMPLE, exclusion_level="marginal", cuts={"min_hlr": 0.2},
                              max_galaxies=30)
    reference = galsim.COSMOSCatalog(name, dir=str(EXAMPLE), min_hlr=0.2)
    assert sel.sample == "23.5" and sel.level == "marginal"
    assert sel.catalog.name == name
    assert 0 < sel.n_after_cuts == reference.nobjects < 100
    np.testing.assert_array_equal(sel.indices, reference.orig_index[:30])
    par = Table.read(EXAMPLE / "real_galaxy_catalog_23.5_example_fits.fits")
    np.testing.assert_array_equal(sel.columns["zphot"], par["zphot"])
    np.testing.assert_array_equal(sel.idents, par["IDENT"])


def test_missing_catalog_and_columns(tmp_path):
    with pytest.raises(MissingInputError, match="does not exist"):
        prepare_cosmos(tmp_path / "out", tmp_path / "nowhere")
    with pytest.raises(MissingInputError, match="real_galaxy_catalog_25.2.fits"):
        prepare_cosmos(tmp_path / "out", PALTAS, sample="25.2")
    directory = copy_catalog(PALTAS, tmp_path / "nozphot")
    edit_table(directory / PARAMS, IDENT=None)
    with pytest.raises(InputDataError, match=r"_fits.fits.*\['IDENT'\]"):
        prepare_quietly(tmp_path / "out", directory, psf_file=PSF_101)
    assert not (tmp_path / "out").exists()
    # without a _fits catalog, what GalSim's RealGalaxyCatalog reads is prepared
    (directory / PARAMS).unlink()
    path, messages = prepare_quietly(tmp_path / "out", directory, psf_file=PSF_101)
    assert any("_fits.fits' does not exist" in m and "'none'" in m for m in messages)
    catalog = Dataset(path).catalog
    assert len(catalog) == 10 and np.all(np.isnan(catalog["zphot"]))
    np.testing.assert_array_equal(catalog["mag_auto"], Table.read(directory / CATALOG)["MAG"])
    with pytest.raises(InputDataError, match=r"cuts .*min_hlr.* need the parameter catalog"):
        prepare_quietly(tmp_path / "out2", directory, psf_file=PSF_101, min_hlr=0.1)


AEGIS = TEST_DATA / "aegis_galsim_test"


def test_real_extension_catalog_prepares_trains_and_samples(tmp_path, capsys):
    """GalSim's AEGIS F814W sample, as a user has it: upper-case columns, MAG but no
    mag_auto, no zphot, no _fits, selection or noise-correlation file, images and PSFs
    split over two files each, stamp_flux a few per cent off two stamps."""
    import galsim

    out = tmp_path / "aegis"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["--quiet", "prepare", "cosmos", "--dir", str(AEGIS), "--file-name",
                     "AEGIS_F814w_catalog.fits", "--stamp-size", "64", "--out",
                     str(out)]) == 0
    messages = " | ".join(str(w.message) for w in caught)
    for expected in ("_fits.fits' does not exist", "no zphot column", "MAG column",
                     "no flux_radius column", "acs_I_unrot_sci_cf.fits' is missing",
                     "IDENT 14886", "-5.7% off the catalog's stamp_flux"):
        assert expected in messages, expected
    data = Dataset(out)
    rgc = galsim.RealGalaxyCatalog("AEGIS_F814w_catalog.fits", dir=str(AEGIS))
    assert [str(i) for i in data.catalog["ident"]] == list(rgc.ident)
    np.testing.assert_allclose(data.catalog["mag_auto"], rgc.mag)
    for row in range(rgc.nobjects):                 # the stamps GalSim reads, centred
        original = rgc.getGalImage(row).array.astype(np.float64)
        region = _output_region(original.shape, 64)
        if original.shape[0] <= 64 and original.shape[1] <= 64:
            np.testing.assert_allclose(data.images[row][region], original, rtol=1e-6)
    capsys.readouterr()
    # a condition the catalog lacks: named, with how to provide it
    assert main(["--quiet", "train", str(out), "--out", str(tmp_path / "cvae"), "--model",
                 "cvae2", "--conditions", "zphot", "--epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert "no finite 'zphot'" in err and "--column zphot=COLUMN" in err
    # a magnitude-conditioned model and an unconditional one train and sample
    for name, extra in (("mag", ["--model", "cvae2", "--conditions", "mag_auto"]),
                        ("vae", ["--model", "vae"])):
        bundle = tmp_path / name
        assert main(["--quiet", "train", str(out), "--out", str(bundle), *extra, "--epochs",
                     "2", "--batch-size", "4", "--latent-size", "4", "--channels", "4,8",
                     "--seed", "1", "--flow-epochs", "3"]) == 0
        cube = tmp_path / f"{name}.fits"
        condition = ["--condition", "mag_auto=23"] if name == "mag" else []
        assert main(["--quiet", "sample", str(bundle), "--n", "3", "--seed", "2", *condition,
                     "--out", str(cube)]) == 0
        images = galsim.fits.readCube(str(cube))
        assert len(images) == 3 and images[0].array.shape == (64, 64)
        assert images[0].scale == pytest.approx(0.03)
        assert all(np.isfinite(im.array).all() for im in images)


def test_misaligned_parameter_catalog(tmp_path):
    directory = copy_catalog(PALTAS, tmp_path / "shuffled")
    table = Table.read(directory / PARAMS)
    table[::-1].write(directory / PARAMS, format="fits", overwrite=True)
    with pytest.raises(InputDataError, match="not row-aligned"):
        prepare_quietly(tmp_path / "out", directory, psf_file=PSF_101)


def test_nan_pixels(tmp_path):
    directory = copy_catalog(PALTAS, tmp_path / "nan")
    with fits.open(directory / "real_galaxy_images_23.5_n1.fits", mode="update") as hdus:
        hdus[2].data[10, 10] = np.nan
    with pytest.raises(InputDataError, match=r"IDENT 93315.*NaN.*--skip-invalid"):
        prepare_quietly(tmp_path / "out", directory, psf_file=PSF_101)
    path, _ = prepare_quietly(tmp_path / "out", directory, psf_file=PSF_101,
                              skip_invalid=True)
    dataset = Dataset(path)
    assert 93315 not in list(dataset.catalog["ident"]) and len(dataset) == 9
    assert dataset.meta["source"]["rejected"]["invalid_pixels"] == 1


def test_oversize_policies_and_empty_selection(tmp_path):
    with pytest.raises(InputDataError, match=r"IDENT 141190.*234x233.*does not fit"):
        prepare_quietly(tmp_path / "out", PALTAS, psf_file=PSF_101, oversize="error")
    path, _ = prepare_quietly(tmp_path / "out", PALTAS, psf_file=PSF_101, oversize="reject")
    source = Dataset(path).meta["source"]
    assert source["rejected"]["oversize"] == 2 and source["n_written"] == 8
    with pytest.raises(InputDataError, match="no galaxy .* passes GalSim's cuts"):
        prepare_quietly(tmp_path / "empty", PALTAS, psf_file=PSF_101, min_hlr=5.0)
    path, _ = prepare_quietly(tmp_path / "cut", PALTAS, psf_file=PSF_101, min_hlr=0.3)
    source = Dataset(path).meta["source"]
    hlr = np.asarray(Table.read(PALTAS / PARAMS)["hlr"])[:, 0]
    assert source["n_written"] == int(np.sum(hlr > 0.3)) and source["rejected"]["cuts"] > 0


def test_existing_output_refused(paltas, tmp_path):
    out = tmp_path / "exists"
    out.mkdir()
    with pytest.raises(OutputExistsError):
        prepare_cosmos(out, PALTAS, psf_file=PSF_101)
    path, _ = prepare_quietly(out, PALTAS, psf_file=PSF_101, overwrite=True, max_galaxies=2)
    assert len(Dataset(path)) == 2


def test_cli(tmp_path, capsys):
    out = tmp_path / "cli"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["--quiet", "prepare", "cosmos", "--dir", str(PALTAS), "--out", str(out)]) == 2
        assert not out.exists()
        assert "real_galaxy_PSF_images_23.5_n1.fits" in capsys.readouterr().err
        args = ["--quiet", "prepare", "cosmos", "--dir", str(SLSIM), "--out", str(out),
                "--psf-file", str(PSF_101), "--stamp-size", "64", "--psf-size", "21",
                "--exclusion-level", "none", "--split-seed", "3"]
        assert main(args) == 0
        assert "wrote 2 galaxies" in capsys.readouterr().out
        dataset = Dataset(out)
        assert dataset.images.shape == (2, 64, 64) and dataset.psfs.shape == (2, 21, 21)
        assert dataset.meta["split"]["seed"] == 3
        assert dataset.meta["source"]["cuts"]["exclusion_level"] == "none"
        assert main(args) == 2  # existing output refused
        assert "exists already" in capsys.readouterr().err
        assert main(args + ["--overwrite", "--max-galaxies", "1"]) == 0
        assert len(Dataset(out)) == 1


def test_prepare_simulated_survey(tmp_path):
    """A simulated COSMOS-format survey (galsim_vae.simulation.survey): GalSim's marginal cuts
    with a real selection file, several image files, each galaxy's own PSF, no repairs."""
    import galsim

    from galsim_vae.simulation.survey import simulate_survey

    survey = simulate_survey(tmp_path / "survey", 12, seed=5, sample="23.5", file_hdus=5)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        path = prepare_cosmos(tmp_path / "out", survey, sample="23.5", stamp_size=96,
                              psf_size=25)
    assert not [w for w in caught if "cropped" not in str(w.message)]
    dataset = Dataset(path)
    source = dataset.meta["source"]
    reference = galsim.COSMOSCatalog("real_galaxy_catalog_23.5.fits", dir=str(survey))
    assert source["cuts"]["exclusion_level"] == "marginal" and source["psf_source"] == "catalog"
    assert len(dataset) == source["n_after_cuts"] == reference.nobjects
    assert source["rejected"]["cuts"] == 12 - reference.nobjects
    assert source["hdu_repairs"] == []
    cat = dataset.catalog
    np.testing.assert_array_equal(cat["catalog_index"], reference.orig_index)
    par = Table.read(survey / "real_galaxy_catalog_23.5_fits.fits")
    rows = np.asarray(cat["catalog_index"])
    np.testing.assert_array_equal(cat["ident"], par["IDENT"][rows])
    np.testing.assert_array_equal(cat["zphot"], par["zphot"][rows])
    np.testing.assert_array_equal(cat["noise_variance"], reference.real_cat.variance[rows])
    rgc = reference.real_cat
    for row, index in enumerate(rows):
        original = rgc.getGalImage(int(index)).array
        _, _, kept = place_centred(original, 96)
        region = _output_region(original.shape, 96)
        np.testing.assert_allclose(dataset.images[row][region], original[kept], rtol=1e-6)
        psf = np.asarray(dataset.psfs[row])
        assert psf.sum() == pytest.approx(1.0, rel=1e-5)
        assert np.unravel_index(np.argmax(psf), psf.shape) == (12, 12)


def test_extension_catalog_as_found(tmp_path):
    """A GalSim-format extension catalog of the kind users have: upper-case ZPHOT, no
    mag_auto or flux_radius in its _fits file but an HSC magnitude, no selection or
    noise file.  It prepares with warnings naming what is missing; --column maps the
    magnitude; training on a missing condition is refused with the fix."""
    from astropy.table import Table

    from galsim_vae.cli import main
    from galsim_vae.errors import InputDataError

    folder = tmp_path / "extension"
    shutil.copytree(PALTAS, folder)
    params = folder / "real_galaxy_catalog_23.5_fits.fits"
    table = Table.read(params)
    hsc = np.asarray(table["mag_auto"]) + 0.3
    edit_table(params, zphot=None, mag_auto=None, flux_radius=None,
               ZPHOT=np.asarray(table["zphot"]), HSC_i=hsc)
    args = ["--quiet", "prepare", "cosmos", "--dir", str(folder), "--sample", "23.5",
            "--stamp-size", "64", "--psf-file", str(PALTAS / "psf_101.fits"),
            "--exclusion-level", "none"]
    with pytest.warns(UserWarning) as caught:
        assert main(args + ["--out", str(tmp_path / "plain")]) == 0
    messages = " ".join(str(w.message) for w in caught)
    assert "no flux_radius column (the size condition)" in messages
    assert "mag_auto taken from the MAG column" in messages
    plain = Dataset(tmp_path / "plain")
    np.testing.assert_allclose(plain.catalog["zphot"], table["zphot"][:len(plain.catalog)])
    assert np.isnan(plain.catalog["flux_radius"]).all()
    with pytest.warns(UserWarning) as caught:
        assert main(args + ["--out", str(tmp_path / "hsc"), "--column", "mag_auto=HSC_i"]) == 0
    assert any("mag_auto taken from catalog column 'HSC_i'" in str(w.message) for w in caught)
    mapped = Dataset(tmp_path / "hsc")
    np.testing.assert_allclose(mapped.catalog["mag_auto"], hsc[:len(mapped.catalog)])
    assert main(args + ["--out", str(tmp_path / "bad"), "--column", "mag_auto=HSC_z"]) == 2
    assert not (tmp_path / "bad").exists()
    from galsim_vae.training import train

    with pytest.raises(InputDataError, match=r"no finite 'flux_radius'.*--column flux_radius="):
        train(tmp_path / "plain", tmp_path / "bundle", conditions=("zphot", "flux_radius"),
              epochs=1)
    assert not (tmp_path / "bundle").exists()


def test_all_zero_stamps_and_bad_psfs_refused_or_skipped_with_a_count(tmp_path):
    """Inside an otherwise good catalog (the real AEGIS one): an all-zero stamp, a PSF of
    zero sum and a PSF of negative sum are refused naming the galaxy, the file and the
    fix, or with --skip-invalid left out and counted."""
    directory = copy_catalog(AEGIS, tmp_path / "damaged")
    with fits.open(directory / "AEGIS_F814w_images_01.fits", mode="update") as hdus:
        original = hdus[2].data.copy()
        hdus[2].data[:] = 0.0                                          # IDENT 9024
    with fits.open(directory / "AEGIS_F814w_PSF_images_02.fits", mode="update") as hdus:
        hdus[0].data[:] = 0.0                                          # IDENT 17038
        hdus[1].data *= -1.0                                           # IDENT 24216
    name = "AEGIS_F814w_catalog.fits"
    with pytest.raises(InputDataError, match=r"IDENT 9024: stamp .* is all zeros.*--skip-invalid"):
        prepare_quietly(tmp_path / "out", directory, file_name=name, stamp_size=64)
    with fits.open(directory / "AEGIS_F814w_images_01.fits", mode="update") as hdus:
        hdus[2].data[:] = original                # now only the PSFs are damaged
    with pytest.raises(InputDataError, match=r"IDENT 17038: PSF image .*PSF_images_02.* is "
                                             r"all zeros.*--skip-invalid"):
        prepare_quietly(tmp_path / "out", directory, file_name=name, stamp_size=64)
    assert not (tmp_path / "out").exists()
    with fits.open(directory / "AEGIS_F814w_images_01.fits", mode="update") as hdus:
        hdus[2].data[:] = 0.0
    path, _ = prepare_quietly(tmp_path / "out", directory, file_name=name, stamp_size=64,
                              skip_invalid=True)
    dataset = Dataset(path)
    assert sorted(int(i) for i in dataset.catalog["ident"]) == [14886, 23409]
    rejected = dataset.meta["source"]["rejected"]
    assert rejected["invalid_pixels"] == 1 and rejected["invalid_psf"] == 2
