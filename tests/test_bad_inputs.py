"""Bad input, end to end: every surface fails clearly and leaves nothing half-written.

One table, ``CASES``: each row builds one bad input (missing, corrupt or truncated FITS,
catalogs without the needed columns, NaN pixels, stamps that do not fit, empty selections,
unknown models, incomplete or tampered bundles, conditions/latents of the wrong shape or
out of range, misspelt YAML, output paths that cannot be written) and says which error
class the library raises and what its message must name (the file, column or value, and
the fix).  Each case asserts:

- the error class (for CLI rows: the sub-command's ``run`` is called directly too);
- the message (for CLI rows: on stderr after ``galsim-vae CMD: error:``, exit status 2);
- no partial output: the output path does not exist afterwards (or, when it existed
  before, is unchanged) and no ``*.tmp-*`` temporary is left beside it.

docs/reliability.md summarises the table.  Bundle security (code, pickles, Lambda layers in
weight files) is at the end of this file; ``tests/test_bundle.py`` has the model.json ones.
"""

from __future__ import annotations

import json
import pickle
import re
import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import yaml

import galsim

import galsim_vae
import galsim_vae.data
from conftest import TEST_DATA, write_tiny_dataset
from galsim_vae.bundle import load_bundle, sha256_file
from galsim_vae.cli import EXIT_ERROR, build_parser, main
from galsim_vae.errors import (BundleError, ConditionError, InputDataError, MissingInputError,
                               OutputExistsError)
from galsim_vae.io_utils import TMP_MARK
from galsim_vae.training.errors import TrainingConfigError
from test_cosmos import edit_table
from test_generator import tiny_bundle

pytest.importorskip("tensorflow")

PALTAS = TEST_DATA / "cosmos_paltas_23.5"
PSF_101 = PALTAS / "psf_101.fits"
CATALOG = "real_galaxy_catalog_23.5.fits"
PARAMS = "real_galaxy_catalog_23.5_fits.fits"
IMAGES = "real_galaxy_images_23.5_n1.fits"
DEEP_FIELD = TEST_DATA / "abell2744" / "abell_2744_dwarf_galaxy_f105w.fits.gz"
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


# ------------------------------------------------------------------------- fixtures
@dataclass
class Context:
    """What a case builds its bad input from: a fresh folder, the tiny data set, bundles."""

    tmp: Path
    dataset: Path
    bundle_folder: Path
    _cache: dict = field(default_factory=dict)

    def bundle(self, kind: str = "unconditional") -> Path:
        return tiny_bundle(kind, self.dataset, self.bundle_folder)

    def copy(self, source: Path, name: str) -> Path:
        """A writable copy of a folder (cases damage copies, never tests/data)."""
        target = shutil.copytree(source, self.tmp / name)
        for path in Path(target).iterdir():
            path.chmod(0o644)
        return Path(target)

    def dataset_copy(self, name: str = "dataset") -> Path:
        return self.copy(self.dataset, name)

    def file(self, name: str = "somefile.txt") -> Path:
        """A regular file: an output path under it cannot be created."""
        path = self.tmp / name
        path.write_text("not a folder\n")
        return path


@pytest.fixture(scope="module")
def bundle_folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("bad_input_bundles")


@pytest.fixture()
def ctx(tmp_path, tiny_dataset, bundle_folder) -> Context:
    return Context(tmp_path, tiny_dataset, bundle_folder)


def truncate(path: Path, fraction: float = 0.5) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * fraction)])
    return path


def garble(path: Path) -> Path:
    path.write_bytes(b"this is not a FITS file\n" * 300)
    return path


def edit_json(bundle: Path, change: Callable[[dict], Any]) -> Path:
    meta = json.loads((bundle / "model.json").read_text())
    change(meta)
    (bundle / "model.json").write_text(json.dumps(meta))
    return bundle


def refresh_checksum(bundle: Path, file_name: str) -> Path:
    """Record the current sha256 of ``file_name``: a tampered file that passes the checksum."""
    digest = sha256_file(bundle / file_name)
    return edit_json(bundle, lambda m: m["files"].update({file_name: digest}))


