"""Data sets prepared in shards (``prepare cosmos --shard i/n``) joined into one.

A large catalog (the 25.2 sample: ~87,000 galaxies, several GB of FITS) can be prepared
by n jobs, each writing the data set of one contiguous block of the selected galaxies;
:func:`merge_datasets` checks that the n shards belong together (the same catalog, cuts
and options, each index once) and writes, galaxy by galaxy through memory maps, the data
set a single run would have written: the same rows in the same order, the same splits
(by ident), the normalisation over the whole training split.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import InputDataError
from ..io_utils import progress
from .dataset import CONDITION_COLUMNS, STANDARD_COLUMNS, Dataset
from .noise import NOISE_MODEL_COLUMN, WHITE, NoiseModelTable
from .writer import DatasetWriter

#: Source fields that differ between shards by design (counts of each shard's galaxies).
PER_SHARD_FIELDS = ("shard", "n_selected", "n_written", "n_cropped", "n_padded", "rejected",
                    "hdu_repairs", "warnings", "noise", "psf_source")
#: Counts summed over the shards in the merged source.
SUMMED_FIELDS = ("n_selected", "n_written", "n_cropped", "n_padded")


def check_shard(shard: Sequence[int]) -> tuple[int, int]:
    """Validate ``(i, n)``: 1 <= i <= n."""
    try:
        index, count = (int(v) for v in shard)
    except (TypeError, ValueError):
        raise InputDataError(f"shard must be (i, n) whole numbers, got {shard!r}") from None
    if count < 1 or not 1 <= index <= count:
        raise InputDataError(f"shard {index}/{count}: give i/n with 1 <= i <= n")
    return index, count


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` -> ``(i, n)`` (the command line's ``--shard``)."""
    index, sep, count = text.partition("/")
    if not sep or not index.strip().isdigit() or not count.strip().isdigit():
        raise InputDataError(f"--shard {text!r}: give i/n, e.g. 3/8")
    return check_shard((int(index), int(count)))


def merge_datasets(shards: Sequence[str | os.PathLike], out: str | os.PathLike, *,
                   overwrite: bool = False) -> Path:
    """Join the data sets of ``prepare ... --shard i/n`` (i = 1..n) into ``out``.

    Raises:
        InputDataError: a folder is not a shard, shards of different runs (another
            catalog, cuts, stamp size, split seed, ...: the first difference is named),
            an index missing or given twice.
        OutputExistsError: ``out`` exists and not ``overwrite``.
    """
    datasets = [Dataset(path) for path in shards]
    ordered = _check_shards(datasets)
    first = ordered[0]
    extra = {name: first.catalog[name].dtype for name in first.catalog.colnames
             if name not in STANDARD_COLUMNS}
    source = _merged_source([d.meta["source"] for d in ordered])
    total = sum(d.n_galaxies for d in ordered)
    split = first.meta["split"]
    with DatasetWriter(out, max_galaxies=total, stamp_size=first.stamp_size,
                       psf_size=first.psf_size, pixel_scale=first.pixel_scale,
                       flux_units=first.meta["flux_units"], source=source,
                       extra_columns=extra, split_seed=split["seed"],
                       split_fractions=split["fractions"], overwrite=overwrite) as writer:
        bar = progress(None, total=total, desc="merging shards")
        noise_models = NoiseModelTable()
        for dataset in ordered:
            columns = {name: np.asarray(dataset.catalog[name])
                       for name in dataset.catalog.colnames}
            if NOISE_MODEL_COLUMN in columns:    # shard rows -> rows of the merged table
                columns[NOISE_MODEL_COLUMN] = _merged_noise_models(
                    dataset, columns[NOISE_MODEL_COLUMN], noise_models)
            for row in range(dataset.n_galaxies):
                writer.add(np.asarray(dataset.images[row]), ident=columns["ident"][row].item(),
                           noise_variance=float(columns["noise_variance"][row]),
                           psf=None if dataset.psfs is None else np.asarray(dataset.psfs[row]),
                           **{c: float(columns[c][row]) for c in CONDITION_COLUMNS},
                           **{c: columns[c][row].item() for c in extra})
                bar.update(1)
        bar.close()
        writer.set_noise_models(noise_models.array())
    return Path(out)


