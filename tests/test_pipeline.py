"""The tf.data input pipeline: batch contents and normalisation, epochs, shuffling, splits,
condition filtering and memory mapping."""

from __future__ import annotations

import math
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from galsim_vae.data import Dataset, DatasetWriter, assign_split, make_tf_dataset
from galsim_vae.errors import InputDataError


def write_random_dataset(path: Path, *, n: int, stamp_size: int = 16, idents=None,
                         zphot=None, psf_size: int | None = None, seed: int = 0) -> Path:
    """A data set of positive random stamps (a Gaussian blob + noise), no GalSim needed."""
    rng = np.random.default_rng(seed)
    idents = list(range(1000, 1000 + n)) if idents is None else list(idents)
    zphot = rng.uniform(0.1, 2.0, size=n) if zphot is None else np.asarray(zphot)
    yy, xx = np.indices((stamp_size, stamp_size)) - (stamp_size - 1) / 2
    blob = np.exp(-(xx**2 + yy**2) / 8.0)
    psf = None if psf_size is None else np.ones((psf_size, psf_size))
    with DatasetWriter(path, max_galaxies=n, stamp_size=stamp_size, psf_size=psf_size,
                       pixel_scale=0.03, flux_units="counts/s",
                       source={"kind": "test"}) as writer:
        for i, ident in enumerate(idents):
            flux = 1.0 + (ident % 7)  # a function of the ident: same galaxy, same pixels
            writer.add(flux * blob + rng.normal(0, 0.01, blob.shape), ident=ident,
                       noise_variance=0.01**2 * (1 + ident % 3), psf=psf, zphot=zphot[i],
                       mag_auto=25 - 2.5 * math.log10(flux), flux_radius=2.0 + ident % 5)
    return path


def epoch_indices(tf_dataset) -> np.ndarray:
    """The ``index`` of every element of one pass, in order."""
    return np.concatenate([batch["index"].numpy() for batch in tf_dataset])


# -- batches ---------------------------------------------------------------------------------

