"""Training sets: preparation from COSMOS catalogs and deep fields, the simulated
COSMOS-format survey, the on-disk data set format and the ``tf.data`` pipeline.

Importing this package does not import TensorFlow or GalSim; each module imports what
it needs.
"""

from .dataset import (CONDITION_COLUMNS, DATASET_FORMAT, DATASET_FORMAT_VERSION, SPLITS,
                      Dataset, DatasetWriter, assign_split)

__all__ = ["CONDITION_COLUMNS", "DATASET_FORMAT", "DATASET_FORMAT_VERSION", "SPLITS",
           "Dataset", "DatasetWriter", "assign_split", "make_tf_dataset"]


def make_tf_dataset(*args, **kwargs):
    """See :func:`galsim_vae.data.pipeline.make_tf_dataset` (imports TensorFlow)."""
    from .pipeline import make_tf_dataset as _make

    return _make(*args, **kwargs)
