"""The on-disk data set format: writer checks, atomicity, normalisation, reader checks."""

from __future__ import annotations

import json

import numpy as np
import pytest

from galsim_vae.data import Dataset, DatasetWriter, assign_split
from galsim_vae.errors import InputDataError, MissingInputError, OutputExistsError


def _writer(path, **kwargs):
    options = dict(max_galaxies=10, stamp_size=16, psf_size=5, pixel_scale=0.03,
                   flux_units="counts/s")
    options.update(kwargs)
    return DatasetWriter(path, **options)


def _add(writer, i, peak=1.0, **kwargs):
    image = np.zeros((16, 16), np.float32)
    image[8, 8] = peak
    psf = np.zeros((5, 5))
    psf[2, 2] = 2.0
    writer.add(image, ident=i, noise_variance=0.01, psf=psf, **kwargs)


def test_round_trip_trims_and_normalises(tmp_path):
    with _writer(tmp_path / "ds") as w:
        for i in range(7):
            _add(w, i, peak=float(i + 1), zphot=0.1 * i)
    ds = Dataset(tmp_path / "ds")
    assert len(ds) == 7 and ds.images.shape == (7, 16, 16) and ds.psfs.shape == (7, 5, 5)
    assert isinstance(ds.images, np.memmap)
    np.testing.assert_allclose(ds.psfs.sum(axis=(1, 2)), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(ds.catalog["ident"], np.arange(7))
    train = ds.indices("train")
    peaks = np.array([i + 1.0 for i in train])
    assert ds.flux_scale == pytest.approx(np.median(peaks))
    z = ds.condition_stats("zphot")
    assert z["min"] == pytest.approx(0.1 * train.min())
    assert np.isnan(ds.catalog["mag_auto"]).all()
    with pytest.raises(InputDataError, match="mag_auto"):
        ds.condition_stats("mag_auto")


def test_split_depends_only_on_ident_and_seed():
    idents = list(range(1000))
    a = assign_split(idents, seed=3)
    b = assign_split(idents[::-1], seed=3)[::-1]
    np.testing.assert_array_equal(a, b)
    counts = np.bincount(a, minlength=3) / 1000
    np.testing.assert_allclose(counts, [0.8, 0.1, 0.1], atol=0.04)
    assert not np.array_equal(a, assign_split(idents, seed=4))
    with pytest.raises(InputDataError, match="fractions"):
        assign_split(idents, fractions=(0.5, 0.5, 0.5))


@pytest.mark.parametrize("bad, message", [
    (dict(image=np.full((16, 16), np.nan)), "NaN or inf"),
    (dict(image=np.zeros((15, 16))), "stamp shape"),
    (dict(noise_variance=0.0), "noise_variance"),
    (dict(psf=np.zeros((5, 5))), "non-positive sum"),
    (dict(psf=None), "PSF image is required"),
])
def test_bad_galaxies_rejected_and_nothing_left(tmp_path, bad, message):
    values = dict(image=np.ones((16, 16)), ident=1, noise_variance=1.0, psf=np.ones((5, 5)))
    values.update(bad)
    with pytest.raises(InputDataError, match=message):
        with _writer(tmp_path / "ds") as w:
            w.add(values.pop("image"), **values)
    assert list(tmp_path.iterdir()) == []


def test_empty_selection_and_duplicate_idents(tmp_path):
    with pytest.raises(InputDataError, match="selection is empty"):
        with _writer(tmp_path / "ds"):
            pass
    with pytest.raises(InputDataError, match="not unique"):
        with _writer(tmp_path / "ds") as w:
            _add(w, 1)
            _add(w, 1)
    assert list(tmp_path.iterdir()) == []


def test_existing_output_refused(tmp_path):
    (tmp_path / "ds").mkdir()
    with pytest.raises(OutputExistsError):
        with _writer(tmp_path / "ds"):
            pass


def test_reader_refuses_incomplete_newer_or_truncated(tmp_path):
    with pytest.raises(MissingInputError, match="does not exist"):
        Dataset(tmp_path / "nothing")
    with _writer(tmp_path / "ds") as w:
        for i in range(3):
            _add(w, i)
    manifest = tmp_path / "ds" / "dataset.json"
    meta = json.loads(manifest.read_text())
    manifest.write_text(json.dumps(dict(meta, format_version=99)))
    with pytest.raises(InputDataError, match="upgrade galsim-vae"):
        Dataset(tmp_path / "ds")
    manifest.write_text(json.dumps(meta))
    images = tmp_path / "ds" / "images.npy"
    images.write_bytes(images.read_bytes()[:-100])
    with pytest.raises(InputDataError, match="images.npy"):
        Dataset(tmp_path / "ds")
    manifest.unlink()
    with pytest.raises(MissingInputError, match="not a complete"):
        Dataset(tmp_path / "ds")
