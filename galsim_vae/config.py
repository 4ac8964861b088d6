"""GalSim YAML support: input type ``vae_model`` and object type ``VAEGalaxy``.

Pattern of GalSim's ``galsim/config/input_real.py``: the profile class
(:class:`~galsim_vae.gsobject.VAEGalaxy`) and its config builder live apart.  Importing
``galsim_vae`` registers both (``modules: [galsim_vae]``)::

    modules: [galsim_vae]
    input:
        vae_model: {file_name: cvae2_cosmos_sim}      # bundle name or path
    gal:
        type: VAEGalaxy
        redshift: {type: Random, min: 0.2, max: 1.2}  # any GalSim float value
        flux: 1.e4                                    # optional

Randomness: each galaxy's latent noise is drawn from ``galsim.config.GetRNG(config, base)``,
the object's own rng, so a field is the same for the same seed and any ``image.nproc``.

Speed: one network call per galaxy costs far more than drawing it.  So on the first
galaxy of a run of objects the builder makes a *dry run* of the next ``batch_size`` objects
(on a copy of the config: same per-object rngs, nothing drawn, nothing recorded), collects
their (conditions, latent noise), and has the input object decode them in one batched
call; the stamps are cached by the exact (conditions, noise) values, so each object then
gets the stamp it would have got alone (a dry run that predicts wrongly only costs a cache
miss).  With ``image.nproc > 1`` the model lives in GalSim's input-manager process behind
its proxy, and only numpy arrays cross it.
"""

from __future__ import annotations

import collections
import threading

import numpy as np
import galsim
from galsim.config import (GetAllParams, GetInputObj, GetRNG, InputLoader, ParseValue,
                           RegisterInputType, RegisterObjectType, SkipThisObject)
from galsim.errors import GalSimConfigError

from . import conditions as cnd
from .errors import ConditionError
from .generator_inputs import noise_and_conditions
from .isotropy import residual_rotations

#: Default number of objects decoded per network call in a YAML run.
DEFAULT_BATCH_SIZE = 64

#: Key of the base config dict marking a dry run (recording what the objects need).
_RECORD_KEY = "_vae_galaxy_record"