def damaged_copy(ctx: Context, source: Path, damage: Callable[[Path], Any]) -> Path:
    """A copy of the folder ``source`` after ``damage(copy)``."""
    copy = ctx.copy(source, "damaged_" + source.name)
    damage(copy)
    return copy


def nan_pixel_cosmos(ctx: Context) -> Path:
    from astropy.io import fits

    directory = ctx.copy(PALTAS, "nan_catalog")
    with fits.open(directory / IMAGES, mode="update") as hdus:
        hdus[2].data[10, 10] = np.nan
    return directory


def nan_pixel_dataset(ctx: Context) -> Path:
    path = ctx.dataset_copy()
    images = np.load(path / "images.npy", mmap_mode="r+")
    images[5, 16, 16] = np.nan
    images.flush()
    del images
    return path


def nan_deep_field(ctx: Context) -> Path:
    from astropy.io import fits

    path = ctx.tmp / "nan_field.fits"
    fits.PrimaryHDU(np.full((200, 200), np.nan, dtype=np.float32)).writeto(path)
    return path


def field_yaml(bundle: Path, out_dir: Path, **changes) -> dict:
    """examples/field.yaml at 64x64 with 3 galaxies, ``changes`` merged into ``gal``,
    ``input.vae_model`` or ``image`` (keys ``gal``, ``vae_model``, ``image``)."""
    config = yaml.safe_load((EXAMPLES / "field.yaml").read_text())
    config["input"]["vae_model"]["file_name"] = str(bundle)
    config["image"].update(size=64, nobjects=3)
    config["output"]["dir"] = str(out_dir)
    for key, value in changes.items():
        target = config["input"]["vae_model"] if key == "vae_model" else config[key]
        for name, item in value.items():
            if item is None:
                target.pop(name, None)
            else:
                target[name] = item
    return config


def run_yaml(config: dict) -> None:
    galsim.config.Process(config, logger=None)


# ----------------------------------------------------------------------------- table
@dataclass
class Case:
    """One bad input.

    ``make(ctx)`` returns ``(what, out)``: ``what`` is a CLI argv (list of str) or a
    callable that raises; ``out`` is the output path that must not appear (or, if it
    existed before, must stay unchanged).
    """

    id: str
    surface: str                      # "cli", "api" or "yaml"
    make: Callable[[Context], tuple]
    error: type
    message: str                      # regex the message must match
    marks: tuple = ()


def _cli(*argv):
    return [str(a) for a in argv]


def _cosmos(c: Context, directory: Path, *extra, psf_file: Path | None = PSF_101):
    """``prepare cosmos`` of ``directory`` (with the fallback PSF unless None) into out."""
    psf = ("--psf-file", psf_file) if psf_file is not None else ()
    out = c.tmp / "out"
    return _cli("prepare", "cosmos", "--dir", directory, *psf, *extra, "--out", out), out


