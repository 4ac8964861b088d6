"""Random pixel-exact orientations of generated galaxies (the dihedral group of the square).

A model trained on the eight rotations and flips of each stamp (``augment``) describes a
population that is invariant under them.  With ``sample_symmetry="dihedral"`` it draws
one more standard-normal number per galaxy and turns each generated profile by the
element ``floor(8 Phi(u))`` of the group (``Phi`` the normal CDF): rotation by
``code % 4`` quarter turns, then a transpose when ``code >= 4``, about the stamp centre
(GalSim's ``true_center``), as :func:`galsim_vae.data.pipeline.apply_dihedral` does to
the training stamps.  The generated population is then exactly invariant under the
group: its mean shear vanishes whatever residual orientation preference the decoder has
(a quarter turn maps (g1, g2) to (-g1, -g2)).
"""

from __future__ import annotations

import tensorflow as tf

#: Values of ``sample_symmetry``.
SAMPLE_SYMMETRIES = ("none", "dihedral")
#: Elements of the dihedral group of the square.
N_ORIENTATIONS = 8


def orientation_codes(u: tf.Tensor) -> tf.Tensor:
    """Group element (int32, 0-7) of each standard-normal number ``u`` (B,)."""
    uniform = 0.5 * (1.0 + tf.math.erf(tf.cast(u, tf.float32) / tf.sqrt(2.0)))
    code = tf.cast(tf.floor(uniform * N_ORIENTATIONS), tf.int32)
    return tf.clip_by_value(code, 0, N_ORIENTATIONS - 1)


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
