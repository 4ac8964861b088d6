"""The model-bundle format: a trained model with its typed spec, checksums and card.

A bundle is a folder (see ``docs/architecture.md``, "Model bundle")::

    model.json          the spec (:class:`BundleSpec`): format version, architecture and
                        hyper-parameters, stamp size, pixel scale, flux units/scale/band/
                        zero point, PSF handling, conditions, prior, training record,
                        sha256 of every other file
    weights.weights.h5  network weights (Keras 3 ``save_weights``: arrays only)
    prior.weights.h5    weights of a learned prior (optional)
    hst_psf.fits        the HST PSF the samples still carry (only when psf_free is false)
    README.md           model card
    history.csv, loss_curve.png   training logs (optional)

One job per module: :mod:`.spec` (the typed spec, its one reader and writer, format
migration), :mod:`.safety` (plain values, no code), :mod:`.checksums`, :mod:`.names`
(shipped bundles, name resolution), :mod:`.weights` (weight files), :mod:`.card`,
:mod:`.reader` (:func:`read_bundle`, :func:`load_bundle`) and :mod:`.writer`
(:func:`save_bundle`, :func:`set_model_card`).
"""

from .checksums import sha256_file
from .names import list_bundles, resolve_bundle
from .reader import load_bundle, read_bundle
from .spec import (BUNDLE_FORMAT, BUNDLE_FORMAT_VERSION, CONDITION_KEYS, HST_PSF_FILE,
                   MODEL_CARD, MODEL_JSON, PRIOR_FILE, REQUIRED_KEYS, WEIGHTS_FILE, BundleSpec,
                   FluxSpec, PriorSpec)
from .writer import save_bundle, set_model_card

__all__ = ["BUNDLE_FORMAT", "BUNDLE_FORMAT_VERSION", "CONDITION_KEYS", "HST_PSF_FILE",
           "MODEL_CARD", "MODEL_JSON", "PRIOR_FILE", "REQUIRED_KEYS", "WEIGHTS_FILE",
           "BundleSpec", "FluxSpec", "PriorSpec", "list_bundles", "load_bundle",
           "read_bundle", "resolve_bundle", "save_bundle", "set_model_card", "sha256_file"]
