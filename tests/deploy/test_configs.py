"""Static checks of docker/: Dockerfiles, compose.yaml, prometheus.yml, the nginx template and
the Kubernetes manifests. No docker daemon needed; each check reads the file as deployed and
cross-checks it against the service's own settings so the pieces cannot drift apart."""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from service.settings import Settings
from tests.deploy.helpers import DOCKER, load_render_module, parse_dockerfile, stages

SETTINGS = Settings.model_fields
REQUEST_TIMEOUT_S = SETTINGS["request_timeout_s"].default
MAX_BODY_BYTES = SETTINGS["max_body_bytes"].default
# Variables consumed by the nginx template / images rather than by the service.
NON_SERVICE_VARS = {
    "XMIXUP_LB_LISTEN",
    "XMIXUP_UPSTREAM_SERVERS",
    "XMIXUP_LB_RESOLVER",
    "XMIXUP_LB_READ_TIMEOUT_S",
    "XMIXUP_LB_TRIES",
}


def assert_service_setting(var: str) -> None:
    assert var.startswith("XMIXUP_"), var
    field = var.removeprefix("XMIXUP_").lower()
    assert field in SETTINGS, f"{var} is not a service setting (service/settings.py)"


# ----------------------------------------------------------------------------------------------
# nginx template
# ----------------------------------------------------------------------------------------------
render_nginx = load_render_module()
TEMPLATE = (DOCKER / "nginx.conf.template").read_text()


def test_renderer_defaults_are_the_service_defaults() -> None:
    assert render_nginx.DEFAULT_REQUEST_TIMEOUT_S == REQUEST_TIMEOUT_S
    assert render_nginx.DEFAULT_MAX_BODY_BYTES == MAX_BODY_BYTES


def test_substitute_touches_only_xmixup_placeholders() -> None:
    out = render_nginx.substitute(
        "a ${XMIXUP_A} $host ${host} $request_id ${XMIXUP_A}", {"XMIXUP_A": "1"}
    )
    assert out == "a 1 $host ${host} $request_id 1"
    with pytest.raises(KeyError, match="XMIXUP_B"):
        render_nginx.substitute("${XMIXUP_B}", {})


