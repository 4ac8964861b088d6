"""The training loop: data set -> trained model bundle.

A custom loop around a ``tf.function`` train step (optionally XLA-compiled), Adam
(with dynamic loss scaling under mixed precision), the per-epoch beta and learning-rate
schedules of :mod:`.schedules`, a validation pass each epoch, a checkpoint each epoch
(:mod:`.checkpoints`), logs (:mod:`.logs`), early stopping on the validation loss,
the best epoch's weights restored at the end, and a normalizing-flow prior fitted to the
encoded training split (Lanusse et al. 2021, MNRAS 504, 5543, sect. 3.3) before the bundle
is written.

Reproducibility: the posterior sample of each step uses a stateless seed made of the
run seed and the global step, and the training split is shuffled with a seed made of
the run seed and the epoch, so the random numbers of epoch e are the same whether the
run was interrupted and resumed or not; with ``seed`` given, TensorFlow's op determinism
is enabled too, so on CPU the loss history is reproduced exactly.
"""

from __future__ import annotations

import math
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .._version import __version__
from ..errors import InputDataError, OutputExistsError
from ..io_utils import check_output_path, progress
from .checkpoints import TrainingState, check_run_settings, write_run_settings
from .errors import TrainingConfigError
from ..history import plot_loss_curves, write_history_csv
from .logs import TensorBoardLog
from .schedules import BetaSchedule, LearningRateSchedule, epochs_without_improvement

#: Shuffle/sampling seeds are derived as ``seed * SEED_STRIDE + epoch`` (or + step).
SEED_STRIDE = 1_000_003
#: Default conditions of the conditional architectures.
DEFAULT_CONDITIONS = ("zphot",)
#: Per-galaxy (B,) outputs of ``compute_losses`` (not averaged into the epoch means).
GALAXY_LOSSES = ("galaxy_loss", "galaxy_kl")
#: Validation monitors: the median of the per-galaxy losses (robust to the few very
#: bright galaxies whose losses dominate a mean), or the mean (the behaviour before).
MONITORS = ("median", "mean")


def _log(message: str) -> None:
    print(f"galsim-vae train: {message}", file=sys.stderr, flush=True)


def _select_strategy():
    """MirroredStrategy over all GPUs when more than one is visible, else the default."""
    import tensorflow as tf

    gpus = tf.config.list_logical_devices("GPU")
    if len(gpus) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def _check_positive_int(value: Any, name: str, *, allow_none: bool = False) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise TrainingConfigError(f"{name} must be a whole number >= 1, got {value!r}")
    return int(value)


def _resolve_conditions(architecture: str, conditions: Sequence[str] | None, dataset) -> tuple:
    if conditions is None:
        conditions = () if architecture == "vae" else DEFAULT_CONDITIONS
    if isinstance(conditions, str):
        conditions = (conditions,)
    conditions = tuple(conditions)
    if architecture == "vae" and conditions:
        raise TrainingConfigError(f"architecture 'vae' is unconditional but conditions "
                                  f"{list(conditions)} were given; use conditions=() or a "
                                  "conditional architecture (cvae, cvae2, fancy_cvae)")
    if architecture != "vae" and not conditions:
        raise TrainingConfigError(f"architecture {architecture!r} needs at least one condition "
                                  "(e.g. zphot)")
    for name in conditions:
        dataset.condition_stats(name)  # InputDataError naming the data set if unusable
    return conditions


def _condition_metadata(dataset, conditions: Sequence[str]) -> list[dict[str, Any]]:
    return [dataset.condition(name).to_dict() for name in conditions]


def _mean_psf(dataset, indices: np.ndarray) -> np.ndarray:
    """Mean unit-sum PSF over the given rows (chunked reads of the memory map)."""
    total = np.zeros(dataset.psfs.shape[1:], dtype=np.float64)
    for start in range(0, indices.size, 1024):
        total += np.asarray(dataset.psfs[np.sort(indices[start:start + 1024])],
                            dtype=np.float64).sum(axis=0)
    return total / total.sum()


