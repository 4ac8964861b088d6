"""Training: schedules, the beta actually applied, reproducibility, resume, logs, CLI."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest

from galsim_vae.errors import MissingInputError, OutputExistsError
from galsim_vae.training import BetaSchedule, LearningRateSchedule, TrainingConfigError
from galsim_vae.training.schedules import epochs_without_improvement

#: Tiny, fast settings shared by the training runs.
TINY = dict(architecture="cvae2", channels=[4, 8], latent_size=4, batch_size=16,
            max_steps_per_epoch=2, flow_prior=False)


# ----------------------------------------------------------------------- schedules
def test_constant_and_list_beta():
    assert BetaSchedule.parse(0.1).values(3) == [0.1, 0.1, 0.1]
    assert BetaSchedule.parse("0.25").values(2) == [0.25, 0.25]
    assert BetaSchedule.parse("0.1,0.2,0.5").values(3) == [0.1, 0.2, 0.5]
    assert BetaSchedule.parse([0.0, 1.0]).values(2) == [0.0, 1.0]
    with pytest.raises(TrainingConfigError, match="2 value.*3 epochs"):
        BetaSchedule.parse("0.1,0.2").check_epochs(3)


def test_warmup_linear_cyclical_values():
    assert BetaSchedule.parse("warmup:0.1:4").values(6) == pytest.approx(
        [0.025, 0.05, 0.075, 0.1, 0.1, 0.1])
    assert BetaSchedule.parse("warmup:1:2:0.5").values(3) == pytest.approx([0.75, 1.0, 1.0])
    assert BetaSchedule.parse("linear:1:0:3").values(4) == pytest.approx([1.0, 0.5, 0.0, 0.0])
    # Fu et al. 2019: 0 at the start of each cycle, MAX after RATIO * PERIOD epochs
    assert BetaSchedule.parse("cyclical:1:4").values(8) == pytest.approx(
        [0.0, 0.5, 1.0, 1.0, 0.0, 0.5, 1.0, 1.0])
    assert BetaSchedule.parse("cyclical:0.2:4:1").values(4) == pytest.approx([0, 0.05, 0.1, 0.15])
    assert BetaSchedule.parse("warmup:0.1:4").reference(6) == pytest.approx(0.1)


@pytest.mark.parametrize("spec, message", [
    ("warmup:0.1", "warmup:MAX:N"),
    ("warmup:abc:3", "'abc' is not a number"),
    ("warmup:0.1:0", "whole number >= 1"),
    ("sigmoid:1:2", "unknown schedule 'sigmoid'"),
    ("cyclical:1:4:1.5", "RATIO must be in"),
    ("-0.1", ">= 0"),
    ("0.1,x", "'x' is not a number"),
    ("nan", "finite"),
    ("", "empty"),
    ("fast", "not understood"),
])
def test_bad_beta_specs_name_the_spec(spec, message):
    with pytest.raises(TrainingConfigError, match=message) as info:
        BetaSchedule.parse(spec)
    assert repr(spec) in str(info.value) or spec in str(info.value)


def test_learning_rate_schedules():
    assert LearningRateSchedule.parse(1e-3).value(5) == 1e-3
    exp = LearningRateSchedule.parse(1e-3, 0.5)
    assert [exp.value(e) for e in (1, 2, 3)] == pytest.approx([1e-3, 5e-4, 2.5e-4])
    plateau = LearningRateSchedule.parse(1.0, "plateau:0.5:2:0.2")
    losses = [5.0, 4.0, 4.5, 4.2, 4.1, 4.3, 4.4, 4.5, 4.6]
    # epochs 3, 4 do not improve on 4.0 -> halved for epoch 5; 5, 6 -> again; floor 0.2
    assert [plateau.value(e, losses) for e in range(1, 11)] == pytest.approx(
        [1, 1, 1, 1, 0.5, 0.5, 0.25, 0.25, 0.2, 0.2])
    for bad, message in (("plateau:2", "FACTOR"), ("1.5", r"\(0, 1\]"), ("fast", "not understood")):
        with pytest.raises(TrainingConfigError, match=message):
            LearningRateSchedule.parse(1e-3, bad)
    with pytest.raises(TrainingConfigError, match="> 0"):
        LearningRateSchedule.parse(-1.0)


def test_epochs_without_improvement():
    assert epochs_without_improvement([]) == 0
    assert epochs_without_improvement([3, 2, 1]) == 0
    assert epochs_without_improvement([3, 1, 2, 2]) == 2
    assert epochs_without_improvement([1, math.nan, math.nan]) == 2


# ------------------------------------------------------------------------ training
def _history(checkpoint_dir):
    from galsim_vae.history import read_history_csv

    return read_history_csv(checkpoint_dir / "history.csv")


def _without_time(history):
    return [{k: v for k, v in row.items() if k != "time"} for row in history]


@pytest.fixture(scope="module")
def warmup_run(tiny_dataset, tmp_path_factory):
    """A 3-epoch cvae2 run with a warm-up beta schedule and the flow prior."""
    from galsim_vae.training import train

    root = tmp_path_factory.mktemp("warmup")
    out = train(tiny_dataset, root / "bundle", **{**TINY, "flow_prior": True},
                epochs=3, beta="warmup:0.3:3", learning_rate=2e-3, lr_decay=0.5, seed=11,
                flow_prior_epochs=2)
    return out, root / "bundle.checkpoints"


def test_beta_schedule_reaches_the_loss(warmup_run):
    _, checkpoint_dir = warmup_run
    history = _history(checkpoint_dir)
    assert [row["epoch"] for row in history] == [1, 2, 3]
    assert [row["beta"] for row in history] == pytest.approx([0.1, 0.2, 0.3])
    assert [row["lr"] for row in history] == pytest.approx([2e-3, 1e-3, 5e-4])
    for row in history:
        # the KL weight applied in the loss is the schedule's beta of that epoch
        for split in ("train", "val"):
            loss, nll, kl = (row[f"{split}_{k}"] for k in ("loss", "nll", "kl"))
            tolerance = 1e-6 * abs(loss)  # float32 sums
            assert abs(loss - (nll + row["beta"] * kl)) < tolerance
            # ... and not the beta of a neighbouring epoch
            assert abs(loss - (nll + (row["beta"] + 0.1) * kl)) > 10 * tolerance
        # the monitored losses rank epochs at the final beta (0.3); the default monitor
        # is the median per-galaxy loss, the mean is recorded beside it
        assert row["val_mean_monitor"] == pytest.approx(row["val_nll"] + 0.3 * row["val_kl"],
                                                        rel=1e-6)
        assert row["val_monitor"] == row["val_median_monitor"]
        assert row["val_median_monitor"] != pytest.approx(row["val_mean_monitor"], rel=1e-4)


def test_beta_weights_kl_on_a_fixed_batch(tiny_dataset):
    import tensorflow as tf

    from galsim_vae.data import make_tf_dataset
    from galsim_vae.models import build_model

    batch = next(iter(make_tf_dataset(tiny_dataset, "train", batch_size=8, shuffle=False,
                                      conditions=("zphot",))))
    model = build_model("cvae2", stamp_size=32, latent_size=4, channels=[4, 8], n_conditions=1,
                        psf_free=True, psf_size=15)
    seed = tf.constant([1, 2], tf.int32)
    low = model.compute_losses(batch, 0.0, training=False, seed=seed)
    high = model.compute_losses(batch, 3.0, training=False, seed=seed)
    assert float(low["loss"]) == pytest.approx(float(low["nll"]), rel=1e-6)
    assert float(high["loss"]) - float(low["loss"]) == pytest.approx(3.0 * float(low["kl"]),
                                                                     rel=1e-4)


def test_logs_csv_tensorboard_png(warmup_run):
    import tensorflow as tf

    out, checkpoint_dir = warmup_run
    with open(checkpoint_dir / "history.csv", newline="") as f:
        header = next(csv.reader(f))
    assert header[:9] == ["epoch", "beta", "lr", "train_loss", "train_nll", "train_kl",
                          "val_loss", "val_nll", "val_kl"]
    assert header[-3:] == ["val_monitor", "steps", "time"]
    assert (out / "history.csv").read_text() == (checkpoint_dir / "history.csv").read_text()
    for png in (out / "loss_curve.png", checkpoint_dir / "loss_curve.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    events = list((checkpoint_dir / "tensorboard").glob("events.out.tfevents.*"))
    assert events
    seen: dict[str, list[tuple[int, float]]] = {}
    for path in events:
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                seen.setdefault(value.tag, []).append(
                    (event.step, float(tf.make_ndarray(value.tensor))))
                assert value.metadata.plugin_data.plugin_name == "scalars"
    history = _history(checkpoint_dir)
    assert {"beta", "lr", "train_loss", "val_loss", "val_kl"} <= set(seen)
    assert [step for step, _ in sorted(seen["beta"])] == [r["epoch"] for r in history]
    assert [v for _, v in sorted(seen["beta"])] == pytest.approx([r["beta"] for r in history])


def test_trained_bundle_metadata(warmup_run):
    out, _ = warmup_run
    meta = json.loads((out / "model.json").read_text())
    assert meta["architecture"] == "cvae2"
    assert meta["prior"]["kind"] == "flow"
    assert meta["psf_free"] is True and meta["hst_psf"] is None
    assert meta["conditions"][0]["name"] == "zphot"
    assert meta["training"]["epochs_trained"] == 3
    assert meta["training"]["beta"] == "warmup:0.3:3"
    assert meta["training"]["data"]["n_galaxies"] == 96
    card = (out / "README.md").read_text()
    assert "zphot" in card and "warmup:0.3:3" in card and "val_loss" in card


def test_seed_reproducible_and_resume_equals_uninterrupted(tiny_dataset, tmp_path):
    from galsim_vae.bundle import load_bundle
    from galsim_vae.training import train

    kwargs = dict(TINY, epochs=3, beta="warmup:0.2:2", seed=5)
    first = train(tiny_dataset, tmp_path / "a", **kwargs)
    second = train(tiny_dataset, tmp_path / "b", **kwargs)
    straight = _without_time(_history(tmp_path / "a.checkpoints"))
    assert straight == _without_time(_history(tmp_path / "b.checkpoints"))

    class Interrupt(Exception):
        pass

    def stop_after_first(row):
        if row["epoch"] == 1:
            raise Interrupt

    with pytest.raises(Interrupt):
        train(tiny_dataset, tmp_path / "c", **kwargs, on_epoch_end=stop_after_first)
    assert not (tmp_path / "c").exists()
    assert len(_history(tmp_path / "c.checkpoints")) == 1
    # without --resume the existing checkpoint folder is refused
    with pytest.raises(OutputExistsError, match="resume"):
        train(tiny_dataset, tmp_path / "c", **kwargs)
    # a resumed run must keep the settings that decide the result
    with pytest.raises(TrainingConfigError, match="batch_size"):
        train(tiny_dataset, tmp_path / "c", **{**kwargs, "batch_size": 8}, resume=True)
    resumed = train(tiny_dataset, tmp_path / "c", **kwargs, resume=True)
    assert _without_time(_history(tmp_path / "c.checkpoints")) == straight

    models = [load_bundle(p)[0] for p in (first, second, resumed)]
    for weights in zip(*(m.get_weights() for m in models)):
        np.testing.assert_array_equal(weights[0], weights[1])
        np.testing.assert_array_equal(weights[0], weights[2])


def test_early_stopping_and_outputs_refused(tiny_dataset, tmp_path):
    from galsim_vae.training import train

    seen = []
    # a learning rate of ~0 leaves the weights as they are: the monitored loss only
    # fluctuates with the posterior samples, so a patience of 1 stops the run early
    train(tiny_dataset, tmp_path / "stop", **{**TINY, "max_steps_per_epoch": 1}, epochs=6,
          learning_rate=1e-12, early_stopping_patience=1, seed=1, monitor="mean",
          on_epoch_end=lambda row: seen.append(row["val_monitor"]))
    assert 2 <= len(seen) < 6
    assert epochs_without_improvement(seen) == 1
    with pytest.raises(OutputExistsError):
        train(tiny_dataset, tmp_path / "stop", **TINY, epochs=1)
    with pytest.raises(TrainingConfigError, match="'vae' is unconditional"):
        train(tiny_dataset, tmp_path / "v", **{**TINY, "architecture": "vae"},
              conditions=("zphot",), epochs=1)
    with pytest.raises(MissingInputError):
        train(tmp_path / "nothing", tmp_path / "x", **TINY, epochs=1)
    assert not (tmp_path / "x").exists() and not (tmp_path / "x.checkpoints").exists()


# ------------------------------------------------------------------------------ CLI
def test_cli_train_runs(tiny_dataset, tmp_path):
    from galsim_vae.cli import main

    out = tmp_path / "cli_bundle"
    status = main(["--quiet", "train", str(tiny_dataset), "--out", str(out), "--model", "vae",
                   "--epochs", "1", "--batch-size", "16", "--max-steps-per-epoch", "1",
                   "--latent-size", "3", "--channels", "4,8", "--no-flow-prior",
                   "--likelihood", "noise", "--beta", "0.5", "--seed", "2"])
    assert status == 0
    meta = json.loads((out / "model.json").read_text())
    assert meta["architecture"] == "vae" and meta["conditions"] == []
    assert meta["psf_free"] is False and meta["hst_psf"] == "hst_psf.fits"
    assert meta["prior"] == {"kind": "normal"}


def test_clip_norm_bounds_the_steps(tiny_dataset, tmp_path):
    """clip_norm caps each step's global gradient norm (Adam's global_clipnorm): with a
    vanishing cap Adam's steps vanish too (its epsilon dominates), so the weights stay at
    their seeded initial values; without it they move by ~lr per step.  The CLI records
    the cap and the light decoder option in the bundle."""
    import keras

    from galsim_vae.bundle import load_bundle
    from galsim_vae.cli import main
    from galsim_vae.models import build_model
    from galsim_vae.training import train

    tiny = dict(architecture="vae", flow_prior=False, epochs=1, max_steps_per_epoch=2,
                batch_size=16, latent_size=3, channels=[4, 8], seed=4)
    moved = {}
    for cap in (1e-12, None):
        out = train(tiny_dataset, tmp_path / f"clip_{cap}", clip_norm=cap, **tiny)
        trained, spec = load_bundle(out)
        assert spec.training["clip_norm"] == cap
        keras.utils.set_random_seed(4)
        initial = build_model("vae", **spec.hyperparameters)
        moved[cap] = max(float(np.max(np.abs(a - b))) for a, b in
                         zip(trained.get_weights(), initial.get_weights()))
    assert moved[1e-12] < 1e-6 < 1e-4 < moved[None]
    with pytest.raises(TrainingConfigError, match="clip_norm must be a finite number > 0"):
        train(tiny_dataset, tmp_path / "bad", clip_norm=0.0, **tiny)
    out = tmp_path / "cli_clip"
    assert main(["--quiet", "train", str(tiny_dataset), "--out", str(out), "--model", "cvae2",
                 "--epochs", "1", "--batch-size", "16", "--max-steps-per-epoch", "1",
                 "--latent-size", "3", "--channels", "4,8", "--no-flow-prior",
                 "--clip-norm", "50", "--no-full-resolution-norm", "--seed", "2"]) == 0
    meta = json.loads((out / "model.json").read_text())
    assert meta["training"]["clip_norm"] == 50.0
    assert meta["hyperparameters"]["full_resolution_norm"] is False
    assert main(["train", str(tiny_dataset), "--out", str(tmp_path / "neg"),
                 "--clip-norm", "-1"]) == 2
    assert not (tmp_path / "neg").exists()


def test_cli_errors_leave_no_output(tiny_dataset, tmp_path, capsys):
    from galsim_vae.cli import main

    out = tmp_path / "b"
    assert main(["train", str(tmp_path / "missing"), "--out", str(out)]) == 2
    assert "missing" in capsys.readouterr().err
    assert main(["train", str(tiny_dataset), "--out", str(out), "--beta", "warmup:x:3"]) == 2
    err = capsys.readouterr().err
    assert "warmup:x:3" in err and "not a number" in err
    assert main(["train", str(tiny_dataset), "--out", str(out), "--beta", "0.1,0.2",
                 "--epochs", "3"]) == 2
    assert "one value per epoch" in capsys.readouterr().err
    assert main(["train", str(tiny_dataset), "--out", str(out), "--lr-decay", "2"]) == 2
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_mirrored_strategy_two_replicas(tiny_dataset, tmp_path):
    """The multi-replica path (what several GPUs use) on two logical CPUs, in a subprocess
    (logical devices must be configured before TensorFlow starts)."""
    import os
    import subprocess
    import sys

    code = f"""
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from galsim_vae.training import train
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
train({str(tiny_dataset)!r}, {str(tmp_path / 'mirrored')!r}, architecture="cvae2",
      channels=[4, 8], latent_size=4, batch_size=16, max_steps_per_epoch=2, epochs=2,
      beta=[0.5, 1.0], flow_prior=False, seed=3, strategy=strategy)
