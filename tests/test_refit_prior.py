"""``galsim-vae refit-prior``: a bundle's flow prior fitted anew, the networks unchanged."""

from __future__ import annotations

import numpy as np
import pytest

import galsim_vae
from galsim_vae.bundle import load_bundle, read_bundle
from galsim_vae.cli import main
from galsim_vae.data import Dataset

from conftest import write_tiny_dataset

@pytest.fixture
def untrained_bundle(tiny_dataset, tmp_path):
    """An untrained zphot-conditioned cvae2 bundle (32x32, latent 4, N(0, I) prior)
    described like the tiny data set (its flux scale and zphot standardisation)."""
    from galsim_vae.bundle import save_bundle
    from galsim_vae.models import build_model

    data = Dataset(tiny_dataset)
    model = build_model("cvae2", stamp_size=32, latent_size=4, channels=[4, 8],
                        n_conditions=1)
    return save_bundle(model, tmp_path / "plain", name="plain", flux_scale=data.flux_scale,
                       flux_units="counts/s", pixel_scale=data.pixel_scale,
                       conditions=[data.condition("zphot")], psf_free=True)


FLOW = ["--flow-couplings", "2", "--flow-units", "8,8", "--flow-epochs", "3"]


def test_refit_prior_fits_a_flow_to_the_training_encodings(untrained_bundle, tiny_dataset,
                                                           tmp_path, capsys):
    """The copy decodes any latent as the source does, carries a flow standardised on the
    training split's encodings (cached for a second refit), and records the fit."""
    out, cache = tmp_path / "refit", tmp_path / "cache"
    assert main(["--quiet", "refit-prior", str(untrained_bundle), str(tiny_dataset), "--out",
                 str(out), *FLOW, "--flow-orientations", "2", "--seed", "5", "--cache-dir",
                 str(cache)]) == 0
    printed = capsys.readouterr().out
    assert "flow prior of 2 affine couplings (8,8) fitted to 2 orientation(s)" in printed
    source, refit = galsim_vae.load_model(untrained_bundle), galsim_vae.load_model(out)
    assert read_bundle(untrained_bundle).prior.kind != "flow"
    assert read_bundle(out).prior.kind == "flow"
    latents = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    zphot = np.full((5, 1), source.conditions[0].mean)
    np.testing.assert_allclose(refit.decode_batch(latents, zphot, from_noise=False),
                               source.decode_batch(latents, zphot, from_noise=False),
                               rtol=1e-6, atol=1e-8)
    record = read_bundle(out).training["prior_refit"]
    assert (record["couplings"], record["units"], record["orientations"], record["seed"]) == (
        2, [8, 8], 2, 5)
    assert np.isfinite(record["nll"]) and 1 <= record["best_epoch"] <= 3
    train_file = [p for p in cache.iterdir() if p.name.startswith("encodings_train_")]
    assert len(train_file) == 1
    with np.load(train_file[0]) as saved:
        encoded = saved["latents"]
    n_train = Dataset(tiny_dataset).indices("train", require_finite=("zphot",)).size
    assert encoded.shape == (2 * n_train, 4)
    network, _ = load_bundle(out)
    np.testing.assert_allclose(network.flow_prior.shift.numpy(), encoded.mean(axis=0),
                               rtol=1e-5, atol=1e-6)
    # a second refit with other flow settings reads the encodings back
    before = {p.name: p.stat().st_mtime_ns for p in cache.iterdir()}
    assert main(["--quiet", "refit-prior", str(untrained_bundle), str(tiny_dataset), "--out",
                 str(out), "--flow-couplings", "3", "--flow-units", "8,8", "--flow-epochs",
                 "2", "--flow-orientations", "2", "--seed", "5", "--cache-dir", str(cache),
                 "--overwrite"]) == 0
    assert {p.name: p.stat().st_mtime_ns for p in cache.iterdir()} == before
    assert read_bundle(out).training["prior_refit"]["couplings"] == 3
    # spline couplings: recorded, rebuilt from the bundle, and the default of a next refit
    assert main(["--quiet", "refit-prior", str(untrained_bundle), str(tiny_dataset), "--out",
                 str(out), *FLOW, "--flow-spline-bins", "4", "--flow-orientations", "2",
                 "--seed", "5", "--cache-dir", str(cache), "--overwrite"]) == 0
    assert "2 spline (4 bins) couplings" in capsys.readouterr().out
    assert read_bundle(out).training["prior_refit"]["spline_bins"] == 4
    assert load_bundle(out)[0].flow_prior.spline_bins == 4
    again = tmp_path / "again"
    assert main(["--quiet", "refit-prior", str(out), str(tiny_dataset), "--out", str(again),
                 "--flow-epochs", "1", "--cache-dir", str(cache)]) == 0
    assert load_bundle(again)[0].flow_prior.spline_bins == 4
    assert main(["--quiet", "refit-prior", str(out), str(tiny_dataset), "--out", str(again),
                 "--flow-spline-bins", "1", "--overwrite"]) == 2
    assert "spline bins must be 0 (affine couplings) or >= 2, got 1" in capsys.readouterr().err
    # the flow's epoch chosen by its decoded samples' morphology, scored every 5 epochs
    assert main(["--quiet", "refit-prior", str(untrained_bundle), str(tiny_dataset), "--out",
                 str(out), "--flow-couplings", "2", "--flow-units", "8,8", "--flow-epochs",
                 "6", "--flow-orientations", "2", "--seed", "5", "--cache-dir", str(cache),
                 "--flow-select", "morphology", "--overwrite"]) == 0
    record = read_bundle(out).training["prior_refit"]
    assert record["select"] == "morphology" and [e for e, _ in record["scores"]] == [5, 6]
    assert record["best_epoch"] in (5, 6) and all(np.isfinite(v) for _, v in record["scores"])
    # or by its samples observed like the validation galaxies (PSF, noise, conditions)
    assert main(["--quiet", "refit-prior", str(untrained_bundle), str(tiny_dataset), "--out",
                 str(out), "--flow-couplings", "2", "--flow-units", "8,8", "--flow-epochs",
                 "5", "--flow-orientations", "2", "--seed", "5", "--cache-dir", str(cache),
                 "--flow-select", "observed", "--overwrite"]) == 0
    record = read_bundle(out).training["prior_refit"]
    assert record["select"] == "observed" and [e for e, _ in record["scores"]] == [5]
    assert all(np.isfinite(v) and v >= 0 for _, v in record["scores"])
    # a condition-shifted flow: started at the encodings' regression on the conditions,
    # recorded, and the default of a next refit
    assert main(["--quiet", "refit-prior", str(untrained_bundle), str(tiny_dataset), "--out",
                 str(out), *FLOW, "--flow-orientations", "2", "--seed", "5", "--cache-dir",
                 str(cache), "--flow-condition-shift", "--overwrite"]) == 0
    assert "2 affine couplings (8,8) and a shift linear in the conditions fitted" in capsys.readouterr().out
    assert read_bundle(out).training["prior_refit"]["condition_shift"] is True
    flow = load_bundle(out)[0].flow_prior
    with np.load(train_file[0]) as saved:
        design = np.c_[saved["conditions"], np.ones(len(saved["conditions"]))]
        regression = np.linalg.lstsq(design, saved["latents"], rcond=None)[0]
    assert flow.condition_shift
    np.testing.assert_allclose(flow.condition_weights.numpy(), regression[:1], atol=0.05)
    assert main(["--quiet", "refit-prior", str(out), str(tiny_dataset), "--out", str(again),
                 "--flow-epochs", "1", "--cache-dir", str(cache), "--overwrite"]) == 0
    assert load_bundle(again)[0].flow_prior.condition_shift
    # fresh posterior samples each epoch, drawn from the cached centres and widths:
    # recorded and the default of a next refit; a cache written before the widths were
    # kept (latents only) is encoded anew
    with np.load(train_file[0]) as saved:
        np.savez(train_file[0], latents=saved["latents"], conditions=saved["conditions"])
    assert main(["--quiet", "refit-prior", str(untrained_bundle), str(tiny_dataset), "--out",
                 str(out), *FLOW, "--flow-orientations", "2", "--seed", "5", "--cache-dir",
                 str(cache), "--flow-fresh-samples", "--overwrite"]) == 0
    assert "fitted to fresh posterior samples of 2 orientation(s)" in capsys.readouterr().out
    with np.load(train_file[0]) as saved:
        assert saved["centres"].shape == saved["scales"].shape == (2 * n_train, 4)
        assert np.all(saved["scales"] > 0)
    assert read_bundle(out).training["prior_refit"]["fresh_samples"] is True
    assert main(["--quiet", "refit-prior", str(out), str(tiny_dataset), "--out", str(again),
                 "--flow-epochs", "1", "--cache-dir", str(cache), "--overwrite"]) == 0
    assert read_bundle(again).training["prior_refit"]["fresh_samples"] is True
    # rows weighed by their conditions' inverse density (with an epoch chosen by a score):
    # recorded, the default of a next refit; a power outside 0-1 is refused before any
    # encoding
    assert main(["--quiet", "refit-prior", str(untrained_bundle), str(tiny_dataset), "--out",
                 str(out), *FLOW, "--flow-orientations", "2", "--seed", "5", "--cache-dir",
                 str(cache), "--flow-balance", "0.5", "--flow-select", "morphology",
                 "--overwrite"]) == 0
    assert read_bundle(out).training["prior_refit"]["balance"] == 0.5
    assert read_bundle(out).training["prior_refit"]["scores"]       # weighted and scored
    assert main(["--quiet", "refit-prior", str(out), str(tiny_dataset), "--out", str(again),
                 "--flow-epochs", "1", "--cache-dir", str(cache), "--overwrite"]) == 0
    assert read_bundle(again).training["prior_refit"]["balance"] == 0.5
    assert main(["--quiet", "refit-prior", str(out), str(tiny_dataset), "--out", str(again),
                 "--flow-balance", "1.5", "--overwrite"]) == 2
    assert "flow balance must be 0 (off) to 1, got 1.5" in capsys.readouterr().err


