"""The evaluation report: end to end on tiny bundles, metrics, chi-square, mismatches, CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from conftest import write_tiny_dataset
from galsim_vae.errors import InputDataError, OutputExistsError
from galsim_vae.evaluation.reconstruction import chi2_per_pixel
from galsim_vae.evaluation.report.inputs import check_compatibility, flux_unit_factor

#: Tiny, fast training settings (a few steps: the report is tested, not the model).
TINY = dict(channels=[4, 8], latent_size=4, batch_size=16, max_steps_per_epoch=2, epochs=2,
            seed=0)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
#: Top-level keys of metrics.json every report has.
METRIC_KEYS = {"bundle", "dataset", "seed", "training", "reconstruction", "generation",
               "latent", "prior_typicality", "morphology", "truth", "targets", "anchor",
               "figures", "notes", "elapsed_s"}


@pytest.fixture(scope="module")
def bundles(tmp_path_factory, tiny_dataset):
    """A conditional PSF-free bundle (cvae2, flow prior) and an unconditional one whose
    samples carry the HST PSF (vae, N(0, I) prior)."""
    from galsim_vae.training import train

    root = tmp_path_factory.mktemp("evaluate_bundles")
    cvae2 = train(tiny_dataset, root / "cvae2", architecture="cvae2", flow_prior=True,
                  flow_prior_epochs=2, **TINY)
    # samples carry the PSF: the report adds noise only and shows no PSF-free column
    vae = train(tiny_dataset, root / "vae", architecture="vae", flow_prior=False,
                psf_free=False, **TINY)
    return {"cvae2": cvae2, "vae": vae}


@pytest.fixture(scope="module")
def conditional_report(bundles, tiny_dataset, tmp_path_factory):
    from galsim_vae.evaluation.report import evaluate

    out = tmp_path_factory.mktemp("reports") / "cvae2_report"
    return out, evaluate(bundles["cvae2"], tiny_dataset, out, seed=3, n_isotropy=400)


def _check_png(path):
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC, path
    assert len(data) > 5000, f"{path} is only {len(data)} bytes"
    import matplotlib.image

    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    assert np.ptp(image[..., :3]) > 0.1          # not a blank canvas


def _finite_numbers(tree, where="metrics"):
    """Every number in ``tree`` (None counts as non-finite)."""
    if isinstance(tree, dict):
        for key, value in tree.items():
            yield from _finite_numbers(value, f"{where}.{key}")
    elif isinstance(tree, list):
        for i, value in enumerate(tree):
            yield from _finite_numbers(value, f"{where}[{i}]")
    elif isinstance(tree, (int, float)) and not isinstance(tree, bool):
        yield where, math.isfinite(tree)


# ------------------------------------------------------------------------ end to end
def test_conditional_report_writes_every_figure(conditional_report):
    out, metrics = conditional_report
    expected = {"loss", "reconstructions", "generated", "generated_observed", "redshift_strip",
                "latent", "morphology", "redshift_bins"}
    assert set(metrics["figures"]) == expected
    report = (out / "report.md").read_text()
    for name in metrics["figures"].values():
        _check_png(out / name)
        assert f"]({name})" in report, f"report.md does not show {name}"
    assert not [p for p in out.parent.iterdir() if ".tmp-" in p.name]
    assert "Lanusse et al. 2021" in report and "0.2578" in report and "0.2481" in report


def test_metrics_json_keys_and_finite_values(conditional_report, tiny_dataset):
    out, metrics = conditional_report
    stored = json.loads((out / "metrics.json").read_text())
    assert stored == json.loads(json.dumps(metrics))
    assert METRIC_KEYS | {"redshift_strip", "redshift_bins"} <= set(stored)
    assert stored["seed"] == 3 and stored["generation"]["seed"] == 3
    assert stored["dataset"]["heldout_split"] == "test"
    from galsim_vae.data import Dataset

    n_test = Dataset(tiny_dataset).indices("test").size
    assert stored["dataset"]["n_heldout"] == stored["reconstruction"]["n_galaxies"] == n_test
    # default: as many generated galaxies as held-out ones
    assert stored["generation"]["n_generated"] == n_test
    assert stored["training"]["has_history"] and stored["training"]["n_epochs"] == 2
    for column in ("flux", "sigma_arcsec", "hlr_arcsec", "g", "rho4"):
        row = stored["morphology"]["statistics"][column]
        assert row["n_generated"] == n_test and row["n_reference"] == n_test
        assert 0.0 <= row["ks_statistic"] <= 1.0
        assert 0.0 < row["mean_ratio_sem"] < np.inf
    sem_g = stored["morphology"]["statistics"]["g"]["mean_ratio_sem"]
    assert f"mean |g| {sem_g:.2%}" in (out / "report.md").read_text()
    assert len(stored["redshift_bins"]["bin_low"]) == 5
    assert sum(stored["redshift_bins"]["n_reference"]) == n_test
    strip = stored["redshift_strip"]
    conditions = stored["bundle"]["conditions"][0]
    assert strip["redshift"][0] == pytest.approx(conditions["min"])
    assert strip["redshift"][-1] == pytest.approx(conditions["max"])
    assert len(stored["targets"]) == 8
    assert all(isinstance(t["met"], bool) for t in stored["targets"])
    chi2_target = stored["targets"][-1]
    assert chi2_target["value"] == pytest.approx(stored["reconstruction"]["chi2_per_pixel"])
    assert chi2_target["met"] == (0.9 <= chi2_target["value"] <= 1.2)
    bad = [where for where, finite in _finite_numbers(stored) if not finite]
    assert not bad, f"non-finite metrics: {bad}"
    assert stored["truth"] is None and stored["dataset"]["simulated_survey"] is False
    # a data set without a flux-limited sample record: one fresh noise draw each
    selection = stored["generation"]["selection"]
    assert selection["active"] is False and selection["cuts"] == "none"
    assert selection["fraction_redrawn"] == 0 and selection["n_not_selected"] == 0
    assert stored["morphology"]["without_selection"] is None


def _chi2_by_hand(bundle, dataset_path):
    """Mean reconstruction chi-square per pixel of the test split, with numpy/scipy: pixels
    in the bundle's network units (image / bundle flux scale), PSF by scipy FFT."""
    import tensorflow as tf

    from galsim_vae.bundle import load_bundle
    from galsim_vae.data import Dataset
    from galsim_vae.evaluation.render import convolve_psf

    model, spec = load_bundle(bundle)
    data = Dataset(dataset_path)
    rows = data.indices("test")
    scale = spec.flux.scale
    images = np.asarray(data.images[rows], dtype=np.float64) / scale
    sigma = np.sqrt(np.asarray(data.catalog["noise_variance"])[rows]) / scale
    cond = spec.conditions[0]
    z = (np.asarray(data.catalog["zphot"])[rows] - cond.mean) / cond.std
    cond_t = tf.constant(z[:, None], tf.float32)
    latent = model.encode(tf.constant(images[..., None], tf.float32), cond_t).mean()
    profile = model.decode(latent, cond_t).numpy()[..., 0]
    predicted = convolve_psf(profile, np.asarray(data.psfs[rows]))
    size = images.shape[-1]
    return np.mean([np.sum((images[i] - predicted[i]) ** 2) / sigma[i] ** 2 / size**2
                    for i in range(rows.size)])


