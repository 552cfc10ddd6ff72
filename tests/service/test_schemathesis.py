"""Property-based fuzzing of every operation in /openapi.json: no 5xx for anything."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.service.conftest import ADMIN_KEY

pytestmark = pytest.mark.integration


def test_schemathesis_finds_no_server_error(server: Any) -> None:
    exe = shutil.which("schemathesis") or str(Path(sys.executable).parent / "schemathesis")
    run = subprocess.run(
        [
            exe,
            "run",
            f"{server.url}/openapi.json",
            "--checks",
            "not_a_server_error",
            "--max-examples",
            "20",  # bounded: ~500 cases over the 9 operations, a few seconds
            "--seed",
            "1",
            "-H",  # the admin key: POST /v1/admin/reload rescans (an unchanged directory)
            f"Authorization: Bearer {ADMIN_KEY}",
        ],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert "No issues found" in run.stdout, run.stdout[-6000:]
    assert '"status": 500' not in server.log() and "Traceback" not in server.log()
