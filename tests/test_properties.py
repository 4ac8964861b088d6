"""Property-based tests (hypothesis) of the public inputs: every value either gives a
valid object or a clear error that names the parameter, never a traceback from deep
inside, a NaN galaxy or a half-written file."""

from __future__ import annotations

import math

import galsim
import numpy as np
import pytest
from galsim.errors import GalSimConfigError
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import galsim_vae
from galsim_vae.cli import main
from galsim_vae.errors import ConditionError

from test_config import bundle, model, one_galaxy  # noqa: F401  (fixtures)

#: Any float, the troublesome ones included.
ANY_FLOAT = st.one_of(st.floats(allow_nan=True, allow_infinity=True),
                      st.floats(min_value=-5, max_value=5))
SETTINGS = settings(max_examples=40, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


def _inside(model, value) -> bool:
    cond = model.conditions[0]
    return math.isfinite(value) and cond.min <= value <= cond.max


@SETTINGS
@given(value=ANY_FLOAT, n=st.integers(min_value=-2, max_value=5))
def test_condition_values(model, value, n):
    """A scalar condition for n galaxies: the checked array, or ConditionError naming the
    condition (or n) and, for a finite value outside the range, the range."""
    cond = model.conditions[0]
    try:
        values = model.condition_values(n, zphot=value)
    except ConditionError as err:
        text = str(err)
        if n < 1:
            assert "n=" in text or "positive" in text or "length" in text
        else:
            assert "zphot" in text
            assert not _inside(model, value)
            if math.isfinite(value):
                assert f"{cond.min:g}" in text and f"{cond.max:g}" in text
        return
    assert n >= 1 and _inside(model, value)
    assert values.shape == (n, 1) and np.all(values == value)


@SETTINGS
@given(values=st.lists(ANY_FLOAT, min_size=0, max_size=6), clip=st.booleans())
def test_condition_arrays(model, values, clip):
    """Per-galaxy arrays: each row in range (or clipped into it), or an error naming the
    condition."""
    cond = model.conditions[0]
    try:
        out = model.condition_values(len(values) or 1, zphot=np.array(values), clip=clip)
    except ConditionError as err:
        assert "zphot" in str(err) or "n=" in str(err)
        ok_lengths = len(values) >= 1
        bad = [v for v in values if not math.isfinite(v)] or (
            [] if clip else [v for v in values if not cond.min <= v <= cond.max])
        assert bad or not ok_lengths
        return
    assert out.shape == (len(values), 1)
    assert np.all((out >= cond.min) & (out <= cond.max))


@SETTINGS
@given(redshift=ANY_FLOAT, flux=st.one_of(st.none(), ANY_FLOAT),
       magnitude=st.one_of(st.none(), st.just(math.nan), st.floats(min_value=-50, max_value=80)))
def test_vaegalaxy_parameters(model, redshift, flux, magnitude):
    """VAEGalaxy: a finite galaxy with the asked flux, or ValueError/ConditionError whose
    message names the parameter at fault."""
    try:
        gal = galsim_vae.VAEGalaxy(model, redshift=redshift, rng=3, flux=flux,
                                   magnitude=magnitude)
    except ConditionError as err:
        assert "zphot" in str(err) or "redshift" in str(err)
        assert not _inside(model, redshift)
        return
    except ValueError as err:
        text = str(err)
        assert any(word in text for word in ("flux", "magnitude")), text
        return
    assert _inside(model, redshift) and np.isfinite(gal.stamp).all()
    if magnitude is None and flux is not None:
        assert gal.flux == pytest.approx(flux, rel=1e-6, abs=1e-300)
    if magnitude is not None:
        assert gal.magnitude == pytest.approx(magnitude, abs=1e-6)


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(redshift=st.one_of(ANY_FLOAT, st.text(max_size=4)),
       flux=st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True)))
@example(redshift=1.0, flux=math.inf)
@example(redshift=1.0, flux=math.nan)
def test_yaml_fields(bundle, model, redshift, flux):
    """The YAML type: a galaxy, or a GalSim config error / ConditionError naming the
    field."""
    config = {"type": "VAEGalaxy", "redshift": redshift}
    if flux is not None:
        config["flux"] = flux
    try:
        gal = one_galaxy(config, bundle, 5)
    except ConditionError as err:
        assert "zphot" in str(err) or "redshift" in str(err)
        return
    except (GalSimConfigError, ValueError) as err:
        text = str(err)
        assert "redshift" in text or "flux" in text or "VAEGalaxy" in text, text
        return
    assert _inside(model, float(redshift))       # GalSim reads numbers from strings too
    assert np.isfinite(gal.stamp).all()
    if flux is not None:
        assert math.isfinite(flux) and gal.flux == pytest.approx(flux, rel=1e-6, abs=1e-300)


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.integers(min_value=-3, max_value=4),
       seed=st.one_of(st.none(), st.integers(min_value=-2**40, max_value=2**40)),
       value=st.sampled_from(["0.5", "1e9", "nan", "-inf", "abc", ""]))
def test_cli_sample_numbers(bundle, tmp_path_factory, capsys, n, seed, value):
    """``galsim-vae sample`` with any --n, --seed and condition text: a FITS cube of n
    planes, or exit status 2 with one error line and no output file."""
    out = tmp_path_factory.mktemp("cli") / "stamps.fits"
    args = ["sample", str(bundle), "--n", str(n), "--condition", f"zphot={value}",
            "--out", str(out)]
    if seed is not None:
        args += ["--seed", str(seed)]
    try:
        status = main(args)
    except SystemExit as exit_:          # argparse refusing a value
        status = exit_.code
    err = capsys.readouterr().err
    if status == 0:
        assert n >= 1 and value == "0.5"
        assert galsim.fits.readCube(str(out)).__len__() == n
    else:
        assert status == 2 and "error" in err and "Traceback" not in err
        assert not out.exists()