def _directives(conf: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in conf.splitlines():
        line = line.split("#", 1)[0].strip()
        if line.endswith(";"):
            name, _, value = line[:-1].partition(" ")
            found.setdefault(name, []).append(value.strip())
    return found


def test_rendered_lb_config() -> None:
    conf = render_nginx.render(
        ["127.0.0.1:9001", "127.0.0.1:9002", "127.0.0.1:9003"],
        listen="127.0.0.1:9000",
        request_timeout_s=12.5,
        max_body_bytes=123456,
    )
    assert not re.search(r"\$\{XMIXUP_[A-Z]", conf), "unrendered placeholder"
    d = _directives(conf)
    assert d["least_conn"] == [""]
    servers = d["server"]
    assert servers == [f"127.0.0.1:900{i} max_fails=3 fail_timeout=10s" for i in (1, 2, 3)]
    assert d["listen"] == ["127.0.0.1:9000"]
    nxt = d["proxy_next_upstream"][0].split()
    assert {"error", "timeout", "http_502", "http_503", "non_idempotent"} <= set(nxt)
    assert "http_504" not in nxt  # the deadline passed: retrying elsewhere only doubles the work
    assert d["proxy_next_upstream_tries"] == ["3"]
    # Aligned with the service: same body cap; the replica's own 504 comes before nginx gives up.
    assert d["client_max_body_size"] == ["123456"]
    read_timeout = int(d["proxy_read_timeout"][0].removesuffix("s"))
    assert 12.5 < read_timeout <= 12.5 + 10
    assert int(d["proxy_next_upstream_timeout"][0].removesuffix("s")) >= read_timeout
    assert int(d["proxy_connect_timeout"][0].removesuffix("s")) <= 5
    # X-Request-ID: honoured, else generated; passed to the replica; returned once.
    assert "$http_x_request_id" in conf and "$request_id" in conf
    assert "X-Request-ID $xmixup_request_id" in d["proxy_set_header"]
    assert d["proxy_hide_header"] == ["X-Request-ID"]
    # the access log records every replica tried (retries are visible)
    assert "$upstream_addr" in conf and "$upstream_status" in conf
    assert d["keepalive"] and d["proxy_http_version"] == ["1.1"]


@pytest.mark.skipif(
    shutil.which("nginx") is None and not Path("/usr/sbin/nginx").exists(),
    reason="nginx is not installed (apt-get install nginx-light)",
)
def test_rendered_config_passes_nginx_t(tmp_path: Path) -> None:
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    snippet = tmp_path / "xmixup.conf"
    snippet.write_text(render_nginx.render(["127.0.0.1:9001"], listen="127.0.0.1:9000"))
    main = tmp_path / "nginx.conf"
    main.write_text(
        f"events {{}}\nhttp {{\n    proxy_temp_path {tmp_path}/p;\n"
        f"    client_body_temp_path {tmp_path}/b;\n    include {snippet};\n}}\n"
    )
    cmd = [nginx, "-t", "-e", str(tmp_path / "err.log"), "-p", str(tmp_path), "-c", str(main)]
    out = subprocess.run([*cmd, "-g", f"pid {tmp_path}/n.pid;"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    # ... and nginx -t does reject a broken one (the check can fail)
    snippet.write_text(snippet.read_text().replace("least_conn;", "least_conn bogus;"))
    out = subprocess.run([*cmd, "-g", f"pid {tmp_path}/n.pid;"], capture_output=True, text=True)
    assert out.returncode != 0


# ----------------------------------------------------------------------------------------------
# Dockerfiles
# ----------------------------------------------------------------------------------------------
def arg_defaults(instrs: list[tuple[str, str]]) -> dict[str, str]:
    out = {}
    for instr, args in instrs:
        if instr == "FROM":
            break
        if instr == "ARG" and "=" in args:
            name, value = args.split("=", 1)
            out[name] = value
    return out


def env_vars(stage: list[tuple[str, str]]) -> dict[str, str]:
    out: dict[str, str] = {}
    for instr, args in stage:
        if instr == "ENV":
            for name, value in re.findall(r"(\w+)=(\S+)", args):
                out[name] = value
    return out


@pytest.mark.parametrize("variant", ["cpu", "gpu"])
def test_dockerfile(variant: str) -> None:
    instrs = parse_dockerfile(DOCKER / f"Dockerfile.{variant}")
    args = arg_defaults(instrs)
    st = stages(instrs)
    assert len(st) >= 2, "multi-stage: build stage + runtime stage"
    for stage in st:
        image = stage[0][1].split()[0]
        image = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], image)
        assert re.fullmatch(r"[\w./-]+:[\w.-]+", image), f"base image not pinned by tag: {image}"
        assert not image.endswith(":latest")
    runtime = st[-1]
    # installs exactly through the tested recipe, with this variant's lock
    build = "\n".join(a for i, a in st[0] if i in {"RUN", "COPY"})
    assert f"install-serve.sh {variant}" in build
    assert f"requirements-serve-{variant}.txt" in build
    assert "torch" not in build
    user = [a for i, a in runtime if i == "USER"]
    assert user and user[-1].split(":")[0] not in {"0", "root"}, "runtime must not run as root"
    health = [a for i, a in runtime if i == "HEALTHCHECK"]
    assert health and "/healthz" in health[0]
    entry = [a for i, a in runtime if i == "ENTRYPOINT"]
    assert entry and json.loads(entry[-1]) == ["xmixup", "serve"], "exec-form entrypoint"
    env = env_vars(runtime)
    assert env["XMIXUP_MODELS_DIR"] == "/models"
    assert env["XMIXUP_DEVICE"] == ("cuda" if variant == "gpu" else "cpu")
    assert env["XMIXUP_HOST"] == "0.0.0.0"
    for var in env:
        if var.startswith("XMIXUP_"):
            assert_service_setting(var)
    assert any(i == "COPY" and a.startswith("--from=build") for i, a in runtime)
    assert "training" not in build, "the serving image carries no training code"


def test_locks_differ_only_in_the_onnxruntime_build() -> None:
    def pins(variant: str) -> dict[str, str]:
        text = (DOCKER / f"requirements-serve-{variant}.txt").read_text()
        rows = [line for line in text.splitlines() if line and not line.startswith("#")]
        assert all(re.fullmatch(r"[a-z0-9-]+==[\w.+-]+", r) for r in rows), rows
        return dict(r.split("==") for r in rows)

    cpu, gpu = pins("cpu"), pins("gpu")
    assert "onnxruntime" in cpu and "onnxruntime-gpu" not in cpu
    assert "onnxruntime-gpu" in gpu and "onnxruntime" not in gpu
    cpu.pop("onnxruntime")
    gpu.pop("onnxruntime-gpu")
    assert cpu == gpu
    for forbidden in ("torch", "transformers", "torchvision"):
        assert forbidden not in cpu


# ----------------------------------------------------------------------------------------------
# compose + prometheus
# ----------------------------------------------------------------------------------------------
def interpolate(value: Any, env: dict[str, str] | None = None) -> Any:
    """Compose's ${VAR:-default} / ${VAR} interpolation with an empty environment."""
    env = env or {}
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if isinstance(value, str):

        def sub(m: re.Match[str]) -> str:
            name, default = m.group(1), m.group(3)
            return env.get(name) or (default if default is not None else "")

        return re.sub(r"\$\{(\w+)(:-([^}]*))?\}", sub, value)
    return value


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return interpolate(yaml.safe_load((DOCKER / "compose.yaml").read_text()))


def test_compose_replicas_lb_and_profiles(compose: dict[str, Any]) -> None:
    services = compose["services"]
    cpu, gpu, lb, prom = (services[n] for n in ("xmixup", "xmixup-gpu", "lb", "prometheus"))
    # CPU replicas by default, GPU ones only in the gpu profile, with a device reservation
    assert "profiles" not in cpu and gpu["profiles"] == ["gpu"]
    assert int(cpu["deploy"]["replicas"]) >= 2
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
    assert "reservations" not in cpu["deploy"].get("resources", {})
    assert cpu["build"]["dockerfile"] == "docker/Dockerfile.cpu"
    assert gpu["build"]["dockerfile"] == "docker/Dockerfile.gpu"
    assert cpu["environment"]["XMIXUP_DEVICE"] == "cpu"
    assert gpu["environment"]["XMIXUP_DEVICE"] == "cuda"
    for svc in (cpu, gpu):
        for var in svc["environment"]:
            assert_service_setting(var)
        vol = svc["volumes"][0]
        assert vol["target"] == svc["environment"]["XMIXUP_MODELS_DIR"] == "/models"
        assert vol["read_only"] is True
        assert svc["networks"]["default"]["aliases"] == ["replicas"]
        assert svc["read_only"] is True
        grace = int(svc["stop_grace_period"].removesuffix("s"))
        assert grace > float(svc["environment"]["XMIXUP_REQUEST_TIMEOUT_S"])
    # nginx: the project's template, fed values aligned with the replicas'
    mount = lb["volumes"][0]
    assert (DOCKER / mount["source"]).resolve() == DOCKER / "nginx.conf.template"
    assert mount["target"].startswith("/etc/nginx/templates/")
    env = lb["environment"]
    assert env["NGINX_ENVSUBST_FILTER"] == "^XMIXUP_"
    needed = set(re.findall(r"\$\{(XMIXUP_\w+)\}", TEMPLATE))
    assert needed <= set(env), f"template placeholders without a value: {needed - set(env)}"
    assert env["XMIXUP_MAX_BODY_BYTES"] == cpu["environment"]["XMIXUP_MAX_BODY_BYTES"]
    timeout = float(cpu["environment"]["XMIXUP_REQUEST_TIMEOUT_S"])
    derived = render_nginx.template_values(["x"], request_timeout_s=timeout)
    assert env["XMIXUP_LB_READ_TIMEOUT_S"] == derived["XMIXUP_LB_READ_TIMEOUT_S"]
    assert env["XMIXUP_UPSTREAM_SERVERS"].startswith("server replicas:8000 ")
    assert render_nginx.SERVER_PARAMS in env["XMIXUP_UPSTREAM_SERVERS"]
    assert "prometheus.yml" in prom["volumes"][0]["source"]


def test_prometheus_scrapes_every_replica(compose: dict[str, Any]) -> None:
    prom = yaml.safe_load((DOCKER / "prometheus.yml").read_text())
    job = next(j for j in prom["scrape_configs"] if j["job_name"] == "xmixup")
    assert job["metrics_path"] == "/metrics"
    sd = job["dns_sd_configs"][0]
    # DNS SD on the alias every replica carries: one target per container, scaling included
    assert sd["names"] == compose["services"]["xmixup"]["networks"]["default"]["aliases"]
    assert sd["type"] == "A"
    assert str(sd["port"]) == compose["services"]["xmixup"]["environment"]["XMIXUP_PORT"]


# ----------------------------------------------------------------------------------------------
# Kubernetes
# ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def k8s() -> dict[tuple[str, str], dict[str, Any]]:
    docs: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted((DOCKER / "k8s").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                docs[(doc["kind"], doc["metadata"]["name"])] = doc
    return docs


@pytest.mark.parametrize("variant", ["cpu", "gpu"])
def test_k8s_deployment(variant: str, k8s: dict[tuple[str, str], dict[str, Any]]) -> None:
    dep = k8s[("Deployment", f"xmixup-{variant}")]
    spec = dep["spec"]
    assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    pod = spec["template"]["spec"]
    labels = spec["template"]["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= labels.items()
    (c,) = pod["containers"]
    port = next(p for p in c["ports"] if p["name"] == "http")["containerPort"]
    env = {e["name"]: e.get("value") for e in c["env"]}
    for var in env:
        assert_service_setting(var)
    assert int(env["XMIXUP_PORT"]) == port
    assert env["XMIXUP_DEVICE"] == ("cuda" if variant == "gpu" else "cpu")
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["startupProbe"]["httpGet"]["path"] == "/healthz"
    # draining: preStop sleep, then SIGTERM; the grace period covers sleep + a full request
    cmd = c["lifecycle"]["preStop"]["exec"]["command"]
    assert cmd[0] == "sleep"
    timeout = float(env.get("XMIXUP_REQUEST_TIMEOUT_S") or REQUEST_TIMEOUT_S)
    assert pod["terminationGracePeriodSeconds"] > int(cmd[1]) + timeout
    # non-root, read-only root filesystem, writable /tmp only
    sc, csc = pod["securityContext"], c["securityContext"]
    assert sc["runAsNonRoot"] is True and sc["runAsUser"] != 0
    assert csc["readOnlyRootFilesystem"] is True and csc["allowPrivilegeEscalation"] is False
    assert csc["capabilities"]["drop"] == ["ALL"]
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    assert mounts["/models"]["readOnly"] is True and "/tmp" in mounts
    res = c["resources"]
    assert res["requests"]["memory"] and res["limits"]["memory"]
    if variant == "gpu":
        assert res["limits"]["nvidia.com/gpu"] == 1
    else:
        assert "nvidia.com/gpu" not in res["limits"]
    ann = spec["template"]["metadata"]["annotations"]
    assert ann["prometheus.io/scrape"] == "true" and int(ann["prometheus.io/port"]) == port


def test_k8s_service_hpa_monitor(k8s: dict[tuple[str, str], dict[str, Any]]) -> None:
    svc = k8s[("Service", "xmixup")]
    deployments = [d for (kind, _), d in k8s.items() if kind == "Deployment"]
    assert len(deployments) == 2
    for dep in deployments:
        labels = dep["spec"]["template"]["metadata"]["labels"]
        assert svc["spec"]["selector"].items() <= labels.items(), "Service must select every pod"
    assert svc["spec"]["ports"][0]["targetPort"] == "http"
    for (kind, _), hpa in k8s.items():
        if kind == "HorizontalPodAutoscaler":
            ref = hpa["spec"]["scaleTargetRef"]
            assert ("Deployment", ref["name"]) in k8s
            assert hpa["spec"]["minReplicas"] >= 2
    monitor = k8s[("ServiceMonitor", "xmixup")]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"][0]["port"] == svc["spec"]["ports"][0]["name"]
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"
    claim = k8s[("PersistentVolumeClaim", "xmixup-bundles")]
    for dep in deployments:
        vols = {v["name"]: v for v in dep["spec"]["template"]["spec"]["volumes"]}
        assert vols["bundles"]["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]


def metric_series() -> set[str]:
    """Every series name the service exports (histograms' _bucket/_sum/_count included)."""
    from service.metrics import Metrics

    suffixes = {"counter": ("_total",), "histogram": ("", "_bucket", "_sum", "_count")}
    names = set()
    for family in Metrics().registry.collect():  # labelled families have no samples yet
        names |= {family.name + suffix for suffix in suffixes.get(family.type, ("",))}
    return names


def test_metric_names_used_by_hpa_and_docs_exist(
    k8s: dict[tuple[str, str], dict[str, Any]],
) -> None:
    known = metric_series()
    assert "xmixup_queue_depth" in known  # the check can fail: it sees the real registry
    used = set()
    for (kind, _), hpa in k8s.items():
        if kind == "HorizontalPodAutoscaler":
            for metric in hpa["spec"]["metrics"]:
                if metric["type"] == "Pods":
                    used.add(metric["pods"]["metric"]["name"])
    docs = (DOCKER.parent / "docs" / "DEPLOY.md").read_text()
    used |= set(re.findall(r"\b(xmixup_[a-z_]+)\b", docs))
    assert used, "no metric referenced"
    assert not used - known, f"unknown metric names: {sorted(used - known)}"


def _has_compose() -> bool:
    if shutil.which("docker") is None:
        return False
    probe = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30)
    return probe.returncode == 0


@pytest.mark.skipif(not _has_compose(), reason="the docker CLI here has no compose plugin")
def test_docker_compose_config(tmp_path: Path) -> None:
    env = {**os.environ, "XMIXUP_BUNDLES_DIR": str(tmp_path)}
    for profile in ([], ["--profile", "gpu"]):
        out = subprocess.run(
            ["docker", "compose", "-f", str(DOCKER / "compose.yaml"), *profile, "config", "-q"],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        assert out.returncode == 0, out.stderr


def _dockerignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule, enough for an allowlist: the last matching pattern wins, a pattern that
    names a directory covers everything below it, `!` re-includes."""
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pat = pattern.lstrip("!").rstrip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        hit = any(fnmatch.fnmatchcase(p, pat) for p in prefixes)
        if pat.startswith("**/"):
            hit = hit or any(fnmatch.fnmatchcase(p, pat[3:]) for p in parts)
        if hit:
            ignored = not negate
    return ignored


def test_dockerignore_sends_only_what_the_images_copy() -> None:
    lines = (DOCKER.parent / ".dockerignore").read_text().splitlines()
    patterns = [s.strip() for s in lines if s.strip() and not s.startswith("#")]
    for variant in ("cpu", "gpu"):
        for instr, args in parse_dockerfile(DOCKER / f"Dockerfile.{variant}"):
            if instr != "COPY" or args.startswith("--from"):
                continue
            for src in args.split()[:-1]:
                assert not _dockerignored(src, patterns), f"{variant}: COPY {src} is ignored"
    for src in ("xmixup/core/bundle.py", "service/app.py", "docker/install-serve.sh"):
        assert not _dockerignored(src, patterns), src
    for junk in (
        ".venv/bin/python",
        "artifacts/x/model.safetensors",
        "demo/bundles/a.onnx",
        "training/modeling.py",
        "tests/tiny.py",
        "service/__pycache__/app.pyc",
    ):
        assert _dockerignored(junk, patterns), junk
