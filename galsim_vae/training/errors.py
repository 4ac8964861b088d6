"""The error raised for unusable training options."""

from __future__ import annotations

from ..errors import GalsimVAEError


class TrainingConfigError(GalsimVAEError, ValueError):
    """A training option is unusable: a bad beta or learning-rate schedule spec, a resumed
    run whose settings differ from the checkpointed one, an impossible combination."""
