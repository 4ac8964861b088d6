"""Training options as one dataclass, and their resolution against a data set.

:class:`TrainingOptions` holds what a user chooses (``galsim-vae train`` flags, or
``train(..., **options)`` keywords); :meth:`TrainingOptions.resolve` checks every value
before anything is written and returns a :class:`RunPlan`: the resolved conditions,
likelihood, model hyper-parameters, schedules, output folders and the settings recorded
in ``run.json`` (which a resumed run must match).
"""

from __future__ import annotations

import math
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .._version import __version__
from ..errors import OutputExistsError
from ..io_utils import check_output_path
from ..models.posterior import is_refine_rate
from .encodings import REFINE_RATE
from .errors import TrainingConfigError
from .flow_selection import SELECTIONS
from .schedules import BetaSchedule, LearningRateSchedule

#: Default conditions of the conditional architectures.
DEFAULT_CONDITIONS = ("zphot",)
#: Validation monitors: the median of the per-galaxy losses (robust to the few very
#: bright galaxies whose losses dominate a mean), or the mean.
MONITORS = ("median", "mean")


@dataclass
class TrainingOptions:
    """Everything a training run is asked to do (see :func:`galsim_vae.training.train`
    for the meaning of each field)."""

    architecture: str = "cvae2"
    conditions: Sequence[str] | str | None = None
    latent_size: int = 32
    channels: Sequence[int] | None = None
    psf_free: bool | None = None
    epochs: int = 100
    batch_size: int = 64
    beta: float | str | Sequence[float] = 0.1
    learning_rate: float = 1e-3
    lr_decay: float | str | None = None
    clip_norm: float | None = None
    early_stopping_patience: int | None = None
    restore_best: bool = True
    seed: int | None = None
    checkpoint_dir: str | os.PathLike | None = None
    resume: bool = False
    flow_prior: bool = True
    flow_prior_epochs: int = 100
    flow_prior_units: Sequence[int] = (64, 64)
    flow_prior_couplings: int = 6
    flow_prior_spline_bins: int = 0
    flow_condition_shift: bool = False
    flow_fresh_samples: bool = False
    flow_balance: float = 0.0
    flow_orientation: str = "all"
    flow_refine_steps: int = 0
    flow_refine_rate: float = REFINE_RATE
    flow_orientations: int | None = None
    flow_select: str = "nll"
    mixed_precision: bool = False
    xla: bool = False
    max_steps_per_epoch: int | None = None
    overwrite: bool = False
    name: str | None = None
    model_options: Mapping[str, Any] | None = None
    monitor: str = "median"
    augment: bool = False
    flux_condition: str | None = None
    strategy: str = "auto"
    noise_correlation: bool = False

    def resolve(self, dataset, out_bundle: str | os.PathLike, *,
                writer: bool = True) -> "RunPlan":
        """Check every option against ``dataset`` (an open ``Dataset``) and the output.

        ``writer=False`` (a multi-worker run's other workers) skips the checks of the
        output folders, which only the chief creates.

        Raises:
            TrainingConfigError: bad values or schedule specs, options the data set cannot
                serve (a condition it lacks, PSFs it has not, an even PSF size with
                ``augment``).
            OutputExistsError: the bundle or checkpoint folder exists (without
                ``overwrite``; a checkpoint folder is expected with ``resume``).
        """
        from ..models.registry import ARCHITECTURES

        if self.architecture not in ARCHITECTURES:
            raise TrainingConfigError(f"unknown architecture {self.architecture!r}; choose one "
                                      f"of {list(ARCHITECTURES.names())}")
        epochs = _positive_int(self.epochs, "epochs")
        batch_size = _positive_int(self.batch_size, "batch_size")
        latent_size = _positive_int(self.latent_size, "latent_size")
        max_steps = _positive_int(self.max_steps_per_epoch, "max_steps_per_epoch",
                                  allow_none=True)
        patience = _positive_int(self.early_stopping_patience, "early_stopping_patience",
                                 allow_none=True)
        beta = BetaSchedule.parse(self.beta)
        beta.check_epochs(epochs)
        lr = LearningRateSchedule.parse(self.learning_rate, self.lr_decay)
        clip_norm = _clip_norm(self.clip_norm)
        if self.monitor not in MONITORS:
            raise TrainingConfigError(f"monitor must be one of {list(MONITORS)}, got "
                                      f"{self.monitor!r}")
        conditions, drawn = _resolve_conditions(self.architecture, self.conditions, dataset,
                                                self.flux_condition)
        flow_units = [_positive_int(u, "flow_prior_units") for u in self.flow_prior_units]
        flow_couplings = _positive_int(self.flow_prior_couplings, "flow_prior_couplings")
        if self.augment and dataset.has_psf and dataset.psf_size % 2 == 0:
            raise TrainingConfigError(
                f"augment=True rotates each PSF about its centre pixel, which needs an odd "
                f"PSF size; data set {str(dataset.path)!r} has {dataset.psf_size}x"
                f"{dataset.psf_size} PSFs: prepare it again with an odd --psf-size, or train "
                "without --augment")
        if self.noise_correlation and dataset.noise_rootps_table is None:
            raise TrainingConfigError(
                f"noise_correlation=True needs the data set's noise models, and "
                f"{str(dataset.path)!r} records none (no noise_rootps.npy): prepare it again "
                "with this galsim-vae ('galsim-vae prepare cosmos'), or train without "
                "--noise-correlation")
        psf_free = dataset.has_psf if self.psf_free is None else bool(self.psf_free)
        if psf_free and not dataset.has_psf:
            raise TrainingConfigError(f"psf_free=True needs each galaxy's PSF but data set "
                                      f"{str(dataset.path)!r} has none; use psf_free=False "
                                      "(--likelihood noise)")
        if writer:
            out_bundle = check_output_path(out_bundle, overwrite=self.overwrite)
            checkpoint_dir = _checkpoint_dir(self, out_bundle)
        else:
            out_bundle = Path(out_bundle)
            checkpoint_dir = (Path(self.checkpoint_dir) if self.checkpoint_dir is not None
                              else out_bundle.with_name(out_bundle.name + ".checkpoints"))
        hyperparameters = self._hyperparameters(dataset, conditions, latent_size, psf_free)
        settings = {
            "galsim_vae_version": __version__, "dataset": str(Path(dataset.path).resolve()),
            "dataset_n_galaxies": dataset.n_galaxies, "architecture": self.architecture,
            "hyperparameters": hyperparameters, "conditions": list(conditions),
            "batch_size": batch_size, "beta": beta.spec, "learning_rate": lr.initial,
            "lr_decay": lr.spec, "clip_norm": clip_norm, "seed": self.seed,
            "max_steps_per_epoch": max_steps, "epochs": epochs,
            "early_stopping_patience": patience, "restore_best": self.restore_best,
            "flow_prior": self.flow_prior, "flow_prior_epochs": self.flow_prior_epochs,
            "flow_prior_units": flow_units, "flow_prior_couplings": flow_couplings,
            "mixed_precision": self.mixed_precision, "xla": self.xla, "name": self.name,
            "monitor": self.monitor, "augment": bool(self.augment)}
        if self.flow_refine_steps:
            settings["flow_refine_steps"] = _positive_int(self.flow_refine_steps,
                                                          "flow_refine_steps")
        if self.flow_refine_rate != REFINE_RATE:  # only when set: earlier runs resume as they were
            if not (isinstance(self.flow_refine_rate, (int, float))
                    and is_refine_rate(self.flow_refine_rate)):
                raise TrainingConfigError(f"flow_refine_rate must be > 0, got "
                                          f"{self.flow_refine_rate!r}")
            settings["flow_refine_rate"] = float(self.flow_refine_rate)
        settings["flow_orientations"] = self._flow_orientations()
        if self.flow_select not in SELECTIONS:
            raise TrainingConfigError(f"flow_select must be one of {list(SELECTIONS)}, got "
                                      f"{self.flow_select!r}")
        if self.flow_select != "nll":    # only when set: earlier runs resume as they were
            settings["flow_select"] = self.flow_select
        if self.flow_prior_spline_bins:  # only when set: earlier runs resume as they were
            bins = _positive_int(self.flow_prior_spline_bins, "flow_prior_spline_bins")
            if bins < 2:
                raise TrainingConfigError(f"flow_prior_spline_bins must be 0 (affine couplings) "
                                          f"or >= 2 (spline bins), got {bins}")
            settings["flow_prior_spline_bins"] = bins
        if self.flow_condition_shift:   # only when set: earlier runs resume as they were
            settings["flow_condition_shift"] = True
        if self.flow_fresh_samples:     # only when set: earlier runs resume as they were
            settings["flow_fresh_samples"] = True
        if self.flow_balance:           # only when set: earlier runs resume as they were
            if not (isinstance(self.flow_balance, (int, float)) and 0 < self.flow_balance <= 1):
                raise TrainingConfigError(f"flow_balance must be 0 (off) to 1, got "
                                          f"{self.flow_balance!r}")
            settings["flow_balance"] = float(self.flow_balance)
        if self.flow_orientation != "all":  # only when set: earlier runs resume as they were
            settings["flow_orientation"] = self._flow_orientation()
        if self.noise_correlation:      # only when set: older runs resume as they were
            settings["noise_correlation"] = True
        if drawn:            # only when there are some: older runs' run.json resume as they were
            settings["drawn_conditions"] = list(drawn)
        return RunPlan(options=self, dataset=dataset, out_bundle=out_bundle,
                       checkpoint_dir=checkpoint_dir, conditions=conditions,
                       drawn_conditions=drawn,
                       psf_free=psf_free, hyperparameters=hyperparameters, beta=beta, lr=lr,
                       clip_norm=clip_norm, epochs=epochs, batch_size=batch_size,
                       max_steps_per_epoch=max_steps, patience=patience, settings=settings)

    def _flow_orientations(self) -> int:
        """Orientations of each training stamp the flow prior is fitted to: all eight for
        an ``augment`` run unless ``flow_orientations`` says fewer, one otherwise."""
        if self.flow_orientations is None:
            return 8 if self.augment else 1
        value = _positive_int(self.flow_orientations, "flow_orientations")
        if value > 8:
            raise TrainingConfigError(f"flow_orientations must be 1 to 8 (the symmetries of "
                                      f"the square), got {value}")
        if value > 1 and not self.augment:
            raise TrainingConfigError(
                f"flow_orientations={value} encodes rotated and flipped stamps, which only a "
                "model trained on them understands: train with augment=True (--augment) or "
                "use flow_orientations=1")
        return value

    def _flow_orientation(self) -> str:
        """``flow_orientation`` checked: "canonical" turns stamps, which only a model
        trained on them understands (:mod:`galsim_vae.training.canonical_orientation`)."""
        from .canonical_orientation import FLOW_ORIENTATIONS

        if self.flow_orientation not in FLOW_ORIENTATIONS:
            raise TrainingConfigError(f"flow_orientation must be one of "
                                      f"{list(FLOW_ORIENTATIONS)}, got {self.flow_orientation!r}")
        if self.flow_orientation == "canonical" and not self.augment:
            raise TrainingConfigError(
                "flow_orientation='canonical' encodes each galaxy turned to its canonical "
                "orientation, which only a model trained on turned stamps understands: "
                "train with augment=True (--augment)")
        return self.flow_orientation

    def _hyperparameters(self, dataset, conditions: tuple, latent_size: int,
                         psf_free: bool) -> dict[str, Any]:
        hyperparameters = {"stamp_size": dataset.stamp_size, "latent_size": latent_size,
                           "n_conditions": len(conditions), "psf_free": psf_free,
                           "psf_size": dataset.psf_size if psf_free else None}
        if self.channels is not None:
            hyperparameters["channels"] = [int(c) for c in self.channels]
        if self.augment:
            # trained on the eight orientations: generate each galaxy in any orientation
            # (a random one of the eight, then a residual turn: galsim_vae.isotropy)
            hyperparameters["sample_symmetry"] = "isotropic"
        if self.flux_condition is not None:
            hyperparameters["flux_condition"] = conditions.index(self.flux_condition)
            # 10**(-0.4 dm) = exp(-0.4 ln(10) std c) for the standardised magnitude c
            hyperparameters["flux_condition_scale"] = (
                0.4 * math.log(10.0) * dataset.condition(self.flux_condition).std)
        hyperparameters.update(dict(self.model_options or {}))
        return hyperparameters

    def to_dict(self) -> dict[str, Any]:
        """The options as a plain dict."""
        return asdict(self)


