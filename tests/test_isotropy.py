"""Isotropic sampling (galsim_vae.isotropy): generated galaxies in any orientation.

The residual rotation is checked against GalSim's own ``rotate`` of the profile, for
flux and reversibility, and for the population a user gets: position angles uniform
where the dihedral group alone gives four of them.
"""

import galsim
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import kstest

import galsim_vae
from galsim_vae.data.pipeline import apply_dihedral
from galsim_vae.isotropy import (orientation_values, rotate_stamps, split_orientation,
                                 turn_residual)

SCALE = 0.03      # arcsec / pixel
SIZE = 96


def _galaxy(size: int = SIZE, angle: float = 0.0) -> np.ndarray:
    """An elongated, off-axis Sersic (n = 1.5, |g| 0.45) convolved with a narrow Gaussian,
    turned by ``angle`` radians with GalSim, drawn at 0.03"/pixel."""
    gal = galsim.Sersic(n=1.5, half_light_radius=0.15).shear(g1=0.4, g2=0.2)
    gal = galsim.Convolve(gal.rotate(angle * galsim.radians), galsim.Gaussian(fwhm=0.09))
    return gal.drawImage(nx=size, ny=size, scale=SCALE).array.astype(float)


@pytest.mark.parametrize("angle", [0.3, -0.6, np.pi / 4, -np.pi / 4])
def test_rotation_matches_galsim_rotate(angle):
    upright = _galaxy()
    turned = rotate_stamps(upright[None], np.array([angle]))[0]
    expected = _galaxy(angle=angle)
    assert np.abs(turned - expected).max() < 3e-3 * expected.max()
    # the stamp's light is kept (but for the little turned beyond its corners)
    assert turned.sum() == pytest.approx(upright.sum(), rel=1e-3)


def test_odd_stamps_turn_about_the_centre_pixel():
    turned = rotate_stamps(_galaxy(127)[None], np.array([0.5]))[0]
    expected = _galaxy(127, angle=0.5)
    assert np.abs(turned - expected).max() < 3e-3 * expected.max()


@settings(max_examples=20, deadline=None)
@given(st.floats(-np.pi / 4, np.pi / 4))
def test_turning_back_restores_the_stamp_and_keeps_the_flux(angle):
    stamp = _galaxy()
    there = rotate_stamps(stamp[None], np.array([angle]))
    back = rotate_stamps(there, np.array([-angle]))[0]
    assert there.sum() == pytest.approx(stamp.sum(), rel=1e-3)
    assert np.abs(back - stamp).max() < 5e-3 * stamp.max()


def test_bad_rotations_are_refused():
    with pytest.raises(ValueError, match="pi/4"):
        rotate_stamps(np.zeros((1, 8, 8)), np.array([1.0]))
    with pytest.raises(ValueError, match=r"\(n, S, S\)"):
        rotate_stamps(np.zeros((2, 8, 8)), np.array([0.1]))


def test_entries_split_into_a_group_element_and_a_residual_turn():
    u = np.random.default_rng(1).standard_normal(4000)
    values = orientation_values(u, "isotropic")
    assert values.min() >= 0 and values.max() < 8
    assert kstest(values / 8, "uniform").pvalue > 0.01
    codes, angles = split_orientation(values, "isotropic")
    assert set(codes) == set(range(8))
    assert angles.min() >= -np.pi / 4 and angles.max() < np.pi / 4
    assert np.array_equal(orientation_values(u, "dihedral"), codes)
    assert np.array_equal(split_orientation(codes, "dihedral")[1], np.zeros(4000))


