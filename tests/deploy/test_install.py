"""The images' install recipe, run for real in a fresh venv (no docker daemon needed).

The build context is assembled exactly as the Dockerfile's build stage COPYs it, then
docker/install-serve.sh runs as the Dockerfile runs it. A broken lock, a missing serving
dependency, a torch import in service/ or a broken `xmixup serve` entrypoint fails here.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import venv
from pathlib import Path

import pytest

from tests.deploy.helpers import (
    DOCKER,
    REPO,
    free_port,
    load_docker_module,
    parse_dockerfile,
    stages,
    wait_http,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(600)]

WORKDIR = "/src"  # the build stage's WORKDIR


def build_context(variant: str, dest: Path) -> Path:
    """Copy what the build stage of docker/Dockerfile.<variant> COPYs, where it COPYs it."""
    build = stages(parse_dockerfile(DOCKER / f"Dockerfile.{variant}"))[0]
    workdir = next(args for instr, args in build if instr == "WORKDIR")
    assert workdir == WORKDIR
    for instr, args in build:
        if instr != "COPY" or args.startswith("--"):
            continue
        *sources, target = args.split()
        for src in sources:
            path = REPO / src
            assert path.exists(), f"Dockerfile.{variant} COPYs {src}, which does not exist"
            out = dest / target / path.name if target.endswith("/") else dest / target
            out.parent.mkdir(parents=True, exist_ok=True)
            if path.is_dir():
                shutil.copytree(
                    path, out, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
                )
            else:
                shutil.copy2(path, out)
    return dest


def test_check_serve_env_rejects_a_training_env() -> None:
    """The checker the images run can fail: this dev venv has torch and training extras."""
    problems = load_docker_module("check_serve_env").problems("cpu")
    try:
        import torch  # noqa: F401
    except ImportError:
        pytest.skip("torch not installed here: nothing for the checker to reject")
    assert any(p.startswith("torch==") for p in problems), problems
    gpu_problems = load_docker_module("check_serve_env").problems("gpu")
    assert any("onnxruntime-gpu" in p for p in gpu_problems), gpu_problems


@pytest.mark.parametrize("variant", ["cpu", "gpu"])
def test_image_install_recipe_in_fresh_venv(
    variant: str, tmp_path: Path, deploy_bundles: Path
) -> None:
    if variant == "gpu" and os.environ.get("XMIXUP_TEST_GPU_INSTALL") != "1":
        pytest.skip(
            "onnxruntime-gpu is a large download; set XMIXUP_TEST_GPU_INSTALL=1 to install the "
            "GPU lock too (its pins are checked against the CPU lock in test_configs.py)"
        )
    context = build_context(variant, tmp_path / "src")
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True, clear=True).create(env_dir)
    python = env_dir / "bin" / "python"
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("XMIXUP_", "PYTHON", "VIRTUAL_ENV"))
    }
    env["PYTHON"] = str(python)
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    # exactly the Dockerfile's RUN: sh docker/install-serve.sh <variant> /src
    run = subprocess.run(
        ["sh", "docker/install-serve.sh", variant, str(context)],
        cwd=context,
        env=env,
        capture_output=True,
        text=True,
        timeout=540,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-5000:]
    assert f"{variant} serving environment OK" in run.stdout

    # The installed app imports without torch, from site-packages (not the source tree).
    probe = (
        "import json, sys, importlib.util, service.app; "
        "print(json.dumps({'torch_installed': importlib.util.find_spec('torch') is not None, "
        "'heavy_imported': sorted({m.split('.')[0] for m in sys.modules} "
        "& {'torch', 'transformers', 'training'}), 'app_file': service.app.__file__}))"
    )
    out = subprocess.run(
        [str(python), "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    facts = json.loads(out.stdout)
    assert facts["torch_installed"] is False
    assert facts["heavy_imported"] == []
    assert str(env_dir) in facts["app_file"]
    site = next((env_dir / "lib").glob("python*/site-packages"))
    assert not (site / "training").exists(), "training code must not be in the serving install"

    if variant == "gpu":
        return  # no CUDA here: serving is exercised by the CPU variant
    # The image's ENTRYPOINT (`xmixup serve`) from this venv serves a bundle and drains on SIGTERM.
    port = free_port()
    env.update(XMIXUP_MODELS_DIR=str(deploy_bundles), XMIXUP_PORT=str(port))
    env.update(XMIXUP_HOST="127.0.0.1", XMIXUP_INTRA_OP_THREADS="1")
    log = tmp_path / "serve.log"
    with log.open("wb") as fh:
        proc = subprocess.Popen(
            [str(env_dir / "bin" / "xmixup"), "serve"],
            cwd=tmp_path,
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_http(f"http://127.0.0.1:{port}/readyz", timeout=60, proc=proc, log=log)
        import httpx

        resp = httpx.post(
            f"http://127.0.0.1:{port}/classify",
            json={"inputs": [{"target": "Wo ist der Bahnhof?", "source": "Where is the station?"}]},
            timeout=30,
        )
        assert resp.status_code == 200, resp.text
        assert resp.json()["results"][0]["label"] in {"entail", "neutral", "contra"}
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