@dataclass
class RunPlan:
    """Resolved options of one run (see :meth:`TrainingOptions.resolve`)."""

    options: TrainingOptions
    dataset: Any
    out_bundle: Path
    checkpoint_dir: Path
    conditions: tuple
    drawn_conditions: tuple
    psf_free: bool
    hyperparameters: dict
    beta: BetaSchedule
    lr: LearningRateSchedule
    clip_norm: float | None
    epochs: int
    batch_size: int
    max_steps_per_epoch: int | None
    patience: int | None
    settings: dict = field(default_factory=dict)

    def new_seed(self) -> int:
        """The run seed of a new run: the option, else a random one (recorded)."""
        seed = self.options.seed
        return int(seed) if seed is not None else int(np.random.default_rng().integers(2**31 - 1))


def _positive_int(value: Any, name: str, *, allow_none: bool = False) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise TrainingConfigError(f"{name} must be a whole number >= 1, got {value!r}")
    return int(value)


def _clip_norm(value: Any) -> float | None:
    if value is None:
        return None
    if (isinstance(value, bool) or not isinstance(value, (int, float))
            or not math.isfinite(value) or value <= 0):
        raise TrainingConfigError(f"clip_norm must be a finite number > 0 (or None), "
                                  f"got {value!r}")
    return float(value)