def test_refit_prior_fits_each_galaxys_canonical_orientation(untrained_bundle, tiny_dataset,
                                                              tmp_path, capsys):
    """--flow-orientation canonical: only each training galaxy's canonical pair (the two
    turns whose stamp has g1, g2 >= 0) is encoded, and the flow is fitted to them (its
    standardisation is their mean); --flow-orientations 1 keeps the first of the pair;
    recorded, and the default of a next refit; upright-sampling bundles refused."""
    from galsim_vae.bundle.edit import with_generation_settings

    out, again, cache = tmp_path / "canon", tmp_path / "again", tmp_path / "cache"
    assert main(["--quiet", "refit-prior", str(untrained_bundle), str(tiny_dataset), "--out",
                 str(out), "--flow-orientation", "canonical", *FLOW]) == 2
    assert "samples galaxies upright (sample_symmetry 'none')" in capsys.readouterr().err
    assert not out.exists()
    turning = with_generation_settings(untrained_bundle, tmp_path / "turning",
                                       sample_symmetry="isotropic")
    n_train = Dataset(tiny_dataset).indices("train", require_finite=("zphot",)).size
    for copies, words in ((8, "the canonical orientation pair of each galaxy"),
                          (1, "the first canonical orientation of each galaxy")):
        assert main(["--quiet", "refit-prior", str(turning), str(tiny_dataset), "--out",
                     str(out), *FLOW, "--flow-orientations", str(copies), "--seed", "5",
                     "--cache-dir", str(cache / str(copies)), "--flow-orientation",
                     "canonical", "--overwrite"]) == 0
        assert words in capsys.readouterr().out
        assert read_bundle(out).training["prior_refit"]["orientation"] == "canonical"
        (train_file,) = (cache / str(copies)).glob("encodings_train_*.npz")
        with np.load(train_file) as saved:
            latents = saved["latents"]
        assert len(latents) == min(copies, 2) * n_train
        np.testing.assert_allclose(load_bundle(out)[0].flow_prior.shift.numpy(),
                                   latents.mean(axis=0), rtol=1e-5, atol=1e-6)
    assert main(["--quiet", "refit-prior", str(out), str(tiny_dataset), "--out", str(again),
                 "--flow-epochs", "1", "--seed", "5", "--cache-dir", str(cache / "1")]) == 0
    assert read_bundle(again).training["prior_refit"]["orientation"] == "canonical"
    assert len(list((cache / "1").glob("encodings_train_*.npz"))) == 1     # read back


