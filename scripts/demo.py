#!/usr/bin/env python3
"""`make demo`: from a fresh clone to a served X-Mixup demo (backbone → train → export → serve).

Stages, each printed as one line with its duration (children show their own progress bars):

  backbone   materialise the default multilingual-e5-small encoder (or use DEMO_BACKBONE)
  data       validate the shipped demo sets: examples/data/{sib200,pud,xquad}/{train,eval}.jsonl
  train      one X-Mixup model per task: classify (SIB-200), tag (UD PUD, UPOS), qa (XQuAD)
  export     ONNX bundle per task (parity-checked against PyTorch) into <out>/bundles/<task>/
  evaluate   each bundle on its eval file with onnxruntime → <out>/summary.json
  serve      `xmixup serve --models <out>/bundles` on 127.0.0.1:8000, then curl examples

Re-running reuses every stage whose inputs (files, settings, upstream stage) are unchanged: a
stamp per stage in <out>/.stamps/ holds the hash of its inputs. Every artifact is written
under <out>/.tmp/ and renamed into place when complete, so Ctrl-C never leaves a half-written
checkpoint, bundle or summary.

Environment (all optional):
  DEMO_STEPS     training steps for every task (default per task: classify 100, tag 80, qa 180)
  DEMO_SERVE     0 = build everything and print the summary, do not start the server
  DEMO_BACKBONE  HF encoder directory to use instead of the default backbone (tests use a tiny one)
  DEMO_OUT       output directory (default demo/)
  DEMO_HOST, DEMO_PORT   where to serve (default 127.0.0.1:8000)
  DEMO_THREADS   torch/onnxruntime threads (default: all cores)
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the project's packages, also when run without `pip install -e`
DATA = ROOT / "examples" / "data"


@dataclass(frozen=True)
class TaskPlan:
    task: str
    data: str  # folder under examples/data
    title: str
    max_length: int
    batch_size: int
    steps: int  # default budget; DEMO_STEPS overrides it for every task
    lr: str


# Short sequences, frozen word embeddings (most of the encoder's weights, and of each step's
# optimiser cost) and a higher learning rate keep a few dozen steps per task useful on 2 cores.
# Classification and tagging need about 100 steps here (60 left SIB-200 at 66 %, 100 reach
# 82 %); extractive QA (a span head from scratch) needs about twice that and a higher learning
# rate to answer usefully, so the 15-minute budget goes mostly to it. Its training contexts are
# gold passages (the sentences around the answer, examples/data/xquad/SOURCE.md), so 128 tokens
# hold question and passage.
PLANS = (
    TaskPlan("classify", "sib200", "topic classification (SIB-200, 7 topics)", 64, 16, 100, "1e-4"),
    TaskPlan("tag", "pud", "part-of-speech tagging (UD PUD, 17 UPOS tags)", 64, 16, 80, "1e-4"),
    TaskPlan("qa", "xquad", "extractive QA (XQuAD)", 128, 8, 180, "2e-4"),
)
COMMON_TRAIN = ("--method", "xmixup", "--freeze-embeddings", "--seed", "0")


# ---------------------------------------------------------------------------------------------
# output: one line per stage, coloured when on a terminal
# ---------------------------------------------------------------------------------------------
_TTY = sys.stdout.isatty()


def _c(code: str, text: str) -> str:
    return f"\033[{code}m{text}\033[0m" if _TTY else text


def say(text: str = "") -> None:
    print(text, flush=True)


def fmt_s(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


class DemoError(Exception):
    """A stage failed; the message says what to do."""


# ---------------------------------------------------------------------------------------------
# stamps: a stage is reused when the hash of its inputs matches and its outputs exist
# ---------------------------------------------------------------------------------------------
def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def dir_digest(path: Path) -> str:
    """Content hash of small files, size+mtime of large ones (weights): cheap and reliable."""
    h = hashlib.sha256()
    for p in sorted(q for q in path.rglob("*") if q.is_file()):
        st = p.stat()
        h.update(str(p.relative_to(path)).encode())
        if st.st_size <= 4 << 20:
            h.update(file_digest(p).encode())
        else:
            h.update(f"{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()


def stage_key(**inputs: Any) -> str:
    return hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()


@dataclass
class Demo:
    out: Path
    steps: int | None  # DEMO_STEPS: the same number of steps for every task
    serve: bool
    backbone_arg: str | None
    host: str
    port: int
    threads: int | None
    stage_no: int = 0
    n_stages: int = 0
    child: subprocess.Popen[bytes] | None = None
    results: dict[str, Any] = field(default_factory=dict)

    def steps_for(self, plan: TaskPlan) -> int:
        return self.steps if self.steps is not None else plan.steps

    # -- paths ------------------------------------------------------------------------------
    @property
    def tmp(self) -> Path:
        return self.out / ".tmp"

    @property
    def stamps(self) -> Path:
        return self.out / ".stamps"

    @property
    def logs(self) -> Path:
        return self.out / "logs"

    def stamp_ok(self, name: str, key: str, *outputs: Path) -> dict[str, Any] | None:
        path = self.stamps / f"{name}.json"
        if not path.is_file() or not all(o.exists() for o in outputs):
            return None
        try:
            stamp: dict[str, Any] = json.loads(path.read_text())
        except ValueError:
            return None
        return stamp if stamp.get("key") == key else None

    def write_stamp(self, name: str, key: str, **info: Any) -> None:
        self.stamps.mkdir(parents=True, exist_ok=True)
        atomic_write(self.stamps / f"{name}.json", json.dumps({"key": key, **info}, indent=2))

    # -- stage lines ------------------------------------------------------------------------
    def begin(self, what: str) -> float:
        self.stage_no += 1
        say(_c("1", f"[{self.stage_no}/{self.n_stages}] {what}…"))
        return time.monotonic()

    def done(self, what: str, started: float, note: str = "") -> float:
        took = time.monotonic() - started
        tail = f" — {note}" if note else ""
        say(_c("32", f"[{self.stage_no}/{self.n_stages}] {what}… done in {fmt_s(took)}") + tail)
        return took

    def reused(self, what: str, note: str = "") -> None:
        tail = f" — {note}" if note else ""
        say(_c("36", f"[{self.stage_no}/{self.n_stages}] {what}… reused (inputs unchanged)") + tail)

    # -- xmixup commands ----------------------------------------------------------------------
    def xmixup(self, args: list[str], log_name: str) -> None:
        """Run `xmixup ARGS` in this process (torch is imported once for the whole demo), its
        output (progress bars) shown on the terminal and copied into <out>/logs/NAME.log."""
        from xmixup.cli import main as xmixup_main

        self.logs.mkdir(parents=True, exist_ok=True)
        log_path = self.logs / f"{log_name}.log"
        with log_path.open("w", encoding="utf-8") as log:
            log.write("$ xmixup " + " ".join(args) + "\n")
            real_out, real_err = sys.stdout, sys.stderr
            sys.stdout, sys.stderr = _Tee(real_out, log), _Tee(real_err, log)
            try:
                code = xmixup_main(["--log-level", "WARNING", *args])
            finally:
                sys.stdout, sys.stderr = real_out, real_err
        if code == 130:  # the CLI turns Ctrl-C into exit status 130
            raise KeyboardInterrupt
        if code != 0:
            raise DemoError(f"`xmixup {args[0]}` failed (exit {code}); see above and {log_path}")

    def stop_child(self) -> None:
        child = self.child
        if child is None or child.poll() is not None:
            return
        # The terminal's Ctrl-C reached the server too; give it a moment, then SIGTERM (which
        # it also answers with a graceful drain).
        try:
            child.wait(timeout=3)
        except subprocess.TimeoutExpired:
            child.terminate()
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()


class _Tee(io.TextIOBase):
    """A text stream that copies everything to a log and the terminal, minus the per-step
    metric dicts the HF trainer prints (they stay in the log); progress bars pass through."""

    def __init__(self, terminal: Any, log: Any) -> None:
        self.terminal, self.log, self._dropped = terminal, log, False

    def write(self, text: str) -> int:
        self.log.write(text)
        drop = text.lstrip().startswith("{'") or (self._dropped and text == "\n")
        self._dropped = drop
        if not drop:
            self.terminal.write(text)
        return len(text)

    def flush(self) -> None:
        self.log.flush()
        self.terminal.flush()

    def isatty(self) -> bool:
        return bool(self.terminal.isatty())

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return str(getattr(self.terminal, "encoding", "utf-8"))


def atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".partial")
    part.write_text(text)
    os.replace(part, path)


def install_dir(src: Path, dst: Path) -> None:
    """Move a finished directory into place, replacing an older one without a gap in between."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    old = dst.with_name(dst.name + ".old")
    if old.exists():
        shutil.rmtree(old)
    if dst.exists():
        os.replace(dst, old)
    os.replace(src, dst)
    if old.exists():
        shutil.rmtree(old)