def _merged_noise_models(dataset: Dataset, models: np.ndarray,
                         table: NoiseModelTable) -> np.ndarray:
    """A shard's ``noise_model`` values as rows of the merged table (the same spectrum in
    two shards is one row)."""
    spectra = dataset.noise_rootps_table
    if spectra is None:
        return np.full_like(models, WHITE)
    rows = {m: table.index(spectra[m].tobytes(), lambda m=m: spectra[m])
            for m in range(len(spectra))}
    return np.array([rows.get(int(m), WHITE) for m in models], dtype=models.dtype)


def _check_shards(datasets: list[Dataset]) -> list[Dataset]:
    """The shards in index order, after checking that they are the n shards of one run."""
    shards = []
    for dataset in datasets:
        info = dataset.meta.get("source", {}).get("shard")
        if not info:
            raise InputDataError(f"{str(dataset.path)!r} is not a shard (prepare it with "
                                 "--shard i/n)")
        shards.append((int(info["index"]), int(info["count"]), dataset))
    counts = {count for _, count, _ in shards}
    if len(counts) != 1:
        raise InputDataError(f"the shards come from splits into different numbers of parts "
                             f"({sorted(counts)})")
    count = counts.pop()
    indices = sorted(index for index, _, _ in shards)
    if indices != list(range(1, count + 1)):
        missing = sorted(set(range(1, count + 1)) - set(indices))
        twice = sorted({i for i in indices if indices.count(i) > 1})
        raise InputDataError(f"the shards of a {count}-part split must each be given once: "
                             f"missing {missing}, given twice {twice}")
    ordered = [d for _, _, d in sorted(shards, key=lambda item: item[0])]
    reference = _comparable(ordered[0])
    for dataset in ordered[1:]:
        for key, value in _comparable(dataset).items():
            if reference.get(key) != value:
                raise InputDataError(
                    f"shards {str(ordered[0].path)!r} and {str(dataset.path)!r} were prepared "
                    f"differently: {key} is {reference.get(key)!r} in one and {value!r} in the "
                    "other; prepare every shard with the same options")
    return ordered


def _comparable(dataset: Dataset) -> dict[str, Any]:
    """What must agree between the shards of one run."""
    meta = dataset.meta
    out = {key: meta.get(key) for key in ("format", "format_version", "stamp_size",
                                         "psf_size", "pixel_scale", "flux_units")}
    out["split seed"] = meta["split"]["seed"]
    out["split fractions"] = meta["split"]["fractions"]
    out["catalog columns"] = dataset.catalog.colnames
    for key, value in meta.get("source", {}).items():
        if key not in PER_SHARD_FIELDS:
            out[f"source {key}"] = value
    out["shard count"] = meta["source"]["shard"]["count"]
    out["galaxies selected"] = meta["source"]["shard"].get("n_selected_all_shards")
    return out


def _merged_source(sources: list[dict[str, Any]]) -> dict[str, Any]:
    merged = {k: v for k, v in sources[0].items() if k not in PER_SHARD_FIELDS}
    for key in SUMMED_FIELDS:
        if all(key in s for s in sources):
            merged[key] = sum(int(s[key]) for s in sources)
    rejected: dict[str, int] = {}
    for s in sources:
        for reason, n in (s.get("rejected") or {}).items():
            rejected[reason] = (rejected.get(reason, 0) + int(n)
                                if reason != "cuts" and reason != "max_galaxies" else int(n))
    merged["rejected"] = rejected
    merged["warnings"] = [w for s in sources for w in s.get("warnings", [])]
    merged["hdu_repairs"] = [r for s in sources for r in (s.get("hdu_repairs") or [])]
    for key in ("noise", "psf_source"):
        merged[key] = sources[0].get(key)
    merged["merged_from_shards"] = len(sources)
    return merged