def _first_nonfinite_row(dataset, indices: np.ndarray) -> int | None:
    """First of ``indices`` whose stamp or PSF has a NaN/inf pixel (chunked reads), or None."""
    indices = np.sort(np.asarray(indices, dtype=np.int64))
    for start in range(0, indices.size, 1024):
        rows = indices[start:start + 1024]
        for arrays in (dataset.images, dataset.psfs):
            if arrays is None:
                continue
            bad = ~np.isfinite(np.asarray(arrays[rows])).reshape(len(rows), -1).all(axis=1)
            if bad.any():
                return int(rows[np.argmax(bad)])
    return None


def _divergence_error(dataset, indices: np.ndarray, epoch: int, loss, lr: float):
    """The error for a non-finite training loss: names a damaged stamp when there is one."""
    row = _first_nonfinite_row(dataset, indices)
    if row is not None:
        ident = dataset.catalog["ident"][row]
        return InputDataError(
            f"training loss became {loss} in epoch {epoch} because data set "
            f"{str(dataset.path)!r} has NaN/inf pixels (first in row {row}, ident {ident}) "
            "in its images or PSFs; the data set is damaged: make it again with 'galsim-vae "
            "prepare' (whose --skip-invalid leaves such galaxies out)")
    return TrainingConfigError(
        f"training diverged in epoch {epoch} (loss {loss}); "
        f"lower the learning rate (now {lr:g}) or beta, or check the data set")


class _Steps:
    """The compiled train and validation steps of one model/optimizer/strategy."""

    def __init__(self, model, optimizer, strategy, *, xla: bool, mixed_precision: bool):
        import tensorflow as tf

        self.strategy = strategy
        replicas = strategy.num_replicas_in_sync
        variables = model.trainable_variables

        @tf.function(jit_compile=bool(xla), reduce_retracing=True)
        def gradients(batch, beta, seed):
            with tf.GradientTape() as tape:
                losses = model.compute_losses(batch, beta, training=True, seed=seed)
                loss = losses["loss"] / replicas
                if mixed_precision:
                    loss = optimizer.scale_loss(loss)
            return losses, tape.gradient(loss, variables)

        def replica_train(batch, beta, seed):
            replica = tf.distribute.get_replica_context().replica_id_in_sync_group
            losses, grads = gradients(batch, beta, seed + tf.stack([0, 7919 * replica]))
            optimizer.apply(grads, variables)
            return self._sums(losses, batch)

        def replica_eval(batch, beta, seed):
            replica = tf.distribute.get_replica_context().replica_id_in_sync_group
            losses = model.compute_losses(batch, beta, training=False,
                                          seed=seed + tf.stack([0, 7919 * replica]),
                                          per_galaxy=True)
            per_galaxy = {k: tf.cast(losses[k], tf.float64) for k in GALAXY_LOSSES}
            return self._sums(losses, batch), per_galaxy

        @tf.function(reduce_retracing=True)
        def train_step(batch, beta, seed):
            return self._reduce(strategy.run(replica_train, args=(batch, beta, seed)))

        @tf.function(reduce_retracing=True)
        def eval_step(batch, beta, seed):
            sums, per_galaxy = strategy.run(replica_eval, args=(batch, beta, seed))
            return self._reduce(sums), {k: strategy.gather(v, axis=0)
                                        for k, v in per_galaxy.items()}

        self.train_step = train_step
        self.eval_step = eval_step

    @staticmethod
    def _sums(losses: Mapping[str, Any], batch: Mapping[str, Any]) -> dict[str, Any]:
        import tensorflow as tf

        count = tf.cast(tf.shape(batch["image"])[0], tf.float64)
        out = {k: tf.cast(v, tf.float64) * count for k, v in losses.items()
               if k not in GALAXY_LOSSES}
        out["count"] = count
        return out

    def _reduce(self, per_replica: Mapping[str, Any]) -> dict[str, Any]:
        import tensorflow as tf

        return {k: self.strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None)
                for k, v in per_replica.items()}

    def run_epoch(self, dataset, beta: float, seed: int, step0: int, *, train: bool,
                  total: int | None, desc: str,
                  per_galaxy: dict[str, list] | None = None) -> tuple[dict[str, float], int]:
        """Run the steps over ``dataset``; returns the means per galaxy and the step count.

        In evaluation (``train=False``), each galaxy's values of :data:`GALAXY_LOSSES` are
        appended to the lists of ``per_galaxy`` when it is given."""
        import tensorflow as tf

        step_fn = self.train_step if train else self.eval_step
        beta_t = tf.constant(beta, tf.float32)
        sums: dict[str, float] = {}
        steps = 0
        bar = progress(self.strategy.experimental_distribute_dataset(dataset), total=total,
                       desc=desc)
        for batch in bar:
            # stateless seed (run seed, global step): the same numbers after a resume
            seed_t = tf.constant([seed % (2**31 - 1), (step0 + steps) % (2**31 - 1)], tf.int32)
            out = step_fn(batch, beta_t, seed_t)
            if not train:
                out, vectors = out
                if per_galaxy is not None:
                    for key, value in vectors.items():
                        per_galaxy.setdefault(key, []).append(value.numpy())
            for key, value in out.items():
                sums[key] = sums.get(key, 0.0) + float(value)
            steps += 1
            if train and hasattr(bar, "set_postfix") and steps % 10 == 0:
                bar.set_postfix(loss=f"{sums['loss'] / sums['count']:.4g}", refresh=False)
        if not sums or sums["count"] == 0:
            return {}, steps
        count = sums.pop("count")
        return {k: v / count for k, v in sums.items()}, steps