def test_refit_prior_refines_encodings_with_the_rate_asked(untrained_bundle, tiny_dataset,
                                                           tmp_path, capsys):
    """--flow-refine-rate: the encodings' refinement takes Adam steps of that size (a
    smaller rate moves the centres less), is recorded and inherited; a rate <= 0 is
    refused with exit 2."""
    out, again, cache = tmp_path / "gentle", tmp_path / "bold", tmp_path / "cache"
    common = [*FLOW, "--flow-refine-steps", "2", "--cache-dir", str(cache), "--seed", "3"]
    assert main(["--quiet", "refit-prior", str(untrained_bundle), str(tiny_dataset), "--out",
                 str(out), "--flow-refine-rate", "0.01", *common]) == 0
    assert read_bundle(out).training["prior_refit"]["refine_rate"] == 0.01
    assert main(["--quiet", "refit-prior", str(untrained_bundle), str(tiny_dataset), "--out",
                 str(again), *common]) == 0
    assert read_bundle(again).training["prior_refit"]["refine_rate"] == 0.3
    assert main(["--quiet", "refit-prior", str(untrained_bundle), str(tiny_dataset), "--out",
                 str(again), *FLOW, "--cache-dir", str(cache), "--seed", "3",
                 "--flow-refine-steps", "0", "--overwrite"]) == 0
    moved = {}
    files = sorted(cache.glob("encodings_train_*.npz"), key=lambda f: f.stat().st_mtime)
    assert len(files) == 3
    with np.load(files[2]) as plain:
        for name, found in zip(("gentle", "bold"), files[:2]):
            with np.load(found) as refined:
                moved[name] = np.abs(refined["centres"] - plain["centres"]).max(axis=1)
    # two Adam steps move each coordinate by at most ~2 x rate (and the first by ~rate)
    assert (moved["gentle"] <= 2 * 0.01 * 1.01).all() and moved["gentle"].max() > 0.005
    assert moved["bold"].max() > 0.25
    assert main(["--quiet", "refit-prior", str(out), str(tiny_dataset), "--out",
                 str(tmp_path / "inherit"), *FLOW]) == 0
    assert read_bundle(tmp_path / "inherit").training["prior_refit"]["refine_rate"] == 0.01
    assert main(["--quiet", "refit-prior", str(out), str(tiny_dataset), "--out",
                 str(tmp_path / "bad"), "--flow-refine-rate", "0", *FLOW]) == 2
    err = capsys.readouterr().err
    assert "the flow's refine rate must be > 0, got 0.0" in err and "Traceback" not in err
    assert not (tmp_path / "bad").exists()


