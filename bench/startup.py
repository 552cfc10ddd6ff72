"""Start-up and memory: `xmixup serve` from process start to /readyz = 200, and resident memory
after warm-up, for sets of bundles served side by side in one run.

    .venv/bin/python bench/startup.py --config old=MODELS_A@/path/to/main-checkout \\
        --config new=MODELS_B --repeat 2

Each `--config NAME=DIR[@REPO]` is a directory of bundles (the three demo tasks) served by the
code of REPO (default: this checkout), so the old default (fp32 bundles, the previous code) and
the new default (this code, the new default bundles) are measured in one run, alternating, on
the same host load. Bundles of this version's manifest format are given to older code with the
manifest rewritten to format 2 when they are untrimmed fp32 bundles (what format 2 describes).

Per run: seconds from spawning the process to the first /readyz 200 (loading, checksums,
sessions, tokenizers, warm-up), and VmRSS of the server process after 20 requests to each model.
Writes results/serve.json key `startup` (or `--key`; other keys kept).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.hostinfo import host_info, merge_results, rss_mb  # noqa: E402
from bench.serve import free_port  # noqa: E402

BODIES = {
    "classify": {"inputs": [{"target": "Der Film war gut.", "source": "The film was good."}]},
    "tag": {"inputs": [{"target": "Anna wohnt in Hamburg.", "source": "Anna lives in Hamburg."}]},
    "qa": {"inputs": [{"question": "Wo wohnt Anna?", "context": "Anna wohnt in Hamburg."}]},
}


def say(message: str) -> None:
    print(f"[bench/startup {time.strftime('%H:%M:%S')}] {message}", flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", action="append", required=True, metavar="NAME=DIR[@REPO]")
    p.add_argument("--repeat", type=int, default=3, help="runs per config, alternating")
    p.add_argument("--requests", type=int, default=20, help="requests per model before RSS")
    p.add_argument("--out", default=str(REPO / "results" / "serve.json"))
    p.add_argument("--key", default="startup", help="key of --out to write (others are kept)")
    return p.parse_args(argv)


def as_format_2(models: Path, out: Path) -> Path:
    """A copy of ``models`` (files hard-linked) whose manifests are format 2, for older code.
    Only untrimmed bundles with embeddings in the graph's precision are format-2 bundles."""
    for bundle in sorted(p for p in models.iterdir() if (p / "manifest.json").is_file()):
        manifest = json.loads((bundle / "manifest.json").read_text())
        vocab = manifest.pop("vocabulary", None)
        if vocab and (
            vocab["size"] != vocab["source_size"] or vocab["embedding_precision"] == "int8"
        ):
            raise SystemExit(f"{bundle}: trimmed or int8-embedding bundles have no format 2")
        (out / bundle.name).mkdir(parents=True)
        for name in manifest["files"]:
            os.link(bundle / name, out / bundle.name / name)
        manifest["format_version"] = min(int(manifest["format_version"]), 2)
        (out / bundle.name / "manifest.json").write_text(json.dumps(manifest))
    return out


def bundle_facts(models: Path) -> dict[str, Any]:
    facts = {}
    for bundle in sorted(p for p in models.iterdir() if (p / "manifest.json").is_file()):
        m = json.loads((bundle / "manifest.json").read_text())
        vocab = m.get("vocabulary") or {}
        facts[bundle.name] = {
            "task": m["task"],
            "precision": m["precision"],
            "embedding_precision": vocab.get("embedding_precision", "fp32"),
            "pieces": vocab.get("size"),
            "bytes": sum(int(f["size"]) for f in m["files"].values()),
        }
    return facts


def online_optimisation(models: Path) -> dict[str, Any]:
    """Seconds to open each graph with onnxruntime's online optimisations (what the service
    uses) and with none: what saving an ORT-optimised graph in the bundle could spare at load.
    The bundle's graph already holds the transformer fusions (done at export)."""
    from xmixup.core.bundle import read_manifest
    from xmixup.core.runner import Runner

    out: dict[str, Any] = {}
    for bundle in sorted(p for p in models.iterdir() if (p / "model.onnx").is_file()):
        manifest = read_manifest(bundle)
        seconds = {}
        for optimize in (True, False):
            t0 = time.perf_counter()
            Runner(bundle / "model.onnx", manifest.inputs, manifest.outputs, optimize=optimize)
            seconds["optimised" if optimize else "not_optimised"] = round(
                time.perf_counter() - t0, 2
            )
        out[bundle.name] = seconds
    return out


def one_run(models: Path, repo: Path, requests: int) -> dict[str, Any]:
    import httpx

    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(repo), "XMIXUP_LOG_JSON": "true"}
    cmd = [sys.executable, "-m", "xmixup", "--log-level", "WARNING", "serve"]
    cmd += ["--models", str(models), "--port", str(port)]
    start = time.perf_counter()
    proc = subprocess.Popen(
        cmd, cwd=repo, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    try:
        ready_s = None
        while ready_s is None:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode} ({models})")
            try:
                if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                    ready_s = time.perf_counter() - start
            except httpx.TransportError:
                pass
            if time.perf_counter() - start > 600:
                raise RuntimeError("not ready in 600 s")
            time.sleep(0.05)
        rss_ready = rss_mb(proc.pid)
        served = httpx.get(url + "/v1/models").json()["data"]
        with httpx.Client(base_url=url, timeout=60) as client:
            for model in served:
                body = {**BODIES[model["task"]], "model": model["name"]}
                for _ in range(requests):
                    assert client.post(f"/{model['task']}", json=body).status_code == 200
        return {
            "ready_s": round(ready_s, 2),
            "rss_mb_ready": round(rss_ready, 1),
            "rss_mb_after_requests": round(rss_mb(proc.pid), 1),
        }
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    configs: dict[str, tuple[Path, Path]] = {}
    with tempfile.TemporaryDirectory(prefix="xmixup-startup-") as tmp:
        for spec in args.config:
            name, _, rest = spec.partition("=")
            models, _, repo = rest.partition("@")
            code = Path(repo) if repo else REPO
            path = Path(models)
            if code != REPO:
                path = as_format_2(path, Path(tmp) / name)
            configs[name] = (path, code)
        runs: dict[str, list[dict[str, Any]]] = {n: [] for n in configs}
        for r in range(args.repeat):
            for name, (models, code) in configs.items():  # alternating: same host load
                run = one_run(models, code, args.requests)
                runs[name].append(run)
                say(f"{name} run {r + 1}: {run}")
        sessions = {name: online_optimisation(p) for name, (p, _) in configs.items()}
        result = {
            name: {
                "models": bundle_facts(configs[name][0]),
                "code": "this checkout" if configs[name][1] == REPO else "another checkout",
                "runs": runs[name],
                "ready_s_median": statistics.median(x["ready_s"] for x in runs[name]),
                "rss_mb_median": statistics.median(x["rss_mb_after_requests"] for x in runs[name]),
            }
            for name in configs
        }
    startup = {
        "configs": result,
        "requests_per_model": args.requests,
        "session_open_s": sessions,
        "host": host_info(),
    }
    first, *others = list(result)
    base = result[first]
    startup["ratios"] = {  # every config against the first
        f"{name}_vs_{first}": {
            "ready_s": round(result[name]["ready_s_median"] / base["ready_s_median"], 3),
            "rss": round(result[name]["rss_mb_median"] / base["rss_mb_median"], 3),
        }
        for name in others
    }
    merge_results(Path(args.out), {args.key: startup})
    say(f"wrote {args.out}: {startup.get('ratios')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