def train(dataset_path: str | os.PathLike, out_bundle: str | os.PathLike, *,
          architecture: str = "cvae2", conditions: Sequence[str] | None = None,
          latent_size: int = 32, channels: Sequence[int] | None = None,
          psf_free: bool | None = None, epochs: int = 100, batch_size: int = 64,
          beta: float | str | Sequence[float] = 0.1, learning_rate: float = 1e-3,
          lr_decay: float | str | None = None, clip_norm: float | None = None,
          early_stopping_patience: int | None = None,
          restore_best: bool = True, seed: int | None = None,
          checkpoint_dir: str | os.PathLike | None = None, resume: bool = False,
          flow_prior: bool = True, flow_prior_epochs: int = 100,
          mixed_precision: bool = False, xla: bool = False,
          max_steps_per_epoch: int | None = None, overwrite: bool = False,
          name: str | None = None, model_options: Mapping[str, Any] | None = None,
          on_epoch_end: Callable[[dict[str, float]], None] | None = None,
          strategy=None, monitor: str = "median", augment: bool = False,
          flux_condition: str | None = None) -> Path:
    """Train a VAE on a data set and write a model bundle.

    Parameters:
        dataset_path:  A data set folder (``galsim-vae prepare`` / ``simulate``).
        out_bundle:    The bundle folder to write (see :mod:`galsim_vae.bundle`).
        architecture:  ``"vae"``, ``"cvae"``, ``"cvae2"`` or ``"fancy_cvae"``.
        conditions:    Catalog columns the model is conditioned on, normalised redshift
                       first; None: ``("zphot",)``, or ``()`` for ``vae``.
        latent_size:   Dimension of z.
        channels:      Widths of the stride-2 stages (None: the models' default).
        psf_free:      Learn PSF-free profiles with the likelihood that convolves each
                       galaxy's own PSF (Lanusse et al. 2021); None: True when the data
                       set has PSFs.  False: the noise-only likelihood, samples carry the
                       HST PSF (the bundle then holds the mean training PSF).
        epochs:        Epochs to train (the total, also when resuming).
        batch_size:    Galaxies per step (global, over all replicas).
        beta:          KL weight: a number, one number per epoch, or a named schedule
                       (``"warmup:0.1:10"``...; see :mod:`galsim_vae.training.schedules`).
        learning_rate: Adam learning rate of epoch 1.
        lr_decay:      None, an exponential per-epoch factor (0.97) or
                       ``"plateau[:FACTOR[:PATIENCE[:MIN_LR]]]"``.
        clip_norm:     Clip each step's gradients to this global norm (Adam's
                       ``global_clipnorm``; None: no clipping).  With Adam this bounds the
                       rare steps whose gradient is much larger than the running scale
                       (e.g. a batch holding a galaxy of peak S/N ~1000), which otherwise
                       throw the loss back by several epochs.
        early_stopping_patience: Stop after this many epochs without a better monitored
                       validation loss (None: never).
        restore_best:  Put the best epoch's weights in the bundle (else the last epoch's).
        seed:          Seed of initial weights, shuffling and posterior samples; also
                       enables TensorFlow op determinism (reproducible on CPU; this is
                       process-wide and stays on: TensorFlow cannot switch it off).
        checkpoint_dir: Checkpoints, ``run.json``, ``history.csv``, ``loss_curve.png`` and
                       ``tensorboard/``; default ``<out_bundle>.checkpoints``.
        resume:        Continue from the last checkpoint in ``checkpoint_dir`` (a fresh
                       start if it holds none).
        flow_prior:    Fit a normalizing-flow prior to the encoded training split and
                       store it in the bundle.
        flow_prior_epochs: Epochs of the flow fit.
        mixed_precision: Compute in float16 with float32 weights and dynamic loss scaling
                       (worth it on GPUs only).
        xla:           XLA-compile the loss and gradient computation.
        max_steps_per_epoch: Cap on training steps per epoch (None: the whole split).
        overwrite:     Replace an existing bundle and (without ``resume``) checkpoint folder.
        name:          Bundle name (default: the output folder name).
        model_options: Further ``build_model`` keyword arguments (e.g. ``head_channels``).
        on_epoch_end:  Called with each epoch's history row after its checkpoint is saved.
        strategy:      A ``tf.distribute`` strategy (default: ``MirroredStrategy`` when more
                       than one GPU is visible, else the default strategy).
        monitor:       Validation figure for early stopping, plateau decay and the best
                       epoch: ``"median"`` (median per-galaxy loss, robust to a few very
                       bright galaxies) or ``"mean"``.
        augment:       Train on the eight pixel-exact rotations and flips of each stamp
                       with its PSF (one drawn per galaxy and epoch), so that the model
                       has no preferred orientation (needs odd PSF sizes).
        flux_condition: A magnitude condition (e.g. ``"mag_auto"``) that sets each
                       stamp's flux scale: the networks see flux-normalised stamps (see
                       ``BetaVAE._flux_factor``); None: the networks see physical pixels.

    Returns:
        The bundle path.

    Raises:
        MissingInputError: the data set does not exist.
        InputDataError: the data set is unusable (no such condition, empty split, ...).
        TrainingConfigError: bad option values or schedule specs; a resumed run with
            different settings.
        OutputExistsError: the bundle or the checkpoint folder exists (without
            ``overwrite``; a checkpoint folder is expected with ``resume``).
    """
    from ..data import Dataset
    from ..models.registry import ARCHITECTURES

    # ---- check every option before anything is written ----------------------------
    if architecture not in ARCHITECTURES:
        raise TrainingConfigError(f"unknown architecture {architecture!r}; choose one of "
                                  f"{list(ARCHITECTURES.names())}")
    epochs = _check_positive_int(epochs, "epochs")
    batch_size = _check_positive_int(batch_size, "batch_size")
    latent_size = _check_positive_int(latent_size, "latent_size")
    max_steps_per_epoch = _check_positive_int(max_steps_per_epoch, "max_steps_per_epoch",
                                              allow_none=True)
    early_stopping_patience = _check_positive_int(early_stopping_patience,
                                                  "early_stopping_patience", allow_none=True)
    beta_schedule = BetaSchedule.parse(beta)
    beta_schedule.check_epochs(epochs)
    lr_schedule = LearningRateSchedule.parse(learning_rate, lr_decay)
    if clip_norm is not None:
        if (isinstance(clip_norm, bool) or not isinstance(clip_norm, (int, float))
                or not math.isfinite(clip_norm) or clip_norm <= 0):
            raise TrainingConfigError(f"clip_norm must be a finite number > 0 (or None), "
                                      f"got {clip_norm!r}")
        clip_norm = float(clip_norm)
    if monitor not in MONITORS:
        raise TrainingConfigError(f"monitor must be one of {list(MONITORS)}, got {monitor!r}")
    dataset = Dataset(dataset_path)
    conditions = _resolve_conditions(architecture, conditions, dataset)
    if augment and dataset.has_psf and dataset.psf_size % 2 == 0:
        raise TrainingConfigError(
            f"augment=True rotates each PSF about its centre pixel, which needs an odd PSF "
            f"size; data set {str(dataset.path)!r} has {dataset.psf_size}x{dataset.psf_size} "
            "PSFs: prepare it again with an odd --psf-size, or train without --augment")
    if flux_condition is not None and flux_condition not in conditions:
        raise TrainingConfigError(f"flux_condition {flux_condition!r} must be one of the "
                                  f"conditions {list(conditions)}")
    if psf_free is None:
        psf_free = dataset.has_psf
    if psf_free and not dataset.has_psf:
        raise TrainingConfigError(f"psf_free=True needs each galaxy's PSF but data set "
                                  f"{str(dataset.path)!r} has none; use psf_free=False "
                                  "(--likelihood noise)")
    out_bundle = check_output_path(out_bundle, overwrite=overwrite)
    checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else \
        out_bundle.with_name(out_bundle.name + ".checkpoints")
    if checkpoint_dir.exists() and not resume:
        if not overwrite:
            raise OutputExistsError(
                f"checkpoint folder {str(checkpoint_dir)!r} exists already: continue that run "
                "with resume=True (--resume), or pass overwrite=True (--overwrite) to start over")
        shutil.rmtree(checkpoint_dir)
    check_output_path(checkpoint_dir, overwrite=True)  # parent must exist
    hyperparameters = {"stamp_size": dataset.stamp_size, "latent_size": latent_size,
                       "n_conditions": len(conditions), "psf_free": bool(psf_free),
                       "psf_size": dataset.psf_size if psf_free else None}
    if channels is not None:
        hyperparameters["channels"] = [int(c) for c in channels]
    if flux_condition is not None:
        hyperparameters["flux_condition"] = conditions.index(flux_condition)
        # 10**(-0.4 dm) = exp(-0.4 ln(10) std c) for the standardised magnitude c
        hyperparameters["flux_condition_scale"] = (
            0.4 * math.log(10.0) * float(dataset.condition_stats(flux_condition)["std"]))
    hyperparameters.update(dict(model_options or {}))
    settings = {
        "galsim_vae_version": __version__, "dataset": str(Path(dataset.path).resolve()),
        "dataset_n_galaxies": dataset.n_galaxies, "architecture": architecture,
        "hyperparameters": hyperparameters, "conditions": list(conditions),
        "batch_size": batch_size, "beta": beta_schedule.spec,
        "learning_rate": lr_schedule.initial, "lr_decay": lr_schedule.spec,
        "clip_norm": clip_norm, "seed": seed, "max_steps_per_epoch": max_steps_per_epoch, "epochs": epochs,
        "early_stopping_patience": early_stopping_patience, "restore_best": restore_best,
        "flow_prior": flow_prior, "flow_prior_epochs": flow_prior_epochs,
        "mixed_precision": mixed_precision, "xla": xla, "name": name, "monitor": monitor,
        "augment": bool(augment)}
    resuming = resume and (checkpoint_dir / "run.json").is_file()
    if resume and not resuming and checkpoint_dir.exists() and any(checkpoint_dir.iterdir()):
        raise TrainingConfigError(f"cannot resume: {str(checkpoint_dir)!r} is not a galsim-vae "
                                  "checkpoint folder (it has no run.json); choose another "
                                  "--checkpoint-dir")
    if resuming:
        recorded = check_run_settings(checkpoint_dir, settings)
        run_seed = int(recorded["seed_used"])
    else:
        if resume:
            _log(f"no checkpoint in {str(checkpoint_dir)!r}: starting a new run")
        run_seed = int(seed) if seed is not None else int(np.random.default_rng().integers(2**31 - 1))
    settings["seed_used"] = run_seed

    import keras
    import tensorflow as tf

    from ..data import make_tf_dataset
    from ..models import build_model

    keras.utils.set_random_seed(run_seed)
    if seed is not None:
        tf.config.experimental.enable_op_determinism()
    previous_policy = keras.mixed_precision.dtype_policy()
    if mixed_precision:
        keras.mixed_precision.set_dtype_policy("mixed_float16")
    tensorboard = None
    state = None
    created_checkpoint_dir = False
    try:
        strategy = strategy or _select_strategy()
        with_psf = bool(psf_free)

        def pipeline(split: str, *, shuffle: bool, shuffle_seed: int = 0):
            return make_tf_dataset(dataset, split, batch_size=batch_size, shuffle=shuffle,
                                   seed=shuffle_seed, conditions=conditions,
                                   with_psf=with_psf, augment=augment and shuffle)

        train_rows = dataset.indices("train", require_finite=conditions)
        validation = None
        if dataset.indices("validation", require_finite=conditions).size:
            validation = pipeline("validation", shuffle=False)
        else:
            _log("the validation split is empty: the training loss is monitored instead")
        steps_per_epoch = math.ceil(train_rows.size / batch_size)
        if max_steps_per_epoch is not None:
            steps_per_epoch = min(steps_per_epoch, max_steps_per_epoch)

        with strategy.scope():
            model = build_model(architecture, **hyperparameters)
            optimizer = keras.optimizers.Adam(learning_rate=lr_schedule.initial,
                                              global_clipnorm=clip_norm)
            if mixed_precision:
                optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
            optimizer.build(model.trainable_variables)
            state = TrainingState(checkpoint_dir, model, optimizer)
        # the first output: only once the data and the model are known to be usable
        created_checkpoint_dir = not checkpoint_dir.exists()
        checkpoint_dir.mkdir(parents=True, exist_ok=True)
        if not resuming:
            write_run_settings(checkpoint_dir, settings)
        done = state.restore() if resuming else 0
        if resuming:
            _log(f"resuming from {state.latest} after epoch {done}")
        history = state.history
        steps = _Steps(model, optimizer, strategy, xla=xla, mixed_precision=mixed_precision)
        tensorboard = TensorBoardLog(checkpoint_dir / "tensorboard")
        beta_ref = beta_schedule.reference(epochs)
        started = time.time()
        global_step = sum(int(row.get("steps", 0)) for row in history)
        for epoch in range(done + 1, epochs + 1):
            monitored = [row["val_monitor"] for row in history]
            if (early_stopping_patience is not None
                    and epochs_without_improvement(monitored) >= early_stopping_patience):
                break
            beta_e = beta_schedule.value(epoch)
            lr_e = lr_schedule.value(epoch, monitored)
            optimizer.learning_rate = lr_e
            tick = time.time()
            train_data = pipeline("train", shuffle=True,
                                  shuffle_seed=(run_seed * SEED_STRIDE + epoch) % (2**31 - 1))
            if max_steps_per_epoch is not None:
                train_data = train_data.take(max_steps_per_epoch)
            train_means, n_steps = steps.run_epoch(
                train_data, beta_e, run_seed, global_step, train=True, total=steps_per_epoch,
                desc=f"epoch {epoch}/{epochs}")
            global_step += n_steps
            if not math.isfinite(train_means.get("loss", math.nan)):
                raise _divergence_error(dataset, train_rows, epoch, train_means.get("loss"), lr_e)
            per_galaxy: dict[str, list] = {}
            if validation is not None:
                val_means, _ = steps.run_epoch(validation, beta_e, run_seed + 1, epoch * 100003,
                                               train=False, total=None, desc="validation",
                                               per_galaxy=per_galaxy)
            else:
                val_means = dict(train_means)
            row: dict[str, float] = {"epoch": epoch, "beta": beta_e, "lr": lr_e}
            row.update({f"train_{k}": v for k, v in train_means.items()})
            row.update({f"val_{k}": v for k, v in val_means.items()})
            # the loss at the final beta, so that epochs of a beta warm-up compare fairly
            row["val_mean_monitor"] = val_means["loss"] + (beta_ref - beta_e) * val_means["kl"]
            if per_galaxy:
                galaxy_loss = (np.concatenate(per_galaxy["galaxy_loss"])
                               + (beta_ref - beta_e) * np.concatenate(per_galaxy["galaxy_kl"]))
                row["val_median_monitor"] = float(np.median(galaxy_loss))
            else:
                row["val_median_monitor"] = row["val_mean_monitor"]
            row["val_monitor"] = row[f"val_{monitor}_monitor"]
            row["time"] = time.time() - tick
            row["steps"] = n_steps
            previous_best = min(monitored, default=math.inf)
            history.append(row)
            if row["val_monitor"] < previous_best or not state.best.has_weights.numpy():
                state.remember_best()
            state.save(epoch)
            write_history_csv(history, checkpoint_dir / "history.csv")
            plot_loss_curves(history, checkpoint_dir / "loss_curve.png",
                             title=f"{architecture} on {dataset.path.name}")
            tensorboard.write(row)
            _log(f"epoch {epoch}/{epochs}: beta {beta_e:.4g} lr {lr_e:.3g} "
                 f"loss {row['train_loss']:.6g} val {row['val_loss']:.6g} "
                 f"({row['time']:.1f} s)")
            if on_epoch_end is not None:
                on_epoch_end(dict(row))
        if not history:
            raise TrainingConfigError("no epoch was trained")
        best_epoch = int(history[int(np.argmin([r["val_monitor"] for r in history]))]["epoch"])
        if restore_best and state.restore_best():
            _log(f"restored the weights of the best epoch, {best_epoch}")
        final_epoch = best_epoch if restore_best else int(history[-1]["epoch"])

        prior = None
        if flow_prior:
            prior = _fit_flow_prior(model, dataset, conditions, with_psf, batch_size,
                                    epochs=flow_prior_epochs, seed=run_seed)
            model.attach_prior(prior)

        elapsed = time.time() - started + sum(r["time"] for r in history[:done])
        training_info = _training_info(
            dataset, settings, history, final_epoch=final_epoch, elapsed=elapsed,
            prior=prior, strategy=strategy)
        from ..bundle import save_bundle
        from .hardware import describe_hardware

        training_info["hardware"] = describe_hardware()
        hst_psf = None
        if not psf_free and dataset.has_psf:
            hst_psf = _mean_psf(dataset, train_rows)
        elif not psf_free:
            _log(f"data set {str(dataset.path)!r} has no PSF images: the samples carry an "
                 "unknown PSF, which the bundle cannot record (hst_psf: null)")
        return save_bundle(
            model, out_bundle, name=name or out_bundle.name, flux_scale=dataset.flux_scale,
            flux_units=dataset.flux_units, pixel_scale=dataset.pixel_scale,
            conditions=_condition_metadata(dataset, conditions), psf_free=bool(psf_free),
            prior=prior,
            training_info=training_info, hst_psf=hst_psf,
            extra_files={"history.csv": checkpoint_dir / "history.csv",
                         "loss_curve.png": checkpoint_dir / "loss_curve.png"},
            overwrite=overwrite)
    except BaseException:
        # a run that fails before its first checkpoint leaves no checkpoint folder behind
        # (it would only make the next attempt ask for --resume or --overwrite)
        if created_checkpoint_dir and (state is None or state.latest is None):
            if tensorboard is not None:
                tensorboard.close()
                tensorboard = None
            shutil.rmtree(checkpoint_dir, ignore_errors=True)
        raise
    finally:
        if tensorboard is not None:
            tensorboard.close()
        keras.mixed_precision.set_dtype_policy(previous_policy)


