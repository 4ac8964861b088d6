"""GalaxyModel: a trained model bundle loaded for inference (no training, no data code).

A :class:`GalaxyModel` turns GalSim random numbers into galaxy stamps:

1. standard-normal latent noise ``eps`` (n, latent_size) is drawn from the GalSim rng
   given (``galsim.GaussianDeviate(rng)``), so every sample is a function of that rng;
2. ``eps`` is mapped to a latent ``z`` by the model's ``prior_transform`` (identity for a
   N(0, I) prior, the flow's forward bijector for a learned prior);
3. ``z`` and the (standardised) conditions, e.g. photometric redshift, are decoded in
   batched calls to the mean profile in network units, multiplied by the bundle's
   ``flux.scale`` into its physical flux units.

The networks run in LiteRT from the bundle's exported generator
(:mod:`galsim_vae.lite_runtime`; no TensorFlow is imported); a bundle without one (made
before 2026-12-03: ``galsim-vae export`` adds it) runs in TensorFlow
(:class:`~galsim_vae.inference.NetworkRunner`).  The Keras network itself (for encoding
images) is loaded on first use of :attr:`GalaxyModel.network`.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from . import conditions as cnd
from .conditions import Condition
from .bundle.names import bundle_source
from .bundle.spec import WEIGHTS_FILE, BundleSpec
from .errors import BundleError, ConditionError
from .model_info import ModelInfo
from .inference import NetworkRunner
from .isotropy import ORIENTED, residual_rotations, turn_residual
from .lite_runtime import LiteRunner
from .tf_runtime import check_not_forked_from_tensorflow, mark_tensorflow_used
from .generator_inputs import given_conditions, prepare_inputs
from .noise import draw_latent_noise

#: Galaxies decoded per network pass in :meth:`GalaxyModel.sample` (a multiple of the
#: exported batch of 16; the same bits for a galaxy whatever the chunking).
SAMPLE_CHUNK = 64
#: Keyword arguments of :meth:`GalaxyModel.sample` that go to each VAEGalaxy (the
#: others name conditions).
GALAXY_KWARGS = ("flux", "magnitude", "gsparams", "x_interpolant", "k_interpolant",
                 "pad_factor")


class GalaxyModel:
    """A trained galsim-vae model bundle, for generating galaxy stamps (inference only).

    Build with :func:`load_model`.  The network is the ``keras.Model`` of
    :mod:`galsim_vae.models`; ``spec`` the bundle's typed ``model.json``.  It pickles as
    its bundle path and weight checksum.

    Parameters:
        network:    the model built by ``galsim_vae.models.build_model`` with its weights,
                    or None to load it from ``path`` when first needed (encoding).
        spec:       the bundle's :class:`~galsim_vae.bundle.BundleSpec`.
        path:       the bundle folder (for messages, pickling, the HST PSF file and the
                    exported generator).
    """

    def __init__(self, network, spec: BundleSpec, path: str | os.PathLike | None = None):
        self._network = network
        self._spec = spec
        self._path = None if path is None else Path(path)
        if spec.generator is not None and self._path is not None:
            self._runner = LiteRunner(self._path, spec.generator,
                                      latent_size=spec.latent_size, symmetry=self._symmetry)
        else:
            if network is None:
                raise BundleError(f"bundle {spec.name!r} has no exported generator: give its "
                                  "network")
            self._runner = NetworkRunner(network, stamp_size=spec.stamp_size,
                                         has_conditions=bool(spec.conditions))
        self._conditions = tuple(spec.conditions)
        hst_psf = None
        if not self.psf_free:
            from .bundle.reader import read_hst_psf

            hst_psf = read_hst_psf(self._path, spec)
        self._info = ModelInfo(
            name=self.name, pixel_scale=self.pixel_scale, stamp_size=self.stamp_size,
            flux_units=self.flux_units, psf_free=self.psf_free,
            hst_psf=None if hst_psf is None else tuple(map(tuple, hst_psf.tolist())),
            conditions=self._conditions, zero_point=spec.flux.zero_point,
            band=spec.flux.band,
            source=None if self._path is None else bundle_source(self._path),
            checksum=spec.files.get(WEIGHTS_FILE))

    # ------------------------------------------------------------------ pickling
    def __getstate__(self) -> dict:
        """A model pickles as its bundle path and the checksums of its network files
        (weights, exported generator); unpickling loads the bundle again (in a ``spawn``
        or ``forkserver`` worker, say) and refuses a bundle whose networks changed since."""
        if self._path is None:
            raise BundleError(f"model {self.name!r} was not loaded from a bundle folder: it "
                              "cannot be pickled (save it with save_bundle and load_model it)")
        return {"path": str(self._path.resolve()), "files": self._network_digests(self._spec)}

    @staticmethod
    def _network_digests(spec: BundleSpec) -> dict:
        return {name: spec.files.get(name) for name in spec.required_files()}

    def __setstate__(self, state: dict) -> None:
        from .bundle import resolve_bundle

        path = Path(state["path"])
        if not path.is_dir():
            raise BundleError(f"cannot unpickle the model: its bundle {str(path)!r} is not "
                              "there in this process (copy the bundle to the same path on "
                              "every worker, or load it there by name)")
        loaded = load_model(resolve_bundle(path))
        now = self._network_digests(loaded.spec)
        changed = sorted(k for k in set(now) | set(state["files"])
                         if now.get(k) != state["files"].get(k))
        if changed:
            raise BundleError(f"cannot unpickle the model: the weights of bundle "
                              f"{str(path)!r} changed since it was pickled ({', '.join(changed)}"
                              " differ from the checksums recorded then)")
        self.__dict__.update(loaded.__dict__)

    # ------------------------------------------------------------------ metadata
    @property
    def name(self) -> str:
        """Bundle name (the spec's ``name``)."""
        return self._spec.name

    @property
    def path(self) -> Path | None:
        """The bundle folder."""
        return self._path

    @property
    def spec(self) -> BundleSpec:
        """The bundle's typed spec (``model.json``)."""
        return self._spec

    @property
    def network(self):
        """The ``keras.Model`` (for encoding; generation goes through :meth:`decode_batch`),
        loaded with TensorFlow on first use."""
        if self._network is None:
            from .bundle import load_bundle

            check_not_forked_from_tensorflow(self._path)
            self._network, _ = load_bundle(self._path)
            mark_tensorflow_used()
        return self._network

    @property
    def runtime(self) -> str:
        """What generates the stamps: ``"litert"`` (the exported generator) or
        ``"tensorflow"`` (a bundle without one)."""
        return "litert" if isinstance(self._runner, LiteRunner) else "tensorflow"

    @property
    def _symmetry(self) -> str:
        """The bundle's ``sample_symmetry``: "none", "dihedral" or "isotropic"."""
        return str(self._spec.hyperparameters.get("sample_symmetry", "none"))

    @property
    def _oriented(self) -> bool:
        return self._symmetry in ORIENTED

    @property
    def info(self) -> ModelInfo:
        """Picklable description of the model carried by each generated galaxy."""
        return self._info

    @property
    def pixel_scale(self) -> float:
        """Pixel scale of the generated stamps, arcsec."""
        return self._spec.pixel_scale

    @property
    def stamp_size(self) -> int:
        """Side of the generated stamps, pixels."""
        return self._spec.stamp_size

    @property
    def latent_size(self) -> int:
        """Dimension of the latent space."""
        return self._spec.latent_size

    @property
    def flux_units(self) -> str:
        """Units of the stamp pixel values."""
        return self._spec.flux.units

    @property
    def flux_scale(self) -> float:
        """Generated pixel value = network output x ``flux_scale``."""
        return self._spec.flux.scale

    @property
    def zero_point(self) -> float | None:
        """AB magnitude of one flux unit (``m = zero_point - 2.5 log10(flux)``), or None
        when the bundle's flux units are not calibrated."""
        return self._spec.flux.zero_point

    @property
    def band(self) -> str | None:
        """The band of the training images (e.g. ``"F814W"``), or None."""
        return self._spec.flux.band

    @property
    def psf_free(self) -> bool:
        """True if the samples are PSF-free profiles (else they carry the HST PSF)."""
        return self._spec.psf_free

    @property
    def conditions(self) -> tuple[Condition, ...]:
        """Conditioning variables (:class:`~galsim_vae.conditions.Condition`: name, role,
        units, standardisation and training range), in model order."""
        return self._conditions

    @property
    def condition_names(self) -> tuple[str, ...]:
        """Names of the conditions, in model order (the keyword arguments of
        :meth:`sample`, the YAML parameters of ``VAEGalaxy``)."""
        return self._info.condition_names

    @property
    def redshift_condition(self) -> str | None:
        """Name of the condition the ``redshift=`` argument sets (None if there is none)."""
        return self._info.redshift_name

    @property
    def redshift_range(self) -> tuple[float, float] | None:
        """(min, max) redshift of the training set, or None without a redshift condition."""
        cond = cnd.redshift_condition(self._conditions)
        return None if cond is None else (cond.min, cond.max)

    def __repr__(self) -> str:
        return (f"GalaxyModel(name={self.name!r}, stamp_size={self.stamp_size}, "
                f"pixel_scale={self.pixel_scale}, flux_units={self.flux_units!r}, "
                f"psf_free={self.psf_free}, conditions={list(self.condition_names)})")

    # ---------------------------------------------------------------- conditions
    def condition_values(self, n: int, redshift=None, *, clip: bool = False,
                         **conditions) -> np.ndarray | None:
        """Checked physical condition values (n, k) in model order.

        Parameters:
            n:            number of galaxies.
            redshift:     alias of the redshift condition (scalar or n values); a dict
                          {condition name: values} is also accepted (older form).
            clip:         clip values into the training range instead of refusing them.
            **conditions: each condition by its name, a scalar or an array of n values.

        Returns None for a model without conditions.

        Raises:
            ConditionError: unknown or missing names (listing the expected ones), wrong
                lengths, NaN/inf, or a value outside the training range (unless ``clip``).
        """
        given = given_conditions(redshift, conditions)
        return cnd.check_values(self._conditions, given, n, model_name=self.name, clip=clip)

    def standardise(self, values: np.ndarray | None) -> np.ndarray | None:
        """Physical condition values (n, k) -> network inputs ``(v - mean) / std``."""
        if values is None:
            return None
        return cnd.standardise(self._conditions, values)

    # ------------------------------------------------------------------ network
    @property
    def latent_input_sizes(self) -> tuple[int, ...]:
        """Lengths a ``latent=`` vector may have: ``latent_size``, and ``latent_size + 1``
        (z and the orientation entry, :mod:`galsim_vae.isotropy`) for a bundle that samples
        orientations."""
        if self.runtime == "tensorflow":
            return tuple(int(w) for w in self._network.latent_input_sizes)
        size = self._spec.latent_size
        return (size, size + 1) if self._oriented else (size,)

    @property
    def noise_size(self) -> int:
        """Standard-normal numbers each galaxy draws (the architecture declares it:
        ``network.noise_shape``): the latent size, plus one for the orientation of a bundle
        that samples orientations."""
        if self.runtime == "tensorflow":
            return int(self._network.noise_size)
        return self._spec.latent_size + int(self._oriented)

    def latent_noise(self, n: int, rng=None) -> np.ndarray:
        """Standard-normal ``eps`` (n, noise_size) drawn from the GalSim ``rng``."""
        return draw_latent_noise(n, self.noise_size, rng)

    def noise_to_latent(self, noise: np.ndarray, conditions: np.ndarray | None) -> np.ndarray:
        """The latent vectors that standard-normal ``noise`` (n, noise_size) gives through
        the prior (what :meth:`decode_batch` decodes ``from_noise``), for physical
        ``conditions`` (n, k): z (n, latent_size), with the orientation entry
        (:mod:`galsim_vae.isotropy`) last for a bundle that samples orientations; ``VAEGalaxy(model, latent=...,
        ...)`` redraws each galaxy from its row."""
        return self._runner.noise_to_latent(noise, self.standardise(conditions))

    def decode_batch(self, values: np.ndarray, conditions: np.ndarray | None, *,
                     from_noise: bool = True, return_latents: bool = False,
                     turn: bool = True):
        """The one inference path: ``values`` (n, noise_size) are noise (``from_noise``,
        through the prior) or latent vectors; ``conditions`` (n, k) physical values.

        Returns the stamps (n, S, S) float64 in the bundle's flux units
        (:class:`~galsim_vae.inference.NetworkRunner`: batched, padded network calls),
        and with ``return_latents`` also their latent vectors (from the same calls).
        With ``turn=False`` the residual rotations of isotropic sampling
        (:meth:`residual_rotations`) are left to the caller: ``VAEGalaxy`` applies its
        own when its stamp is first needed (0.6 ms per 128x128 stamp, as long as the
        network takes), so that ``sample`` costs no more than the network.
        """
        profiles, latents = self._runner.decode(values, self.standardise(conditions),
                                                from_noise=from_noise)
        if turn and self._oriented and latents.shape[1] == self._spec.latent_size + 1:
            # isotropic sampling: the residual rotation after the group element
            profiles = turn_residual(profiles, latents[:, -1], self._symmetry)
        # one float64 pass over the (possibly float32) profiles: at 128x128 every extra
        # copy of a batch costs as much as a tenth of the network
        stamps = np.multiply(profiles, self.flux_scale, dtype=np.float64)
        return (stamps, latents) if return_latents else stamps

    def residual_rotations(self, latents: np.ndarray) -> np.ndarray:
        """Radians (n,) each galaxy of latent rows ``latents`` is turned by after its
        group element (isotropic sampling, :mod:`galsim_vae.isotropy`; else zeros)."""
        return residual_rotations(latents, self._spec.latent_size, self._symmetry)

    def generate(self, n: int | None = None, *, redshift=None, latent=None, rng=None,
                 clip: bool = False, catalog=None, **conditions) -> np.ndarray:
        """Generate galaxy stamps in one batched network call.

        Parameters:
            n:            number of galaxies (default: from ``catalog``, ``latent`` or the
                          condition arrays, else 1).
            redshift:     alias of the redshift condition (scalar or n values).
            latent:       (n, latent_size) latents ``z`` used as they are (no rng drawn).
            rng:          galsim.BaseDeviate or int seed for the latent noise.
            clip:         clip conditions into the training range instead of raising.
            catalog:      an astropy Table (or dict of columns): one galaxy per row, the
                          conditions from the columns of the same names (case-insensitive;
                          other columns are ignored).
            **conditions: each condition by its ``model.json`` name (scalar or n values).

        Returns:
            array (n, stamp_size, stamp_size) float64 in ``flux_units`` at ``pixel_scale``.
        """
        values, physical, from_noise = self.prepare_inputs(
            n, redshift=redshift, latent=latent, rng=rng, clip=clip, catalog=catalog,
            **conditions)
        return self.decode_batch(values, physical, from_noise=from_noise)

    def prepare_inputs(self, n=None, *, redshift=None, latent=None, rng=None, clip=False,
                       catalog=None, **conditions):
        """Check the arguments of :meth:`generate` and return
        ``(eps or z (n, latent_size), physical conditions (n, k) or None, from_noise)``
        (:func:`galsim_vae.generator_inputs.prepare_inputs`)."""
        return prepare_inputs(self, n, redshift=redshift, latent=latent, rng=rng, clip=clip,
                              catalog=catalog, **conditions)

    def sample(self, n: int | None = None, *, redshift=None, latent=None, rng=None,
               clip: bool = False, catalog=None, **kwargs) -> list:
        """Generate ``n`` galaxies as :class:`~galsim_vae.gsobject.VAEGalaxy` profiles from one
        batched network call.

        Parameters:
            n, redshift, latent, rng, clip, catalog:  as in :meth:`generate`.
            **kwargs:   the conditions by name (as in :meth:`generate`), and the keyword
                        arguments of each VAEGalaxy (:data:`GALAXY_KWARGS`: ``flux`` or
                        ``magnitude``, ``gsparams``, ``x_interpolant``, ``k_interpolant``,
                        ``pad_factor``; a scalar for all, or one value per galaxy for
                        ``flux`` and ``magnitude``).
        """
        from .gsobject import VAEGalaxy

        galaxy_kwargs = {k: kwargs.pop(k) for k in GALAXY_KWARGS if k in kwargs}
        values, physical, from_noise = self.prepare_inputs(
            n, redshift=redshift, latent=latent, rng=rng, clip=clip, catalog=catalog, **kwargs)
        names = self.condition_names
        n = len(values)
        per_galaxy = {k: np.broadcast_to(np.asarray(galaxy_kwargs.pop(k), dtype=float), (n,))
                      for k in ("flux", "magnitude") if galaxy_kwargs.get(k) is not None}
        galaxies = []
        # decoded in chunks: each galaxy keeps a copy of its stamp, so a chunk's arrays
        # are transient and stay in the CPU caches (one (1024, 128, 128) float64 batch is
        # 128 MB: at batch 1,024 whole-batch passes cost 40% of the throughput)
        for start in range(0, n, SAMPLE_CHUNK):
            rows = slice(start, min(n, start + SAMPLE_CHUNK))
            stamps, latents = self.decode_batch(
                values[rows], None if physical is None else physical[rows],
                from_noise=from_noise, return_latents=True, turn=False)
            rotations = self.residual_rotations(latents)
            for i, stamp in zip(range(rows.start, rows.stop), stamps):
                cond = None if physical is None else dict(zip(names, physical[i].tolist()))
                own = {k: float(v[i]) for k, v in per_galaxy.items()}
                galaxies.append(VAEGalaxy.from_stamp(
                    stamp, self._info, conditions=cond, latent=latents[i - start],
                    rotation=float(rotations[i - start]), **galaxy_kwargs, **own))
        return galaxies


def load_model(name_or_path: str | os.PathLike, checksum: str | None = None) -> GalaxyModel:
    """Load a model bundle for generation.

    Parameters:
        name_or_path:   a bundle shipped with galsim-vae (``galsim_vae.trained``) by name,
                        or the path of any bundle folder.
        checksum:       the sha256 its weights must have (``"sha256:..."``, as in
                        ``model.json`` ``files``; what ``repr`` of a galaxy records), or
                        None for any.

    Raises:
        BundleError: unknown name (the message lists the shipped bundles), a bundle that
            fails its format/checksum checks, or weights other than ``checksum``.
    """
    from .bundle import load_bundle, read_bundle, resolve_bundle

    path = resolve_bundle(name_or_path)
    spec = read_bundle(path)
    if checksum is not None and spec.files.get(WEIGHTS_FILE) != checksum:
        raise BundleError(f"bundle {str(path)!r} has weights {spec.files.get(WEIGHTS_FILE)}, "
                          f"not the {checksum} asked for: it was retrained or replaced since")
    if spec.generator is not None:
        return GalaxyModel(None, spec, path=path)
    check_not_forked_from_tensorflow(name_or_path)
    network, spec = load_bundle(path)
    mark_tensorflow_used()
    return GalaxyModel(network, spec, path=path)