"""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", GALSIM_VAE_PROGRESS="0")
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    meta = json.loads((tmp_path / "mirrored" / "model.json").read_text())
    assert meta["training"]["replicas"] == 2
    history = _history(tmp_path / "mirrored.checkpoints")
    assert [row["beta"] for row in history] == [0.5, 1.0]
    for row in history:
        assert math.isfinite(row["train_loss"])
        assert row["train_loss"] == pytest.approx(row["train_nll"] + row["beta"] * row["train_kl"],
                                                  rel=1e-6)
    assert history[1]["train_loss"] < history[0]["train_loss"] * 1.5


def test_mixed_precision_and_xla_run(tiny_dataset, tmp_path):
    import keras

    from galsim_vae.training import train

    before = keras.mixed_precision.dtype_policy().name
    for options in ({"mixed_precision": True}, {"xla": True}):
        out = train(tiny_dataset, tmp_path / next(iter(options)), **{**TINY,
                    "max_steps_per_epoch": 1}, epochs=1, seed=4, **options)
        row = _history(out.with_name(out.name + ".checkpoints"))[0]
        assert all(math.isfinite(row[k]) for k in ("train_loss", "val_loss", "val_kl"))
        assert json.loads((out / "model.json").read_text())["training"][next(iter(options))]
    assert keras.mixed_precision.dtype_policy().name == before  # the global policy is restored


def test_never_reads_the_test_split(tiny_dataset, tmp_path, monkeypatch):
    import galsim_vae.data as data
    from galsim_vae.training import train

    real = data.make_tf_dataset
    calls = []

    def recording(dataset, split="train", **kwargs):
        calls.append((split, kwargs.get("indices"), kwargs.get("shuffle", True)))
        return real(dataset, split, **kwargs)

    monkeypatch.setattr(data, "make_tf_dataset", recording)
    from galsim_vae.training import steps as steps_module

    runners = []

    class RecordingSteps(steps_module.TrainSteps):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            runners.append(self)

    monkeypatch.setattr(steps_module, "TrainSteps", RecordingSteps)
    train(tiny_dataset, tmp_path / "b", **{**TINY, "flow_prior": True,
                                          "max_steps_per_epoch": 3}, epochs=2,
          flow_prior_epochs=1, seed=2)
    # the steps are traced once per batch shape (full, last partial), not once per epoch
    assert len(runners) == 1
    assert runners[0].train_step.experimental_get_tracing_count() == 1
    assert runners[0].eval_step.experimental_get_tracing_count() == 1
    splits = [split for split, _, _ in calls]
    assert set(splits) == {"train", "validation"}
    assert all(indices is None for _, indices, _ in calls)
    # training batches shuffled (one pipeline per epoch), validation in order, and the
    # flow prior encodes the training split (fitted) and the validation split (its early
    # stopping)
    assert [shuffle for split, _, shuffle in calls if split == "train"] == [True, True, False]
    assert [shuffle for split, _, shuffle in calls if split == "validation"] == [False, False]


def test_flow_prior_encodings_are_posterior_samples_in_every_orientation(tiny_dataset,
                                                                         tmp_path):
    """The flow prior is fitted to the aggregate posterior: one posterior sample per
    galaxy and per orientation of the square (a model trained with ``augment``)."""
    import tensorflow as tf

    from galsim_vae.data import Dataset
    from galsim_vae.data.pipeline import apply_dihedral
    from galsim_vae.models import build_model
    from galsim_vae.training.encodings import encodings as _encodings

    tf.keras.utils.set_random_seed(3)
    model = build_model("cvae2", stamp_size=32, latent_size=4, channels=[4, 8],
                        n_conditions=1, psf_size=15)
    data = Dataset(tiny_dataset)
    n = data.indices("train", require_finite=("zphot",)).size
    first = _encodings(model, data, "train", ("zphot",), True, 16, seed=5)
    once, conds_once = first.latents, first.conditions
    encoded = _encodings(model, data, "train", ("zphot",), True, 16, orientations=8, seed=5)
    eight, conds = encoded.latents, encoded.conditions
    assert once.shape == (n, 4) and eight.shape == (8 * n, 4) and conds.shape == (8 * n, 1)
    assert encoded.centres.shape == encoded.scales.shape == (8 * n, 4)
    again = _encodings(model, data, "train", ("zphot",), True, 16, orientations=8, seed=5)
    np.testing.assert_array_equal(eight, again.latents)       # seeded
    # rows of the first batch: orientation 0 first, then 1 (a quarter turn) ...
    batch = min(n, 256)
    stamps = np.asarray(data.images[data.indices("train", require_finite=("zphot",))[:batch]],
                        dtype=np.float32) / np.float32(data.flux_scale)
    posterior = model.encode(apply_dihedral(stamps, np.ones(batch, int))[..., None],
                             conds_once[:batch])
    spread = eight[batch:2 * batch] - posterior.mean().numpy()
    scale = posterior.stddev().numpy()
    assert np.all(np.abs(spread) < 6 * scale) and np.std(spread / scale) > 0.5   # samples
    # the kept centres and widths are the posterior's, and the sample is drawn from them
    np.testing.assert_allclose(encoded.centres[batch:2 * batch], posterior.mean().numpy(),
                               rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(encoded.scales[batch:2 * batch], scale, rtol=1e-4)
    eps = (eight - encoded.centres) / encoded.scales
    assert abs(np.mean(eps)) < 0.1 and 0.9 < np.std(eps) < 1.1
    np.testing.assert_array_equal(conds[batch:2 * batch], conds_once[:batch])


def test_refined_encodings_fit_their_galaxies_better(tiny_dataset):
    """Semi-amortized encodings for the flow prior: the refined latents have a higher
    likelihood log p(x | z) than the encoder's posterior means, galaxy by galaxy on
    average, and keep the encoder's width around them."""
    import tensorflow as tf

    from galsim_vae.data import Dataset, make_tf_dataset
    from galsim_vae.models import build_model
    from galsim_vae.training.encodings import encodings as _encodings
    from galsim_vae.models.posterior import latent_refiner as _latent_refiner

    tf.keras.utils.set_random_seed(4)
    model = build_model("cvae2", stamp_size=32, latent_size=4, channels=[4, 8],
                        n_conditions=1, psf_size=15, output_activation="linear")
    batch = next(iter(make_tf_dataset(tiny_dataset, "train", batch_size=32, shuffle=False,
                                      conditions=("zphot",), with_psf=True)))
    mean = model.encode(batch["image"], batch["conditions"]).mean()
    refined = _latent_refiner(model, 20, 0.01)(mean, batch["image"], batch["psf"],
                                               batch["noise_std"], batch["conditions"])

    def fit(z):
        profile = model.decode(z, batch["conditions"])
        return model.likelihood(profile, batch["psf"], batch["noise_std"]).log_prob(
            batch["image"]).numpy()

    gain = fit(refined) - fit(mean)
    assert np.mean(gain) > 0 and np.mean(gain > 0) > 0.8
    assert _latent_refiner(model, 0, 0.01) is None
    data = Dataset(tiny_dataset)
    plain = _encodings(model, data, "train", ("zphot",), True, 16, seed=5)
    moved = _encodings(model, data, "train", ("zphot",), True, 16, seed=5, refine_steps=5)
    assert moved.latents.shape == plain.latents.shape
    assert not np.allclose(moved.centres, plain.centres)
    np.testing.assert_allclose(moved.scales, plain.scales, rtol=1e-5)   # the encoder's width