def _fit_flow_prior(model, dataset, conditions, with_psf: bool, batch_size: int, *,
                    epochs: int, seed: int):
    """Fit the flow prior to the posterior means of the whole training split."""
    import keras

    from ..data import make_tf_dataset
    from ..models.prior import fit_flow_prior

    data = make_tf_dataset(dataset, "train", batch_size=max(batch_size, 256), shuffle=False,
                           conditions=conditions, with_psf=with_psf)
    latents, conds = [], []
    for batch in progress(data, desc="encoding the training split"):
        cond = batch.get("conditions")
        latents.append(model.encode(batch["image"], cond, training=False).mean().numpy())
        if cond is not None:
            conds.append(cond.numpy())
    keras.utils.set_random_seed(seed)
    return fit_flow_prior(np.concatenate(latents),
                          np.concatenate(conds) if conds else None,
                          epochs=epochs, batch_size=256, learning_rate=1e-3, seed=seed % (2**31))


def _training_info(dataset, settings: Mapping[str, Any], history: list[dict[str, float]], *,
                   final_epoch: int, elapsed: float, prior, strategy) -> dict[str, Any]:
    """The ``training`` block of model.json: provenance, settings, final losses."""
    meta = dataset.meta
    final_row = next(r for r in history if int(r["epoch"]) == final_epoch)
    info = {
        "data": {"path": settings["dataset"], "n_galaxies": dataset.n_galaxies,
                 "stamp_size": dataset.stamp_size, "psf_size": dataset.psf_size,
                 "pixel_scale": dataset.pixel_scale, "flux_units": dataset.flux_units,
                 "splits": meta.get("split", {}), "source": meta.get("source", {}),
                 "cuts": (meta.get("source") or {}).get("cuts", "see source")},
        "galsim_vae_version": settings["galsim_vae_version"],
        "architecture": settings["architecture"],
        "conditions": settings["conditions"],
        "epochs_requested": settings["epochs"],
        "epochs_trained": len(history),
        "weights_epoch": final_epoch,
        "batch_size": settings["batch_size"],
        "beta": settings["beta"],
        "learning_rate": settings["learning_rate"],
        "lr_decay": settings["lr_decay"], "clip_norm": settings["clip_norm"],
        "early_stopping_patience": settings["early_stopping_patience"],
        "seed": settings["seed"],
        "max_steps_per_epoch": settings["max_steps_per_epoch"],
        "monitor": settings["monitor"], "augment": settings["augment"],
        "mixed_precision": settings["mixed_precision"],
        "xla": settings["xla"],
        "replicas": int(strategy.num_replicas_in_sync),
        "training_time_s": round(float(elapsed), 2),
        "final": {k: float(v) for k, v in final_row.items()
                  if k.startswith(("train_", "val_")) or k in ("beta", "lr")},
    }
    if prior is not None and getattr(prior, "training_losses", None):
        info["final"]["flow_prior_nll"] = float(prior.training_losses[-1])
    return info