CASES = [
    # -- prepare cosmos: catalogs and their files -------------------------------------
    Case("cosmos-missing-folder", "cli",
         lambda c: _cosmos(c, c.tmp / "nowhere"),
         MissingInputError, r"nowhere.* does not exist"),
    Case("cosmos-truncated-catalog", "cli",
         lambda c: _cosmos(c, damaged_copy(c, PALTAS, lambda d: truncate(d / CATALOG))),
         InputDataError, rf"{re.escape(CATALOG)}.*not a readable FITS table.*corrupt or "
                         r"truncated.*galsim_download_cosmos"),
    Case("cosmos-garbage-image-file", "cli",
         lambda c: _cosmos(c, damaged_copy(c, PALTAS, lambda d: garble(d / IMAGES))),
         InputDataError, rf"galaxy image file .*{re.escape(IMAGES)}.*HDU 0, galaxy IDENT "
                         r"\d+.*corrupt or truncated.*download the file again"),
    Case("cosmos-truncated-image-file", "cli",
         lambda c: _cosmos(c, damaged_copy(c, PALTAS, lambda d: truncate(d / IMAGES, 0.3))),
         InputDataError, rf"galaxy image file .*{re.escape(IMAGES)}.*corrupt or truncated"),
    Case("cosmos-missing-psf-file", "cli",
         lambda c: _cosmos(c, PALTAS, psf_file=None),
         MissingInputError, r"real_galaxy_PSF_images_23.5_n1.fits.*does not exist.*--psf-file"),
    Case("cosmos-truncated-psf-file", "cli",
         lambda c: _cosmos(c, PALTAS, psf_file=truncate(
             Path(shutil.copy(PSF_101, c.tmp / "psf.fits")), 0.1)),
         InputDataError, r"PSF file .*psf.fits.* not a readable FITS file.*intact"),
    Case("cosmos-column-map-to-a-missing-column", "cli",
         lambda c: _cosmos(c, damaged_copy(c, PALTAS, lambda d: edit_table(d / PARAMS, zphot=None)),
                           "--column", "zphot=PHOTOZ"),
         InputDataError, rf"--column zphot=PHOTOZ: neither .*{re.escape(PARAMS)}.* has a "
                         r"column 'PHOTOZ'"),
    Case("cosmos-nan-pixels", "cli",
         lambda c: _cosmos(c, nan_pixel_cosmos(c)),
         InputDataError, r"IDENT 93315.*NaN/inf pixels.*--skip-invalid"),
    Case("cosmos-stamp-does-not-fit", "cli",
         lambda c: _cosmos(c, PALTAS, "--oversize", "error"),
         InputDataError, r"IDENT 141190: stamp 234x233 .* does not fit in 128x128.*--stamp-size"),
    Case("cosmos-stamp-size-too-small", "cli",
         lambda c: _cosmos(c, PALTAS, "--stamp-size", "4"),
         InputDataError, r"stamp_size must be >= 8 .* got 4"),
    Case("cosmos-empty-selection", "cli",
         lambda c: _cosmos(c, PALTAS, "--min-hlr", "5"),
         InputDataError, r"no galaxy of .*passes GalSim's cuts.*loosen the cuts"),
    # -- prepare deepfield ----------------------------------------------------------
    Case("deepfield-missing-image", "cli",
         lambda c: (_cli("prepare", "deepfield", c.tmp / "field.fits", "--out", c.tmp / "out"),
                    c.tmp / "out"),
         MissingInputError, r"field.fits"),
    Case("deepfield-truncated-image", "cli",
         lambda c: (_cli("prepare", "deepfield",
                         truncate(Path(shutil.copy(DEEP_FIELD, c.tmp / "f.fits.gz")), 0.5),
                         "--out", c.tmp / "out"), c.tmp / "out"),
         InputDataError, r"f.fits.gz.* not a readable FITS file \(corrupt or truncated\?\)"),
    Case("deepfield-all-nan-image", "cli",
         lambda c: (_cli("prepare", "deepfield", nan_deep_field(c), "--pixel-scale", "0.06",
                         "--out", c.tmp / "out"), c.tmp / "out"),
         InputDataError, r"nan_field.fits.* has no finite pixel"),
    Case("deepfield-stamp-larger-than-image", "cli",
         lambda c: (_cli("prepare", "deepfield", DEEP_FIELD, "--stamp-size", "5000",
                         "--out", c.tmp / "out"), c.tmp / "out"),
         InputDataError, r"stamp_size 5000 is larger than the image"),
    # -- simulate: output paths -------------------------------------------------------
    Case("simulate-zero-galaxies", "cli",
         lambda c: (_cli("simulate", "--n", "0", "--out", c.tmp / "out"), c.tmp / "out"),
         InputDataError, r"n=0 is invalid: give an integer >= 1"),
    Case("simulate-out-under-a-file", "cli",
         lambda c: (_cli("simulate", "--n", "2", "--out", c.file() / "out"), c.tmp / "somefile.txt" / "out"),
         MissingInputError, r"somefile.txt' is a file, not a folder"),
    Case("simulate-out-parent-missing", "cli",
         lambda c: (_cli("simulate", "--n", "2", "--out", c.tmp / "a" / "b" / "out"),
                    c.tmp / "a" / "b" / "out"),
         MissingInputError, r"folder '.*/a/b' does not exist; create it first"),
    # -- train: data sets ---------------------------------------------------------------
    Case("train-missing-dataset", "cli",
         lambda c: (_cli("train", c.tmp / "no_dataset", "--out", c.tmp / "out"), c.tmp / "out"),
         MissingInputError, r"data set folder .*no_dataset' does not exist"),
    Case("train-truncated-images", "cli",
         lambda c: (_cli("train", damaged_copy(c, c.dataset, lambda d: truncate(d / "images.npy", 0.3)),
                         "--out", c.tmp / "out"), c.tmp / "out"),
         InputDataError, r"images.npy' is unreadable or truncated.*make the data set again"),
    Case("train-garbage-catalog", "cli",
         lambda c: (_cli("train", damaged_copy(c, c.dataset, lambda d: garble(d / "catalog.fits")),
                         "--out", c.tmp / "out", "--epochs", "1"), c.tmp / "out"),
         InputDataError, r"catalog.fits' is not a readable FITS table.*make the data set again"),
    Case("train-unknown-condition-column", "cli",
         lambda c: (_cli("train", c.dataset, "--out", c.tmp / "out", "--conditions", "redshift"),
                    c.tmp / "out"),
         InputDataError, r"no finite 'redshift' values to condition on; it has \["),
    Case("train-nan-pixels", "cli",
         lambda c: (_cli("train", nan_pixel_dataset(c), "--out", c.tmp / "out", "--model", "vae",
                         "--epochs", "2", "--batch-size", "96", "--latent-size", "2",
                         "--channels", "4,8", "--no-flow-prior", "--seed", "1"), c.tmp / "out"),
         InputDataError, r"NaN/inf pixels \(first in row 5, ident 10005\).*make it again"),
    Case("train-out-under-a-file", "cli",
         lambda c: (_cli("train", c.dataset, "--out", c.file() / "bundle"),
                    c.tmp / "somefile.txt" / "bundle"),
         MissingInputError, r"is a file, not a folder"),
    # -- sample: models, conditions, outputs ------------------------------------------
    Case("sample-unknown-model", "cli",
         lambda c: (_cli("sample", "no_such_model", "--out", c.tmp / "out.fits"), c.tmp / "out.fits"),
         BundleError, r"no model bundle 'no_such_model'.*available"),
    Case("sample-bundle-missing-weights", "cli",
         lambda c: (_cli("sample", _without_weights(c, "unconditional"), "--out", c.tmp / "out.fits"),
                    c.tmp / "out.fits"),
         BundleError, r"lacks the file 'weights.weights.h5'.*copy it again"),
    Case("sample-redshift-out-of-range", "cli",
         lambda c: (_cli("sample", c.bundle("conditional"), "--redshift", "9", "--out",
                         c.tmp / "out.fits"), c.tmp / "out.fits"),
         ConditionError, r"zphot=9 is outside the training range \[.*\].*clip"),
    Case("sample-redshift-for-unconditional-model", "cli",
         lambda c: (_cli("sample", c.bundle(), "--redshift", "0.5", "--out", c.tmp / "out.fits"),
                    c.tmp / "out.fits"),
         ConditionError, r"not conditioned on redshift.*do not pass redshift=0.5"),
    Case("sample-output-exists", "cli",
         lambda c: (_cli("sample", c.bundle(), "--out", c.file("out.fits")), c.tmp / "out.fits"),
         OutputExistsError, r"out.fits' exists already.*--overwrite"),
    Case("evaluate-stamp-size-mismatch", "cli",
         lambda c: (_cli("evaluate", c.bundle(), "--data",
                         write_tiny_dataset(c.tmp / "ds24", n=12, stamp_size=24),
                         "--out", c.tmp / "report"), c.tmp / "report"),
         InputDataError, r"the bundle generates 32x32 stamps, the data set holds 24x24.*--stamp-size 32"),
    # -- Python API -------------------------------------------------------------------
    Case("api-bundle-newer-format", "api",
         lambda c: ((lambda: galsim_vae.load_model(edit_json(
             c.copy(c.bundle(), "bundle"), lambda m: m.update(format_version=99)))), None),
         BundleError, r"format_version 99.*upgrade galsim-vae"),
    Case("api-weights-fail-checksum", "api",
         lambda c: ((lambda: galsim_vae.load_model(_flip_byte(c.copy(c.bundle(), "bundle")))), None),
         BundleError, r"checksum mismatch for .*weights.weights.h5.*copy the bundle again"),
    Case("api-latent-wrong-shape", "api",
         lambda c: ((lambda: galsim_vae.load_model(c.bundle()).generate(2, latent=np.zeros((2, 5)))), None),
         ConditionError, r"latent must be .* shape \(2, 3\) .* got shape \(2, 5\)"),
    Case("api-redshift-wrong-shape", "api",
         lambda c: ((lambda: galsim_vae.load_model(c.bundle("conditional")).generate(
             3, redshift=[0.5, 0.6])), None),
         ConditionError, r"'zphot' .* must be a scalar or an array of shape \(3,\), got shape \(2,\)"),
    Case("api-redshift-nan", "api",
         lambda c: ((lambda: galsim_vae.VAEGalaxy(galsim_vae.load_model(c.bundle("conditional")),
                                                 redshift=float("nan"), rng=1)), None),
         ConditionError, r"'zphot' has non-finite values"),
    Case("api-dataset-from-killed-run", "api",
         lambda c: ((lambda: galsim_vae.data.Dataset(_killed_writer_folder(c))), None),
         MissingInputError, r"dataset.json' does not exist: .* is not a complete galsim-vae data set"),
    Case("api-writer-nan-stamp", "api",
         lambda c: ((lambda: _write_nan_stamp(c.tmp / "out")), c.tmp / "out"),
         InputDataError, r"galaxy 7: stamp has NaN or inf pixels"),
    Case("api-pipeline-batch-size-zero", "api",
         lambda c: ((lambda: galsim_vae.data.make_tf_dataset(c.dataset, batch_size=0)), None),
         InputDataError, r"batch_size must be a whole number >= 1, got 0"),
    # -- GalSim YAML --------------------------------------------------------------------
    Case("yaml-misspelt-field", "yaml",
         lambda c: ((lambda: run_yaml(field_yaml(c.bundle("conditional"), c.tmp / "o",
                                                 gal={"redshfit": 0.5}))), c.tmp / "o" / "field.fits"),
         galsim.GalSimConfigError, r"Unexpected attribute redshfit"),
    Case("yaml-missing-file-name", "yaml",
         lambda c: ((lambda: run_yaml(field_yaml(c.bundle("conditional"), c.tmp / "o",
                                                 vae_model={"file_name": None}))),
                    c.tmp / "o" / "field.fits"),
         galsim.GalSimConfigError, r"Attribute file_name is required"),
    Case("yaml-unknown-model", "yaml",
         lambda c: ((lambda: run_yaml(field_yaml(c.bundle("conditional"), c.tmp / "o",
                                                 vae_model={"file_name": "cvae2_nope"}))),
                    c.tmp / "o" / "field.fits"),
         BundleError, r"no model bundle 'cvae2_nope'.*available"),
    Case("yaml-redshift-out-of-range", "yaml",
         lambda c: ((lambda: run_yaml(field_yaml(c.bundle("conditional"), c.tmp / "o",
                                                 gal={"redshift": 12.0}))), c.tmp / "o" / "field.fits"),
         ConditionError, r"VAEGalaxy \(object 0\): zphot=12 is outside the training range.*clip"),
    Case("yaml-latent-wrong-length", "yaml",
         lambda c: ((lambda: run_yaml(field_yaml(c.bundle("conditional"), c.tmp / "o",
                                                 gal={"latent": [0.0, 1.0]}))), c.tmp / "o" / "field.fits"),
         galsim.GalSimConfigError, r"VAEGalaxy.latent must be a list of 4 floats"),
    Case("yaml-bundle-incomplete", "yaml",
         lambda c: ((lambda: run_yaml(field_yaml(_without_weights(c), c.tmp / "o"))),
                    c.tmp / "o" / "field.fits"),
         BundleError, r"lacks the file 'weights.weights.h5'"),
    Case("yaml-latent-nan", "yaml",
         lambda c: ((lambda: run_yaml(field_yaml(c.bundle("conditional"), c.tmp / "o",
                                                 gal={"latent": [float("nan"), 0.0, 0.0, 0.0]}))),
                    c.tmp / "o" / "field.fits"),
         ConditionError, r"latent .*(finite|NaN)"),
]