def test_a_flow_refit_on_the_same_weights_reads_the_cached_encodings(tiny_dataset, tmp_path,
                                                                     monkeypatch):
    """The flow's encodings are kept in the checkpoint folder: a finished run resumed with
    other flow settings (resumable changes) fits its new flow without encoding again;
    other weights or another refinement give another cache key."""
    import galsim_vae.training.encodings as enc
    from galsim_vae.bundle import load_bundle
    from galsim_vae.training import TrainingConfigError, train

    kwargs = dict(architecture="cvae2", conditions=("zphot",), latent_size=4,
                  channels=[4, 8], epochs=1, batch_size=16, seed=3, flow_prior_epochs=3,
                  flow_refine_steps=2)
    first = train(tiny_dataset, tmp_path / "a", **kwargs)
    cached = sorted((tmp_path / "a.checkpoints").glob("encodings_*.npz"))
    assert [p.name.split("_")[1] for p in cached] == ["train", "validation"]

    def no_encoding(*args, **kw):
        raise AssertionError("encoded again")

    monkeypatch.setattr(enc, "encodings", no_encoding)
    refit = train(tiny_dataset, tmp_path / "a", **{**kwargs, "flow_prior_couplings": 2},
                  resume=True, overwrite=True)
    _, spec = load_bundle(refit)
    assert spec.prior.hyperparameters["n_couplings"] == 2
    # spline couplings are a resumable change too, recorded with the fit
    refit = train(tiny_dataset, tmp_path / "a", **{**kwargs, "flow_prior_spline_bins": 4},
                  resume=True, overwrite=True)
    network, spec = load_bundle(refit)
    assert spec.prior.hyperparameters["spline_bins"] == 4 == network.flow_prior.spline_bins
    assert spec.training["flow_prior"]["spline_bins"] == 4
    # and so is the condition-dependent shift
    refit = train(tiny_dataset, tmp_path / "a", **{**kwargs, "flow_condition_shift": True},
                  resume=True, overwrite=True)
    network, spec = load_bundle(refit)
    assert network.flow_prior.condition_shift
    assert spec.prior.hyperparameters["condition_shift"] is True
    assert spec.training["flow_prior"]["condition_shift"] is True
    # and fresh posterior samples each epoch, from the cached centres and widths
    refit = train(tiny_dataset, tmp_path / "a", **{**kwargs, "flow_fresh_samples": True},
                  resume=True, overwrite=True)
    assert load_bundle(refit)[1].training["flow_prior"]["fresh_samples"] is True
    with pytest.raises(TrainingConfigError, match="flow_prior_spline_bins must be 0 .* got 1"):
        train(tiny_dataset, tmp_path / "b", **{**kwargs, "flow_prior_spline_bins": 1})
    assert not (tmp_path / "b").exists()
    monkeypatch.undo()
    # the key follows the weights and the refinement
    model = load_bundle(first)[0]
    from galsim_vae.data import Dataset

    data = Dataset(tiny_dataset)
    settings = dict(orientations=1, seed=0, refine_steps=2, prior_weight=0.1, with_psf=True)
    key = enc.encodings_key(model, data, "train", ("zphot",), **settings)
    assert key == enc.encodings_key(model, data, "train", ("zphot",), **settings)
    assert key != enc.encodings_key(model, data, "train", ("zphot",),
                                    **{**settings, "refine_steps": 3})
    assert key != enc.encodings_key(model, data, "train", ("zphot",),
                                    **{**settings, "refine_rate": 0.03})
    n = data.indices("train", require_finite=("zphot",)).size
    turned = enc.encodings_key(model, data, "train", ("zphot",), **settings,
                               orientation_codes=np.zeros((n, 1), dtype=int))
    assert turned != key and turned != enc.encodings_key(
        model, data, "train", ("zphot",), **settings,
        orientation_codes=np.ones((n, 1), dtype=int))
    model.set_weights([w + 1e-3 for w in model.get_weights()])
    assert key != enc.encodings_key(model, data, "train", ("zphot",), **settings)