def test_report_chi2_matches_hand_computation(conditional_report, bundles, tiny_dataset):
    _, metrics = conditional_report
    assert metrics["reconstruction"]["chi2_per_pixel"] == pytest.approx(
        _chi2_by_hand(bundles["cvae2"], tiny_dataset), rel=1e-4)


def test_other_flux_scale_is_converted(bundles, tmp_path):
    """A data set whose flux scale differs from the bundle's: pixels go to the bundle's
    network units (the hand computation divides by the bundle's scale)."""
    from galsim_vae.data import Dataset
    from galsim_vae.evaluation.report import evaluate

    other = write_tiny_dataset(tmp_path / "other", n=48, seed=7)
    metrics = evaluate(bundles["cvae2"], other, tmp_path / "report", n_generated=6,
                       n_isotropy=0)
    assert Dataset(other).flux_scale != pytest.approx(metrics["bundle"]["flux_scale"], rel=1e-3)
    assert any("flux scale" in note for note in metrics["notes"])
    assert metrics["reconstruction"]["chi2_per_pixel"] == pytest.approx(
        _chi2_by_hand(bundles["cvae2"], other), rel=1e-4)


def test_unconditional_report_nonparametric_small_cli(bundles, tiny_dataset, tmp_path, capsys):
    from galsim_vae.cli import main

    out = tmp_path / "vae_report"
    assert main(["--quiet", "evaluate", str(bundles["vae"]), "--data", str(tiny_dataset),
                 "--out", str(out), "--max-heldout", "4", "--n-generated", "5",
                 "--nonparametric", "--seed", "1", "--batch-size", "3",
                 "--n-isotropy", "50"]) == 0
    assert "targets met" in capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["seed"] == 1
    assert metrics["bundle"]["psf_free"] is False and metrics["bundle"]["prior"] == "normal"
    assert "psf*profile" not in metrics["reconstruction"]["definition"]
    assert "PSF-free profile" not in (out / "report.md").read_text()
    # the same seed gives the same numbers (overwrite replaces the report)
    from galsim_vae.evaluation.report import evaluate

    again = evaluate(bundles["vae"], tiny_dataset, out, max_heldout=4, n_generated=5,
                     nonparametric=True, seed=1, batch_size=3, overwrite=True, n_isotropy=50)
    for key in ("reconstruction", "latent", "targets", "generation", "fidelity"):
        assert again[key] == metrics[key], key
    assert again["morphology"]["statistics"] == metrics["morphology"]["statistics"]
    assert set(metrics["figures"]) == {"loss", "reconstructions", "generated",
                                       "generated_observed", "latent", "morphology"}
    assert not (out / "redshift_strip.png").exists()
    for name in metrics["figures"].values():
        _check_png(out / name)
    assert metrics["dataset"]["n_heldout"] == 4 and metrics["generation"]["n_generated"] == 5
    assert any("random subset of 4" in note for note in metrics["notes"])
    assert metrics["morphology"]["nonparametric"] is True
    assert {"gini", "m20", "concentration", "asymmetry"} <= set(metrics["morphology"]["columns"])
    gini = metrics["morphology"]["statistics"]["gini"]
    assert gini["n_reference"] == 4          # statmorph measured every held-out stamp
    if gini["n_generated"]:                  # (an untrained model's flat stamps may fail)
        assert 0.0 < gini["mean_reference"] < 1.0
    assert metrics["latent"]["colour"] == "zphot"           # the data set has zphot
    assert metrics["latent"]["tsne_perplexity"] is None     # too few galaxies for t-SNE
    assert len(metrics["targets"]) == 6                     # no per-redshift-bin targets
    assert "redshift_bins" not in metrics