def _flip_byte(bundle: Path) -> Path:
    data = bytearray((bundle / "weights.weights.h5").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (bundle / "weights.weights.h5").write_bytes(bytes(data))
    return bundle


def _without_weights(c: Context, kind: str = "conditional") -> Path:
    bundle = c.copy(c.bundle(kind), "bundle")
    (bundle / "weights.weights.h5").unlink()
    return bundle


def _killed_writer_folder(c: Context) -> Path:
    """What a writer killed mid-run leaves: the temporary folder, with arrays but no manifest."""
    from galsim_vae.data import DatasetWriter

    out = c.tmp / "out"
    writer = DatasetWriter(out, max_galaxies=4, stamp_size=16, pixel_scale=0.03, flux_units="e-")
    writer.__enter__()  # never exited: as if the process died here
    c._cache["writer"] = writer  # (garbage collection would clean the folder up)
    writer.add(np.ones((16, 16)), ident=1, noise_variance=1.0)
    writer._images.flush()
    (tmp,) = [p for p in c.tmp.iterdir() if TMP_MARK in p.name]
    assert not out.exists()
    return tmp


def _write_nan_stamp(out: Path) -> None:
    from galsim_vae.data import DatasetWriter

    with DatasetWriter(out, max_galaxies=10, stamp_size=16, pixel_scale=0.03,
                       flux_units="e-") as writer:
        for ident in range(10):
            image = np.ones((16, 16))
            if ident == 7:
                image[3, 3] = np.inf
            writer.add(image, ident=ident, noise_variance=1.0)


def _leftover_temporaries(out: Path) -> list[Path]:
    parent = out.parent
    if not parent.is_dir():
        return []
    return [p for p in parent.iterdir() if p.name.startswith(out.name + TMP_MARK)]


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id, marks=c.marks) for c in CASES])
def test_bad_input(case: Case, ctx: Context, capsys, monkeypatch):
    monkeypatch.setenv("GALSIM_VAE_PROGRESS", "0")
    what, out = case.make(ctx)
    before = out.read_bytes() if out is not None and out.is_file() else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the repairs' warnings (missing selection file...)
        if case.surface == "cli":
            args = build_parser().parse_args(["--quiet", *what])
            with pytest.raises(case.error) as info:
                args.run(args)
            assert re.search(case.message, str(info.value)), str(info.value)
            capsys.readouterr()
            assert main(["--quiet", *what]) == EXIT_ERROR
            err = capsys.readouterr().err
            assert err.startswith(f"galsim-vae {what[0]}: error: "), err
            assert re.search(case.message, err), err
            assert "Traceback" not in err
        else:
            with pytest.raises(case.error) as info:
                what()
            assert re.search(case.message, str(info.value)), str(info.value)
    if out is not None:
        if before is not None:
            assert out.read_bytes() == before  # an existing output is left as it was
        else:
            assert not out.exists(), f"partial output left at {out}"
        assert _leftover_temporaries(out) == []
    if case.id == "train-nan-pixels":  # failed before its first checkpoint: nothing kept
        assert not (ctx.tmp / "out.checkpoints").exists()