class VAEModelInput:
    """The ``vae_model`` input object: a :class:`GalaxyModel` with a stamp cache.

    Its public methods take and return only numpy arrays and plain Python values, so they
    are cheap to call through GalSim's multiprocessing proxy (``image.nproc > 1``).

    Parameters:
        file_name:      bundle name (shipped in ``galsim_vae.trained``) or bundle path.
        batch_size:     objects decoded per network call (1: one call per galaxy, no
                        dry run). [default: 64]
        threads:        threads of the process that runs the model (TensorFlow, OpenMP,
                        BLAS pools; :func:`galsim_vae.tf_runtime.limit_threads`); with
                        ``image.nproc: N`` on N cores, 1.  [default: the environment
                        variable GALSIM_VAE_THREADS, else TensorFlow's own choice]
    """

    _req_params = {"file_name": str}
    _opt_params = {"batch_size": int, "threads": int}
    _single_params: list = []
    _takes_rng = False

    def __init__(self, file_name: str, batch_size: int = DEFAULT_BATCH_SIZE,
                 threads: int | None = None):
        from .generator import load_model
        from .tf_runtime import limit_threads

        if batch_size < 1:
            raise GalSimConfigError(f"input.vae_model.batch_size={batch_size} must be >= 1")
        try:
            limit_threads(threads)
        except ValueError as err:
            raise GalSimConfigError(f"input.vae_model.threads: {err}") from None
        self._model = load_model(file_name)
        self._batch_size = int(batch_size)
        self._cache: collections.OrderedDict = collections.OrderedDict()
        self._max_cache = 4 * self._batch_size
        self._lock = threading.Lock()
        self._counts = {"network_calls": 0, "stamps": 0, "cache_hits": 0}

    # Accessors (methods, so that they work through the proxy).
    def getInfo(self):
        """The model's picklable :class:`~galsim_vae.generator.ModelInfo`."""
        return self._model.info

    def getLatentSize(self) -> int:
        """Dimension of the latent space."""
        return self._model.latent_size

    def getLatentInputSizes(self) -> tuple:
        """Lengths a ``latent`` list may have (z, or z and an orientation code)."""
        return self._model.latent_input_sizes

    def getNoiseSize(self) -> int:
        """Standard-normal numbers each galaxy draws from its rng."""
        return self._model.noise_size

    def getBatchSize(self) -> int:
        """Objects decoded per network call."""
        return self._batch_size

    def getRedshiftRange(self):
        """(min, max) training redshift, or None for an unconditional model."""
        return self._model.redshift_range

    def getCounts(self) -> dict:
        """Number of network calls, stamps generated and cache hits so far."""
        return dict(self._counts)

    def getSampleSymmetry(self) -> str:
        """How generated galaxies are oriented (``sample_symmetry``: "none", "dihedral",
        "isotropic")."""
        return self._model._symmetry

    def getConditions(self) -> tuple:
        """The bundle's conditions (:class:`~galsim_vae.conditions.Condition`; () if none)."""
        return self._model.conditions

    @staticmethod
    def _key(values: np.ndarray, conditions, from_noise: bool) -> bytes:
        cond = b"" if conditions is None else np.asarray(conditions, float).tobytes()
        return bytes([from_noise]) + np.asarray(values, float).tobytes() + b"|" + cond

    def _requests(self, values, conditions, from_noise):
        """(values (n, L) float, conditions (n, k) or None, cache keys) of n objects."""
        values = np.asarray(values, dtype=float)
        conditions = None if conditions is None else np.asarray(conditions, dtype=float)
        keys = [self._key(values[i], None if conditions is None else conditions[i], from_noise)
                for i in range(len(values))]
        return values, conditions, keys

    def _decode(self, values, conditions, rows, from_noise) -> list:
        """One network call for the objects ``rows`` (call with the lock held): a
        (stamp, latent vector) pair per object."""
        stamps, latents = self._model.decode_batch(
            values[rows], None if conditions is None else conditions[rows],
            from_noise=from_noise, return_latents=True, turn=False)
        self._counts["network_calls"] += 1
        self._counts["stamps"] += len(rows)
        return list(zip(stamps, latents))

    def generateStamps(self, values, conditions, from_noise: bool = True):
        """Stamps (n, S, S) and their latent vectors (n, L) for ``values`` (n, noise or
        latent size) and physical ``conditions`` (n, k) or None: cached ones are
        returned (and dropped from the cache), the rest decoded in one network call.
        The stamps are not turned by their residual rotation (isotropic sampling): each
        VAEGalaxy turns its own, in the process that draws it."""
        values, conditions, keys = self._requests(values, conditions, from_noise)
        with self._lock:
            out = [self._cache.pop(k, None) for k in keys]
            self._counts["cache_hits"] += sum(o is not None for o in out)
            todo = [i for i, o in enumerate(out) if o is None]
            if todo:
                for i, pair in zip(todo, self._decode(values, conditions, todo, from_noise)):
                    out[i] = pair
            return np.stack([o[0] for o in out]), np.stack([o[1] for o in out])

    def isCached(self, values, conditions, from_noise: bool = True) -> bool:
        """Whether the stamp of one object (values (1, L), conditions (1, k)) is cached."""
        return self._requests(values, conditions, from_noise)[2][0] in self._cache

    def prefetch(self, values, conditions, from_noise: bool = True) -> int:
        """Decode the stamps of several objects in one network call and cache them for the
        objects that will ask for them; returns the number decoded (those cached already
        are skipped).  The cache keeps at most ``4 * batch_size`` stamps (oldest dropped)."""
        values, conditions, keys = self._requests(values, conditions, from_noise)
        with self._lock:
            todo = [i for i, k in enumerate(keys) if k not in self._cache]
            if todo:
                for i, pair in zip(todo, self._decode(values, conditions, todo, from_noise)):
                    self._cache[keys[i]] = pair
                while len(self._cache) > self._max_cache:
                    self._cache.popitem(last=False)
            return len(todo)


