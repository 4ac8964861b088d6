"""Per-epoch schedules of the KL weight beta and of the learning rate.

Epochs are counted from 1 (the ``epoch`` column of ``history.csv``).  Both schedules are
pure functions of the epoch number and of the history so far, so a resumed run recomputes
exactly the values an uninterrupted run would use; nothing but the history is checkpointed.

Beta schedules (``beta=`` of :func:`galsim_vae.training.train`, ``--beta`` on the command
line):

=========================  ================================================================
``0.1``                    constant beta
``0.1,0.2,0.5``            one value per epoch (a list; there must be one for every epoch)
``warmup:MAX:N[:START]``   linear warm-up (KL annealing, Bowman et al. 2016, CoNLL,
                           arXiv:1511.06349): epoch e uses
                           ``START + (MAX - START) * min(1, e / N)``; START defaults to 0,
                           MAX is reached at epoch N and kept afterwards
``linear:START:END:N``     linear from START at epoch 1 to END at epoch N, END afterwards
``cyclical:MAX:PERIOD[:RATIO]``  cyclical annealing (Fu et al. 2019, NAACL,
                           arXiv:1903.10145): cycles of PERIOD epochs; within a cycle, at
                           position t = (e - 1) mod PERIOD, beta = MAX * min(1, t / (RATIO *
                           PERIOD)): 0 at the first epoch of each cycle, rising linearly over
                           the first RATIO (default 0.5) of the cycle, then MAX
=========================  ================================================================

Learning-rate decay (``lr_decay=``, ``--lr-decay``):

=============================  ============================================================
None                           constant learning rate
``0.97`` (a float in (0, 1])   exponential: epoch e uses ``lr0 * 0.97 ** (e - 1)``
``plateau[:FACTOR[:PATIENCE[:MIN_LR]]]``  reduce on plateau (as Keras' ReduceLROnPlateau):
                               multiply by FACTOR (default 0.5) after PATIENCE (default 3)
                               epochs without a new best monitored validation loss, never
                               below MIN_LR (default 1e-6)
=============================  ============================================================
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from .errors import TrainingConfigError

#: Names of the beta schedules a string spec may start with.
BETA_SCHEDULES = ("warmup", "linear", "cyclical")


def _number(text: str, spec: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise TrainingConfigError(
            f"beta/learning-rate spec {spec!r}: {what} {text!r} is not a number") from None
    if not math.isfinite(value):
        raise TrainingConfigError(f"spec {spec!r}: {what} must be finite, got {text!r}")
    return value


def _count(text: str, spec: str, what: str) -> int:
    value = _number(text, spec, what)
    if value != int(value) or value < 1:
        raise TrainingConfigError(f"spec {spec!r}: {what} must be a whole number >= 1, "
                                  f"got {text!r}")
    return int(value)


def _check_beta(value: float, spec: str) -> float:
    if not (math.isfinite(value) and value >= 0):
        raise TrainingConfigError(f"beta spec {spec!r}: beta values must be finite and >= 0, "
                                  f"got {value}")
    return float(value)


_BETA_HELP = ("use a number (0.1), one number per epoch (0.1,0.2,0.5), 'warmup:MAX:N[:START]', "
              "'linear:START:END:N' or 'cyclical:MAX:PERIOD[:RATIO]'")


@dataclass(frozen=True)
class BetaSchedule:
    """The KL weight beta of each epoch (see the module docstring for the kinds).

    Build one with :meth:`parse`; call :meth:`value` with the epoch number (from 1).

    Parameters:
        kind:       ``"constant"``, ``"list"``, ``"warmup"``, ``"linear"``, ``"cyclical"``.
        parameters: The numbers of the spec (the values for ``"list"``).
        spec:       The spec as given, for logs and the bundle metadata.
    """

    kind: str
    parameters: tuple[float, ...]
    spec: str

    @classmethod
    def parse(cls, spec: "float | str | Sequence[float] | BetaSchedule") -> "BetaSchedule":
        """A schedule from a number, a list of numbers, or a string spec.

        Raises:
            TrainingConfigError: the spec is malformed or a value is negative/not finite;
                the message names the spec and lists the accepted forms.
        """
        if isinstance(spec, BetaSchedule):
            return spec
        if isinstance(spec, bool):
            raise TrainingConfigError(f"beta spec {spec!r} is not a number; {_BETA_HELP}")
        if isinstance(spec, (int, float)):
            value = _check_beta(float(spec), str(spec))
            return cls("constant", (value,), repr(float(spec)))
        if not isinstance(spec, str):
            try:
                values = [float(v) for v in spec]
            except (TypeError, ValueError):
                raise TrainingConfigError(f"beta spec {spec!r} is not understood; "
                                          f"{_BETA_HELP}") from None
            if not values:
                raise TrainingConfigError(f"beta spec {spec!r} is an empty list; {_BETA_HELP}")
            text = ",".join(repr(v) for v in values)
            return cls("list", tuple(_check_beta(v, text) for v in values), text)
        text = spec.strip()
        if not text:
            raise TrainingConfigError(f"beta spec {spec!r} is empty; {_BETA_HELP}")
        name, _, rest = text.partition(":")
        name = name.strip().lower()
        if name in BETA_SCHEDULES:
            fields = rest.split(":") if rest else []
            return cls._parse_named(name, fields, text)
        if ":" in text:
            raise TrainingConfigError(f"beta spec {spec!r}: unknown schedule {name!r}; "
                                      f"{_BETA_HELP}")
        if "," in text:
            parts = [p for p in text.split(",")]
            values = tuple(_check_beta(_number(p.strip(), text, "value"), text) for p in parts)
            return cls("list", values, text)
        try:
            value = float(text)
        except ValueError:
            raise TrainingConfigError(f"beta spec {spec!r} is not understood; "
                                      f"{_BETA_HELP}") from None
        return cls("constant", (_check_beta(value, text),), text)

    @classmethod
    def _parse_named(cls, name: str, fields: list[str], text: str) -> "BetaSchedule":
        usage = {"warmup": "warmup:MAX:N[:START]", "linear": "linear:START:END:N",
                 "cyclical": "cyclical:MAX:PERIOD[:RATIO]"}[name]
        allowed = {"warmup": (2, 3), "linear": (3, 3), "cyclical": (2, 3)}[name]
        if not allowed[0] <= len(fields) <= allowed[1]:
            raise TrainingConfigError(f"beta spec {text!r}: expected {usage}, got "
                                      f"{len(fields)} field(s) after {name!r}")
        if name == "warmup":
            top = _check_beta(_number(fields[0], text, "MAX"), text)
            n = _count(fields[1], text, "N (epochs of warm-up)")
            start = _check_beta(_number(fields[2], text, "START"), text) if len(fields) > 2 else 0.0
            return cls(name, (top, float(n), start), text)
        if name == "linear":
            start = _check_beta(_number(fields[0], text, "START"), text)
            end = _check_beta(_number(fields[1], text, "END"), text)
            n = _count(fields[2], text, "N (epochs)")
            return cls(name, (start, end, float(n)), text)
        top = _check_beta(_number(fields[0], text, "MAX"), text)
        period = _count(fields[1], text, "PERIOD (epochs per cycle)")
        ratio = _number(fields[2], text, "RATIO") if len(fields) > 2 else 0.5
        if not 0 < ratio <= 1:
            raise TrainingConfigError(f"beta spec {text!r}: RATIO must be in (0, 1], got {ratio}")
        return cls(name, (top, float(period), ratio), text)

    def check_epochs(self, epochs: int) -> None:
        """Raise TrainingConfigError if a per-epoch list does not cover ``epochs`` epochs."""
        if self.kind == "list" and len(self.parameters) < epochs:
            raise TrainingConfigError(
                f"beta spec {self.spec!r} gives {len(self.parameters)} value(s) but training "
                f"runs {epochs} epochs: give one value per epoch or a named schedule")

    def value(self, epoch: int) -> float:
        """Beta of epoch ``epoch`` (counted from 1)."""
        if epoch < 1:
            raise TrainingConfigError(f"epochs are counted from 1, got {epoch}")
        p = self.parameters
        if self.kind == "constant":
            return p[0]
        if self.kind == "list":
            self.check_epochs(epoch)
            return p[epoch - 1]
        if self.kind == "warmup":
            top, n, start = p
            return start + (top - start) * min(1.0, epoch / n)
        if self.kind == "linear":
            start, end, n = p
            if n <= 1:
                return end
            return start + (end - start) * min(1.0, (epoch - 1) / (n - 1))
        top, period, ratio = p
        position = (epoch - 1) % int(period)
        return top * min(1.0, position / (ratio * period))

    def values(self, epochs: int) -> list[float]:
        """Beta of epochs 1..``epochs``."""
        self.check_epochs(epochs)
        return [self.value(e) for e in range(1, epochs + 1)]

    def reference(self, epochs: int) -> float:
        """The beta validation losses are compared at (best epoch, early stopping): the
        largest beta of the run, i.e. the target of a warm-up or a cycle, so that epochs
        trained at different betas are ranked by one objective."""
        return max(self.values(epochs))


_LR_HELP = ("use a decay factor in (0, 1] per epoch (e.g. 0.97) or "
            "'plateau[:FACTOR[:PATIENCE[:MIN_LR]]]' (e.g. plateau:0.5:3)")


@dataclass(frozen=True)
class LearningRateSchedule:
    """The learning rate of each epoch.

    Parameters:
        initial:  Learning rate of epoch 1.
        kind:     ``"constant"``, ``"exponential"`` or ``"plateau"``.
        decay:    Per-epoch factor (exponential) or reduction factor (plateau).
        patience: Epochs without improvement before a reduction (plateau).
        min_lr:   Floor of the learning rate (plateau).
        spec:     The decay spec as given.
    """

    initial: float
    kind: str = "constant"
    decay: float = 1.0
    patience: int = 0
    min_lr: float = 0.0
    spec: str | None = None

    @classmethod
    def parse(cls, initial: float, decay: "float | str | None" = None) -> "LearningRateSchedule":
        """A schedule from the initial rate and a decay spec (see the module docstring).

        Raises:
            TrainingConfigError: non-positive rate or malformed decay spec.
        """
        try:
            initial = float(initial)
        except (TypeError, ValueError):
            raise TrainingConfigError(f"learning rate {initial!r} is not a number") from None
        if not (math.isfinite(initial) and initial > 0):
            raise TrainingConfigError(f"learning rate must be finite and > 0, got {initial}")
        if decay is None:
            return cls(initial)
        text = str(decay).strip()
        if text.lower().startswith("plateau"):
            fields = text.split(":")[1:]
            if len(fields) > 3 or fields == [""]:
                raise TrainingConfigError(f"learning-rate decay spec {text!r}: expected "
                                          f"'plateau[:FACTOR[:PATIENCE[:MIN_LR]]]'")
            factor = _number(fields[0], text, "FACTOR") if len(fields) > 0 else 0.5
            patience = _count(fields[1], text, "PATIENCE") if len(fields) > 1 else 3
            min_lr = _number(fields[2], text, "MIN_LR") if len(fields) > 2 else 1e-6
            if not 0 < factor < 1:
                raise TrainingConfigError(f"learning-rate decay spec {text!r}: FACTOR must be "
                                          f"in (0, 1), got {factor}")
            if min_lr < 0:
                raise TrainingConfigError(f"learning-rate decay spec {text!r}: MIN_LR must be "
                                          f">= 0, got {min_lr}")
            return cls(initial, "plateau", factor, patience, min_lr, text)
        try:
            factor = float(text)
        except ValueError:
            raise TrainingConfigError(f"learning-rate decay spec {text!r} is not understood; "
                                      f"{_LR_HELP}") from None
        if not 0 < factor <= 1:
            raise TrainingConfigError(f"learning-rate decay {text!r} must be in (0, 1]; {_LR_HELP}")
        return cls(initial, "exponential", factor, 0, 0.0, text)

    def value(self, epoch: int, monitored: Sequence[float] = ()) -> float:
        """Learning rate of epoch ``epoch`` (from 1), given the monitored validation losses
        of the epochs before it (used by ``plateau`` only)."""
        if self.kind == "constant":
            return self.initial
        if self.kind == "exponential":
            return self.initial * self.decay ** (epoch - 1)
        lr, best, wait = self.initial, math.inf, 0
        for loss in list(monitored)[:max(epoch - 1, 0)]:
            if loss < best:
                best, wait = loss, 0
            else:
                wait += 1
                if wait >= self.patience:
                    lr, wait = max(lr * self.decay, self.min_lr), 0
        return lr


def epochs_without_improvement(monitored: Sequence[float]) -> int:
    """How many of the last epochs did not beat the best earlier monitored loss
    (0 when the latest epoch is the best so far); NaN losses never count as improvements."""
    best, since = math.inf, 0
    for loss in monitored:
        if loss < best:
            best, since = loss, 0
        else:
            since += 1
    return since