def test_table_covers_every_surface():
    surfaces = {c.surface for c in CASES}
    assert surfaces == {"cli", "api", "yaml"}
    assert len(CASES) >= 25
    assert len({c.id for c in CASES}) == len(CASES)


# ------------------------------------------------------------- stale temporaries
def test_stale_temporaries_are_named_with_how_to_remove_them(tiny_dataset, tmp_path):
    """A killed run leaves ``out.tmp-*``; the next run works, and warns naming it."""
    stale = tmp_path / ("out" + TMP_MARK + "abc123")
    stale.mkdir()
    (stale / "images.npy").write_bytes(b"partial")
    with pytest.warns(UserWarning, match=rf"interrupted earlier run.*{stale.name}.*rm -rf"):
        path = write_tiny_dataset(tmp_path / "out", n=8)
    assert len(galsim_vae.data.Dataset(path)) == 8
    assert stale.is_dir()  # never deleted behind the user's back: another run may own it


# ------------------------------------------------------------- bundle security
def _marker_payload(marker: Path):
    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    return Payload()


@pytest.fixture()
def bundle_copy(ctx) -> Path:
    return ctx.copy(ctx.bundle(), "tampered")


def test_weights_replaced_by_a_pickle_are_never_unpickled(bundle_copy, tmp_path):
    marker = tmp_path / "code_ran"
    (bundle_copy / "weights.weights.h5").write_bytes(pickle.dumps(_marker_payload(marker)))
    refresh_checksum(bundle_copy, "weights.weights.h5")
    with pytest.raises(BundleError, match=r"weights.weights.h5' is a Python pickle; .*never "
                                          r"unpickles"):
        load_bundle(bundle_copy)
    assert not marker.exists()