def test_refit_prior_adds_another_data_sets_galaxies_in_the_bundles_normalisation(
        untrained_bundle, tiny_dataset, tmp_path, capsys):
    """--extra-data: a data set with its own flux scale and zphot statistics is encoded
    as the bundle's networks saw their training set (pixels over the bundle's flux scale,
    zphot standardised with the bundle's mean and std); the flow is fitted to both data
    sets' training encodings; other stamps or the refit's own data set are refused."""
    from galsim_vae.data import make_tf_dataset

    other = write_tiny_dataset(tmp_path / "other", n=40, seed=9)
    assert Dataset(other).flux_scale != Dataset(tiny_dataset).flux_scale
    out, cache = tmp_path / "refit", tmp_path / "cache"
    assert main(["--quiet", "refit-prior", str(untrained_bundle), str(tiny_dataset), "--out",
                 str(out), "--extra-data", str(other), *FLOW, "--flow-orientations", "1",
                 "--seed", "5", "--cache-dir", str(cache)]) == 0
    assert "fitted to 1 orientation(s) of 2 data sets" in capsys.readouterr().out
    assert read_bundle(out).training["prior_refit"]["extra_data"] == [str(other.resolve())]
    spec = read_bundle(untrained_bundle)
    (zphot,) = spec.conditions
    view = Dataset(other).normalised_as(spec.flux.scale, spec.conditions)
    batch = next(iter(make_tf_dataset(view, "train", shuffle=False, conditions=("zphot",),
                                      batch_size=1000, with_psf=False)))
    rows = batch["index"].numpy()
    np.testing.assert_allclose(batch["image"].numpy()[..., 0],
                               Dataset(other).images[rows] / spec.flux.scale, rtol=1e-6)
    raw_z = np.asarray(Dataset(other).catalog["zphot"])[rows]
    np.testing.assert_allclose(batch["conditions"].numpy()[:, 0],
                               (raw_z - zphot.mean) / zphot.std, rtol=1e-5)
    train_files = sorted(cache.glob("encodings_train_*.npz"))
    assert len(train_files) == 2
    latents = []
    for path in train_files:
        with np.load(path) as saved:
            latents.append(saved["latents"])
    assert sorted(map(len, latents)) == sorted(
        [Dataset(d).indices("train", require_finite=("zphot",)).size
         for d in (tiny_dataset, other)])
    np.testing.assert_allclose(load_bundle(out)[0].flow_prior.shift.numpy(),
                               np.concatenate(latents).mean(axis=0), rtol=1e-5, atol=1e-6)
    bigger = write_tiny_dataset(tmp_path / "bigger", n=20, stamp_size=48)
    for extra, message in [(bigger, f"extra data set {str(bigger)!r}: stamp size (pixels) is "
                                     "48, the bundle's is 32"),
                           (tiny_dataset, "is the data set the flow is refitted on already")]:
        assert main(["--quiet", "refit-prior", str(untrained_bundle), str(tiny_dataset),
                     "--out", str(tmp_path / "refused"), "--extra-data", str(extra),
                     *FLOW]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err
        assert not (tmp_path / "refused").exists()


def test_refit_prior_refuses_another_standardisation_and_its_own_folder(
        untrained_bundle, tmp_path, capsys):
    """Encodings of stamps scaled or standardised otherwise are not the training set's:
    refused with the data set, the quantity and both values, exit 2, nothing written."""
    other = write_tiny_dataset(tmp_path / "other", n=40, seed=9)
    out = tmp_path / "refit"
    assert main(["--quiet", "refit-prior", str(untrained_bundle), str(other), "--out", str(out),
                 *FLOW]) == 2
    err = capsys.readouterr().err
    assert f"data set {str(other)!r}: flux scale is" in err and "the bundle's is" in err
    assert "Traceback" not in err
    assert not out.exists()
    assert main(["--quiet", "refit-prior", str(untrained_bundle), str(other), "--out",
                 str(untrained_bundle), *FLOW]) == 2
    assert "is the source bundle" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["refit-prior", str(untrained_bundle), str(other)])       # --out is required