def fresh_tmp(demo: Demo, name: str) -> Path:
    path = demo.tmp / name
    if path.exists():
        shutil.rmtree(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


# ---------------------------------------------------------------------------------------------
# stages
# ---------------------------------------------------------------------------------------------
def stage_backbone(demo: Demo) -> Path:
    what = "materialising the backbone"
    if demo.backbone_arg:
        what = f"checking the backbone {demo.backbone_arg}"
    started = demo.begin(what)
    from training.backbone import resolve_backbone

    path = Path(resolve_backbone(demo.backbone_arg)).resolve()
    demo.done(what, started, str(path))
    return path


def stage_data(demo: Demo) -> dict[str, str]:
    files = {
        f"{p.data}/{split}": DATA / p.data / f"{split}.jsonl"
        for p in PLANS
        for split in ("train", "eval")
    }
    missing = [str(f) for f in files.values() if not f.is_file()]
    if missing:
        raise DemoError(
            f"demo data missing: {', '.join(missing)}; restore examples/data/ from git "
            "(git checkout -- examples/data) or rebuild it with examples/data/build.sh"
        )
    digests = {name: file_digest(path) for name, path in files.items()}
    what = "checking the demo data (SIB-200, UD PUD, XQuAD samples in examples/data/)"
    started = demo.begin(what)
    key = stage_key(stage="data", digests=digests)
    counts = {name: sum(1 for _ in path.open(encoding="utf-8")) for name, path in files.items()}
    note = ", ".join(
        f"{n} {counts[f'{n}/train']}+{counts[f'{n}/eval']}" for n in ("sib200", "pud", "xquad")
    )
    if demo.stamp_ok("data", key):
        demo.reused(what, note + " train+eval items")
        return digests
    from training.data.schema import read_jsonl  # validates every line (file:line:field errors)

    for plan in PLANS:
        for split in ("train", "eval"):
            read_jsonl(files[f"{plan.data}/{split}"], plan.task)
    demo.write_stamp("data", key)
    demo.done(what, started, note + " train+eval items, all valid")
    return digests


def stage_train(
    demo: Demo, plan: TaskPlan, backbone: Path, backbone_id: str, digests: dict[str, str]
) -> tuple[Path, str, float]:
    steps = demo.steps_for(plan)
    what = f"training the {plan.task} model: {plan.title}, {steps} steps"
    started = demo.begin(what)
    ckpt = demo.out / "checkpoints" / plan.task
    args = [
        "train",
        "--task",
        plan.task,
        "--train",
        str(DATA / plan.data / "train.jsonl"),
        "--backbone",
        str(backbone),
        "--max-steps",
        str(steps),
        "--batch-size",
        str(plan.batch_size),
        "--max-length",
        str(plan.max_length),
        "--lr",
        plan.lr,
        *COMMON_TRAIN,
    ]
    # Thread counts change speed, not the model: they are not part of the stage's key.
    key = stage_key(
        stage="train", args=args, backbone=backbone_id, data=digests[f"{plan.data}/train"]
    )
    if demo.threads:
        args += ["--num-threads", str(demo.threads)]
    stamp = demo.stamp_ok(f"train-{plan.task}", key, ckpt / "config.json")
    if stamp:
        demo.reused(what)
        return ckpt, key, float(stamp.get("seconds", 0.0))
    tmp = fresh_tmp(demo, f"checkpoint-{plan.task}")
    demo.xmixup([*args, "--out", str(tmp)], f"train-{plan.task}")
    install_dir(tmp, ckpt)
    took = demo.done(what, started)
    demo.write_stamp(f"train-{plan.task}", key, seconds=round(took, 1))
    return ckpt, key, took


def stage_export(demo: Demo, plan: TaskPlan, ckpt: Path, train_key: str) -> tuple[Path, str, float]:
    what = f"exporting the {plan.task} bundle (ONNX, parity-checked against PyTorch)"
    started = demo.begin(what)
    bundle = demo.out / "bundles" / plan.task
    key = stage_key(stage="export", train=train_key)
    stamp = demo.stamp_ok(f"export-{plan.task}", key, bundle / "manifest.json")
    if stamp:
        demo.reused(what, _rel(bundle))
        return bundle, key, float(stamp.get("seconds", 0.0))
    tmp = fresh_tmp(demo, f"bundle-{plan.task}")
    # --name is the directory's final name: the service names models after their directory.
    demo.xmixup(
        ["export", "--checkpoint", str(ckpt), "--out", str(tmp), "--name", plan.task],
        f"export-{plan.task}",
    )
    install_dir(tmp, bundle)
    took = demo.done(what, started, _rel(bundle))
    demo.write_stamp(f"export-{plan.task}", key, seconds=round(took, 1))
    return bundle, key, took


def stage_evaluate(
    demo: Demo, plan: TaskPlan, bundle: Path, export_key: str, digests: dict[str, str]
) -> dict[str, Any]:
    what = f"evaluating the {plan.task} bundle on {plan.data}/eval.jsonl (onnxruntime)"
    started = demo.begin(what)
    out = demo.out / "eval" / f"{plan.task}.json"
    key = stage_key(stage="evaluate", export=export_key, data=digests[f"{plan.data}/eval"])
    if demo.stamp_ok(f"eval-{plan.task}", key, out):
        res = json.loads(out.read_text())
        demo.reused(what, _metric_note(res))
        return res
    tmp = fresh_tmp(demo, f"eval-{plan.task}.json")
    args = [
        "evaluate",
        "--model",
        str(bundle),
        "--data",
        str(DATA / plan.data / "eval.jsonl"),
        "--out",
        str(tmp),
    ]
    if demo.threads:
        args += ["--num-threads", str(demo.threads)]
    demo.xmixup(args, f"eval-{plan.task}")
    res = json.loads(tmp.read_text())
    out.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, out)
    demo.write_stamp(f"eval-{plan.task}", key)
    demo.done(what, started, _metric_note(res))
    return res


