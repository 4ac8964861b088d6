"""GalaxyModel in other processes: it pickles by bundle path and weight checksum, and a
spawned worker rebuilds it from the bundle."""

from __future__ import annotations

import multiprocessing
import pickle
import shutil

import numpy as np
import pytest

import galsim_vae
from galsim_vae.errors import BundleError

from test_generator import tiny_bundle


def _generate(model, seed):
    return model.generate(2, rng=seed)


@pytest.fixture(scope="module")
def bundle(tiny_dataset, tmp_path_factory):
    return tiny_bundle("unconditional", tiny_dataset, tmp_path_factory.mktemp("proc"))


def test_model_pickles_by_path_and_checksum(bundle, tmp_path):
    model = galsim_vae.load_model(bundle)
    data = pickle.dumps(model)
    assert len(data) < 2000                      # a path and a digest, no weights
    again = pickle.loads(data)
    np.testing.assert_array_equal(again.generate(2, rng=5), model.generate(2, rng=5))
    copy = tmp_path / "copy"
    shutil.copytree(bundle, copy)
    moved = pickle.dumps(galsim_vae.load_model(copy))
    shutil.rmtree(copy)
    with pytest.raises(BundleError, match="is not there in this process"):
        pickle.loads(moved)


def test_changed_weights_are_refused_on_unpickling(bundle, tmp_path):
    from galsim_vae.bundle import load_bundle, save_bundle

    copy = tmp_path / "copy"
    shutil.copytree(bundle, copy)
    data = pickle.dumps(galsim_vae.load_model(copy))
    network, spec = load_bundle(copy)
    network.set_weights([w + 0.01 for w in network.get_weights()])
    save_bundle(network, copy, name=spec.name, flux_scale=spec.flux.scale,
                flux_units=spec.flux.units, pixel_scale=spec.pixel_scale,
                conditions=spec.conditions, psf_free=spec.psf_free, overwrite=True)
    with pytest.raises(BundleError, match="weights .* changed since it was pickled"):
        pickle.loads(data)


@pytest.mark.slow
def test_spawned_pool_uses_a_parent_model(bundle):
    model = galsim_vae.load_model(bundle)
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        results = pool.starmap(_generate, [(model, 1), (model, 2)])
    np.testing.assert_allclose(results[0], model.generate(2, rng=1), rtol=1e-6)
    np.testing.assert_allclose(results[1], model.generate(2, rng=2), rtol=1e-6)


def _generate_twice(model, seed):
    return model.generate(3, rng=seed), model.runtime


@pytest.mark.slow
@pytest.mark.parametrize("method", ["fork", "forkserver"])
def test_fork_and_forkserver_pools_use_a_parent_model(bundle, method):
    """A model loaded (and used) in the parent works in a pool of any start method, and the
    workers make the same galaxies to the last bit (the LiteRT generator is rebuilt in
    each process)."""
    model = galsim_vae.load_model(bundle)
    expected = [model.generate(3, rng=seed) for seed in (1, 2)]
    with multiprocessing.get_context(method).Pool(2) as pool:
        results = pool.starmap_async(_generate_twice, [(model, 1), (model, 2)]).get(timeout=120)
    for (stamps, runtime), want in zip(results, expected):
        assert runtime == "litert"
        np.testing.assert_array_equal(stamps, want)


def test_changed_generator_is_refused_on_unpickling(bundle, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(bundle, copy)
    data = pickle.dumps(galsim_vae.load_model(copy))
    from galsim_vae.bundle.export import export_bundle

    export_bundle(copy, batch=8)                 # another generator, checksums refreshed
    with pytest.raises(BundleError, match="decoder_b16.tflite"):
        pickle.loads(data)