def test_existing_output_refused(conditional_report, bundles, tiny_dataset):
    from galsim_vae.evaluation.report import evaluate

    out, _ = conditional_report
    with pytest.raises(OutputExistsError, match="overwrite"):
        evaluate(bundles["cvae2"], tiny_dataset, out)


# --------------------------------------------------------------------- chi-square helper
def test_chi2_per_pixel_by_hand():
    data = np.full((2, 4, 4), 2.0)
    model = np.ones((2, 4, 4))
    # (2 - 1)^2 / 0.5^2 = 4 in every pixel; / 1^2 = 1
    assert chi2_per_pixel(data, model, [0.5, 1.0]) == pytest.approx([4.0, 1.0])
    rng = np.random.default_rng(0)
    truth = rng.uniform(0, 1, (3, 8, 8))
    noisy = truth + rng.normal(0, 0.1, truth.shape)
    expected = [((noisy[i] - truth[i]) ** 2).sum() / 0.1**2 / 64 for i in range(3)]
    assert chi2_per_pixel(noisy, truth, 0.1) == pytest.approx(expected)
    big = rng.normal(0, 0.1, (200, 16, 16))
    assert chi2_per_pixel(big, np.zeros_like(big), 0.1).mean() == pytest.approx(1.0, abs=0.02)
    with pytest.raises(InputDataError, match="noise_sigma"):
        chi2_per_pixel(data, model, 0.0)
    with pytest.raises(InputDataError, match=r"\(N, S, S\)"):
        chi2_per_pixel(data, model[:, :3], 1.0)


