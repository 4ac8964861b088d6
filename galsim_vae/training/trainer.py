"""The training loop: data set -> trained model bundle.

A custom loop around the compiled steps of :mod:`.steps` (optionally XLA-compiled), Adam
(with dynamic loss scaling under mixed precision), the per-epoch beta and learning-rate
schedules of :mod:`.schedules`, a validation pass each epoch, a checkpoint each epoch
(:mod:`.checkpoints`), logs (:mod:`.callbacks`), early stopping on the monitored
validation loss, the best epoch's weights restored at the end, and a normalizing-flow
prior fitted to the encoded training split (Lanusse et al. 2021, MNRAS 504, 5543, sect.
3.3; :mod:`.record`) before the bundle is written.  The options are a
:class:`~.options.TrainingOptions`.

Reproducibility: the posterior sample of each step uses a stateless seed made of the
run seed and the global step, and the training split is shuffled (and, with
``augment``, rotated) with a seed made of the run seed and the epoch, so the random
numbers of epoch e are the same whether the run was interrupted and resumed or not; with
``seed`` given, TensorFlow's op determinism is enabled too, so on CPU the loss history
is reproduced exactly.
"""

from __future__ import annotations

import math
import os
import shutil
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

from .. import interruption
from .callbacks import EpochLogs, epoch_row, log
from .distributed import Cluster, cluster_from_environment, finish_together, make_strategy
from .checkpoints import TrainingState, check_run_settings, write_run_settings
from .encodings import REFINE_RATE
from .errors import TrainingConfigError
from .options import RunPlan, TrainingOptions
from .record import (condition_metadata, divergence_error, fit_flow_prior_to_encodings,
                     mean_psf, training_record)
from .schedules import epochs_without_improvement

#: Shuffle/sampling seeds are derived as ``seed * SEED_STRIDE + epoch`` (or + step).
SEED_STRIDE = 1_000_003