def test_keras_archive_instead_of_weights_refused(bundle_copy, tmp_path):
    import zipfile

    with zipfile.ZipFile(bundle_copy / "weights.weights.h5", "w") as archive:
        archive.writestr("config.json", json.dumps({"class_name": "Lambda"}))
    refresh_checksum(bundle_copy, "weights.weights.h5")
    with pytest.raises(BundleError, match=r"is a zip archive \(a .keras model\?\)"):
        load_bundle(bundle_copy)


def test_h5_with_a_lambda_layer_config_is_refused_without_running_it(bundle_copy, tmp_path):
    """A whole Keras model saved as .h5 (model_config naming a Lambda layer whose function
    would write a marker file) put in place of the weights, checksum updated."""
    import keras

    marker = tmp_path / "lambda_ran"
    inputs = keras.Input((3,))
    marker_name = str(marker)
    outputs = keras.layers.Lambda(lambda x: (open(marker_name, "w").close(), x)[1])(inputs)
    saved = tmp_path / "lambda_model.h5"
    keras.Model(inputs, outputs).save(str(saved))
    marker.unlink(missing_ok=True)  # building the model called the Lambda once
    shutil.copy(saved, bundle_copy / "weights.weights.h5")
    refresh_checksum(bundle_copy, "weights.weights.h5")
    with pytest.raises(BundleError, match=r"holds a whole serialised Keras model \(a layer "
                                          r"configuration including a Lambda layer"):
        load_bundle(bundle_copy)
    assert not marker.exists()