def _metric_note(res: dict[str, Any]) -> str:
    langs = ", ".join(f"{k} {v:.1f}" for k, v in sorted(res.get("per_lang", {}).items()))
    lam = res.get("lambda", {}).get("mean")
    lam_note = f"; mean λ {lam:.2f}" if isinstance(lam, (int, float)) else ""
    return f"{res['metric']} {res['avg']:.1f} ({langs}){lam_note}"


def _rel(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


# ---------------------------------------------------------------------------------------------
# serving: start, wait for ready, print curl requests (and what they answer)
# ---------------------------------------------------------------------------------------------
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
    started = demo.begin(what)
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
    demo.logs.mkdir(parents=True, exist_ok=True)
    log_path = demo.logs / "serve.log"
    log = log_path.open("ab")
    server = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    demo.child = server
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
                f"the service exited (status {server.returncode}; log in {_rel(log_path)}): " + hint
            )
        try:
            with urllib.request.urlopen(base + "/readyz", timeout=2) as resp:
                if resp.status == 200:
                    break
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            raise DemoError("the service did not become ready in 120 s (see its log above)")
        time.sleep(0.3)
    demo.done(what, started)
    say()
    say(_c("1", f"Playground:  {base}/        API docs: {base}/docs"))
    say()
    for route in ("classify", "tag", "qa"):
        say(_c("1", f"# /{route} — {EXAMPLE_LANG[route]}, with its English source"))
        say(curl_for(base, route))
        try:
            say(_c("2", "# → " + gist(route, post(base, route, EXAMPLES[route]))))
        except (urllib.error.URLError, OSError, KeyError, ValueError) as exc:
            say(_c("33", f"# (could not run it here: {exc})"))
        say()
    say(
        f"The service runs until Ctrl-C (it finishes in-flight requests first). "
        f"Its log: {_rel(log_path)}"
    )
    return server.wait()


