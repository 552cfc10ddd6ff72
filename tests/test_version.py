"""`xmixup --version` names the package version (the one pyproject.toml declares)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import xmixup
from xmixup.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]


def test_version_flag_prints_the_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"xmixup {xmixup.__version__}"


def test_package_version_matches_pyproject() -> None:
    declared = re.search(r'^version = "([^"]+)"$', (ROOT / "pyproject.toml").read_text(), re.M)
    assert declared is not None
    assert xmixup.__version__ == declared.group(1)
