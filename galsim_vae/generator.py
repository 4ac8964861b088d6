"""GalaxyModel: a trained model bundle loaded for inference (no training, no data code).

A :class:`GalaxyModel` turns GalSim random numbers into galaxy stamps:

1. standard-normal latent noise ``eps`` (n, latent_size) is drawn from the GalSim rng
   given (``galsim.GaussianDeviate(rng)``), so every sample is a function of that rng;
2. ``eps`` is mapped to a latent ``z`` by the model's ``prior_transform`` (identity for a
   N(0, I) prior, the flow's forward bijector for a learned prior);
3. ``z`` and the (standardised) conditions, e.g. photometric redshift, are decoded in
   ONE batched network call (chunked for very large n) to the mean profile in network
   units, multiplied by the bundle's ``flux.scale`` into its physical flux units.

TensorFlow is imported only when a model is loaded (:func:`load_model`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from .bundle import standardise_conditions
from .errors import BundleError, ConditionError

#: Largest number of galaxies decoded in one network call (memory bound: a 128x128 float32
#: stamp is 64 kB, so 512 of them and the decoder activations stay well under 1 GB).
MAX_BATCH = 512

#: Every network call has at least this many rows (a single galaxy is padded with a row
#: of zeros).  CPU kernels (oneDNN) take a different code path, with different float32
#: rounding, for a batch of one; for any batch of two or more each row's output depends
#: on that row only (checked for batches of 2-64 of the tiny test model and of a 128x128,
#: 6.7M-parameter cvae2).  So one galaxy alone, in a batch of 200, or in a YAML field with
#: any batching and any nproc is the same to the last bit (tests/test_config.py checks).
MIN_ROWS = 2

#: Largest number of latent deviates drawn one by one rather than by the OpenMP-parallel
#: ``GaussianDeviate.generate`` (see :func:`draw_latent_noise`); ~0.2 us per value.
SERIAL_DRAW_LIMIT = 65536

#: Process id that loaded a model (so ran TensorFlow); None before any load.
_TF_PID: int | None = None

#: Condition names understood as "redshift" (the ``redshift=`` argument).
REDSHIFT_NAMES = ("zphot", "redshift", "z", "zspec", "photo_z")


@dataclass(frozen=True)
class ModelInfo:
    """What a generated stamp needs to know about the model that made it (picklable,
    TensorFlow-free): carried by every :class:`~galsim_vae.gsobject.VAEGalaxy`.

    Parameters:
        name:           bundle name.
        pixel_scale:    stamp pixel scale in arcsec.
        stamp_size:     stamp side in pixels.
        flux_units:     flux units of the stamp pixels (``model.json`` ``flux.units``).
        psf_free:       True if the samples are PSF-free profiles; False if they still
                        carry the HST PSF (then ``hst_psf`` holds it).
        hst_psf:        the HST PSF image (same pixel scale, unit sum) as a tuple of rows
                        (hashable; ``hst_psf_array`` gives the array), or None.
        condition_names: names of the conditioning variables, in model order.
    """

    name: str
    pixel_scale: float
    stamp_size: int
    flux_units: str
    psf_free: bool
    hst_psf: tuple | None = None
    condition_names: tuple = ()

    @property
    def hst_psf_array(self) -> np.ndarray | None:
        """The HST PSF as a float64 array (None for a PSF-free model)."""
        return None if self.hst_psf is None else np.array(self.hst_psf, dtype=float)


def _as_rng(rng):
    """A galsim.BaseDeviate from None, an int seed or a BaseDeviate."""
    import galsim

    if rng is None:
        return galsim.BaseDeviate()
    if isinstance(rng, galsim.BaseDeviate):
        return rng
    if isinstance(rng, (int, np.integer)):
        return galsim.BaseDeviate(int(rng))
    raise TypeError(f"rng must be a galsim.BaseDeviate, an int seed or None, not {type(rng)!r}")


def draw_latent_noise(n: int, latent_size: int, rng=None) -> np.ndarray:
    """Standard-normal latent noise ``eps`` (n, latent_size) float64 drawn from a GalSim rng.

    Row ``i`` uses the deviates ``i*latent_size ... (i+1)*latent_size - 1`` of the stream,
    so drawing n galaxies at once equals drawing them one by one from the same rng.

    Speed: ``GaussianDeviate.generate`` runs an OpenMP parallel region; on a busy machine
    (or beside TensorFlow's thread pools) starting it costs 3-10 ms, 1000 times the cost
    of drawing 32 values.  Up to :data:`SERIAL_DRAW_LIMIT` values are therefore drawn one
    by one, which gives the same values and leaves the rng in the same state
    (``benchmarks/README.md``; ``tests/test_latent_noise.py`` checks both paths agree).
    """
    import galsim

    total = n * latent_size
    deviate = galsim.GaussianDeviate(_as_rng(rng))
    if total <= SERIAL_DRAW_LIMIT:
        eps = np.fromiter((deviate() for _ in range(total)), dtype=float, count=total)
    else:
        eps = np.empty(total, dtype=float)
        deviate.generate(eps)
    return eps.reshape(n, latent_size)


def redshift_condition_name(conditions) -> str | None:
    """Name of the condition a ``redshift=`` argument sets, among ``conditions`` (dicts with
    ``name``): the one named like a redshift, else the only one, else None."""
    names = [c["name"] for c in conditions]
    for name in names:
        if name.lower() in REDSHIFT_NAMES:
            return name
    return names[0] if len(names) == 1 else None


def describe_conditions(conditions) -> str:
    """``"zphot in [0.1, 3]"``-style description of conditions and their training ranges."""
    return ", ".join(f"{c['name']} in [{float(c['min']):g}, {float(c['max']):g}]"
                     for c in conditions)


def check_condition_values(conditions, model_name: str, n: int, redshift=None, *,
                           clip: bool = False) -> np.ndarray | None:
    """:meth:`GalaxyModel.condition_values` from the model's metadata alone (TensorFlow-free,
    so GalSim's worker processes check conditions without asking the model's process).

    Parameters:
        conditions:  the bundle's ``conditions`` (dicts with ``name, mean, std, min, max``).
        model_name:  bundle name, for messages.
        n, redshift, clip:  as for :meth:`GalaxyModel.condition_values`.
    """
    if not conditions:
        if redshift is not None:
            raise ConditionError(
                f"model {model_name!r} is not conditioned on redshift (it has no "
                f"conditions); do not pass redshift={redshift!r}")
        return None
    if redshift is None:
        raise ConditionError(
            f"model {model_name!r} is conditioned on "
            f"{describe_conditions(conditions)}: pass redshift= (or a dict of conditions)")
    redshift_name = redshift_condition_name(conditions)
    if isinstance(redshift, Mapping):
        given = dict(redshift)
        if "redshift" in given and redshift_name not in given:
            given[redshift_name] = given.pop("redshift")
    else:
        if redshift_name is None or len(conditions) != 1:
            raise ConditionError(
                f"model {model_name!r} has conditions {describe_conditions(conditions)}: "
                "pass a dict {name: value} for each")
        given = {redshift_name: redshift}
    names = [c["name"] for c in conditions]
    unknown = sorted(set(given) - set(names))
    missing = [name for name in names if name not in given]
    if unknown or missing:
        raise ConditionError(
            f"model {model_name!r} takes conditions {names}; got unknown {unknown}, "
            f"missing {missing}")
    values = np.empty((n, len(names)), dtype=float)
    for k, cond in enumerate(conditions):
        v = np.asarray(given[cond["name"]], dtype=float)
        if v.ndim == 0:
            v = np.full(n, float(v))
        if v.shape != (n,):
            raise ConditionError(
                f"condition {cond['name']!r} of model {model_name!r} must be a scalar or an "
                f"array of shape ({n},), got shape {v.shape}")
        if not np.isfinite(v).all():
            raise ConditionError(f"condition {cond['name']!r} has non-finite values: {v}")
        lo, hi = float(cond["min"]), float(cond["max"])
        if clip:
            v = np.clip(v, lo, hi)
        else:
            bad = (v < lo) | (v > hi)
            if bad.any():
                raise ConditionError(
                    f"{cond['name']}={v[bad][0]:g} is outside the training range "
                    f"[{lo:g}, {hi:g}] of model {model_name!r}; choose a value inside it "
                    "or clip it to the range (clip=True in Python and YAML, --clip on the "
                    "command line)")
        values[:, k] = v
    return values


class GalaxyModel:
    """A trained galsim-vae model bundle, for generating galaxy stamps (inference only).

    Build with :func:`load_model`.  The network is the ``keras.Model`` of
    :mod:`galsim_vae.models`; ``meta`` the bundle's ``model.json``.

    Parameters:
        network:    the model built by ``galsim_vae.models.build_model`` with its weights.
        meta:       the bundle metadata (``model.json`` as a dict).
        path:       the bundle folder (for messages and the HST PSF file).
    """

    def __init__(self, network, meta: Mapping[str, Any], path: str | os.PathLike | None = None):
        self._network = network
        self._meta = dict(meta)
        self._path = None if path is None else Path(path)
        self._decode_fn = None
        conditions = self._meta.get("conditions") or []
        self._conditions = [dict(c) for c in conditions]
        hst_psf = None
        if not self.psf_free:
            hst_psf = self._read_hst_psf()
        self._info = ModelInfo(
            name=self.name, pixel_scale=self.pixel_scale, stamp_size=self.stamp_size,
            flux_units=self.flux_units, psf_free=self.psf_free,
            hst_psf=None if hst_psf is None else tuple(map(tuple, hst_psf.tolist())),
            condition_names=tuple(c["name"] for c in self._conditions))

    # ------------------------------------------------------------------ metadata
    @property
    def name(self) -> str:
        """Bundle name (``model.json`` ``name``, else the folder name)."""
        return str(self._meta.get("name") or (self._path.name if self._path else "unnamed"))

    @property
    def path(self) -> Path | None:
        """The bundle folder."""
        return self._path

    @property
    def meta(self) -> dict:
        """A copy of the bundle metadata (``model.json``)."""
        return dict(self._meta)

    @property
    def info(self) -> ModelInfo:
        """Picklable description of the model carried by each generated galaxy."""
        return self._info

    @property
    def pixel_scale(self) -> float:
        """Pixel scale of the generated stamps, arcsec."""
        return float(self._meta["pixel_scale"])

    @property
    def stamp_size(self) -> int:
        """Side of the generated stamps, pixels."""
        return int(self._meta["stamp_size"])

    @property
    def latent_size(self) -> int:
        """Dimension of the latent space."""
        return int(self._meta.get("latent_size") or self._network.latent_size)

    @property
    def flux_units(self) -> str:
        """Units of the stamp pixel values (``model.json`` ``flux.units``)."""
        return str(self._meta["flux"]["units"])

    @property
    def flux_scale(self) -> float:
        """Generated pixel value = network output x ``flux_scale``."""
        return float(self._meta["flux"]["scale"])

    @property
    def psf_free(self) -> bool:
        """True if the samples are PSF-free profiles (else they carry the HST PSF)."""
        return bool(self._meta.get("psf_free", True))

    @property
    def conditions(self) -> list[dict]:
        """Conditioning variables: dicts with ``name, mean, std, min, max`` (training range)."""
        return [dict(c) for c in self._conditions]

    @property
    def redshift_condition(self) -> str | None:
        """Name of the condition the ``redshift=`` argument sets (None if there is none)."""
        return redshift_condition_name(self._conditions)

    @property
    def redshift_range(self) -> tuple[float, float] | None:
        """(min, max) redshift of the training set, or None for an unconditional model."""
        name = self.redshift_condition
        if name is None:
            return None
        cond = next(c for c in self._conditions if c["name"] == name)
        return float(cond["min"]), float(cond["max"])

    def __repr__(self) -> str:
        return (f"GalaxyModel(name={self.name!r}, stamp_size={self.stamp_size}, "
                f"pixel_scale={self.pixel_scale}, flux_units={self.flux_units!r}, "
                f"psf_free={self.psf_free}, conditions={[c['name'] for c in self._conditions]})")

    def _read_hst_psf(self) -> np.ndarray:
        """Read the bundle's HST PSF image (samples that still carry it are deconvolved)."""
        from astropy.io import fits

        file_name = self._meta.get("hst_psf") or "hst_psf.fits"
        if isinstance(file_name, Mapping):
            file_name = file_name.get("file", "hst_psf.fits")
        if self._path is None or not (self._path / file_name).is_file():
            raise BundleError(
                f"bundle {self.name!r} says its samples carry the HST PSF (psf_free: false) "
                f"but has no PSF file {file_name!r} in {str(self._path)!r}; re-save the bundle "
                "with its HST PSF")
        psf = np.asarray(fits.getdata(self._path / file_name), dtype=float)
        if psf.ndim != 2 or not np.isfinite(psf).all() or psf.sum() <= 0:
            raise BundleError(f"HST PSF {str(self._path / file_name)!r} is not a finite 2-d "
                              "image with positive sum")
        return psf / psf.sum()

    # ---------------------------------------------------------------- conditions
    def condition_values(self, n: int, redshift=None, *, clip: bool = False) -> np.ndarray | None:
        """Physical condition values (n, k) from ``redshift`` (scalar, array of n, or a dict
        {condition name: scalar or array}), checked against the training ranges.

        Returns None for a model without conditions.

        Raises:
            ConditionError: a model without conditions given a redshift, a conditional model
                given none, a wrong shape or name, or a value outside the training range
                (unless ``clip``: then values are clipped into it).
        """
        return check_condition_values(self._conditions, self.name, n, redshift, clip=clip)

    def _describe_conditions(self) -> str:
        return describe_conditions(self._conditions)

    def standardise(self, values: np.ndarray | None) -> np.ndarray | None:
        """Physical condition values (n, k) -> network inputs ``(v - mean) / std``."""
        if values is None:
            return None
        return standardise_conditions(self._conditions, values)

    # ------------------------------------------------------------------ network
    def latent_noise(self, n: int, rng=None) -> np.ndarray:
        """Standard-normal ``eps`` (n, latent_size) drawn from the GalSim ``rng``."""
        return draw_latent_noise(n, self.latent_size, rng)

    def _decoder(self):
        """The compiled network call: (eps or z, standardised conditions) -> profile."""
        if self._decode_fn is None:
            import tensorflow as tf

            net = self._network
            has_cond = bool(self._conditions)

            @tf.function(reduce_retracing=True)
            def decode(values, conditions, use_prior):
                conditions = conditions if has_cond else None
                z = net.prior_transform(values, conditions) if use_prior else values
                return net.decode(z, conditions)

            self._decode_fn = decode
        return self._decode_fn

    def decode_batch(self, values: np.ndarray, conditions: np.ndarray | None, *,
                     from_noise: bool = True) -> np.ndarray:
        """Run the network: ``values`` (n, latent_size) are ``eps`` (``from_noise``, mapped
        through the prior) or latents ``z``; ``conditions`` (n, k) physical values.

        Returns the stamps (n, S, S) float64 in the bundle's flux units.  One network call
        per ``MAX_BATCH`` galaxies, padded to at least ``MIN_ROWS`` rows.
        """
        import tensorflow as tf

        values = np.asarray(values, dtype=np.float32)
        n = values.shape[0]
        cond = self.standardise(conditions)
        cond = (np.zeros((n, 0), np.float32) if cond is None else cond.astype(np.float32))
        decode = self._decoder()
        out = np.empty((n, self.stamp_size, self.stamp_size), dtype=float)
        for start in range(0, n, MAX_BATCH):
            stop = min(n, start + MAX_BATCH)
            rows = stop - start
            padded = max(rows, MIN_ROWS)
            v = np.zeros((padded, values.shape[1]), np.float32)
            c = np.zeros((padded, cond.shape[1]), np.float32)
            v[:rows], c[:rows] = values[start:stop], cond[start:stop]
            profile = decode(tf.constant(v), tf.constant(c), bool(from_noise))
            out[start:stop] = np.asarray(profile, dtype=float)[:rows, ..., 0]
        return out * self.flux_scale

    def generate(self, n: int | None = None, *, redshift=None, latent=None, rng=None,
                 clip: bool = False) -> np.ndarray:
        """Generate galaxy stamps in one batched network call.

        Parameters:
            n:          number of galaxies (default: from ``latent`` or ``redshift``, else 1).
            redshift:   scalar or array of n redshifts, or a dict {condition: values}; must be
                        inside the training range (``redshift_range``) unless ``clip``.
            latent:     (n, latent_size) latents ``z`` used as they are (no rng drawn).
            rng:        galsim.BaseDeviate or int seed for the latent noise. [default: None]
            clip:       clip conditions into the training range instead of raising.

        Returns:
            array (n, stamp_size, stamp_size) float64 in ``flux_units`` at ``pixel_scale``.
        """
        values, conditions, from_noise = self.prepare_inputs(
            n, redshift=redshift, latent=latent, rng=rng, clip=clip)
        return self.decode_batch(values, conditions, from_noise=from_noise)

    def prepare_inputs(self, n=None, *, redshift=None, latent=None, rng=None, clip=False):
        """Check the arguments of :meth:`generate` and return
        ``(eps or z (n, latent_size), physical conditions (n, k) or None, from_noise)``."""
        n = self._infer_n(n, redshift, latent)
        conditions = self.condition_values(n, redshift, clip=clip)
        if latent is not None:
            z = np.asarray(latent, dtype=float)
            if z.ndim == 1:
                z = z[None, :]
            if z.shape != (n, self.latent_size):
                raise ConditionError(
                    f"latent must be an array of shape ({n}, {self.latent_size}) for "
                    f"model {self.name!r}, got shape {z.shape}")
            if not np.isfinite(z).all():
                raise ConditionError(f"latent must be finite for model {self.name!r}: it has "
                                     f"{int((~np.isfinite(z)).sum())} NaN or inf values")
            return z, conditions, False
        return self.latent_noise(n, rng), conditions, True

    def _infer_n(self, n, redshift, latent) -> int:
        if n is None:
            if latent is not None:
                n = np.atleast_2d(np.asarray(latent)).shape[0]
            elif redshift is not None and not isinstance(redshift, Mapping) \
                    and np.ndim(redshift) == 1:
                n = len(redshift)
            else:
                n = 1
        if int(n) != n or n < 1:
            raise ConditionError(f"number of galaxies n={n!r} must be a positive integer")
        return int(n)

    def sample(self, n: int | None = None, *, redshift=None, latent=None, rng=None,
               clip: bool = False, **kwargs) -> list:
        """Generate ``n`` galaxies as :class:`~galsim_vae.gsobject.VAEGalaxy` profiles from one
        batched network call.

        Parameters:
            n, redshift, latent, rng, clip:  as in :meth:`generate`.
            **kwargs:   passed to each VAEGalaxy (``flux``, ``gsparams``, ``x_interpolant``,
                        ``k_interpolant``, ``pad_factor``).
        """
        from .gsobject import VAEGalaxy

        values, conditions, from_noise = self.prepare_inputs(
            n, redshift=redshift, latent=latent, rng=rng, clip=clip)
        stamps = self.decode_batch(values, conditions, from_noise=from_noise)
        names = self._info.condition_names
        galaxies = []
        for i, stamp in enumerate(stamps):
            cond = None if conditions is None else dict(zip(names, conditions[i].tolist()))
            galaxies.append(VAEGalaxy.from_stamp(stamp, self._info, conditions=cond, **kwargs))
        return galaxies


def load_model(name_or_path: str | os.PathLike) -> GalaxyModel:
    """Load a model bundle for generation.

    Parameters:
        name_or_path:   a bundle shipped with galsim-vae (``galsim_vae.trained``) by name,
                        or the path of any bundle folder.

    Raises:
        BundleError: unknown name (the message lists the shipped bundles), or a bundle
            that fails its format/checksum checks.
    """
    from .bundle import load_bundle, resolve_bundle

    global _TF_PID
    if _TF_PID is not None and _TF_PID != os.getpid():
        # TensorFlow's thread pools do not survive fork(): running it here would hang.
        raise BundleError(
            f"cannot load model {str(name_or_path)!r} in a process forked (pid "
            f"{os.getpid()}) from one that already ran TensorFlow (pid {_TF_PID}); with "
            "GalSim image.nproc > 1 do not load models in the parent before "
            "galsim.config.Process (the `galsim` command is fine), or use nproc: 1")
    path = resolve_bundle(name_or_path)
    network, meta = load_bundle(path)
    _TF_PID = os.getpid()
    return GalaxyModel(network, meta, path=path)