# ---------------------------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------------------------
def env_int(name: str, default: int | None, minimum: int = 0) -> int | None:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise DemoError(f"{name}={raw!r} is not a whole number") from None
    if value < minimum:
        raise DemoError(f"{name} must be at least {minimum}, got {value}")
    return value


def build_demo() -> Demo:
    out = Path(os.environ.get("DEMO_OUT") or ROOT / "demo").resolve()
    serve_raw = os.environ.get("DEMO_SERVE", "1").strip().lower()
    if serve_raw not in ("0", "1", "false", "true", "no", "yes", ""):
        raise DemoError(f"DEMO_SERVE={serve_raw!r}: use 1 (serve) or 0 (build only)")
    steps = env_int("DEMO_STEPS", None, minimum=1)
    port = env_int("DEMO_PORT", 8000, minimum=1)
    assert port is not None
    return Demo(
        out=out,
        steps=steps,
        serve=serve_raw not in ("0", "false", "no"),
        backbone_arg=os.environ.get("DEMO_BACKBONE") or None,
        host=os.environ.get("DEMO_HOST") or "127.0.0.1",
        port=port,
        threads=env_int("DEMO_THREADS", None, minimum=1),
    )


def run(demo: Demo) -> int:
    t0 = time.monotonic()
    # One handler on the real stderr for every in-process command (the CLI's basicConfig then
    # keeps it): warnings only, the stage lines and progress bars tell the story.
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    demo.n_stages = 2 + 3 * len(PLANS) + (1 if demo.serve else 0)
    say(
        _c(
            "1",
            f"xmixup demo → {_rel(demo.out)}  (training steps: "
            + ", ".join(f"{p.task} {demo.steps_for(p)}" for p in PLANS)
            + "; DEMO_STEPS=N to change)",
        )
    )
    backbone = stage_backbone(demo)
    backbone_id = dir_digest(backbone)
    digests = stage_data(demo)
    summary: dict[str, Any] = {}
    for plan in PLANS:
        ckpt, train_key, train_s = stage_train(demo, plan, backbone, backbone_id, digests)
        bundle, export_key, export_s = stage_export(demo, plan, ckpt, train_key)
        res = stage_evaluate(demo, plan, bundle, export_key, digests)
        summary[plan.task] = {
            "bundle": str(bundle),
            "metric": res["metric"],
            "value": float(res["avg"]),
            "per_lang": res.get("per_lang", {}),
            "lambda_mean": res.get("lambda", {}).get("mean"),
            "steps": demo.steps_for(plan),
            "seconds": round(train_s + export_s, 1),
            "train_seconds": round(train_s, 1),
            "export_seconds": round(export_s, 1),
            "data": f"examples/data/{plan.data}",
        }
    atomic_write(demo.out / "summary.json", json.dumps(summary, indent=2) + "\n")
    shutil.rmtree(demo.tmp, ignore_errors=True)
    say()
    say(
        _c(
            "1",
            f"Summary ({_rel(demo.out / 'summary.json')}), built in {fmt_s(time.monotonic() - t0)}:",
        )
    )
    for task, s in summary.items():
        say(
            f"  {task:<9} {s['metric']:<9} {s['value']:6.1f}   bundle {_rel(Path(s['bundle']))}"
            f"   (train+export {fmt_s(s['seconds'])})"
        )
    say()
    if not demo.serve:
        say(
            f"DEMO_SERVE=0: not serving. Serve with: xmixup serve --models {_rel(demo.out / 'bundles')}"
        )
        return 0
    return stage_serve(demo, demo.out / "bundles")


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _force_exit(signum: int, frame: Any) -> NoReturn:
    # A second Ctrl-C while the first one is being cleaned up: the user wants out now.
    os._exit(130)