RegisterInputType("vae_model", InputLoader(VAEModelInput))


#: Parameters of the VAEGalaxy object type (``latent`` is a list, parsed separately).
_OPT_PARAMS = {"redshift": float, "flux": float, "magnitude": float, "x_interpolant": str,
               "k_interpolant": str, "pad_factor": float, "clip": bool}


#: Key of the base config dict holding (input, object numbers) of this process's last
#: prefetch: those objects skip asking the input whether their stamp is cached (if it was
#: dropped meanwhile, ``generateStamps`` decodes it alone: same stamp, one more call).
_PREFETCHED_KEY = "_vae_galaxy_prefetched"

#: Key of the base config dict caching each input object's constant properties.
_STATIC_KEY = "_vae_model_static"


def _static_info(model_input, base) -> dict:
    """The constant properties of a ``vae_model`` input (info, latent size, batch size,
    redshift range, conditions), fetched once per process and input object.

    With ``image.nproc > 1`` every method call on the input is a round trip to GalSim's
    input-manager process (~0.1-1 ms on a busy machine); asking these once instead of
    several times per object (and per dry-run object) is what keeps the bookkeeping of a
    VAEGalaxy small (``benchmarks/README.md``).  The entry keeps a reference to the
    input object, so its ``id`` cannot be reused by another one.
    """
    cache = base.setdefault(_STATIC_KEY, {})
    entry = cache.get(id(model_input))
    if entry is None or entry["input"] is not model_input:
        entry = {"input": model_input, "info": model_input.getInfo(),
                 "latent_size": model_input.getLatentSize(),
                 "latent_sizes": model_input.getLatentInputSizes(),
                 "noise_size": model_input.getNoiseSize(),
                 "batch_size": model_input.getBatchSize(),
                 "redshift_range": model_input.getRedshiftRange(),
                 "conditions": model_input.getConditions(),
                 "symmetry": model_input.getSampleSymmetry()}
        cache[id(model_input)] = entry
    return entry


def _parse_latent(config, base, latent_sizes):
    """The ``latent`` of a VAEGalaxy item: a list whose entries are any GalSim float
    values, or any GalSim string value holding the numbers separated by commas (the form
    ``VAEGalaxy.latent_text`` writes to a truth catalog, read back with
    ``{type: Catalog, col: latent}``)."""
    latent = config["latent"]
    sizes = " or ".join(str(n) for n in latent_sizes)
    expected = (f"VAEGalaxy.latent must be a list of {sizes} floats (the model's latent_size"
                f"{', or with its orientation code' if len(latent_sizes) > 1 else ''}), or "
                f"a string of them separated by commas")
    if isinstance(latent, (list, tuple)):
        values = [ParseValue(latent, i, base, float)[0] for i in range(len(latent))]
    else:
        text = ParseValue(config, "latent", base, str)[0]
        try:
            values = [float(v) for v in str(text).split(",")]
        except ValueError:
            raise GalSimConfigError(f"{expected}, got {text!r}") from None
    if len(values) not in latent_sizes:
        raise GalSimConfigError(f"{expected}, got {latent!r}")
    values = np.array(values, dtype=float)
    if not np.all(np.isfinite(values)):
        raise ConditionError(f"VAEGalaxy.latent must be finite (no NaN or inf), got "
                             f"{values.tolist()}")
    return values


