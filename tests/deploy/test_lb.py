"""Real processes on 127.0.0.1: 3 xmixup replicas behind the Debian nginx, with the project's
own load-balancer config (docker/nginx.conf.template) rendered for loopback ports.

A bounded load (2,000 requests, 16 concurrent clients, no client-side retries) runs while one
replica is SIGKILLed and another SIGTERMed. Asserted: zero failed client requests, every answer
equal to the direct answer of a replica, the drained replica exited 0, X-Request-ID passed
through to the replicas. Printed: requests, errors, nginx retries (log lines whose
$upstream_addr lists more than one replica), p50/p99 client latency.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.helpers import REPO, free_port, load_render_module, wait_http

httpx = pytest.importorskip("httpx")

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(300)]

N_REQUESTS = 2000
CONCURRENCY = 16
KILL_AT = 500  # completed requests when replica 0 gets SIGKILL
TERM_AT = 1000  # ... and replica 1 gets SIGTERM (graceful drain)
DRAIN_GRACE_S = 1.0  # replica keeps answering (readyz 503) this long after SIGTERM
FLOAT_TOL = 1e-6

NGINX = shutil.which("nginx") or next(
    (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None
)

# ----------------------------------------------------------------------------------------------
# request pool: both routes, with and without a source, several items per request
# ----------------------------------------------------------------------------------------------
_PAIRS = [
    ("Das Wetter ist heute sehr schön.", "The weather is very nice today."),
    ("Wo ist der nächste Bahnhof?", "Where is the nearest train station?"),
    ("Ein Mann spielt Gitarre im Park.", "A man is playing a guitar in the park."),
    ("今天天气很好，不是吗？", "The weather is very nice today, isn't it?"),
    ("Кошка сидит на коврике и смотрит в окно.", "The cat sits on the mat and looks out."),
    ("Bir adam parkta gitar çalıyor.", "A man is playing a guitar in the park."),
    ("Angela Merkel traf den Präsidenten in Berlin.", "Angela Merkel met the president in Berlin."),
    ("أين أقرب محطة قطار؟", "Where is the nearest train station?"),
]


def request_pool() -> list[tuple[str, dict[str, Any]]]:
    pool: list[tuple[str, dict[str, Any]]] = []
    for i, (target, source) in enumerate(_PAIRS):
        pool.append(("/classify", {"inputs": [{"target": target, "source": source}]}))
        pool.append(("/classify", {"inputs": [{"target": target}]}))  # source_used: false
        other = _PAIRS[(i + 3) % len(_PAIRS)]
        pool.append(
            (
                "/classify",
                {"inputs": [{"target": target, "source": source}, {"target": other[0]}]},
            )
        )
        pool.append(("/tag", {"inputs": [{"target": target, "source": source}]}))
        pool.append(("/tag", {"inputs": [{"target": target.split(), "source": source.split()}]}))
    return pool


def same_answer(a: Any, b: Any, tol: float = FLOAT_TOL) -> bool:
    """Equal JSON, floats within `tol` (labels, tags, offsets and structure exactly)."""
    if isinstance(a, float) or isinstance(b, float):
        return (
            isinstance(a, (int, float))
            and isinstance(b, (int, float))
            and not isinstance(a, bool)
            and math.isclose(a, b, rel_tol=0, abs_tol=tol)
        )
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_answer(a[k], b[k], tol) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_answer(x, y, tol) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def max_float_diff(a: Any, b: Any) -> float:
    """Largest |a - b| over the floats of two same-shaped JSON values (0.0 if none differ)."""
    if isinstance(a, float) and isinstance(b, float):
        return abs(a - b)
    if isinstance(a, dict) and isinstance(b, dict):
        return max((max_float_diff(a[k], b[k]) for k in a.keys() & b.keys()), default=0.0)
    if isinstance(a, list) and isinstance(b, list):
        return max((max_float_diff(x, y) for x, y in zip(a, b, strict=False)), default=0.0)
    return 0.0


def test_same_answer_is_strict() -> None:
    """The comparison used below must be able to fail."""
    base = {"model": "m", "results": [{"label": "a", "scores": {"a": 0.6, "b": 0.4}}]}
    assert same_answer(base, json.loads(json.dumps(base)))
    assert not same_answer(
        base, {"model": "m", "results": [{"label": "b", "scores": {"a": 0.6, "b": 0.4}}]}
    )
    assert not same_answer(
        base, {"model": "m", "results": [{"label": "a", "scores": {"a": 0.61, "b": 0.4}}]}
    )
    assert not same_answer(base, {"model": "m", "results": []})
    assert not same_answer({"x": 1}, {"x": True})


# ----------------------------------------------------------------------------------------------
# processes
# ----------------------------------------------------------------------------------------------
class Replica:
    def __init__(self, models: Path, port: int, log: Path) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("XMIXUP_")}
        env.update(
            XMIXUP_DRAIN_GRACE_S=str(DRAIN_GRACE_S),
            XMIXUP_INTRA_OP_THREADS="1",  # 3 replicas + nginx + the client share the cores
            XMIXUP_LOG_JSON="true",
            PYTHONUNBUFFERED="1",
        )
        self.port = port
        self.addr = f"127.0.0.1:{port}"
        self.log = log
        # The image's entrypoint (`xmixup serve`), configured the way the image configures it.
        cmd = [sys.executable, "-m", "xmixup", "serve", "--models", str(models)]
        cmd += ["--host", "127.0.0.1", "--port", str(port)]
        with log.open("wb") as fh:
            self.proc = subprocess.Popen(
                cmd, cwd=REPO, env=env, stdout=fh, stderr=subprocess.STDOUT
            )

    def log_lines(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
        return out


def _stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 10) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@pytest.fixture
def replicas(deploy_bundles: Path, tmp_path: Path) -> Iterator[list[Replica]]:
    reps = [Replica(deploy_bundles, free_port(), tmp_path / f"replica{i}.log") for i in range(3)]
    try:
        for rep in reps:
            wait_http(f"http://{rep.addr}/readyz", timeout=90, proc=rep.proc, log=rep.log)
        yield reps
    finally:
        for rep in reps:
            _stop(rep.proc)


@pytest.fixture
def nginx(replicas: list[Replica], tmp_path: Path) -> Iterator[dict[str, Any]]:
    if NGINX is None:
        pytest.skip("nginx is not installed (apt-get install nginx-light; .ci/run does it)")
    render = load_render_module()
    prefix = tmp_path / "nginx"
    for sub in ("logs", "temp"):
        (prefix / sub).mkdir(parents=True)
    port = free_port()
    snippet = prefix / "xmixup.conf"
    snippet.write_text(render.render([r.addr for r in replicas], listen=f"127.0.0.1:{port}"))
    # Process-level settings only; everything about balancing is the project's snippet.
    temp = prefix / "temp"
    main_conf = prefix / "nginx.conf"
    main_conf.write_text(
        ("user root;\n" if os.geteuid() == 0 else "")
        + "worker_processes 2;\n"
        + f"error_log {prefix / 'logs' / 'error.log'} notice;\n"
        + "events { worker_connections 1024; }\n"
        + "http {\n"
        + "".join(
            f"    {kind}_temp_path {temp / kind};\n"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        + f"    include {snippet};\n"
        + "}\n"
    )
    access = prefix / "logs" / "access.jsonl"  # the snippet logs to /dev/stdout
    cmd = [NGINX, "-e", str(prefix / "logs" / "startup.log"), "-p", str(prefix)]
    cmd += ["-c", str(main_conf), "-g", f"daemon off; pid {prefix / 'nginx.pid'};"]
    check = subprocess.run([*cmd, "-t"], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    with access.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_http(f"http://127.0.0.1:{port}/lb-healthz", timeout=15, proc=proc, log=access)
        yield {"url": f"http://127.0.0.1:{port}", "access": access, "proc": proc}
    finally:
        _stop(proc, signal.SIGQUIT)


# ----------------------------------------------------------------------------------------------
# the load
# ----------------------------------------------------------------------------------------------
async def _drive(
    url: str,
    pool: list[tuple[str, dict[str, Any]]],
    order: list[int],
    events: dict[int, Any],
) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = [{} for _ in order]
    todo = iter(range(len(order)))
    done = 0
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    async with httpx.AsyncClient(base_url=url, timeout=30.0, limits=limits) as client:

        async def worker() -> None:
            nonlocal done
            for i in todo:
                route, body = pool[order[i]]
                rid = f"lb-{i:05d}"
                start = time.perf_counter()
                try:
                    resp = await client.post(route, json=body, headers={"X-Request-ID": rid})
                    results[i] = {
                        "status": resp.status_code,
                        "body": resp.json() if resp.status_code == 200 else resp.text,
                        "rid": resp.headers.get("x-request-id"),
                    }
                except httpx.HTTPError as exc:  # a transport failure is a failed request too
                    results[i] = {"status": None, "body": repr(exc), "rid": None}
                results[i]["latency"] = time.perf_counter() - start
                done += 1
                if done in events:
                    events.pop(done)()

        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return results


def _nginx_log(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.startswith("{")]


def test_lb_survives_kill_and_drain(
    replicas: list[Replica], nginx: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    pool = request_pool()
    # Direct answers, from every replica: they must agree before the LB is judged against them.
    direct: list[Any] = []
    with httpx.Client(timeout=30.0) as client:
        for route, body in pool:
            answers = [
                client.post(f"http://{rep.addr}{route}", json=body).raise_for_status().json()
                for rep in replicas
            ]
            assert all(same_answer(answers[0], a) for a in answers[1:]), (route, body)
            direct.append(answers[0])

    killed, drained, survivor = replicas
    marks: dict[str, float] = {}

    def kill() -> None:
        marks["kill"] = time.perf_counter()
        killed.proc.send_signal(signal.SIGKILL)

    def term() -> None:
        marks["term"] = time.perf_counter()
        drained.proc.send_signal(signal.SIGTERM)

    rng = random.Random(7)
    order = [rng.randrange(len(pool)) for _ in range(N_REQUESTS)]
    start = time.perf_counter()
    results = asyncio.run(_drive(nginx["url"], pool, order, {KILL_AT: kill, TERM_AT: term}))
    wall = time.perf_counter() - start

    # The drained replica finishes its work and exits by itself, cleanly.
    drained_rc = drained.proc.wait(timeout=30)
    assert killed.proc.wait(timeout=5) == -signal.SIGKILL
    assert survivor.proc.poll() is None, "the untouched replica died"

    failed = [(i, r) for i, r in enumerate(results) if r["status"] != 200]
    wrong = [
        i
        for i, r in enumerate(results)
        if r["status"] == 200 and not same_answer(r["body"], direct[order[i]])
    ]
    exact = sum(
        1 for i, r in enumerate(results) if r["status"] == 200 and r["body"] == direct[order[i]]
    )
    float_diff = max(
        (
            max_float_diff(r["body"], direct[order[i]])
            for i, r in enumerate(results)
            if r["status"] == 200
        ),
        default=0.0,
    )
    bad_rid = [i for i, r in enumerate(results) if r["rid"] != f"lb-{i:05d}"]

    # nginx's view: one access-log line per client request; retried ones list several replicas.
    time.sleep(0.2)  # let the workers flush their last lines
    log = [e for e in _nginx_log(nginx["access"]) if e["request_id"].startswith("lb-")]
    tried = [e["upstream_addr"].split(", ") for e in log]
    retries = sum(len(t) - 1 for t in tried)
    retried_requests = sum(1 for t in tried if len(t) > 1)
    first_choice = Counter(t[0] for t in tried)
    upstream_statuses = Counter(s for e in log for s in e["upstream_status"].split(", "))
    role = {killed.addr: "killed", drained.addr: "drained", survivor.addr: "survivor"}
    # attempts that did not answer, by replica (all but the last address of a retried request)
    failed_attempts = Counter(role.get(a, a) for t in tried for a in t[:-1])
    answered_by = Counter(role.get(t[-1], t[-1]) for t in tried)

    # The replicas' view: every request id reached a replica (X-Request-ID passed through).
    seen_ids = {
        e.get("request_id")
        for rep in replicas
        for e in rep.log_lines()
        if e.get("logger") == "service.access"
    }
    missing_ids = [i for i in range(N_REQUESTS) if f"lb-{i:05d}" not in seen_ids]

    lat = sorted(r["latency"] for r in results)
    p50 = lat[len(lat) // 2]
    p99 = lat[min(len(lat) - 1, math.ceil(0.99 * len(lat)) - 1)]
    figures = {
        "requests": N_REQUESTS,
        "concurrency": CONCURRENCY,
        "errors": len(failed),
        "wrong_answers": len(wrong),
        "bit_identical_answers": exact,
        "max_float_diff": float_diff,
        "nginx_retries": retries,
        "retried_requests": retried_requests,
        "upstream_statuses": dict(upstream_statuses),
        "answered_by": dict(answered_by),
        "failed_attempts_by": dict(failed_attempts),
        "p50_ms": round(p50 * 1000, 1),
        "p99_ms": round(p99 * 1000, 1),
        "throughput_rps": round(N_REQUESTS / wall, 1),
        "wall_s": round(wall, 1),
        "drained_exit_code": drained_rc,
    }
    with capsys.disabled():
        print("\n[deploy lb] " + json.dumps(figures))

    assert not failed, f"{len(failed)} failed client requests, first: {failed[:3]}"
    assert not wrong, f"{len(wrong)} answers differ from the direct answers, e.g. #{wrong[:5]}"
    assert not bad_rid, f"X-Request-ID not returned for {len(bad_rid)} requests: {bad_rid[:5]}"
    assert len(log) == N_REQUESTS, f"nginx logged {len(log)} of {N_REQUESTS} requests"
    assert not missing_ids, f"{len(missing_ids)} request ids never reached a replica"
    # least_conn spread the load over all three before the faults.
    assert set(first_choice) == {r.addr for r in replicas}, first_choice
    # After the faults the survivor carried the traffic.
    assert first_choice[survivor.addr] > N_REQUESTS // 3
    # The SIGKILL did hit live traffic: nginx saw failures and retried them elsewhere.
    assert retries >= 1, "no retry observed: the kill did not exercise the retry path"
    assert "kill" in marks and "term" in marks
    # The drained replica finished its work and exited by itself with status 0.
    assert drained_rc == 0, f"drained replica exited {drained_rc}; log: {drained.log}"
