"""Packaging: every sub-package is installed, importing galsim_vae stays light, the CLI runs."""

from __future__ import annotations

import configparser
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _listed_packages() -> set[str]:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    return {line.strip() for line in cfg["options"]["packages"].splitlines() if line.strip()}


def test_every_subpackage_is_listed_in_setup_cfg():
    found = {".".join(p.parent.relative_to(ROOT).parts)
             for p in (ROOT / "galsim_vae").rglob("__init__.py")}
    found.add("galsim_vae.trained")
    assert found <= _listed_packages(), f"add to setup.cfg [options] packages: {found - _listed_packages()}"


def test_import_does_not_load_tensorflow():
    code = "import sys, galsim_vae; print('tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_cli_help_and_version():
    from galsim_vae import __version__
    from galsim_vae.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    out = subprocess.run([sys.executable, "-m", "galsim_vae", "--help"], capture_output=True,
                         text=True, check=True)
    assert "prepare" in out.stdout
    assert __version__.count(".") == 2


def test_cli_unknown_command_fails():
    out = subprocess.run([sys.executable, "-m", "galsim_vae", "no-such-command"],
                         capture_output=True, text=True)
    assert out.returncode != 0
    assert "invalid choice" in out.stderr
