"""The evaluation report (``galsim-vae evaluate``), one module per section.

- :mod:`.run`: :func:`evaluate` assembles the sections into ``report.md``, figures and
  ``metrics.json`` (the module docstring lists them);
- :mod:`.context`: constants and the context the sections share;
- :mod:`.inputs`: bundle/data-set compatibility, the held-out galaxies, notes;
- :mod:`.section_training`, :mod:`.section_reconstruction`,
  :mod:`.section_generation`, :mod:`.section_morphology`: the sections;
- :mod:`.generate`: generated profiles through :meth:`GalaxyModel.decode_batch`;
- :mod:`.truth`: comparison with a simulated survey's truth table;
- :mod:`.targets`: the fidelity targets, met or not;
- :mod:`.markdown`: ``report.md``.
"""

from .context import FIGURES, METRICS_FILE, REPORT_FILE
from .run import evaluate
from .section_training import history_metrics

__all__ = ["FIGURES", "METRICS_FILE", "REPORT_FILE", "evaluate", "history_metrics"]
