"""Service fixtures: real tiny bundles exported from random checkpoints, and real servers.

Bundles are built once per session (one per task, plus a translate-train baseline whose graph
takes no source stream). Servers are `xmixup serve` subprocesses on 127.0.0.1; each one reports,
when it exits, which torch / transformers / training modules it had imported (must be none).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]
ADMIN_KEY = "test-admin-key"
LABELS = {
    "classify": ["negative", "neutral", "positive"],
    "tag": ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"],
    "qa": [],
}
# QA gets a short max_length so a paragraph needs several doc-stride windows.
EXTRA: dict[str, dict[str, Any]] = {
    "classify": {},
    "tag": {"tag_scheme": "BIO"},
    "qa": {"max_length": 64, "doc_stride": 16, "max_query_length": 16},
}

# The report is written when the app's lifespan ends (after the drain), not at atexit: it must
# also cover servers stopped by SIGINT, which uvicorn re-raises after shutting down.
_LAUNCHER = """
import contextlib, json, sys
import service.lifecycle

_lifespan = service.lifecycle.lifespan

@contextlib.asynccontextmanager
async def _reporting(app):
    try:
        async with _lifespan(app):
            yield
    finally:
        # training.cli / training.commands are the argparse-only shells the `xmixup` dispatcher
        # registers, and training.options the stdlib-only dataclass `xmixup train`'s flags are
        # generated from; any other training module (or torch, transformers) must never load.
        shells = ("training", "training.cli", "training.commands", "training.options")
        bad = sorted(
            m for m in sys.modules
            if m.split(".")[0] in ("torch", "transformers", "onnx")
            or (m.startswith("training") and m not in shells and not m.startswith("training.commands."))
        )
        with open(sys.argv[1], "w") as fh:
            json.dump(bad, fh)

service.lifecycle.lifespan = _reporting
from xmixup.cli import main
sys.exit(main(["serve", *sys.argv[2:]]))
"""


@pytest.fixture(scope="session")
def models_dir(tiny_backbone: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tiny-classify, tiny-tag, tiny-qa (X-Mixup, trust head fitted) and tt-classify
    (translate-train baseline, no trust output)."""
    from model_export.onnx_export import export_bundle
    from tests.tiny import fit_tiny_trust, make_tiny_checkpoint

    root = tmp_path_factory.mktemp("service_models")
    specs = [(task, f"tiny-{task}", {"method": "xmixup", **EXTRA[task]}) for task in LABELS]
    specs.append(("classify", "tt-classify", {"method": "translate-train"}))
    for task, name, cfg in specs:
        ckpt = make_tiny_checkpoint(
            root / f"_ckpt_{name}", task, LABELS[task], backbone_dir=tiny_backbone, seed=3, **cfg
        )
        if cfg["method"] == "xmixup":  # the baseline keeps a graph without translation_trust
            fit_tiny_trust(ckpt)
        export_bundle(ckpt, root / "models" / name, name=name)
    return root / "models"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """An `xmixup serve` subprocess on 127.0.0.1."""

    def __init__(self, models: Path, tmp: Path, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.report = tmp / f"modules-{self.port}.json"
        self.log_path = tmp / f"server-{self.port}.log"
        full_env = {
            **os.environ,
            "PYTHONPATH": str(REPO),
            "XMIXUP_LOG_JSON": "true",
            "XMIXUP_INTRA_OP_THREADS": "1",  # 2 shared cores: keep servers from oversubscribing
            **(env or {}),
        }
        args = [sys.executable, "-c", _LAUNCHER, str(self.report), "--models", str(models)]
        args += ["--port", str(self.port)]
        self._log = open(self.log_path, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            args, cwd=REPO, env=full_env, stdout=self._log, stderr=subprocess.STDOUT
        )
        self.wait_ready()

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited {self.proc.returncode}:\n{self.log()}")
            try:
                if httpx.get(self.url + "/readyz", timeout=1.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"server not ready in {timeout}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 30.0) -> list[str]:
        """SIGTERM, wait, and return the forbidden modules the process had imported."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return json.loads(self.report.read_text()) if self.report.exists() else ["<no report>"]


@pytest.fixture(scope="session")
def start_server(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Factory: start_server(env) → Server; every server is stopped and checked at the end."""
    tmp = tmp_path_factory.mktemp("servers")
    started: list[Server] = []

    def start(env: dict[str, str] | None = None, models: Path | None = None) -> Server:
        server = Server(models or models_dir, tmp, env)
        started.append(server)
        return server

    yield start
    # stop every server before judging any: a failed check must not leave the others running
    leaked = {server.port: server.stop() for server in started}
    assert all(mods == [] for mods in leaked.values()), f"service imported {leaked}"


@pytest.fixture(scope="session")
def server(start_server: Any) -> Server:
    """The main server: truncation OFF by default (so 413s are testable), small limits."""
    return start_server(
        {
            "XMIXUP_TRUNCATE": "false",
            "XMIXUP_MAX_ITEMS_PER_REQUEST": "16",
            "XMIXUP_MAX_BODY_BYTES": "65536",
            "XMIXUP_MAX_TEXT_CHARS": "4000",
            "XMIXUP_MAX_WAIT_MS": "5",
            "XMIXUP_ADMIN_KEY": ADMIN_KEY,  # the admin route is on (schemathesis calls it)
        }
    )


@pytest.fixture(scope="session")
def client(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30.0) as c:
        yield c