def train(dataset_path: str | os.PathLike, out_bundle: str | os.PathLike,
          options: TrainingOptions | None = None, *,
          on_epoch_end: Callable[[dict[str, float]], None] | None = None,
          strategy=None, **option_values: Any) -> Path:
    """Train a VAE on a data set and write a model bundle.

    Parameters:
        dataset_path:  A data set folder (``galsim-vae prepare`` / ``simulate``).
        out_bundle:    The bundle folder to write (see :mod:`galsim_vae.bundle`).
        options:       A :class:`TrainingOptions`; keyword arguments override its fields
                       (or give them all: ``train(data, out, epochs=10, ...)``):

                       - ``architecture``: a registered architecture (``vae``, ``cvae``,
                         ``cvae2``, ``fancy_cvae``);
                       - ``conditions``: catalog columns, redshift first (None: zphot, or
                         none for ``vae``);
                       - ``latent_size``, ``channels``, ``model_options`` (further
                         ``build_model`` keywords, e.g. ``model_error``,
                         ``output_activation``);
                       - ``psf_free``: PSF-free profiles with the likelihood that
                         convolves each galaxy's PSF (Lanusse et al. 2021; None: when the
                         data set has PSFs), or False (samples carry the HST PSF);
                       - ``epochs`` (the total, also when resuming), ``batch_size``
                         (global), ``beta`` (number, per-epoch list or named schedule,
                         :mod:`.schedules`), ``learning_rate``, ``lr_decay``, ``clip_norm``
                         (Adam ``global_clipnorm``), ``early_stopping_patience``,
                         ``restore_best``, ``monitor`` (``median`` per-galaxy validation
                         loss, or ``mean``);
                       - ``augment``: the eight rotations/flips of each stamp and PSF;
                       - ``flux_condition``: a magnitude condition that sets each stamp's
                         flux scale (flux-normalised networks);
                       - ``noise_correlation``: the likelihood whitens each residual by
                         the galaxy's noise power spectrum (the data set's noise models;
                         Lanusse et al. 2021's Fourier likelihood) instead of taking the
                         pixels' noise as independent;
                       - ``seed`` (reproducible; enables op determinism), ``checkpoint_dir``
                         (default ``<out_bundle>.checkpoints``), ``resume``, ``overwrite``,
                         ``flow_prior``, ``flow_prior_epochs``, ``flow_prior_units``,
                         ``flow_prior_couplings``, ``flow_prior_spline_bins`` (0: affine
                         couplings, K >= 2: spline couplings of K bins),
                         ``flow_condition_shift`` (the latents' shift linear in the
                         conditions), ``flow_fresh_samples`` (a fresh posterior sample
                         of each encoding every flow epoch), ``flow_balance`` (rows
                         weighed by their conditions' inverse density to this power),
                         ``flow_refine_steps`` (semi-amortized
                         encodings) and ``flow_refine_rate`` (their Adam step), ``flow_orientations`` (orientations of each stamp
                         encoded for the flow: 1-8, default 8 with ``augment``),
                         ``flow_orientation`` (``"all"`` of them, or each galaxy's
                         ``"canonical"`` pair: :mod:`.canonical_orientation`),
                         ``flow_select`` (the flow epoch kept: ``"nll"`` or
                         ``"morphology"``, :mod:`.flow_selection`),
                         ``mixed_precision``, ``xla``, ``max_steps_per_epoch``, ``name``.
        on_epoch_end:  Called with each epoch's history row after its checkpoint is saved.
        strategy:      A ``tf.distribute`` strategy object, or the name of one of
                       :mod:`.distributed` (``auto``, the default: ``MirroredStrategy``
                       when more than one GPU is visible, else the default strategy;
                       ``mirrored``; ``multiworker``: ``MultiWorkerMirroredStrategy`` from
                       ``TF_CONFIG`` or Slurm, every worker running the same call).

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

    if isinstance(strategy, str):               # a strategy name: an option like the others
        option_values["strategy"], strategy = strategy, None
    try:
        options = replace(options or TrainingOptions(), **option_values)
    except TypeError as err:
        raise TrainingConfigError(f"unknown training option: {err}") from None
    cluster = cluster_from_environment(options.strategy)
    if cluster is not None and options.seed is None:
        raise TrainingConfigError("--strategy multiworker needs --seed: every worker must "
                                  "draw the same initial weights and shuffles")
    plan = options.resolve(Dataset(dataset_path), out_bundle,
                           writer=cluster is None or cluster.is_chief)
    checkpoint_dir = plan.checkpoint_dir
    resuming = options.resume and (checkpoint_dir / "run.json").is_file()
    if options.resume and not resuming and checkpoint_dir.exists() \
            and any(checkpoint_dir.iterdir()):
        raise TrainingConfigError(f"cannot resume: {str(checkpoint_dir)!r} is not a galsim-vae "
                                  "checkpoint folder (it has no run.json); choose another "
                                  "--checkpoint-dir")
    if resuming:
        run_seed = int(check_run_settings(checkpoint_dir, plan.settings)["seed_used"])
    else:
        if options.resume:
            log(f"no checkpoint in {str(checkpoint_dir)!r}: starting a new run")
        run_seed = plan.new_seed()
    plan.settings["seed_used"] = run_seed

    from ..tf_runtime import import_tensorflow

    tf = import_tensorflow()
    import keras

    keras.utils.set_random_seed(run_seed)
    if options.seed is not None:
        tf.config.experimental.enable_op_determinism()
    previous_policy = keras.mixed_precision.dtype_policy()
    if options.mixed_precision:
        keras.mixed_precision.set_dtype_policy("mixed_float16")
    strategy = strategy or make_strategy(options.strategy, cluster)
    if plan.batch_size % strategy.num_replicas_in_sync:
        raise TrainingConfigError(f"the batch size ({plan.batch_size} galaxies per step, all "
                                  f"workers together) must divide among the "
                                  f"{strategy.num_replicas_in_sync} replicas")
    run = _Run(plan, run_seed, resuming, strategy, on_epoch_end, cluster)
    try:
        return run.execute()
    except BaseException:
        run.clean_up_failed_start()
        raise
    finally:
        run.close()
        keras.mixed_precision.set_dtype_policy(previous_policy)


class _Run:
    """One training run of a :class:`RunPlan`: model, optimizer, state and the loop."""

    def __init__(self, plan: RunPlan, run_seed: int, resuming: bool, strategy, on_epoch_end,
                 cluster: Cluster | None = None):
        self.plan, self.run_seed, self.resuming = plan, run_seed, resuming
        self.strategy, self.on_epoch_end, self.cluster = strategy, on_epoch_end, cluster
        self.writer = cluster is None or cluster.is_chief
        self.state = None
        self.logs = None
        self.created_checkpoint_dir = False

    def pipeline(self, split: str, *, shuffle: bool, shuffle_seed: int = 0,
                 steps: int | None = None):
        """The batches of one pass over ``split``, distributed by the strategy: each worker
        of a multi-worker run reads its own shard, in batches of its share of the global
        batch, and every worker takes the same number of steps (``steps``; in a
        multi-worker run, the incomplete last global batch is left out)."""
        from ..data import make_tf_dataset

        plan, cluster = self.plan, self.cluster

        def per_worker(context):
            data = make_tf_dataset(
                plan.dataset, split,
                batch_size=context.get_per_replica_batch_size(plan.batch_size),
                shuffle=shuffle, seed=shuffle_seed, conditions=plan.conditions,
                with_psf=plan.psf_free, augment=plan.options.augment and shuffle,
                noise_correlation=bool(plan.options.noise_correlation),
                shard=(None if cluster is None
                       else (context.input_pipeline_id, context.num_input_pipelines)),
                drop_remainder=cluster is not None)
            return data if steps is None else data.take(steps)

        return self.strategy.distribute_datasets_from_function(per_worker)

    def steps_in(self, rows: int) -> int | None:
        """Steps of a pass over ``rows`` galaxies that every worker takes (None: all)."""
        if self.cluster is None:
            return None
        if rows < self.plan.batch_size:
            raise TrainingConfigError(
                f"a multi-worker run leaves out each split's incomplete last batch, and a "
                f"split has {rows} galaxies, fewer than one batch ({self.plan.batch_size}); "
                "use a smaller --batch-size")
        return rows // self.plan.batch_size

    def build(self):
        import keras

        from ..models import build_model

        plan = self.plan
        with self.strategy.scope():
            self.model = build_model(plan.options.architecture, **plan.hyperparameters)
            optimizer = keras.optimizers.Adam(learning_rate=plan.lr.initial,
                                              global_clipnorm=plan.clip_norm)
            if plan.options.mixed_precision:
                optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
            optimizer.build(self.model.trainable_variables)
            self.optimizer = optimizer
        # the run's counters, history (a string) and best-weight copies are local to each
        # worker: out of the scope, whose variables a multi-worker strategy broadcasts
        self.state = TrainingState(plan.checkpoint_dir, self.model, optimizer,
                                   writer=self.writer)

    def execute(self) -> Path:
        from .steps import TrainSteps

        plan, options = self.plan, self.plan.options
        dataset, conditions = plan.dataset, plan.conditions
        train_rows = dataset.indices("train", require_finite=conditions)
        validation = None
        validation_rows = dataset.indices("validation", require_finite=conditions).size
        if validation_rows:
            validation = self.pipeline("validation", shuffle=False,
                                       steps=self.steps_in(validation_rows))
        else:
            log("the validation split is empty: the training loss is monitored instead")
        steps_per_epoch = self.steps_in(train_rows.size) or math.ceil(
            train_rows.size / plan.batch_size)
        if plan.max_steps_per_epoch is not None:
            steps_per_epoch = min(steps_per_epoch, plan.max_steps_per_epoch)
        self.build()
        # the first output: only once the data and the model are known to be usable
        if self.writer:
            self.created_checkpoint_dir = not plan.checkpoint_dir.exists()
            plan.checkpoint_dir.mkdir(parents=True, exist_ok=True)
            if not self.resuming:
                write_run_settings(plan.checkpoint_dir, plan.settings)
        state = self.state
        done = state.restore() if self.resuming else 0
        if self.resuming:
            log(f"resuming from {state.latest} after epoch {done}")
        history = state.history
        steps = TrainSteps(self.model, self.optimizer, self.strategy, xla=options.xla,
                           mixed_precision=options.mixed_precision)
        if self.writer:
            self.logs = EpochLogs(plan.checkpoint_dir,
                                  f"{options.architecture} on {dataset.path.name}",
                                  plan.epochs, self.on_epoch_end)
        beta_ref = plan.beta.reference(plan.epochs)
        started = time.time()
        global_step = sum(int(row.get("steps", 0)) for row in history)
        for epoch in range(done + 1, plan.epochs + 1):
            monitored = [row["val_monitor"] for row in history]
            if (plan.patience is not None
                    and epochs_without_improvement(monitored) >= plan.patience):
                break
            beta_e = plan.beta.value(epoch)
            lr_e = plan.lr.value(epoch, monitored)
            self.optimizer.learning_rate = lr_e
            tick = time.time()
            train_data = self.pipeline(
                "train", shuffle=True,
                shuffle_seed=(self.run_seed * SEED_STRIDE + epoch) % (2**31 - 1),
                steps=steps_per_epoch if self.cluster or plan.max_steps_per_epoch else None)
            train_means, n_steps = steps.run_epoch(
                train_data, beta_e, self.run_seed, global_step, train=True,
                total=steps_per_epoch, desc=f"epoch {epoch}/{plan.epochs}")
            global_step += n_steps
            if not math.isfinite(train_means.get("loss", math.nan)):
                raise divergence_error(dataset, train_rows, epoch, train_means.get("loss"), lr_e)
            per_galaxy: dict[str, list] = {}
            if validation is not None:
                val_means, _ = steps.run_epoch(validation, beta_e, self.run_seed + 1,
                                               epoch * 100003, train=False, total=None,
                                               desc="validation", per_galaxy=per_galaxy)
            else:
                val_means = dict(train_means)
            row = epoch_row(epoch, beta_e, lr_e, train_means, val_means, per_galaxy,
                            beta_ref=beta_ref, monitor=options.monitor)
            row["time"] = time.time() - tick
            row["steps"] = n_steps
            previous_best = min(monitored, default=math.inf)
            history.append(row)
            if row["val_monitor"] < previous_best or not state.best.has_weights.numpy():
                state.remember_best()
            state.save(epoch)
            if self.logs is not None:
                self.logs(history)
            interruption.check()        # a signal whose exception TensorFlow swallowed
        if not history:
            raise TrainingConfigError("no epoch was trained")
        elapsed = time.time() - started + sum(r["time"] for r in history[:done])
        return self.finish(history, train_rows, elapsed)

    def finish(self, history: list[dict[str, float]], train_rows, elapsed: float) -> Path:
        """Restore the best weights, fit the flow prior and write the bundle."""
        from ..bundle import save_bundle
        from .hardware import describe_hardware

        plan, options, dataset = self.plan, self.plan.options, self.plan.dataset
        if not self.writer:
            log(f"worker {self.cluster.index} of {self.cluster.count}: training done; the "
                "chief (worker 0) fits the prior and writes the bundle")
            finish_together(self.strategy)
            return plan.out_bundle
        best_epoch = int(min(history, key=lambda r: r["val_monitor"])["epoch"])
        if options.restore_best and self.state.restore_best():
            log(f"restored the weights of the best epoch, {best_epoch}")
        final_epoch = best_epoch if options.restore_best else int(history[-1]["epoch"])
        prior = None
        if options.flow_prior:
            prior = fit_flow_prior_to_encodings(
                self.model, dataset, plan.conditions, plan.psf_free, plan.batch_size,
                epochs=options.flow_prior_epochs, seed=self.run_seed,
                orientations=plan.settings["flow_orientations"],
                hidden_units=plan.settings["flow_prior_units"],
                n_couplings=plan.settings["flow_prior_couplings"],
                spline_bins=plan.settings.get("flow_prior_spline_bins", 0),
                condition_shift=plan.settings.get("flow_condition_shift", False),
                fresh_samples=plan.settings.get("flow_fresh_samples", False),
                balance=plan.settings.get("flow_balance", 0.0),
                orientation=plan.settings.get("flow_orientation", "all"),
                refine_steps=int(options.flow_refine_steps or 0),
                refine_rate=float(plan.settings.get("flow_refine_rate", REFINE_RATE)),
                prior_weight=float(history[-1]["beta"]),
                cache_dir=plan.checkpoint_dir,
                noise_correlation=bool(options.noise_correlation),
                select=plan.settings.get("flow_select", "nll"))
            self.model.attach_prior(prior)
        record = training_record(dataset, plan.settings, history, final_epoch=final_epoch,
                                 elapsed=elapsed, prior=prior, strategy=self.strategy,
                                 workers=1 if self.cluster is None else self.cluster.count)
        record["hardware"] = describe_hardware()
        hst_psf = None
        if not plan.psf_free and dataset.has_psf:
            hst_psf = mean_psf(dataset, train_rows)
        elif not plan.psf_free:
            log(f"data set {str(dataset.path)!r} has no PSF images: the samples carry an "
                "unknown PSF, which the bundle cannot record (hst_psf: null)")
        folder = plan.checkpoint_dir
        bundle = save_bundle(
            self.model, plan.out_bundle, name=options.name or plan.out_bundle.name,
            flux_scale=dataset.flux_scale, flux_units=dataset.flux_units,
            pixel_scale=dataset.pixel_scale,
            conditions=condition_metadata(dataset, plan.conditions, plan.drawn_conditions),
            psf_free=plan.psf_free, prior=prior, training_info=record, hst_psf=hst_psf,
            extra_files={"history.csv": folder / "history.csv",
                         "loss_curve.png": folder / "loss_curve.png"},
            overwrite=options.overwrite)
        if self.cluster is not None:
            finish_together(self.strategy)
        return bundle

    def clean_up_failed_start(self) -> None:
        """A run that fails before its first checkpoint leaves no checkpoint folder behind
        (it would only make the next attempt ask for --resume or --overwrite)."""
        if self.created_checkpoint_dir and (self.state is None or self.state.latest is None):
            self.close()
            shutil.rmtree(self.plan.checkpoint_dir, ignore_errors=True)

    def close(self) -> None:
        if self.logs is not None:
            self.logs.close()
