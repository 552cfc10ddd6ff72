"""The serve stage of `make demo`: start `xmixup serve` on the built bundles, wait until it is
ready, then print a curl request per route with what the server answered."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from demo_console import colour, rel, say
from demo_plan import ROOT, DemoError
from demo_session import Demo

# Written for the demo, not taken from any data set: the models have never seen them.
EXAMPLES: dict[str, dict[str, Any]] = {
    "classify": {
        "inputs": [
            {
                "target": "Die Nationalmannschaft gewann das Finale nach einem dramatischen "
                "Elfmeterschießen.",
                "source": "The national team won the final after a dramatic penalty shootout.",
            }
        ]
    },
    "tag": {
        "inputs": [
            {
                "target": "El nuevo tren conecta las dos ciudades en menos de tres horas.",
                "source": "The new train connects the two cities in less than three hours.",
            }
        ]
    },
    "qa": {
        "inputs": [
            {
                "question": "Wann wurde der Eiffelturm eröffnet?",
                "context": "Der Eiffelturm ist ein 330 Meter hoher Eisenfachwerkturm in Paris. "
                "Er wurde für die Weltausstellung errichtet und am 31. März 1889 eröffnet. Heute "
                "besuchen ihn jedes Jahr rund sieben Millionen Menschen.",
                "source_question": "When was the Eiffel Tower opened?",
                "source_context": "The Eiffel Tower is a 330-metre wrought-iron lattice tower in "
                "Paris. It was built for the World's Fair and opened on 31 March 1889. Today "
                "about seven million people visit it every year.",
            }
        ]
    },
}
EXAMPLE_LANG = {"classify": "German", "tag": "Spanish", "qa": "German"}


def curl_for(base: str, route: str) -> str:
    body = json.dumps(EXAMPLES[route], ensure_ascii=False).replace("'", "'\\''")
    return (
        f"curl -s {base}/{route} -H 'Content-Type: application/json' \\\n"
        f"  -d '{body}' \\\n  | python3 -m json.tool --no-ensure-ascii"
    )


def gist(route: str, body: dict[str, Any]) -> str:
    r = body["results"][0]
    lam = f"λ={r['mixup_ratio']:.2f}"
    if route == "classify":
        return f"label {r['label']!r} ({r['scores'][r['label']]:.0%}), {lam}"
    if route == "tag":
        return " ".join(f"{t['text']}/{t['tag']}" for t in r["tokens"]) + f", {lam}"
    best = r["answers"][0] if r["answers"] else None
    return (f"answer {best['text']!r} ({best['score']:.0%})" if best else "no answer") + f", {lam}"


def post(base: str, route: str, body: dict[str, Any]) -> dict[str, Any]:
    req = urllib.request.Request(
        f"{base}/{route}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        out: dict[str, Any] = json.loads(resp.read())
    return out


def stage_serve(demo: Demo, bundles_dir: Path) -> int:
    base = f"http://{demo.host}:{demo.port}"
    what = f"starting the service on {base}"
    stage = demo.begin(what, "serve")
    demo.logs.mkdir(parents=True, exist_ok=True)
    log_path = demo.logs / "serve.log"
    server = _start_server(demo, bundles_dir, log_path)
    _wait_ready(demo, server, base, log_path)
    demo.done(stage)
    say()
    say(colour("1", f"Playground:  {base}/        API docs: {base}/docs"))
    say()
    _print_examples(base)
    say(
        f"The service runs until Ctrl-C (it finishes in-flight requests first). "
        f"Its log: {rel(log_path)}"
    )
    return server.wait()


def _start_server(demo: Demo, bundles_dir: Path, log_path: Path) -> subprocess.Popen[bytes]:
    cmd = [
        sys.executable,
        "-m",
        "xmixup.cli",
        "serve",
        "--models",
        str(bundles_dir),
        "--host",
        demo.host,
        "--port",
        str(demo.port),
        "--no-log-json",
    ]
    if demo.threads:
        cmd += ["--intra-op-threads", str(demo.threads)]
    log = log_path.open("ab")
    server = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    demo.child = server  # from here on an interrupt stops it
    return server


def _wait_ready(demo: Demo, server: subprocess.Popen[bytes], base: str, log_path: Path) -> None:
    deadline = time.monotonic() + 120
    while True:
        if server.poll() is not None:
            text = "\n".join(log_path.read_text(errors="replace").splitlines()[-15:])
            say(text)
            hint = (
                f"port {demo.port} is in use: set DEMO_PORT=8001 (or stop the other process) "
                "and run `make demo` again"
                if "address already in use" in text.lower() or "errno 98" in text.lower()
                else "the log above says why; the built bundles are kept, so fixing it and "
                "running `make demo` again only restarts the service"
            )
            raise DemoError(
                f"the service exited (status {server.returncode}; log in {rel(log_path)}): " + hint
            )
        try:
            with urllib.request.urlopen(base + "/readyz", timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            raise DemoError("the service did not become ready in 120 s (see its log above)")
        time.sleep(0.3)


def _print_examples(base: str) -> None:
    for route in ("classify", "tag", "qa"):
        say(colour("1", f"# /{route} — {EXAMPLE_LANG[route]}, with its English source"))
        say(curl_for(base, route))
        try:
            say(colour("2", "# → " + gist(route, post(base, route, EXAMPLES[route]))))
        except (urllib.error.URLError, OSError, KeyError, ValueError) as exc:
            say(colour("33", f"# (could not run it here: {exc})"))
        say()