def _position_angles(stamps: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """HSM adaptive-moment g1, g2 and position angle (degrees) of each stamp."""
    shapes = [galsim.hsm.FindAdaptiveMom(galsim.Image(s, scale=SCALE)).observed_shape
              for s in stamps]
    g1 = np.array([s.g1 for s in shapes])
    g2 = np.array([s.g2 for s in shapes])
    return g1, g2, 0.5 * np.degrees(np.arctan2(g2, g1))


def test_isotropic_population_has_no_preferred_direction():
    """One elongated galaxy in 600 sampled orientations: the dihedral group alone gives
    four position angles (and a mean shear of zero only on average over them); the
    isotropic sampling gives uniform angles and |mean g| at the shape noise / sqrt(n)."""
    u = np.random.default_rng(7).standard_normal(600)
    upright = np.repeat(_galaxy(64)[None], 600, axis=0)
    dihedral = apply_dihedral(upright, orientation_values(u, "dihedral"))
    values = orientation_values(u, "isotropic")
    codes, _ = split_orientation(values, "isotropic")
    isotropic = turn_residual(apply_dihedral(upright, codes), values, "isotropic")
    _, _, angle_d = _position_angles(dihedral)
    g1, g2, angle_i = _position_angles(isotropic)
    assert len(np.unique(np.round(angle_d, 3))) == 4
    assert kstest((angle_d + 90) / 180, "uniform").pvalue < 1e-6
    assert kstest((angle_i + 90) / 180, "uniform").pvalue > 0.01
    g = np.hypot(g1, g2)
    assert np.std(g) < 0.01 * np.mean(g)          # the same galaxy, only turned
    assert abs(g1.mean()) < 4 * g.mean() / np.sqrt(2 * 600)
    assert abs(g2.mean()) < 4 * g.mean() / np.sqrt(2 * 600)


def test_isotropic_bundle_turns_each_galaxy_and_replays(upright_bundle, tmp_path):
    """A bundle edited to isotropic sampling: one orientation number per galaxy, its
    stamps the upright decoding turned by the group element and the residual angle, on
    the exported (LiteRT) generator as with TensorFlow, and a galaxy redrawn from its
    latent row is the same."""
    from galsim_vae.bundle.edit import with_generation_settings

    plain = upright_bundle
    turned = with_generation_settings(plain, tmp_path / "turned", sample_symmetry="isotropic")
    a, b = galsim_vae.load_model(plain), galsim_vae.load_model(turned)
    assert b.runtime == "litert" and b.noise_size == 5 and b.latent_input_sizes == (4, 5)
    z = np.full((64, 1), a.conditions[0].mean)
    noise = b.latent_noise(64, 3)
    stamps, latents = b.decode_batch(noise, z, return_latents=True)
    assert np.all((latents[:, 4] >= 0) & (latents[:, 4] < 8))
    assert len(np.unique(latents[:, 4])) == 64            # a continuous entry
    codes, _ = split_orientation(latents[:, 4], "isotropic")
    upright = a.decode_batch(latents[:, :4], z, from_noise=False)
    expected = turn_residual(apply_dihedral(upright, codes), latents[:, 4], "isotropic")
    np.testing.assert_allclose(stamps, expected, rtol=1e-5, atol=1e-6 * np.abs(expected).max())
    # the TensorFlow network gives the same orientation entries (float32 erf against
    # scipy's ndtr: to an ulp) and group elements
    import tensorflow as tf

    net = b.network
    cond = tf.constant(b.standardise(z).astype(np.float32))
    tf_latents = net.noise_to_latent(tf.constant(noise.astype(np.float32)), cond).numpy()
    np.testing.assert_allclose(tf_latents[:, 4], latents[:, 4], rtol=0, atol=2e-6)
    np.testing.assert_array_equal(np.floor(tf_latents[:, 4]), codes)
    replay = galsim_vae.VAEGalaxy(b, latent=latents[5], zphot=z[0, 0])
    np.testing.assert_allclose(replay.stamp, stamps[5], rtol=1e-5,
                               atol=1e-6 * np.abs(stamps[5]).max())


def test_sampled_galaxies_turn_their_stamps_when_first_needed(upright_bundle, tmp_path):
    """``sample`` makes each VAEGalaxy from the decoded stamp and its residual rotation
    and turns it only when the stamp or the profile is needed: the stamp is then the
    one ``generate`` gives for the same rng, drawing at the model scale returns it, and
    a pickle carries the unturned stamp and the angle, not the turned copy."""
    import pickle

    from galsim_vae.bundle.edit import with_generation_settings

    turned = with_generation_settings(upright_bundle, tmp_path / "turned",
                                      sample_symmetry="isotropic")
    model = galsim_vae.load_model(turned)
    z = model.conditions[0].mean
    stamps = model.generate(6, redshift=z, rng=galsim.BaseDeviate(21))
    gals = model.sample(6, redshift=z, rng=galsim.BaseDeviate(21))
    rotations = np.array([g.rotation.rad for g in gals])
    assert np.all(np.abs(rotations) <= np.pi / 4) and np.all(rotations != 0)
    np.testing.assert_allclose(rotations,
                               model.residual_rotations(np.stack([g.latent for g in gals])))
    assert all("_stamp" not in g.__dict__ for g in gals)         # nothing turned yet
    for gal, stamp in zip(gals, stamps):
        np.testing.assert_allclose(gal.stamp, stamp, rtol=1e-5, atol=1e-6 * stamp.max())
    drawn = gals[1].drawImage(nx=model.stamp_size, ny=model.stamp_size,
                              scale=model.pixel_scale, method="no_pixel")
    np.testing.assert_allclose(drawn.array, gals[1].stamp, rtol=1e-4,
                               atol=1e-6 * gals[1].stamp.max())
    state = pickle.dumps(gals[1])
    assert len(state) < 1.2 * gals[1].stamp.nbytes              # one stamp, not two
    again = pickle.loads(state)
    assert again == gals[1] and hash(again) == hash(gals[1])
    np.testing.assert_array_equal(again.stamp, gals[1].stamp)
    with pytest.raises(ValueError, match="rotation"):
        galsim_vae.VAEGalaxy.from_stamp(stamps[0], model.info, rotation=1.0)


def test_yaml_galaxies_of_an_isotropic_bundle_are_turned(upright_bundle, tmp_path):
    """The VAEGalaxy YAML type gives the galaxy Python gives for the same rng: the
    decoded stamp turned by its residual angle (the builder passes the angle on)."""
    from galsim_vae.bundle.edit import with_generation_settings

    turned = with_generation_settings(upright_bundle, tmp_path / "turned",
                                      sample_symmetry="isotropic")
    model = galsim_vae.load_model(turned)
    z = float(model.conditions[0].mean)
    base = {"modules": ["galsim_vae"], "input": {"vae_model": {"file_name": str(turned)}},
            "gal": {"type": "VAEGalaxy", "redshift": z}, "rng": galsim.BaseDeviate(8),
            "obj_num": 0}
    galsim.config.ImportModules(base)
    galsim.config.ProcessInput(base)
    gal = galsim.config.BuildGSObject(base, "gal")[0]
    expected = galsim_vae.VAEGalaxy(model, redshift=z, rng=galsim.BaseDeviate(8))
    assert gal == expected and gal.rotation.rad != 0
    stamp = model.generate(1, redshift=z, rng=galsim.BaseDeviate(8))[0]
    np.testing.assert_allclose(gal.stamp, stamp, rtol=1e-5, atol=1e-6 * stamp.max())
