"""One canonical orientation of each training galaxy for the flow prior's fit.

A model trained on the eight pixel-exact rotations and flips of each stamp (``augment``)
encodes one galaxy at up to four places of its latent space (the quarter-turn pairs
(g1, g2) and (-g1, -g2), and their mirror images (-g1, g2), (g1, -g2)).  A flow fitted to
all eight orientations models each galaxy as that ring of copies and puts mass between
them, where the decoder may draw the galaxy's blend with its own turned copy: a rounder
galaxy.  The flagship's flow draws a |g| distribution narrower than the data's at the
same mean (median 0.207 against 0.186, KS 0.067) while its posterior samples match (KS
0.038); fitted to the canonical pair instead, in a quarter of the time, it gave KS 0.064
and mean size -1.2% against -1.0% (``trained/build_shipped.sh``, session 34): the
orientation copies are not what narrows the flow's |g|.

With ``flow_orientation="canonical"`` the flow is fitted to the two orientations of each
galaxy (a half-turn pair, which leaves (g1, g2) unchanged) whose HSM shear lies in the
quadrant g1 >= 0, g2 >= 0 (position angle in [0, 45] degrees), or to the first of them
only; only those are encoded (a quarter or an eighth of the encoder's and the
refinement's work of all eight).  Generation needs no
change: a bundle trained on the eight orientations samples with
``sample_symmetry="isotropic"``, a uniform element of the dihedral group times a uniform
residual rotation in [-45, 45) degrees, which turns *any* distribution of position angles
into the uniform one (:mod:`galsim_vae.isotropy`).  The shear measured is the data
stamp's observed one (PSF and noise included, HSM adaptive moments: Hirata & Seljak 2003,
MNRAS 343, 459); a stamp whose moments fail counts as g1, g2 >= 0.
"""

from __future__ import annotations

import numpy as np

#: Values of ``flow_orientation``: every encoded orientation, or the canonical pair.
FLOW_ORIENTATIONS = ("all", "canonical")

#: Sign of (g1, g2) of a stamp turned by each element of the dihedral group (the codes of
#: :func:`galsim_vae.models.orientation.orient`): ``code % 4`` quarter turns, each of
#: which maps (g1, g2) to (-g1, -g2), then for ``code >= 4`` a transpose (x <-> y), which
#: maps g1 to -g1 and keeps g2.
SHEAR_SIGNS = np.array([[(-1) ** (code % 4) * (-1 if code >= 4 else 1), (-1) ** (code % 4)]
                        for code in range(8)], dtype=np.int64)


def stamp_shears(dataset, rows: np.ndarray, *, desc: str = "stamp shapes") -> np.ndarray:
    """HSM observed shears (g1, g2), (N, 2), of the data set's stamps ``rows`` in their
    stored orientation (0, 0 where the adaptive moments fail)."""
    from ..evaluation import measure_morphology
    from ..evaluation.report.inputs import read_images

    rows = np.asarray(rows, dtype=np.int64)
    sigma = np.sqrt(np.asarray(dataset.catalog["noise_variance"], dtype=np.float64)[rows])
    table = measure_morphology(read_images(dataset, rows), pixel_scale=dataset.pixel_scale,
                               noise_sigma=sigma, nonparametric=False, desc=desc)
    shears = np.stack([np.asarray(table["g1"], dtype=np.float64),
                       np.asarray(table["g2"], dtype=np.float64)], axis=-1)
    return np.where(np.isfinite(shears), shears, 0.0)


def canonical_codes(shears: np.ndarray) -> np.ndarray:
    """The two group elements (N, 2) int that turn each stamp of shear ``shears`` (N, 2)
    into the quadrant g1 >= 0, g2 >= 0 (a zero component counts as positive)."""
    quadrant = np.where(np.asarray(shears, dtype=np.float64) < 0, -1, 1)       # (N, 2)
    turned_positive = (quadrant[:, None, :] * SHEAR_SIGNS[None] > 0).all(-1)  # (N, 8)
    return np.nonzero(turned_positive)[1].reshape(len(quadrant), 2)


def canonical_orientations(dataset, split: str, conditions, copies: int = 2) -> np.ndarray:
    """The group elements (N, copies) int that turn each galaxy of ``split`` (its rows of
    finite ``conditions``, in order) into the quadrant g1, g2 >= 0: the first ``copies``
    (1 or 2) of its canonical pair (:func:`canonical_codes`), for
    :func:`galsim_vae.training.encodings.encodings`' ``orientation_codes``."""
    from ..errors import InputDataError

    if int(copies) not in (1, 2):
        raise InputDataError(f"a galaxy has 2 canonical orientations; asked for {copies}")
    rows = dataset.indices(split, require_finite=conditions or ())
    shears = stamp_shears(dataset, rows, desc=f"{split} split's shapes")
    return canonical_codes(shears)[:, :int(copies)]