def _condition_params(config, base, kwargs, info) -> dict:
    """The condition values of one VAEGalaxy item: each condition under its own name
    (required, as in galsim_hub), ``redshift`` standing for the redshift condition, and
    for a chromatic item without either the redshift of its SED (``sed.redshift``)."""
    given = {name: kwargs.pop(name) for name in info.condition_names if name in kwargs}
    if "redshift" in kwargs and "redshift" not in info.condition_names:
        redshift = kwargs.pop("redshift")
        if redshift is not None:
            given["redshift"] = redshift
    sed = config.get("sed")
    if (info.redshift_name is not None and info.redshift_name not in given
            and "redshift" not in given and isinstance(sed, dict) and "redshift" in sed):
        # a chromatic galaxy: one redshift, GalSim's gal.sed.redshift (>= 2.5.3), both
        # conditions the model and redshifts the SED
        given["redshift"] = galsim.config.ParseValue(sed, "redshift", base, float)[0]
    given = cnd.resolve_alias(info.conditions, given, info.name)
    missing = [c.name for c in info.conditions if c.name not in given and c.drawn is None]
    if missing:
        alias = (f" (redshift: may stand for {info.redshift_name})"
                 if info.redshift_name in missing else "")
        raise GalSimConfigError(
            f"Attribute {missing[0]} is required for type = VAEGalaxy: model {info.name!r} "
            f"is conditioned on {cnd.describe(info.conditions)}; give each of "
            f"{list(info.condition_names)}{alias}")
    return given


def _object_request(config, base, ignore, logger, model_input):
    """Parse one VAEGalaxy item: (kwargs, values (1, L), conditions, from_noise)."""
    static = _static_info(model_input, base)
    info = static["info"]
    # GalSim lists ``redshift`` among the generic gal keys it ignores (it sets
    # ``gsobject.redshift`` after the build); here it is the generating condition.
    names = ("redshift",) + info.condition_names
    ignore = [key for key in ignore if key not in names] + ["latent"]
    opt = dict(_OPT_PARAMS, **{name: float for name in info.condition_names})
    try:
        kwargs, _ = GetAllParams(config, base, opt=opt, ignore=ignore)
    except Exception as err:  # noqa: BLE001 - eval strings and '@' references raise anything
        # GalSim's own message names the value, not the field ('' even crashes it)
        fields = {k: config[k] for k in opt if k in config}
        raise GalSimConfigError(f"VAEGalaxy (object {base.get('obj_num', 0)}): cannot parse "
                                f"its parameters {fields}: {err or type(err).__name__}"
                                ) from None
    given = _condition_params(config, base, kwargs, info)
    clip = kwargs.pop("clip", False)
    try:
        conditions = cnd.check_values(info.conditions, given, 1, model_name=info.name,
                                      clip=clip)
    except ConditionError as err:
        raise ConditionError(f"VAEGalaxy (object {base.get('obj_num', 0)}): {err}") from None
    latent = (_parse_latent(config, base, static["latent_sizes"])[None, :]
              if "latent" in config else None)
    values, conditions = noise_and_conditions(
        info.conditions, conditions, 1, static["noise_size"], latent,
        lambda: GetRNG(config, base, logger, "VAEGalaxy"))
    from_noise = latent is None
    return kwargs, values, conditions, from_noise


def _dry_run(base, obj_nums, logger):
    """Run the stamp building of ``obj_nums`` on a copy of ``base`` without drawing and
    return the (values, conditions, from_noise) each VAEGalaxy item asked for."""
    record: list = []
    dry = galsim.config.CopyConfig(base)
    dry.pop("extra_builder", None)  # no truth/extra outputs from the dry run
    dry[_RECORD_KEY] = record
    for obj_num in obj_nums:
        try:
            galsim.config.BuildStamp(dry, obj_num, do_noise=False, logger=None)
        except Exception as err:  # a failure here only costs a cache miss later
            logger.debug("VAEGalaxy dry run of object %d failed: %s", obj_num, err)
    return record


def _last_obj_num(base) -> int:
    """One past the last object number of the current image.

    GalSim records the first object of the current *file* (``start_obj_num``) and, per
    file, the object counts of its images (``nobj``); the current image starts after the
    objects of the file's earlier images (as in ``galsim/config/extra.py``).
    """
    start = int(base.get("start_obj_num", 0))
    image_num = int(base.get("image_num", 0))
    try:
        nobj = base.get("nobj") or [galsim.config.GetNObjForImage(base, image_num)]
    except Exception:  # noqa: BLE001 - no image context (e.g. BuildGSObject alone)
        return start
    k = image_num - int(base.get("start_image_num", 0))
    if not 0 <= k < len(nobj):  # image built outside a file (BuildImage calls)
        obj_num = int(base.get("obj_num", start))
        return obj_num + int(galsim.config.GetNObjForImage(base, image_num))
    return start + int(sum(nobj[:k])) + int(nobj[k])


