"""``tf.data`` input pipeline that streams a data set from disk.

Only row indices live in the ``tf.data`` graph; each batch is gathered from the
memory-mapped arrays, so memory stays at a few batches whatever the data set size.
Pixels are divided by the data set's ``flux_scale`` (a linear map: fluxes stay
physical), conditions are standardised with the training-split mean and std.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .dataset import Dataset


def dihedral_codes(rows: np.ndarray, seed: int) -> np.ndarray:
    """One of the eight dihedral transforms (0-7) per row, a hash of (seed, row)
    (splitmix64-style mixing, arithmetic modulo 2**64)."""
    with np.errstate(over="ignore"):
        key = np.array([int(seed) % 2**63], dtype=np.uint64) * np.uint64(0xBF58476D1CE4E5B9)
        mixed = np.asarray(rows, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15) ^ key
        mixed ^= mixed >> np.uint64(31)
        mixed *= np.uint64(0x94D049BB133111EB)
    return (mixed >> np.uint64(61)).astype(np.int64)


def apply_dihedral(stamps: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Rotate stamp i by ``codes[i] % 4`` quarter turns, then transpose it if
    ``codes[i] >= 4``: the eight symmetries of the square, about the array centre.

    About the array centre, these are exact for the galaxy (GalSim centres a stamp on its
    ``true_center``, the array centre) and for an odd-sized PSF (centred on its middle
    pixel), and the PSF-convolved model of a transformed pair is the transformed model,
    so the likelihood is unchanged.  Input (B, N, N), returns a new array.
    """
    stamps = np.asarray(stamps)
    codes = np.asarray(codes, dtype=np.int64).reshape(-1)
    out = np.empty_like(stamps)
    for code in np.unique(codes):          # one vectorised copy per element of the group
        rows = np.flatnonzero(codes == code)
        turned = np.rot90(stamps[rows], int(code) % 4, axes=(1, 2))
        out[rows] = turned.transpose(0, 2, 1) if code >= 4 else turned
    return out