def test_flow_fit_keeps_the_epoch_a_score_prefers():
    """With ``score``, the fit keeps the weights of the best-scoring epoch, not the last
    one nor the one of lowest held-out NLL."""
    from galsim_vae.models.prior_fit import fit_flow_prior

    rng = np.random.default_rng(3)
    latents = rng.normal(size=(256, 4)).astype(np.float32) * [1, 2, 0.5, 1]
    values, snapshots = iter([3.0, 1.0, 2.0]), []

    def score(flow):
        snapshots.append([w.numpy().copy() for w in flow.trainable_variables])
        return next(values)

    flow = fit_flow_prior(latents, epochs=3, n_couplings=2, hidden_units=(8,), seed=1,
                          validation=(latents[:64], None), score=score, score_every=1)
    assert flow.best_epoch == 2 and [e for e, _ in flow.scores] == [1, 2, 3]
    for kept, second in zip(flow.trainable_variables, snapshots[1]):
        np.testing.assert_array_equal(kept.numpy(), second)


def test_morphology_distance_sees_rounder_and_smaller_galaxies():
    """Zero against itself; a population 10% rounder in one redshift bin shows in the mean
    |g|, its KS statistic, and the per-bin size only when the sizes change."""
    from galsim_vae.training.flow_selection import condition_bins, morphology_distance

    rng = np.random.default_rng(0)
    n = 4000
    g, size, ok = rng.uniform(0, 0.6, n), rng.lognormal(-1.5, 0.4, n), np.ones(n, bool)
    bins = condition_bins(rng.normal(size=(n, 1)), n)
    assert set(bins) == set(range(5))
    same = morphology_distance(g, size, ok, g, size, ok, bins)
    assert all(v == pytest.approx(0.0, abs=1e-12) for v in same.values())
    smaller = np.where(bins == 4, 0.8 * size, size)
    other = morphology_distance(0.9 * g, smaller, ok, g, size, ok, bins)
    assert other["mean_g"] == pytest.approx(-0.1) and other["ks_g"] > 0.05
    assert other["worst_bin_size"] == pytest.approx(0.2)
    assert abs(other["mean_size"]) < 0.05


