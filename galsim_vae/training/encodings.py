"""The encodings a flow prior is fitted to: one posterior sample per galaxy and
orientation, with the posterior's centre (its mean, optionally refined: semi-amortized)
and width, so that a flow can be fitted to fresh samples each epoch; and their cache in
the run's checkpoint folder.

Encoding a 16,000-galaxy split in its 8 orientations with 8 refinement steps takes ~25
minutes on 2 CPU cores, the flow fit itself ~5: a run resumed to refit its flow with
other settings (``--flow-units``, ``--flow-couplings``, ``--flow-epochs``: resumable
changes) on the same weights reads the encodings back.  The cache is keyed by everything
they depend on (the network weights, the data set's split rows and conditions, the
orientations, the refinement and the seed), so other weights or settings encode anew.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..io_utils import atomic_file, progress
from ..models.posterior import latent_refiner
from .callbacks import log

#: File name of a cached split's encodings in the checkpoint folder.
CACHE_NAME = "encodings_{split}_{key}.npz"
#: Fewest stamps per encoder call: the rows of each call are written orientation by
#: orientation (:func:`row_layout`).
MIN_ENCODING_BATCH = 256
#: Adam step (latent units per coordinate) of the encodings' refinement unless given: the
#: rate of the flow fits of sessions 22-35 (``--flow-refine-steps``).  Smaller steps keep
#: the faintest galaxies' noise out of the refined means (0.03: ``models/posterior.py``).
REFINE_RATE = 0.3


@dataclass(frozen=True)
class Encodings:
    """The encodings of one split, one row per galaxy and orientation (N * orientations).

    Attributes:
        latents:    (R, d) one posterior sample per row: ``centres + scales * eps``.
        conditions: (R, k) normalised conditions of each row, or None.
        centres:    (R, d) the posterior means (refined, with ``refine_steps`` > 0).
        scales:     (R, d) the posterior standard deviations (the encoder's widths).
    """

    latents: np.ndarray
    conditions: np.ndarray | None
    centres: np.ndarray
    scales: np.ndarray

    def subset(self, rows: np.ndarray) -> "Encodings":
        """The encodings of ``rows`` only (indices or a boolean mask)."""
        return Encodings(self.latents[rows], None if self.conditions is None else
                         self.conditions[rows], self.centres[rows], self.scales[rows])

    @classmethod
    def concatenate(cls, parts: "list[Encodings]") -> "Encodings":
        """The rows of ``parts`` one after the other (all with conditions or none)."""
        conditions = [p.conditions for p in parts]
        return cls(np.concatenate([p.latents for p in parts]),
                   None if conditions[0] is None else np.concatenate(conditions),
                   np.concatenate([p.centres for p in parts]),
                   np.concatenate([p.scales for p in parts]))

    def arrays(self) -> dict[str, np.ndarray]:
        """The arrays to save (``np.savez``), conditions left out when there are none."""
        saved = {"latents": self.latents, "centres": self.centres, "scales": self.scales}
        if self.conditions is not None:
            saved["conditions"] = self.conditions
        return saved


def encodings_key(model, dataset, split: str, conditions, *, orientations: int, seed: int,
                  refine_steps: int, prior_weight: float, with_psf: bool,
                  noise_correlation: bool = False, refine_rate: float = REFINE_RATE,
                  orientation_codes: np.ndarray | None = None) -> str:
    """A hex digest of everything the encodings of ``split`` depend on."""
    digest = hashlib.sha256()
    for weight in model.get_weights():
        digest.update(np.ascontiguousarray(weight).tobytes())
    rows = dataset.indices(split, require_finite=conditions or ())
    digest.update(np.ascontiguousarray(rows, dtype=np.int64).tobytes())
    settings = {
        "dataset": str(Path(dataset.path).resolve()), "split": split,
        "conditions": list(conditions or ()), "orientations": int(orientations),
        "seed": int(seed), "refine_steps": int(refine_steps),
        "prior_weight": float(prior_weight), "with_psf": bool(with_psf)}
    if noise_correlation:                 # only when set: earlier caches keep their keys
        settings["noise_correlation"] = True
    if refine_steps and float(refine_rate) != REFINE_RATE:
        settings["refine_rate"] = float(refine_rate)
    if orientation_codes is not None:     # each galaxy's own orientations (canonical)
        digest.update(np.ascontiguousarray(orientation_codes, dtype=np.int64).tobytes())
        settings["orientation_codes"] = list(np.shape(orientation_codes))
    if dataset.normalisation_override:    # another data set's normalisation (refit)
        settings["normalised_as"] = dataset.normalisation_override
    digest.update(json.dumps(settings, sort_keys=True).encode())
    return digest.hexdigest()[:20]


def cached_encodings(model, dataset, split: str, conditions, with_psf: bool, batch_size: int,
                     *, orientations: int = 1, seed: int = 0, refine_steps: int = 0,
                     prior_weight: float = 0.0, cache_dir=None, noise_correlation: bool = False,
                     refine_rate: float = REFINE_RATE,
                     orientation_codes: np.ndarray | None = None):
    """:func:`encodings`, read from ``cache_dir`` when it holds those of the same
    weights, data and settings, else computed and written there (atomically).  A cache
    written before the posterior centres and widths were kept (latents only) is encoded
    anew."""
    settings = dict(orientations=orientations, seed=seed, refine_steps=refine_steps,
                    prior_weight=prior_weight, noise_correlation=noise_correlation,
                    refine_rate=refine_rate, orientation_codes=orientation_codes)
    if cache_dir is None:
        return encodings(model, dataset, split, conditions, with_psf, batch_size, **settings)
    key = encodings_key(model, dataset, split, conditions, with_psf=with_psf, **settings)
    path = Path(cache_dir) / CACHE_NAME.format(split=split, key=key)
    if path.is_file():
        with np.load(path) as saved:
            if {"centres", "scales"} <= set(saved.files):
                log(f"read the {split} split's encodings from {str(path)!r}")
                return Encodings(saved["latents"], saved["conditions"] if "conditions"
                                 in saved.files else None, saved["centres"], saved["scales"])
        log(f"{str(path)!r} predates the posterior widths in the cache: encoding anew")
    encoded = encodings(model, dataset, split, conditions, with_psf, batch_size, **settings)
    with atomic_file(path, overwrite=True) as tmp:
        np.savez(tmp, **encoded.arrays())
    return encoded


def encodings(model, dataset, split: str, conditions, with_psf: bool, batch_size: int, *,
               orientations: int = 1, seed: int = 0, refine_steps: int = 0,
               prior_weight: float = 0.0, noise_correlation: bool = False,
               refine_rate: float = REFINE_RATE,
               orientation_codes: np.ndarray | None = None):
    """The :class:`Encodings` of one split: one posterior sample per galaxy and per
    orientation (the first ``orientations`` of the eight symmetries of the square, or
    each galaxy's own group elements ``orientation_codes`` (N, k) for the split's N
    rows), (N * orientations, d) or (N * k, d), with the posterior's centre and width and
    the normalised conditions of each row, or None.  The rows of each encoder call of
    :func:`encoding_batch` galaxies come orientation by orientation (:func:`row_layout`).
    The refinement takes Adam steps of ``refine_rate`` latent units and uses the
    correlated-noise likelihood when ``noise_correlation``."""
    import tensorflow as tf

    from ..data import make_tf_dataset
    from ..models.orientation import orient

    step = encoding_batch(batch_size)
    data = make_tf_dataset(dataset, split, batch_size=step, shuffle=False,
                           conditions=conditions, with_psf=with_psf,
                           **({"noise_correlation": True} if noise_correlation else {}))
    n = dataset.indices(split, require_finite=conditions or ()).size
    if orientation_codes is None:
        orientation_codes = np.tile(np.arange(int(orientations)), (n, 1))
    orientation_codes = np.asarray(orientation_codes, dtype=np.int32)
    if orientation_codes.ndim != 2 or len(orientation_codes) != n:
        from ..errors import InputDataError

        raise InputDataError(f"orientation codes of shape {orientation_codes.shape} for the "
                             f"{n} galaxies of the {split} split of {str(dataset.path)!r}: "
                             "need one row of group elements per galaxy")
    generator = tf.random.Generator.from_seed(int(seed) % (2**31))
    refine = latent_refiner(model, int(refine_steps), float(prior_weight),
                            learning_rate=float(refine_rate))
    latents, centres, scales, conds = [], [], [], []
    start = 0
    for batch in progress(data, desc=f"encoding the {split} split"):
        cond = batch.get("conditions")
        images, psf = batch["image"], batch.get("psf")
        batch_codes = orientation_codes[start:start + int(tf.shape(images)[0])]
        start += len(batch_codes)
        for copy in range(batch_codes.shape[1]):
            codes = tf.constant(batch_codes[:, copy])
            turning = bool(batch_codes[:, copy].any())        # else all stamps upright
            turned = orient(images, codes) if turning else images
            posterior = model.encode(turned, cond, training=False)
            centre = posterior.mean()
            if refine is not None:
                turned_psf = orient(psf, codes) if turning and psf is not None else psf
                rootps = batch.get("noise_rootps")
                extra = ({} if rootps is None else
                         {"noise_rootps": turned_spectra(rootps, codes) if turning else rootps})
                centre = refine(centre, turned, turned_psf, batch["noise_std"], cond, **extra)
            eps = generator.normal(tf.shape(centre))
            width = posterior.stddev()
            latents.append((centre + width * eps).numpy())
            centres.append(centre.numpy())
            scales.append(width.numpy())
            if cond is not None:
                conds.append(cond.numpy())
    return Encodings(np.concatenate(latents), np.concatenate(conds) if conds else None,
                     np.concatenate(centres), np.concatenate(scales))


def encoding_batch(batch_size: int) -> int:
    """Stamps per encoder call of :func:`encodings` asked for ``batch_size``."""
    return max(int(batch_size), MIN_ENCODING_BATCH)


def row_layout(n_galaxies: int, orientations: int, batch_size: int) -> tuple[np.ndarray,
                                                                           np.ndarray]:
    """Which galaxy (index into the split's rows) and which of its orientations (0 to
    ``orientations`` - 1: the group element, or the column of ``orientation_codes``) each
    row of :func:`encodings` holds, (R,) int each: per encoder call of
    ``encoding_batch(batch_size)`` galaxies, all of them in orientation 0, then all in
    orientation 1, and so on."""
    step = encoding_batch(batch_size)
    galaxy, code = [], []
    for start in range(0, int(n_galaxies), step):
        members = np.arange(start, min(start + step, int(n_galaxies)))
        for turn in range(int(orientations)):
            galaxy.append(members)
            code.append(np.full(members.size, turn))
    if not galaxy:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    return np.concatenate(galaxy).astype(np.int64), np.concatenate(code).astype(np.int64)


def turned_spectra(rootps, codes):
    """Noise root power spectra (B, S, S//2 + 1) of stamps turned by ``codes`` (B,):
    the correlation function is turned like the stamp (``orient``); a turn moves its
    origin by at most one pixel, which changes the phase only."""
    import tensorflow as tf

    from ..models.orientation import orient

    size = tf.shape(rootps)[1]
    correlation = tf.signal.irfft2d(tf.cast(tf.square(rootps), tf.complex64),
                                    fft_length=tf.stack([size, size]))
    turned = orient(correlation[..., None], codes)[..., 0]
    return tf.sqrt(tf.abs(tf.signal.rfft2d(turned)))
