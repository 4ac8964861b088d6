"""The flow prior fitted to each galaxy's canonical orientation (``flow_orientation``)."""

from __future__ import annotations

import galsim
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from galsim_vae.training.canonical_orientation import (SHEAR_SIGNS, canonical_codes,
                                                       canonical_orientations)


def _hsm_shear(stamp: np.ndarray) -> np.ndarray:
    shape = galsim.hsm.FindAdaptiveMom(galsim.Image(np.asarray(stamp, float))).observed_shape
    return np.array([shape.g1, shape.g2])


def _turned(stamps: np.ndarray, code: int) -> np.ndarray:
    """Stamps (N, S, S) turned by one group element as the encoder sees them."""
    from galsim_vae.models.orientation import orient

    turned = orient(stamps[..., None].astype(np.float32), np.full(len(stamps), code))
    return turned.numpy()[..., 0]


def test_shear_signs_are_those_of_the_turned_stamps():
    """Each group element of ``orient`` changes the HSM shear of a stamp as the sign table
    says: a quarter turn (g1, g2) -> (-g1, -g2), a transpose g1 -> -g1."""
    stamp = galsim.Gaussian(sigma=3.0).shear(g=0.35, beta=25 * galsim.degrees).drawImage(
        nx=48, ny=48, scale=1.0).array
    upright = _hsm_shear(stamp)
    assert (np.abs(upright) > 0.1).all()
    for code in range(8):
        np.testing.assert_allclose(_hsm_shear(_turned(stamp[None], code)[0]),
                                   SHEAR_SIGNS[code] * upright, atol=1e-4)


@settings(max_examples=200, deadline=None)
@given(st.floats(-0.9, 0.9), st.floats(-0.9, 0.9))
def test_canonical_codes_turn_any_shear_into_the_quadrant(g1, g2):
    """Two group elements a half turn apart (same flip, quarter turns differing by two)
    turn the shear to g1, g2 >= 0."""
    codes = canonical_codes(np.array([[g1, g2]]))[0]
    assert codes.shape == (2,) and codes[0] != codes[1]
    assert codes[0] // 4 == codes[1] // 4 and (codes[1] - codes[0]) % 4 == 2
    for code in codes:
        assert (SHEAR_SIGNS[code] * [g1, g2] >= 0).all()


def test_canonical_orientations_encode_each_galaxy_in_its_quadrant(tiny_dataset):
    """Encoded in its canonical orientations (the encoder's layout, galaxy by galaxy),
    each row is the posterior mean of its galaxy turned by a group element that puts
    the stamp's HSM shear at g1, g2 >= 0: two rows per galaxy (a half-turn pair), or the
    first of them with one copy."""
    from galsim_vae.data import Dataset
    from galsim_vae.models import build_model
    from galsim_vae.training.encodings import encodings, row_layout

    data = Dataset(tiny_dataset)
    model = build_model("cvae2", stamp_size=32, latent_size=4, channels=[4, 8], n_conditions=1)
    rows = data.indices("train", require_finite=("zphot",))
    stamps = np.asarray(data.images[rows], dtype=np.float32) / data.flux_scale
    conditions = data.normalise_conditions(
        np.asarray(data.catalog["zphot"], float)[rows, None], ("zphot",)).astype(np.float32)
    shears = np.stack([_hsm_shear(s) for s in stamps])
    assert (np.abs(shears) > 1e-3).all()          # every quadrant is well defined
    for copies in (2, 1):
        codes = canonical_orientations(data, "train", ("zphot",), copies)
        assert codes.shape == (rows.size, copies)
        encoded = encodings(model, data, "train", ("zphot",), False, 16,
                            orientation_codes=codes)
        assert encoded.centres.shape == (copies * rows.size, 4)
        galaxy, copy = row_layout(rows.size, copies, 16)
        turned_codes = codes[galaxy, copy]
        assert (SHEAR_SIGNS[turned_codes] * shears[galaxy] >= 0).all()
        for code in np.unique(turned_codes):
            mine = turned_codes == code
            means = model.encode(_turned(stamps[galaxy[mine]], code)[..., None],
                                 conditions[galaxy[mine]], training=False).mean().numpy()
            np.testing.assert_allclose(encoded.centres[mine], means, rtol=1e-4, atol=1e-5)


def test_a_galaxy_has_two_canonical_orientations(tiny_dataset):
    from galsim_vae.data import Dataset
    from galsim_vae.errors import InputDataError

    from galsim_vae.models import build_model
    from galsim_vae.training.encodings import encodings

    data = Dataset(tiny_dataset)
    with pytest.raises(InputDataError, match="2 canonical orientations; asked for 3"):
        canonical_orientations(data, "train", ("zphot",), 3)
    codes = canonical_orientations(data, "validation", ("zphot",), 2)     # another split's
    model = build_model("cvae2", stamp_size=32, latent_size=4, channels=[4, 8], n_conditions=1)
    with pytest.raises(InputDataError, match="one row of group elements per galaxy"):
        encodings(model, data, "train", ("zphot",), False, 16, orientation_codes=codes)