def _resolve_conditions(architecture: str, conditions, dataset,
                        flux_condition: str | None = None) -> tuple[tuple, tuple]:
    """(the network's conditions, the drawn ones among them).  A ``flux_condition`` that
    is not among ``conditions`` is added as a *drawn* condition: the bundle draws it
    from its training distribution given the redshift for users who leave it out."""
    if conditions is None:
        conditions = () if architecture == "vae" else DEFAULT_CONDITIONS
    if isinstance(conditions, str):
        conditions = (conditions,)
    conditions = tuple(conditions)
    drawn: tuple = ()
    if flux_condition is not None and flux_condition not in conditions:
        if architecture == "vae":
            raise TrainingConfigError(
                f"architecture 'vae' takes no conditions, so it cannot work on stamps "
                f"normalised by {flux_condition!r}; use a conditional architecture (cvae2 "
                f"with --conditions {flux_condition} --flux-condition {flux_condition} "
                "draws it for users who do not give it)")
        drawn = (str(flux_condition),)
        conditions = conditions + drawn
    if architecture == "vae" and conditions:
        raise TrainingConfigError(f"architecture 'vae' is unconditional but conditions "
                                  f"{list(conditions)} were given; use conditions=() or a "
                                  "conditional architecture (cvae, cvae2, fancy_cvae)")
    if architecture != "vae" and not conditions:
        raise TrainingConfigError(f"architecture {architecture!r} needs at least one condition "
                                  "(e.g. zphot)")
    for name in conditions:
        dataset.condition_stats(name)  # InputDataError naming the data set if unusable
    return conditions, drawn


def _checkpoint_dir(options: TrainingOptions, out_bundle: Path) -> Path:
    """The checkpoint folder, cleared for a new run with ``overwrite``."""
    checkpoint_dir = (Path(options.checkpoint_dir) if options.checkpoint_dir is not None
                      else out_bundle.with_name(out_bundle.name + ".checkpoints"))
    if checkpoint_dir.exists() and not options.resume:
        if not options.overwrite:
            raise OutputExistsError(
                f"checkpoint folder {str(checkpoint_dir)!r} exists already: continue that run "
                "with resume=True (--resume), or pass overwrite=True (--overwrite) to start "
                "over")
        shutil.rmtree(checkpoint_dir)
    check_output_path(checkpoint_dir, overwrite=True)  # parent must exist
    return checkpoint_dir