def _BuildVAEGalaxy(config, base, ignore, gsparams, logger):
    """Build a VAEGalaxy from the ``vae_model`` input item (GalSim builder signature)."""
    from .gsobject import VAEGalaxy

    model_input = GetInputObj("vae_model", config, base, "VAEGalaxy")
    kwargs, values, conditions, from_noise = _object_request(
        config, base, ignore, logger, model_input)

    record = base.get(_RECORD_KEY)
    if record is not None:  # dry run: note what this object needs, build nothing
        record.append((values[0], None if conditions is None else conditions[0], from_noise))
        raise SkipThisObject("")

    static = _static_info(model_input, base)
    batch_size = static["batch_size"]
    obj_num = int(base.get("obj_num", 0))
    if batch_size > 1 and from_noise:
        stop = min(obj_num + batch_size, _last_obj_num(base))
        if stop > obj_num + 1:
            _prefetch(model_input, base, range(obj_num + 1, stop), values, conditions, logger)
    stamps, latents = model_input.generateStamps(values, conditions, from_noise)

    info = static["info"]
    cond = None if conditions is None else dict(zip(info.condition_names,
                                                    conditions[0].tolist()))
    if gsparams:
        kwargs["gsparams"] = galsim.GSParams(**gsparams)
    logger.debug("obj %d: VAEGalaxy kwargs = %s", obj_num, kwargs)
    rotation = residual_rotations(latents[:1], static["latent_size"], static["symmetry"])[0]
    gal = VAEGalaxy.from_stamp(stamps[0], info, conditions=cond, latent=latents[0],
                               rotation=float(rotation), **kwargs)
    return gal, False  # random: never reuse across objects


def _prefetch(model_input, base, obj_nums, values, conditions, logger):
    """Dry-run ``obj_nums`` and decode this object and theirs in one network call (only
    when this object's stamp is not cached yet, i.e. at the start of a batch)."""
    obj_num = int(base.get("obj_num", 0))
    done = base.get(_PREFETCHED_KEY)
    if done is not None and done[0] is model_input and obj_num in done[1]:
        return  # prefetched by this process: no round trip to ask the input
    if model_input.isCached(values, conditions, True):
        return
    base[_PREFETCHED_KEY] = (model_input, range(obj_num, obj_nums.stop))
    record = [r for r in _dry_run(base, obj_nums, logger) if r[2]]
    all_values = np.concatenate([values] + [r[0][None, :] for r in record])
    all_conditions = None
    if conditions is not None:
        all_conditions = np.concatenate([conditions] + [r[1][None, :] for r in record])
    model_input.prefetch(all_values, all_conditions, True)


RegisterObjectType("VAEGalaxy", _BuildVAEGalaxy, input_type="vae_model")


def _current_vae_galaxy(base):
    """The VAEGalaxy inside the current ``gal`` object (under its shear, flux scaling and
    other transformations)."""
    from .gsobject import VAEGalaxy

    current = base.get("gal", {}).get("current")
    obj = current[0] if current else None
    while obj is not None and not isinstance(obj, VAEGalaxy):
        obj = getattr(obj, "original", None)
    if obj is None:
        raise GalSimConfigError("type VAELatent: the current gal is not a VAEGalaxy")
    return obj


def _GenerateVAELatent(config, base, value_type):
    """Value type ``VAELatent``: the current galaxy's latent vector as exact numbers
    separated by commas (``VAEGalaxy.latent_text``), for a truth-catalog column that a
    later field reads back as ``latent: {type: Catalog, col: ...}``."""
    return _current_vae_galaxy(base).latent_text, False


galsim.config.RegisterValueType("VAELatent", _GenerateVAELatent, [str])