def test_batches_have_documented_shapes_dtypes_and_normalisation(tiny_dataset):
    import tensorflow as tf

    ds = Dataset(tiny_dataset)
    names = ("zphot", "mag_auto")
    train = ds.indices("train")
    batches = list(make_tf_dataset(ds, "train", batch_size=16, conditions=names, seed=1))
    assert [len(b["index"]) for b in batches] == [16] * (len(train) // 16) + (
        [len(train) % 16] if len(train) % 16 else [])
    stats = {n: ds.meta["normalisation"]["conditions"][n] for n in names}
    catalog = ds.catalog
    all_conditions = []
    for batch in batches:
        b = len(batch["index"])
        assert set(batch) == {"image", "noise_std", "psf", "conditions", "index"}
        assert batch["image"].shape == (b, 32, 32, 1) and batch["image"].dtype == tf.float32
        assert batch["noise_std"].shape == (b,) and batch["noise_std"].dtype == tf.float32
        assert batch["psf"].shape == (b, 15, 15, 1) and batch["psf"].dtype == tf.float32
        assert batch["conditions"].shape == (b, 2)
        assert batch["conditions"].dtype == tf.float32
        assert batch["index"].dtype == tf.int64
        rows = batch["index"].numpy()
        np.testing.assert_allclose(batch["image"].numpy()[..., 0],
                                   ds.images[rows] / ds.flux_scale, rtol=1e-6)
        np.testing.assert_allclose(batch["noise_std"].numpy(),
                                   np.sqrt(catalog["noise_variance"][rows]) / ds.flux_scale,
                                   rtol=1e-6)
        np.testing.assert_allclose(batch["psf"].numpy().sum(axis=(1, 2, 3)), 1.0, rtol=1e-5)
        for k, name in enumerate(names):
            expected = (catalog[name][rows] - stats[name]["mean"]) / stats[name]["std"]
            # float32 values: mag_auto ~ 25 is resolved to ~2e-6
            np.testing.assert_allclose(batch["conditions"].numpy()[:, k], expected,
                                       rtol=1e-5, atol=1e-5)
        all_conditions.append(batch["conditions"].numpy())
    # statistics come from the training split: standardised training values are N(0, 1)-like
    all_conditions = np.concatenate(all_conditions)
    np.testing.assert_allclose(all_conditions.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(all_conditions.std(axis=0), 1.0, rtol=1e-5)
    # peak pixel ~ 1 in network units: flux_scale is the median training peak
    peaks = np.concatenate([b["image"].numpy().max(axis=(1, 2, 3)) for b in batches])
    assert np.median(peaks) == pytest.approx(1.0, rel=1e-6)


def test_drop_remainder_and_no_psf(tiny_dataset):
    ds = Dataset(tiny_dataset)
    batches = list(make_tf_dataset(ds, None, batch_size=20, with_psf=False,
                                   drop_remainder=True))
    assert [len(b["index"]) for b in batches] == [20] * (ds.n_galaxies // 20)
    assert all("psf" not in b and "conditions" not in b for b in batches)


# -- epochs and shuffling --------------------------------------------------------------------

def test_each_row_once_per_epoch_and_reshuffled_between_epochs(tiny_dataset):
    ds = Dataset(tiny_dataset)
    pipeline = make_tf_dataset(ds, "train", batch_size=16, seed=3)
    first, second = epoch_indices(pipeline), epoch_indices(pipeline)
    expected = ds.indices("train")
    for epoch in (first, second):
        assert len(epoch) == len(expected)
        np.testing.assert_array_equal(np.sort(epoch), expected)
    assert not np.array_equal(first, second)
    assert not np.array_equal(first, np.sort(first))


def test_repeat_streams_epoch_after_epoch(tiny_dataset):
    ds = Dataset(tiny_dataset)
    n = len(ds.indices("train"))
    pipeline = make_tf_dataset(ds, "train", batch_size=n, seed=0, repeat=True)
    seen = epoch_indices(pipeline.take(3))
    assert len(seen) == 3 * n
    for k in range(3):
        np.testing.assert_array_equal(np.sort(seen[k * n:(k + 1) * n]), ds.indices("train"))


def test_shuffling_is_reproducible_with_the_seed(tiny_dataset):
    ds = Dataset(tiny_dataset)
    a = make_tf_dataset(ds, "train", batch_size=16, seed=11)
    b = make_tf_dataset(ds, "train", batch_size=16, seed=11)
    c = make_tf_dataset(ds, "train", batch_size=16, seed=12)
    a1, a2 = epoch_indices(a), epoch_indices(a)
    b1, b2 = epoch_indices(b), epoch_indices(b)
    np.testing.assert_array_equal(a1, b1)
    np.testing.assert_array_equal(a2, b2)
    assert not np.array_equal(a1, epoch_indices(c))
    unshuffled = epoch_indices(make_tf_dataset(ds, "train", batch_size=16, shuffle=False))
    np.testing.assert_array_equal(unshuffled, ds.indices("train"))


# -- conditions, splits --------------------------------------------------------------------

def test_rows_without_finite_zphot_are_dropped_when_conditioning_on_it(tmp_path):
    n = 40
    zphot = np.linspace(0.2, 1.8, n)
    zphot[::4] = np.nan
    zphot[1] = np.inf
    ds = Dataset(write_random_dataset(tmp_path / "nan_z", n=n, zphot=zphot))
    with pytest.warns(UserWarning, match="zphot"):
        pipeline = make_tf_dataset(ds, None, batch_size=8, with_psf=False,
                                   conditions=("zphot",))
    rows = epoch_indices(pipeline)
    np.testing.assert_array_equal(np.sort(rows), np.flatnonzero(np.isfinite(zphot)))
    assert len(rows) == n - 11
    for batch in pipeline:
        assert np.all(np.isfinite(batch["conditions"].numpy()))
    # without conditions every row streams
    everything = epoch_indices(make_tf_dataset(ds, None, batch_size=8, with_psf=False))
    np.testing.assert_array_equal(np.sort(everything), np.arange(n))


def test_split_depends_only_on_ident_and_seed(tmp_path):
    idents = np.arange(5000, 10000)
    codes = assign_split(idents, seed=0)
    order = np.random.default_rng(1).permutation(len(idents))
    np.testing.assert_array_equal(assign_split(idents[order], seed=0), codes[order])
    for code, fraction in enumerate((0.8, 0.1, 0.1)):
        assert np.mean(codes == code) == pytest.approx(fraction, abs=0.02)
    assert not np.array_equal(assign_split(idents, seed=1), codes)
    # two data sets holding the same galaxies in another order (one a subset): same split
    a = Dataset(write_random_dataset(tmp_path / "a", n=60, idents=range(200, 260)))
    subset = np.random.default_rng(2).permutation(np.arange(200, 260))[:45]
    b = Dataset(write_random_dataset(tmp_path / "b", n=45, idents=subset))
    split_a = dict(zip(a.catalog["ident"].tolist(), a.catalog["split"].tolist()))
    split_b = dict(zip(b.catalog["ident"].tolist(), b.catalog["split"].tolist()))
    assert all(split_b[i] == split_a[i] for i in split_b)
    train_a = set(a.catalog["ident"][a.indices("train")].tolist())
    train_b = set(b.catalog["ident"][epoch_indices(
        make_tf_dataset(b, "train", with_psf=False, batch_size=8))].tolist())
    assert train_b == train_a & set(subset.tolist())


def test_bad_requests_raise_input_data_error(tmp_path, tiny_dataset):
    no_psf = Dataset(write_random_dataset(tmp_path / "no_psf", n=10))
    with pytest.raises(InputDataError, match="no PSF"):
        make_tf_dataset(no_psf, None)
    with pytest.raises(InputDataError, match="empty"):
        make_tf_dataset(no_psf, None, with_psf=False, indices=np.array([], dtype=int))
    with pytest.raises(InputDataError, match="unknown split"):
        make_tf_dataset(tiny_dataset, "training")
    with pytest.raises(InputDataError, match="redshift"):
        make_tf_dataset(tiny_dataset, "train", conditions=("redshift",))


# -- memory mapping --------------------------------------------------------------------------

def test_data_set_is_memory_mapped_not_loaded(tmp_path):
    n, size, batch = 4096, 32, 16
    path = write_random_dataset(tmp_path / "big", n=n, stamp_size=size, psf_size=9)
    total_bytes = n * size * size * 4  # 16 MB of stamps
    import tensorflow  # noqa: F401 - imported before tracing: its import is not the pipeline

    tracemalloc.start()
    try:
        ds = Dataset(path)
        assert isinstance(ds.images, np.memmap) and isinstance(ds.psfs, np.memmap)
        assert not ds.images.flags.writeable
        seen = 0
        for element in make_tf_dataset(ds, None, batch_size=batch, seed=0):
            seen += len(element["index"])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert seen == n
    # numpy buffers allocated by the pipeline stay at a few batches, far below the data set
    assert peak < total_bytes / 4, (peak, total_bytes)


def test_explicit_indices_also_drop_rows_without_conditions(tmp_path):
    """Rows whose condition is NaN never reach a conditioned batch, even when chosen by index."""
    from galsim_vae.data import DatasetWriter, make_tf_dataset

    with DatasetWriter(tmp_path / "nan_z", max_galaxies=6, stamp_size=8, pixel_scale=0.03,
                       flux_units="counts/s") as writer:
        for i in range(6):
            writer.add(np.full((8, 8), 1.0 + i), ident=i, noise_variance=1.0,
                       zphot=np.nan if i == 2 else 0.5 + 0.1 * i)
    with pytest.warns(UserWarning, match="zphot"):
        batches = list(make_tf_dataset(tmp_path / "nan_z", indices=np.arange(6), with_psf=False,
                                       conditions=("zphot",), shuffle=False, batch_size=10))
    rows = np.concatenate([b["index"].numpy() for b in batches])
    assert sorted(rows) == [0, 1, 3, 4, 5]
    assert np.all(np.isfinite(np.concatenate([b["conditions"].numpy() for b in batches])))