def make_tf_dataset(dataset: Dataset | str, split: str | None = "train", *,
                    batch_size: int = 64, shuffle: bool = True, seed: int = 0,
                    conditions: Sequence[str] = (), with_psf: bool = True,
                    repeat: bool = False, drop_remainder: bool = False,
                    indices: np.ndarray | None = None, augment: bool = False,
                    shard: tuple[int, int] | None = None, noise_correlation: bool = False):
    """Build a ``tf.data.Dataset`` of batches from a data set folder.

    Parameters:
        dataset:    A :class:`Dataset` or the path of one.
        split:      ``"train"``, ``"validation"``, ``"test"`` or None for all rows.
        batch_size: Galaxies per batch.
        shuffle:    Reshuffle the rows every epoch (seeded by ``seed``).
        seed:       Shuffle seed.
        conditions: Catalog columns to pass as conditions (e.g. ``("zphot",)``); rows
                    where any is not finite are left out, with a warning.
        with_psf:   Include each galaxy's PSF (the data set must have PSFs).
        repeat:     Repeat forever.
        drop_remainder: Drop the last incomplete batch.
        indices:    Explicit row indices (overrides ``split``).
        shard:      ``(i, n)``: only every n-th row from the i-th of the (shuffled) rows,
                    the share of worker i of n; its images alone are read.  The shuffle
                    is the same on every worker (same ``seed``), so the n shards of an
                    epoch are disjoint and cover the split.
        augment:    Give each galaxy one of the eight pixel-exact rotations by multiples
                    of 90 degrees and flips (:func:`dihedral_codes`), the same for its
                    stamp and its PSF, drawn from ``seed`` and the row: a different one
                    each epoch when ``seed`` changes with the epoch.
        noise_correlation: Include each galaxy's noise root power spectrum (the data set
                    must record its noise models, :mod:`.noise`), turned with its stamp.

    Returns:
        A ``tf.data.Dataset`` whose elements are dicts of float32 tensors:
        ``image`` (B, S, S, 1) in units of ``flux_scale``; ``noise_std`` (B,) in the same
        units; ``psf`` (B, P, P, 1) of unit sum (if ``with_psf``); ``conditions`` (B, k)
        standardised (if any); ``noise_rootps`` (B, S, S//2 + 1) (if
        ``noise_correlation``); ``index`` (B,) int64 rows of the data set.
    """
    import tensorflow as tf

    if isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size < 1:
        from ..errors import InputDataError

        raise InputDataError(f"batch_size must be a whole number >= 1, got {batch_size!r}")
    if not isinstance(dataset, Dataset):
        dataset = Dataset(dataset)
    conditions = tuple(conditions)
    if with_psf and not dataset.has_psf:
        from ..errors import InputDataError

        raise InputDataError(f"data set {str(dataset.path)!r} has no PSF images; "
                             "use with_psf=False")
    if indices is None:
        indices = dataset.indices(split, require_finite=conditions)
    else:
        usable = dataset.indices(None, require_finite=conditions)
        indices = np.asarray(indices, dtype=np.int64)
        indices = indices[np.isin(indices, usable)]
    indices = np.asarray(indices, dtype=np.int64)
    if indices.size == 0:
        from ..errors import InputDataError

        raise InputDataError(f"split {split!r} of data set {str(dataset.path)!r} is empty")

    catalog = dataset.catalog
    scale = np.float32(dataset.flux_scale)
    noise_std = (np.sqrt(np.asarray(catalog["noise_variance"], dtype=np.float64))
                 / dataset.flux_scale).astype(np.float32)
    cond_values = None
    if conditions:
        raw = np.stack([np.asarray(catalog[c], dtype=np.float64) for c in conditions], axis=-1)
        cond_values = dataset.normalise_conditions(raw, conditions).astype(np.float32)
    images, psfs = dataset.images, dataset.psfs
    spectra = _oriented_spectra(dataset) if noise_correlation else None

    def gather(rows: np.ndarray):
        order = np.argsort(rows)                    # sorted reads from the memory map
        sorted_rows = rows[order]
        back = np.argsort(order)
        stamps = (np.asarray(images[sorted_rows]) / scale)[back].astype(np.float32)
        codes = dihedral_codes(rows, seed) if augment else None
        out = [stamps if codes is None else apply_dihedral(stamps, codes), noise_std[rows]]
        if with_psf:
            psf_rows = np.asarray(psfs[sorted_rows])[back]
            out.append(psf_rows if codes is None else apply_dihedral(psf_rows, codes))
        if cond_values is not None:
            out.append(cond_values[rows])
        if spectra is not None:
            table, models = spectra
            out.append(table[models[rows], 0 if codes is None else codes])
        return tuple(out)

    out_types = [tf.float32, tf.float32]
    out_types += [tf.float32] * (int(with_psf) + int(cond_values is not None)
                                 + int(spectra is not None))
    s, p, k = dataset.stamp_size, dataset.psf_size, len(conditions)

    def load(rows):
        parts = tf.numpy_function(gather, [rows], out_types, stateful=False)
        batch = {"image": tf.reshape(parts[0], [-1, s, s, 1]),
                 "noise_std": tf.reshape(parts[1], [-1]),
                 "index": rows}
        i = 2
        if with_psf:
            batch["psf"] = tf.reshape(parts[i], [-1, p, p, 1])
            i += 1
        if cond_values is not None:
            batch["conditions"] = tf.reshape(parts[i], [-1, k])
            i += 1
        if spectra is not None:
            batch["noise_rootps"] = tf.reshape(parts[i], [-1, s, s // 2 + 1])
        return batch

    ds = tf.data.Dataset.from_tensor_slices(indices)
    if shuffle:
        ds = ds.shuffle(indices.size, seed=seed, reshuffle_each_iteration=True)
    if shard is not None:
        ds = ds.shard(int(shard[1]), int(shard[0]))
    if repeat:
        ds = ds.repeat()
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.prefetch(tf.data.AUTOTUNE)


def _oriented_spectra(dataset: Dataset) -> tuple[np.ndarray, np.ndarray]:
    """The data set's noise root power spectra in each of the eight orientations,
    (K + 1, 8, S, S//2 + 1) float32 (the last row: white noise), and each galaxy's row.

    A stamp turned by :func:`apply_dihedral` carries its noise turned with it: the noise
    correlation function (the inverse transform of the power spectrum) is turned the
    same way; a turn about the array centre moves the origin by at most one pixel,
    which only changes the phase, not the power.
    """
    from ..errors import InputDataError
    from .noise import NOISE_MODEL_COLUMN, WHITE

    table = dataset.noise_rootps_table
    if table is None or NOISE_MODEL_COLUMN not in dataset.catalog.colnames:
        raise InputDataError(
            f"data set {str(dataset.path)!r} records no noise correlation (no noise_rootps.npy "
            "and noise_model column): prepare it again with this galsim-vae, or train "
            "without the correlated-noise likelihood")
    s = dataset.stamp_size
    spectra = np.concatenate([table, np.ones((1,) + table.shape[1:], table.dtype)])
    correlation = np.fft.irfft2(np.asarray(spectra, np.float64) ** 2, s=(s, s))
    turned = np.stack([apply_dihedral(correlation, np.full(len(spectra), code))
                       for code in range(8)], axis=1)
    oriented = np.sqrt(np.abs(np.fft.rfft2(turned))).astype(np.float32)
    models = np.asarray(dataset.catalog[NOISE_MODEL_COLUMN], dtype=np.int64)
    models = np.where(models == WHITE, len(spectra) - 1, models)
    return oriented, models
