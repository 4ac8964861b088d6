"""Training sets: preparation from COSMOS catalogs and deep fields, the on-disk data set
format (:mod:`.dataset` reads it, :mod:`.writer` writes it) and the ``tf.data``
pipeline.  The simulated COSMOS-format survey is :mod:`galsim_vae.simulation`.

Importing this package does not import TensorFlow or GalSim; each module imports what
it needs.
"""

from .dataset import (CONDITION_COLUMNS, DATASET_FORMAT, DATASET_FORMAT_VERSION, SPLITS,
                      Dataset, assign_split)
from .writer import DatasetWriter

__all__ = ["CONDITION_COLUMNS", "DATASET_FORMAT", "DATASET_FORMAT_VERSION", "SPLITS",
           "Dataset", "DatasetWriter", "assign_split", "make_tf_dataset"]


def make_tf_dataset(*args, **kwargs):
    """See :func:`galsim_vae.data.pipeline.make_tf_dataset` (imports TensorFlow)."""
    from .pipeline import make_tf_dataset as _make

    return _make(*args, **kwargs)
