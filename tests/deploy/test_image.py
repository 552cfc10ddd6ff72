"""The CPU image built and run for real by docker/build-local.sh (podman, no daemon, no registry).

Skipped unless XMIXUP_IMAGE_TEST=1: it needs root, podman + debootstrap + runc, the Debian mirror
and PyPI, and about five minutes (debootstrap ~3 min, build ~1.5 min). The container's answer is
compared with this venv's `xmixup serve` on the same bundles: the image must serve what the
code serves, not merely answer 200.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy.helpers import DOCKER, REPO, free_port, wait_http

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.timeout(1500),
    pytest.mark.skipif(
        os.environ.get("XMIXUP_IMAGE_TEST") != "1",
        reason="builds a container image (root, podman, network, minutes): XMIXUP_IMAGE_TEST=1",
    ),
]

REQUEST = {"inputs": [{"target": "Wo ist der Bahnhof?", "source": "Where is the station?"}]}


def readable_copy(models: Path, dest: Path) -> Path:
    """The image runs as uid 10001; pytest's temp dirs are 0700 root, unreadable to it."""
    shutil.copytree(models, dest)
    for path in [dest, *dest.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return dest


def venv_answer(models: Path, tmp_path: Path) -> dict[str, object]:
    """POST REQUEST to this venv's `xmixup serve` on the same bundles."""
    import httpx

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("XMIXUP_")}
    env.update(PYTHONPATH=str(REPO), XMIXUP_MODELS_DIR=str(models), XMIXUP_PORT=str(port))
    env.update(XMIXUP_HOST="127.0.0.1", XMIXUP_INTRA_OP_THREADS="1")
    log = tmp_path / "venv-serve.log"
    with log.open("wb") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "xmixup", "serve"], env=env, stdout=fh, stderr=fh
        )
    try:
        wait_http(f"http://127.0.0.1:{port}/readyz", timeout=60, proc=proc, log=log)
        resp = httpx.post(f"http://127.0.0.1:{port}/classify", json=REQUEST, timeout=30)
        assert resp.status_code == 200, resp.text
        return dict(resp.json())
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


def test_cpu_image_builds_serves_like_the_venv_and_drains(
    tmp_path: Path, deploy_bundles: Path
) -> None:
    missing = [tool for tool in ("podman", "debootstrap", "runc", "curl") if not shutil.which(tool)]
    if missing or os.geteuid() != 0:
        pytest.skip(f"needs root and {missing or 'podman, debootstrap, runc, curl'}")
    models = readable_copy(deploy_bundles, tmp_path / "models")
    env = {**os.environ, "XMIXUP_IMAGE_WORK": str(tmp_path / "work")}
    env["XMIXUP_IMAGE_PORT"] = str(free_port())
    script = str(DOCKER / "build-local.sh")
    try:
        run = subprocess.run(
            [script, "all", str(models)], env=env, capture_output=True, text=True, timeout=1380
        )
    finally:
        subprocess.run([script, "clean"], env=env, capture_output=True, timeout=120)
    out = run.stdout
    assert run.returncode == 0, out[-3000:] + run.stderr[-3000:]
    assert "cpu serving environment OK" in out  # check_serve_env ran inside the build
    assert "user 10001;" in out and "HEALTHCHECK passes" in out
    assert "stopped (SIGTERM, drained), exit code 0" in out

    line = next(x for x in out.splitlines() if x.startswith("build-local: classify: "))
    image = json.loads(line.removeprefix("build-local: classify: "))["results"][0]
    venv = venv_answer(models, tmp_path)["results"][0]
    assert isinstance(venv, dict)
    assert image["label"] == venv["label"]
    assert image["scores"] == pytest.approx(venv["scores"], abs=1e-5)
    assert image["mixup_ratio"] == pytest.approx(venv["mixup_ratio"], abs=1e-5)