def test_flow_orientations_sets_the_encoded_orientations(tiny_dataset, tmp_path):
    """An augment run's flow is fitted to its stamps in the first N orientations (fewer
    encodings, less time); N is recorded in the bundle; values outside 1-8, or N > 1
    for a model that never saw rotated stamps, are refused before any training."""
    from galsim_vae.bundle import load_bundle
    from galsim_vae.data import Dataset
    from galsim_vae.training import TrainingConfigError, train

    kwargs = dict(architecture="cvae2", conditions=("zphot",), latent_size=4,
                  channels=[4, 8], epochs=1, batch_size=16, seed=3, flow_prior_epochs=2)
    out = train(tiny_dataset, tmp_path / "two", augment=True, flow_orientations=2, **kwargs)
    n_train = Dataset(tiny_dataset).indices("train", require_finite=("zphot",)).size
    (cache,) = (tmp_path / "two.checkpoints").glob("encodings_train_*.npz")
    with np.load(cache) as saved:
        assert saved["latents"].shape == (2 * n_train, 4)
    _, spec = load_bundle(out)
    assert spec.training["flow_prior"]["orientations"] == 2
    for bad, message in ((9, "1 to 8"), (0, "flow_orientations")):
        with pytest.raises(TrainingConfigError, match=message):
            train(tiny_dataset, tmp_path / f"bad{bad}", augment=True, flow_orientations=bad,
                  **kwargs)
    with pytest.raises(TrainingConfigError, match="augment"):
        train(tiny_dataset, tmp_path / "upright", flow_orientations=4, **kwargs)
    assert not (tmp_path / "upright").exists() and not (tmp_path / "bad9").exists()