def test_flow_prior_file_replaced_by_a_pickle(tmp_path):
    from galsim_vae.bundle import save_bundle
    from galsim_vae.models import build_model
    from galsim_vae.models.prior_fit import fit_flow_prior

    model = build_model("vae", stamp_size=16, latent_size=2, channels=[4])
    prior = fit_flow_prior(np.random.default_rng(0).normal(size=(32, 2)), epochs=1,
                           batch_size=32, n_couplings=2, hidden_units=(4,))
    bundle = save_bundle(model, tmp_path / "flow", name="flow", flux_scale=1.0,
                         flux_units="e-", pixel_scale=0.03, conditions=[], psf_free=True,
                         prior=prior)
    marker = tmp_path / "prior_code_ran"
    (bundle / "prior.weights.h5").write_bytes(pickle.dumps(_marker_payload(marker)))
    refresh_checksum(bundle, "prior.weights.h5")
    with pytest.raises(BundleError, match=r"prior.weights.h5' is a Python pickle"):
        load_bundle(bundle)
    assert not marker.exists()


@pytest.mark.parametrize("change, message", [
    (lambda m: m.update(architecture="mypackage.models.MyVAE"),
     r"architecture 'mypackage.models.MyVAE' is not one of"),
    (lambda m: m.update(custom_objects={"module": "os", "class_name": "system"}),
     r"custom_objects.module describes a serialised object or code"),
    (lambda m: m["hyperparameters"].update(dtype="os.system"),
     r"cannot build 'vae' from its hyperparameters"),
    (lambda m: m["files"].update({"../../outside.h5": "sha256:00"}),
     r"file name '../../outside.h5' must not contain a folder"),
], ids=["module-path-architecture", "custom-objects", "dtype-import-path", "path-traversal"])
def test_model_json_naming_code_or_outside_files_refused(bundle_copy, change, message):
    """Beyond tests/test_bundle.py: module paths, custom_objects, escaping the folder."""
    edit_json(bundle_copy, change)
    with pytest.raises(BundleError, match=message):
        load_bundle(bundle_copy)
