"""Random pixel-exact orientations of generated galaxies (the dihedral group of the square).

A model trained on the eight rotations and flips of each stamp (``augment``) describes a
population that is invariant under them.  With ``sample_symmetry="dihedral"`` it draws
one more standard-normal number per galaxy and turns each generated profile by the
element ``floor(8 Phi(u))`` of the group (``Phi`` the normal CDF): rotation by
``code % 4`` quarter turns, then a transpose when ``code >= 4``, about the stamp centre
(GalSim's ``true_center``), as :func:`galsim_vae.data.pipeline.apply_dihedral` does to
the training stamps.  The generated population is then exactly invariant under the
group: its mean shear vanishes whatever residual orientation preference the decoder has
(a quarter turn maps (g1, g2) to (-g1, -g2)).  With ``sample_symmetry="isotropic"`` the
orientation entry is ``8 Phi(u)`` in [0, 8): the group element is its floor, and the
runners turn the profile further by the residual angle (:mod:`galsim_vae.isotropy`).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

#: Values of ``sample_symmetry``.
SAMPLE_SYMMETRIES = ("none", "dihedral", "isotropic")
#: Values of ``sample_symmetry`` that draw one orientation number per galaxy.
ORIENTED = ("dihedral", "isotropic")
#: Elements of the dihedral group of the square.
N_ORIENTATIONS = 8


def orientation_values(u: tf.Tensor) -> tf.Tensor:
    """``8 Phi(u)`` in [0, 8) (float32) of each standard-normal number ``u`` (B,)."""
    uniform = 0.5 * (1.0 + tf.math.erf(tf.cast(u, tf.float32) / tf.sqrt(2.0)))
    below = float(np.nextafter(np.float32(N_ORIENTATIONS), np.float32(0)))
    return tf.clip_by_value(uniform * N_ORIENTATIONS, 0.0, below)


def orientation_codes(u: tf.Tensor) -> tf.Tensor:
    """Group element (int32, 0-7) of each standard-normal number ``u`` (B,)."""
    return tf.cast(tf.floor(orientation_values(u)), tf.int32)


def orient(profiles: tf.Tensor, codes: tf.Tensor) -> tf.Tensor:
    """Turn each profile (B, S, S, 1) by its group element ``codes`` (B,) int."""
    codes = tf.cast(codes, tf.int32)
    out = profiles
    for code in range(1, N_ORIENTATIONS):
        turned = tf.image.rot90(profiles, k=code % 4)
        if code >= 4:
            turned = tf.transpose(turned, perm=[0, 2, 1, 3])
        out = tf.where((codes == code)[:, None, None, None], turned, out)
    return out


def orientation_entry(u: tf.Tensor, symmetry: str) -> tf.Tensor:
    """The orientation entry (float32, B) of a latent row from standard-normal ``u``:
    the group element for ``"dihedral"``, ``8 Phi(u)`` for ``"isotropic"``."""
    if symmetry == "isotropic":
        return orientation_values(u)
    return tf.cast(orientation_codes(u), tf.float32)


def group_element(entry: tf.Tensor, symmetry: str) -> tf.Tensor:
    """The group element (int32, B) of orientation entries: rounded (``"dihedral"``) or
    their floor (``"isotropic"``), within 0-7."""
    entry = tf.floor(entry) if symmetry == "isotropic" else tf.round(entry)
    return tf.clip_by_value(tf.cast(entry, tf.int32), 0, N_ORIENTATIONS - 1)