def test_flow_orientation_canonical_and_refine_rate_are_recorded(tiny_dataset, tmp_path):
    """An augment run's flow fitted to each galaxy's canonical orientation(s) says so in
    the bundle, as does the refinement's rate; without augment, with another orientation
    value or a rate <= 0, the run is refused before any training."""
    from galsim_vae.bundle import load_bundle
    from galsim_vae.data import Dataset
    from galsim_vae.training import TrainingConfigError, train

    kwargs = dict(architecture="cvae2", conditions=("zphot",), latent_size=4,
                  channels=[4, 8], epochs=1, batch_size=16, seed=3, flow_prior_epochs=2)
    out = train(tiny_dataset, tmp_path / "canon", augment=True, flow_orientation="canonical",
                flow_orientations=1, flow_refine_steps=1, flow_refine_rate=0.05, **kwargs)
    fit = load_bundle(out)[1].training["flow_prior"]
    assert (fit["orientation"], fit["refine_rate"], fit["refine_steps"]) == ("canonical", 0.05, 1)
    n_train = Dataset(tiny_dataset).indices("train", require_finite=("zphot",)).size
    (cache,) = (tmp_path / "canon.checkpoints").glob("encodings_train_*.npz")
    with np.load(cache) as saved:
        assert saved["latents"].shape == (n_train, 4)       # the first of each pair
    for bad, options in (("augment", {"flow_orientation": "canonical"}),
                         ("one of", {"flow_orientation": "upright", "augment": True}),
                         ("flow_refine_rate must be > 0", {"flow_refine_rate": -1.0})):
        with pytest.raises(TrainingConfigError, match=bad):
            train(tiny_dataset, tmp_path / "bad", **options, **kwargs)
        assert not (tmp_path / "bad").exists()