def _exit_now(code: int) -> NoReturn:
    """Leave without interpreter shutdown after an interrupt. Ctrl-C can land inside a native
    library's import or a worker thread (torch, tokenizers, datasets); joining such threads at
    shutdown can block. Everything worth keeping is already renamed into place."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def main() -> int:
    # SIGTERM (e.g. from a CI runner) stops the demo as cleanly as Ctrl-C does.
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with it ignored
    from xmixup.errors import UserError

    demo: Demo | None = None
    try:
        demo = build_demo()
        return run(demo)
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, _force_exit)
        signal.signal(signal.SIGTERM, _force_exit)
        serving = demo is not None and demo.child is not None
        if demo is not None:
            demo.stop_child()
            shutil.rmtree(demo.tmp, ignore_errors=True)
        say()
        if serving:
            say("Stopped the service. `make demo` serves the built models again in seconds.")
            _exit_now(0)
        say(
            _c(
                "33",
                "Interrupted. Nothing half-written was kept; run `make demo` again to pick up "
                "where it stopped (finished stages are reused).",
            )
        )
        _exit_now(130)
    except (DemoError, UserError) as exc:
        if demo is not None:
            demo.stop_child()
        say(_c("31", f"demo: error: {exc}"))
        return 1


if __name__ == "__main__":
    sys.exit(main())