def test_observed_distance_counts_in_target_tolerances():
    """Zero against itself; sizes 2% larger are 2 tolerances of the mean-size target, a
    10% flux deficit in one bin 2 tolerances of the per-bin target, and 3% more failed
    measurements 3 units; KS statistics are in units of the 0.05 limit."""
    from scipy.stats import ks_2samp

    from galsim_vae.training.flow_selection import condition_bins, observed_distance

    rng = np.random.default_rng(1)
    n = 4000
    data = {"g": rng.uniform(0, 0.6, n), "size": rng.lognormal(-1.5, 0.4, n),
            "flux": rng.lognormal(1.5, 1.0, n), "ok": np.ones(n, bool)}
    bins = condition_bins(rng.normal(size=(n, 1)), n)
    same = observed_distance(data, data, bins)
    assert all(v == pytest.approx(0.0, abs=1e-12) for v in same.values())
    failed = np.zeros(n, bool)
    failed[:120] = True
    drawn = {"g": data["g"], "size": 1.02 * data["size"],
             "flux": np.where(bins == 2, 0.9 * data["flux"], data["flux"]), "ok": ~failed}
    other = observed_distance(drawn, data, bins)
    assert other["mean_size"] == pytest.approx(2.0, abs=0.15)
    assert other["worst_bin_flux"] == pytest.approx(2.0, abs=0.1)
    assert other["failed"] == pytest.approx(3.0)
    assert other["ks_size"] == pytest.approx(
        ks_2samp(drawn["size"][~failed], data["size"]).statistic
        / 0.05)


def test_observed_score_pools_the_validation_splits_of_every_data_set(
        untrained_bundle, tiny_dataset, tmp_path):
    """The observed-morphology score draws its galaxies from the validation splits of the
    refit's data set and its extra data sets together (each in the bundle's
    normalisation), all of them when there are fewer than ``n``, ``n`` otherwise; the
    score of a flow is finite, non-negative and the same on a second call."""
    from galsim_vae.training.flow_selection import (_reference_blocks,
                                                    observed_morphology_score)

    network, spec = load_bundle(untrained_bundle)
    other = Dataset(write_tiny_dataset(tmp_path / "other", n=60, seed=9)).normalised_as(
        spec.flux.scale, spec.conditions)
    sets = [Dataset(tiny_dataset), other]
    valid = [d.indices("validation", require_finite=("zphot",)) for d in sets]
    assert all(v.size for v in valid)
    every = _reference_blocks(sets, ["zphot"], 10_000, np.random.default_rng(0))
    assert [b["dataset"] for b in every] == sets
    for block, rows in zip(every, valid):
        np.testing.assert_array_equal(block["rows"], rows)
        assert block["data"]["g"].shape == rows.shape
    some = _reference_blocks(sets, ["zphot"], 10, np.random.default_rng(0))
    assert sum(b["rows"].size for b in some) == 10
    for block, rows in zip(some, valid):
        assert np.isin(block["rows"], rows).all()
    # the extra set's conditions in the bundle's standardisation, not its own
    (zphot,) = spec.conditions
    raw = np.asarray(other.catalog["zphot"], dtype=float)[every[1]["rows"]]
    np.testing.assert_allclose(every[1]["conditions"][:, 0], (raw - zphot.mean) / zphot.std,
                               rtol=1e-5)

    class Identity:
        def transform(self, eps, cond):
            return eps

    score = observed_morphology_score(network, sets, ["zphot"], psf_free=spec.psf_free,
                                      n=10_000, seed=1)
    first = score(Identity())
    assert np.isfinite(first) and first >= 0 and score(Identity()) == first