# ------------------------------------------------------------------- bundle vs data set
def test_mismatched_stamp_size_error_and_cli_exit(bundles, tmp_path, capsys):
    from galsim_vae.cli import main
    from galsim_vae.evaluation.report import evaluate

    other = write_tiny_dataset(tmp_path / "stamp40", n=24, stamp_size=40)
    out = tmp_path / "report"
    with pytest.raises(InputDataError, match=r"stamp sizes differ.*32x32.*40x40"):
        evaluate(bundles["cvae2"], other, out)
    assert main(["--quiet", "evaluate", str(bundles["cvae2"]), "--data", str(other),
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "galsim-vae evaluate: error: stamp sizes differ" in err and "--stamp-size 32" in err
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stamp40"]


def test_compatibility_checks_name_the_problem(bundles, tiny_dataset, tmp_path):
    from galsim_vae.bundle import BundleSpec, read_bundle
    from galsim_vae.data import Dataset

    spec = read_bundle(bundles["cvae2"])
    meta = spec.to_json()
    data = Dataset(tiny_dataset)
    ok = check_compatibility(spec, data)
    assert ok.condition_names == ("zphot",) and ok.unit_factor == 1.0
    assert ok.net_per_data == pytest.approx(1.0 / spec.flux.scale)
    changes = [
        ({"pixel_scale": 0.05}, "pixel scales differ"),
        ({"conditions": [{**meta["conditions"][0], "name": "lum"}]},
         r"no such column.*--column lum=COLUMN"),
        ({"flux": {"units": "electron/s", "scale": 1.0}}, "flux units differ"),
        ({"hyperparameters": {**meta["hyperparameters"], "psf_size": 21}}, "PSF sizes differ"),
    ]
    for change, message in changes:
        with pytest.raises(InputDataError, match=message):
            check_compatibility(BundleSpec.from_json({**meta, **change}, "changed"), data)
    # a data set whose condition column holds no finite value: named, and how to fill it
    import shutil

    from astropy.table import Table

    no_z = shutil.copytree(tiny_dataset, tmp_path / "no_zphot")
    table = Table.read(no_z / "catalog.fits")
    table["zphot"] = np.nan
    table.write(no_z / "catalog.fits", overwrite=True)
    with pytest.raises(InputDataError, match=r"no galaxy of the data set has a finite "
                                             r"'zphot'.*--column zphot=COLUMN"):
        check_compatibility(spec, Dataset(no_z))
    # a bundle in other units of the same kind: the pixels are converted
    converted = check_compatibility(BundleSpec.from_json(
        {**meta, "flux": {"units": "count/ms", "scale": 2.0}}, "changed"), data)
    assert converted.unit_factor == pytest.approx(1e-3)
    assert converted.net_per_data == pytest.approx(1e-3 / 2.0)
    assert any("multiplied by 0.001" in note for note in converted.notes)


def test_condition_range_notes():
    from galsim_vae.evaluation.report.inputs import condition_range_notes

    from types import SimpleNamespace

    from galsim_vae.conditions import Condition

    spec = SimpleNamespace(conditions=(Condition("zphot", mean=0.7, std=0.2, min=0.5, max=1.0),))
    notes = condition_range_notes(spec, np.array([[0.2], [0.7], [1.0], [1.5]]))
    assert notes == ["2 held-out galaxies have zphot outside the training range [0.5, 1]: "
                     "the model extrapolates there"]
    assert condition_range_notes(spec, np.array([[0.5], [0.9]])) == []
    assert condition_range_notes(SimpleNamespace(conditions=()), np.zeros((3, 0))) == []


def test_flux_unit_factor():
    assert flux_unit_factor("counts/s (F814W)", "counts/s  (f814w)") == 1.0
    assert flux_unit_factor("counts/s", "count/s") == 1.0
    assert flux_unit_factor("mJy", "Jy") == pytest.approx(1e-3)
    with pytest.raises(InputDataError, match="cannot be converted"):
        flux_unit_factor("counts/s (F814W, AB zero point 25.94)",
                         "counts/s (F606W, AB zero point 26.49)")
    with pytest.raises(InputDataError, match="cannot be converted"):
        flux_unit_factor("arbitrary", "counts/s")


# ------------------------------------------------------------------- simulation truth
def _fake_survey(folder, idents, flux, hlr):
    """A survey folder as simulate_survey leaves it (only the files the report reads)."""
    from astropy.table import Table

    folder.mkdir()
    (folder / "simulation.json").write_text("{}")
    Table({"IDENT": np.asarray(idents), "flux": np.asarray(flux),
           "hlr": np.asarray(hlr)}).write(folder / "truth.fits")
    return folder


def test_truth_comparison_matches_paired_galaxies(tmp_path):
    """Generated profiles drawn with the truth flux and size give ratios ~1 (round) and
    a larger circular-aperture radius than the circularised truth for elongated ones."""
    from types import SimpleNamespace

    import galsim

    from galsim_vae.evaluation.report.truth import compare_with_truth, find_truth_table

    idents, flux, hlr = [7, 8, 9], [2.0, 5.0, 1.0], [0.08, 0.12, 0.1]
    survey = _fake_survey(tmp_path / "survey", idents, flux, hlr)
    dataset = SimpleNamespace(meta={"source": {
        "kind": "cosmos", "catalog": str(survey / "real_galaxy_catalog_25.2.fits")}})
    truth_path = find_truth_table(dataset)
    assert truth_path == survey / "truth.fits"
    assert find_truth_table(SimpleNamespace(meta={"source": {"kind": "test"}})) is None
    (survey / "simulation.json").unlink()     # not a galsim-vae simulated survey
    assert find_truth_table(dataset) is None

    paired = np.array([8, 9, 9, 7, 12345])    # 12345 is not in the truth table
    row = {7: 0, 8: 1, 9: 2}

    def draw(q):
        return np.stack([
            galsim.Exponential(half_light_radius=hlr[row.get(i, 0)], flux=flux[row.get(i, 0)])
            .shear(q=q, beta=0.3 * galsim.radians).drawImage(nx=64, ny=64, scale=0.03).array
            for i in paired])

    round_result = compare_with_truth(truth_path, paired, draw(1.0), pixel_scale=0.03)
    assert round_result["n_matched"] == 4
    stats = round_result["statistics"]
    assert stats["flux"]["n_generated"] == stats["flux"]["n_reference"] == 4
    assert stats["flux"]["mean_reference"] == pytest.approx(np.mean([5.0, 1.0, 1.0, 2.0]))
    assert stats["flux"]["mean_ratio"] == pytest.approx(1.0, abs=0.01)
    assert stats["hlr_arcsec"]["mean_ratio"] == pytest.approx(1.0, abs=0.03)
    elongated = compare_with_truth(truth_path, paired, draw(0.4), pixel_scale=0.03)
    assert elongated["statistics"]["hlr_arcsec"]["mean_ratio"] > 1.1
    assert compare_with_truth(truth_path, np.array([1, 2]), draw(1.0)[:2],
                              pixel_scale=0.03) is None


# ---------------------------------------------------------------------- held-out set
def test_heldout_falls_back_to_validation_and_colours_by_nothing(tmp_path):
    """No test split: the validation split with a note; no zphot: nothing to colour by."""
    from galsim_vae.data import Dataset, DatasetWriter
    from galsim_vae.evaluation.report.inputs import load_heldout, select_heldout

    rng = np.random.default_rng(0)
    with DatasetWriter(tmp_path / "noz", max_galaxies=20, stamp_size=16, pixel_scale=0.03,
                       flux_units="counts/s", split_fractions=(0.5, 0.5, 0.0)) as writer:
        for i in range(20):
            writer.add(rng.normal(0, 0.01, (16, 16)) + 0.1, ident=i, noise_variance=1e-4)
    data = Dataset(tmp_path / "noz")
    rows, split, notes = select_heldout(data, ())
    assert split == "validation" and rows.size == data.indices("validation").size > 0
    assert any("test split is empty" in note for note in notes)
    from types import SimpleNamespace

    heldout = load_heldout(data, SimpleNamespace(conditions=()), rows, split, ())
    assert heldout.redshift is None and heldout.conditions is None
    assert heldout.noise_sigma == pytest.approx(np.full(rows.size, 0.01))
    subset, _, notes = select_heldout(data, (), max_heldout=3, seed=5)
    assert subset.size == 3 and np.all(np.isin(subset, rows)) and np.all(np.diff(subset) > 0)
    np.testing.assert_array_equal(subset, select_heldout(data, (), max_heldout=3, seed=5)[0])
    with pytest.raises(InputDataError, match="max_heldout"):
        select_heldout(data, (), max_heldout=0)
    everything, split, _ = select_heldout(data, (), split="all")
    assert split == "all" and everything.tolist() == list(range(20))
    train_rows, split, _ = select_heldout(data, (), split="train")
    assert split == "train" and train_rows.tolist() == data.indices("train").tolist()
    with pytest.raises(InputDataError, match="no galaxies in its test split"):
        select_heldout(data, (), split="test")
    with pytest.raises(InputDataError, match="split must be one of"):
        select_heldout(data, (), split="held-out")
    from galsim_vae.evaluation.plots import plot_latent_maps

    plot_latent_maps(rng.normal(size=(10, 2)), None, tmp_path / "latent.png", colour=None,
                     colour_label=None, explained=[0.7, 0.2])
    _check_png(tmp_path / "latent.png")


def test_training_data_notes():
    from types import SimpleNamespace

    from galsim_vae.evaluation.report.inputs import training_data_notes

    spec = SimpleNamespace(training={"data": {"path": "/surveys/sim20k"}})
    same, other = SimpleNamespace(path="/surveys/sim20k"), SimpleNamespace(path="/real/paltas")
    assert training_data_notes(spec, same, "test") == []
    assert "includes galaxies the model was trained on" in training_data_notes(spec, same,
                                                                               "all")[0]
    assert "unseen in training" in training_data_notes(spec, other, "all")[0]
    assert "does not record" in training_data_notes(SimpleNamespace(training={}), other,
                                                    "all")[0]


def test_prior_typicality_separates_prior_draws_from_outliers():
    """Encodings drawn from the prior itself are typical (~99% above the prior samples'
    1st percentile); encodings far out in the latent space are not."""
    from galsim_vae.evaluation.latent import prior_typicality
    from galsim_vae.models import build_model

    model = build_model("vae", stamp_size=16, latent_size=4, channels=[4])     # N(0, I)
    rng = np.random.default_rng(1)
    typical = prior_typicality(model, rng.standard_normal((4000, 4)), None, seed=2)
    assert typical["fraction_typical"] == pytest.approx(0.99, abs=0.01)
    assert typical["median_log_density"] == pytest.approx(
        typical["median_log_density_prior_samples"], abs=0.1)
    # log N(0 | 0, I_4) = -2 log(2 pi) = -3.68 nats: the density's peak
    assert typical["median_log_density"] < -2 * math.log(2 * math.pi)
    far = prior_typicality(model, np.full((50, 4), 4.0), None, seed=2)
    assert far["fraction_typical"] == 0.0 and far["n_galaxies"] == 50


def test_report_on_a_data_set_the_model_never_saw(bundles, tiny_dataset, tmp_path):
    """--split all on another data set (the real-galaxy use): every row is evaluated and
    the report says the galaxies are unseen in training."""
    from galsim_vae.cli import main
    from galsim_vae.data import Dataset

    other = write_tiny_dataset(tmp_path / "other", n=12, seed=8)
    out = tmp_path / "report_all"
    assert main(["--quiet", "evaluate", str(bundles["cvae2"]), "--data", str(other),
                 "--out", str(out), "--split", "all", "--n-generated", "6",
                 "--n-isotropy", "200"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["reconstruction"]["split"] == "all"
    assert metrics["reconstruction"]["n_galaxies"] == Dataset(other).n_galaxies == 12
    assert any("unseen in training" in note for note in metrics["notes"])
    assert 0.0 <= metrics["prior_typicality"]["fraction_typical"] <= 1.0
    assert "under the prior" in (out / "report.md").read_text()


def test_bundle_without_history_is_reported(tmp_path):
    from galsim_vae.evaluation.report import history_metrics

    notes = []
    assert history_metrics(tmp_path, tmp_path / "loss.png", notes) == {"has_history": False}
    assert notes == ["the bundle has no history.csv: no loss curves"]
    assert not (tmp_path / "loss.png").exists()


def test_simulated_survey_report_compares_with_truth(tmp_path):
    """simulate -> prepare cosmos -> train -> evaluate: the report finds the survey's
    truth.fits through the data set's provenance and compares with the paired galaxies."""
    from astropy.table import Table

    from galsim_vae.data import Dataset
    from galsim_vae.data.cosmos import prepare_cosmos
    from galsim_vae.simulation.survey import simulate_survey
    from galsim_vae.evaluation.report import evaluate
    from galsim_vae.training import train

    survey = simulate_survey(tmp_path / "survey", 30, seed=2)
    data_path = prepare_cosmos(tmp_path / "data", survey, stamp_size=32, psf_size=15)
    bundle = train(data_path, tmp_path / "bundle", architecture="cvae2", flow_prior=False,
                   **{**TINY, "epochs": 1})
    metrics = evaluate(bundle, data_path, tmp_path / "report", n_isotropy=40)
    data = Dataset(data_path)
    test_idents = np.asarray(data.catalog["ident"])[data.indices("test")]
    assert metrics["dataset"]["simulated_survey"] is True
    truth = metrics["truth"]
    assert truth["truth_table"] == str(survey / "truth.fits")
    # as many generated as held-out galaxies: each held-out galaxy is paired once
    assert truth["n_matched"] == test_idents.size == metrics["generation"]["n_generated"]
    table = Table.read(survey / "truth.fits")
    expected = np.asarray(table["flux"])[np.isin(table["IDENT"], test_idents)]
    assert truth["statistics"]["flux"]["mean_reference"] == pytest.approx(expected.mean())
    assert truth["statistics"]["hlr_arcsec"]["n_generated"] == test_idents.size
    text = (tmp_path / "report" / "report.md").read_text()
    assert "## Against the simulation truth" in text
    # generated galaxies get the survey's own (correlated COSMOS) noise, and the report says so
    assert "noise correlation" in metrics["generation"]["noise"]
    assert "the data set's own noise correlation" in text
    # the survey is flux limited (measured MAG_AUTO < 25.2): generated galaxies get noise
    # given that they pass, and the one-draw comparison is kept beside it
    selection = metrics["generation"]["selection"]
    assert selection["active"] and "MAG_AUTO < 25.2" in selection["cuts"]
    assert "sn_ellip_gauss >= 10" in selection["cuts"]
    assert 0.0 <= selection["fraction_redrawn"] <= 1.0 and selection["mean_draws"] >= 1.0
    n_selected = test_idents.size - selection["n_not_selected"]
    assert metrics["morphology"]["statistics"]["flux"]["n_generated"] <= n_selected
    unselected = metrics["morphology"]["without_selection"]
    assert set(unselected) == {"flux", "sigma_arcsec", "hlr_arcsec", "g", "rho4"}
    assert unselected["flux"]["n_generated"] <= test_idents.size
    assert "noise drawn given that it passes them" in text and "Without the selection" in text
    # the posterior predictive check replicates each galaxy with one fresh noise draw
    # (binned by the data's own S/N, noise given the cuts would count the selection twice)
    fidelity = metrics["fidelity"]
    assert fidelity["reconstruction_noise"].startswith("one fresh draw")
    columns = fidelity["columns"]["all"]
    assert columns["recon_sample"]["n"] <= columns["data"]["n"] == test_idents.size


def test_fidelity_section_of_the_report(conditional_report):
    """Where fidelity is lost: data, reconstructions and prior samples side by side, per
    S/N quartile, paired slopes, chi-square percentiles, outer flux, isotropy and the
    memorization test (the tiny bundle is not faithful: only the columns are checked)."""
    out, metrics = conditional_report
    fid = metrics["fidelity"]
    columns = fid["columns"]
    assert set(columns["all"]) == {"data", "recon_mean", "recon_sample", "prior"}
    assert len(columns["bins"]) == 4 and len(fid["snr_quartile_edges"]) == 3
    assert sum(b["data"]["n"] for b in columns["bins"]) == columns["all"]["data"]["n"]
    for key in ("recon_mean", "recon_sample", "prior"):
        ratio = columns["all"][key]["ratio"]["mean_abs_g"]
        assert ratio == pytest.approx(columns["all"][key]["mean_abs_g"]
                                      / columns["all"]["data"]["mean_abs_g"])
    assert np.isfinite(fid["paired_slopes"]["recon_mean"]["g_all"])
    pct = fid["chi2"]["percentiles"]
    assert pct["5"] <= pct["50"] <= pct["99"] and len(fid["chi2"]["worst"]) == 5
    assert fid["chi2"]["worst"][0]["chi2_per_pixel"] == pytest.approx(max(
        w["chi2_per_pixel"] for w in fid["chi2"]["worst"]))
    outer = fid["outer_flux_fraction"]
    assert 0 <= outer["generated_profiles_median"] <= 1
    stacked = outer["stacked_by_snr_quartile"]
    assert set(stacked) == {"data", "recon_mean", "prior"}
    assert all(len(v) == 4 and all(np.isfinite(v)) for v in stacked.values())
    assert "Share of the summed flux beyond" in (out / "report.md").read_text()
    assert fid["isotropy"]["generated"]["n"] == 400
    assert 0 <= fid["isotropy"]["data"]["angle_ks_p"] <= 1
    assert 0 <= fid["memorization"]["p_value_generated_closer"] <= 1
    assert 0 <= fid["memorization"]["p_value_closer_than_heldout"] <= 1
    text = (out / "report.md").read_text()
    assert "Against the held-out galaxies' own distances" in text
    assert metrics["generation"]["noise"].startswith("white")   # no noise models recorded
    memo_targets = [t for t in metrics["fidelity_targets"]
                    if t["target"].startswith("memorization")]
    assert len(memo_targets) == 2                      # both tests must be met
    assert "## Where fidelity is lost" in text and "posterior sample" in text
    targets = {t["target"].split(":")[0] for t in metrics["fidelity_targets"]}
    assert {"isotropy", "posterior predictive", "memorization"} <= targets
    iso = next(t for t in metrics["fidelity_targets"] if t["target"].startswith("isotropy: max"))
    gen = fid["isotropy"]["generated"]
    assert iso["value"] == pytest.approx(max(abs(gen["mean_g1"]), abs(gen["mean_g2"])))
    assert iso["met"] == (iso["value"] < 0.003)


def test_conditioning_section_for_magnitude_and_size_conditions(tiny_dataset, tmp_path):
    """A bundle conditioned on zphot, mag_auto and flux_radius (tiny data: mag_auto =
    25 - 2.5 log10 flux) reports the generated magnitudes per mag_auto bin and the size
    slope against flux_radius beside the data's."""
    import keras

    from galsim_vae.bundle import save_bundle
    from galsim_vae.data import Dataset
    from galsim_vae.evaluation.report import evaluate
    from galsim_vae.models import build_model

    data = Dataset(tiny_dataset)
    keras.utils.set_random_seed(1)
    names = ("zphot", "mag_auto", "flux_radius")
    model = build_model("cvae2", stamp_size=32, latent_size=3, channels=[4, 8],
                        n_conditions=3, psf_size=15)
    bundle = save_bundle(model, tmp_path / "three", name="three", flux_scale=data.flux_scale,
                         flux_units="counts/s", zero_point=25.0, pixel_scale=0.03,
                         conditions=[data.condition(n) for n in names], psf_free=True)
    metrics = evaluate(bundle, tiny_dataset, tmp_path / "report", n_isotropy=0)
    mag = metrics["conditioning"]["magnitude"]
    assert mag["condition"] == "mag_auto" and len(mag["bins"]) == 5
    assert sum(b["n"] for b in mag["bins"]) == metrics["generation"]["n_generated"]
    assert mag["worst_offset_mag"] == pytest.approx(max(
        abs(b["median_generated"] - b["median_condition"]) for b in mag["bins"]))
    medians = [b["median_condition"] for b in mag["bins"]]
    assert medians == sorted(medians)
    size = metrics["conditioning"]["size"]
    assert size["condition"] == "flux_radius" and size["slope_data"] > 0
    assert size["ratio"] == pytest.approx(size["slope_generated"] / size["slope_data"])
    assert "against their conditions" in (tmp_path / "report" / "report.md").read_text()


def test_redshift_found_by_role_not_position(tiny_dataset, tmp_path):
    """A bundle whose first condition is a magnitude bins and colours by its redshift
    condition (the role), wherever it stands."""
    from galsim_vae.bundle import save_bundle
    from galsim_vae.data import Dataset
    from galsim_vae.evaluation.report import evaluate
    from galsim_vae.models import build_model

    data = Dataset(tiny_dataset)
    model = build_model("cvae2", stamp_size=32, latent_size=3, channels=[4, 8],
                        n_conditions=2, psf_size=15)
    bundle = save_bundle(model, tmp_path / "magz", name="magz", flux_scale=data.flux_scale,
                         flux_units="counts/s", pixel_scale=0.03,
                         conditions=[data.condition("mag_auto"), data.condition("zphot")],
                         psf_free=True)
    metrics = evaluate(bundle, tiny_dataset, tmp_path / "report", n_isotropy=0)
    assert metrics["redshift_bins"]["by"] == "zphot"
    assert metrics["latent"]["colour"] == "zphot"


def test_refined_posterior_changes_reconstructions_not_the_memorization_space(
        bundles, tiny_dataset, tmp_path):
    """A bundle with a semi-amortized posterior: the report says so and its reconstructions
    fit better, while the memorization test stays in the encoder's space for every set
    (its figures equal the plain bundle's at the same seed)."""
    from galsim_vae.bundle.edit import with_generation_settings
    from galsim_vae.evaluation.report import evaluate

    refined = with_generation_settings(bundles["cvae2"], tmp_path / "refined",
                                       posterior_refine_steps=8, posterior_refine_rate=0.05,
                                       posterior_prior_weight=0.0)
    settings = dict(max_heldout=12, n_generated=12, seed=2, n_isotropy=50)
    plain = evaluate(bundles["cvae2"], tiny_dataset, tmp_path / "plain", **settings)
    better = evaluate(refined, tiny_dataset, tmp_path / "better", **settings)
    assert "refined by 8 Adam steps of 0.05" in better["reconstruction"]["posterior"]
    assert plain["reconstruction"]["posterior"] == "the encoder's q(z | x)"
    assert (better["reconstruction"]["chi2_per_pixel"]
            < plain["reconstruction"]["chi2_per_pixel"])
    assert better["fidelity"]["memorization"] == plain["fidelity"]["memorization"]
