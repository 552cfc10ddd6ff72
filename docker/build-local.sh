#!/usr/bin/env bash
# Build docker/Dockerfile.cpu for real WITHOUT a docker daemon or a registry, run the image on a
# models dir and probe it from outside. Podman (root) on a Debian bookworm host.
#
#   docker/build-local.sh all MODELS_DIR   base + build + smoke (the usual call)
#   docker/build-local.sh base             debootstrap bookworm + python3 -> local base image
#   docker/build-local.sh build            podman build -f docker/Dockerfile.cpu
#   docker/build-local.sh smoke MODELS_DIR run the image (hardened as in compose), curl
#                                          /readyz, /v1/models, /classify; SIGTERM; exit code 0
#   docker/build-local.sh clean            remove the images, the storage and the work dir
#
# Never run by `make test` or CI: it needs root, the Debian mirror and PyPI, and minutes.
# tests/deploy/test_image.py runs it only when XMIXUP_IMAGE_TEST=1.
# Needs: apt-get install podman debootstrap runc (curl). MODELS_DIR needs a classify bundle.
#
# Why each workaround (all harmless on an ordinary host):
# - No registry: python:3.11.11-slim-bookworm cannot be pulled, so the base is Debian bookworm
#   (its python3 IS 3.11) made with debootstrap and `podman import`ed; the Dockerfile's own
#   PYTHON_IMAGE build-arg points both stages at it. The Dockerfile itself is unchanged.
# - Storage and config live in $XMIXUP_IMAGE_WORK, so `clean` removes every trace.
# - runc, not crun: crun 1.8 refuses a hybrid cgroup v1/v2 host ("cgroups in hybrid mode not
#   supported"). Explicit ulimits: podman's defaults for root (nofile 1048576) exceed the hard
#   limits of a host without CAP_SYS_RESOURCE, and setrlimit fails.
# - XMIXUP_BUILD_CA: a CA bundle bind-mounted over the build container's trust store, for hosts
#   whose HTTPS to PyPI goes through an intercepting proxy (build-time only: not in a layer).
# - --format docker: the OCI format drops HEALTHCHECK.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
work=${XMIXUP_IMAGE_WORK:-${TMPDIR:-/tmp}/xmixup-image}
base=localhost/xmixup-base:bookworm-python3.11
image=${XMIXUP_IMAGE:-localhost/xmixup:0.1.0-cpu}
mirror=${XMIXUP_DEBIAN_MIRROR:-http://deb.debian.org/debian}
port=${XMIXUP_IMAGE_PORT:-18000}
ca=${XMIXUP_BUILD_CA:-/etc/ssl/certs/ca-certificates.crt}

stamp() { date +%s; }
say() { echo "build-local: $*"; }

setup() {
  mkdir -p "$work"
  printf '[storage]\ndriver = "overlay"\ngraphroot = "%s/storage"\nrunroot = "%s/run"\n' \
    "$work" "$work" > "$work/storage.conf"
  nofile=$(ulimit -Hn) nproc_max=$(ulimit -Hu)
  if [ "$nproc_max" = unlimited ] || [ "$nproc_max" -gt 4096 ]; then nproc_max=4096; fi
  printf '[containers]\ndefault_ulimits = ["nofile=%s:%s", "nproc=%s:%s"]\n[engine]\nruntime = "runc"\n' \
    "$nofile" "$nofile" "$nproc_max" "$nproc_max" > "$work/containers.conf"
  export CONTAINERS_STORAGE_CONF="$work/storage.conf" CONTAINERS_CONF="$work/containers.conf"
}

make_base() {
  if podman image exists "$base"; then say "base $base exists"; return; fi
  t0=$(stamp); rm -rf "$work/rootfs"
  debootstrap --variant=minbase --include=python3,python3-venv,python-is-python3,ca-certificates \
    bookworm "$work/rootfs" "$mirror" > "$work/debootstrap.log"
  # slim, like the python:*-slim images: no apt lists, docs, man pages or locales
  rm -rf "$work"/rootfs/var/lib/apt/lists/* "$work"/rootfs/var/cache/apt/* \
    "$work"/rootfs/usr/share/doc/* "$work"/rootfs/usr/share/man/* "$work"/rootfs/usr/share/locale/*
  tar -C "$work/rootfs" -c . | podman import --quiet \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]' - "$base" > /dev/null
  rm -rf "$work/rootfs"
  say "base $base ($(podman run --rm "$base" python --version)) in $(($(stamp) - t0)) s"
}

build() {
  t0=$(stamp); set -- --format docker --network host -f "$repo/docker/Dockerfile.cpu" \
    --build-arg "PYTHON_IMAGE=$base" -t "$image"
  [ -f "$ca" ] && set -- "$@" -v "$ca:/etc/ssl/certs/ca-certificates.crt:ro"
  podman build "$@" "$repo" > "$work/build.log" 2>&1 || { tail -40 "$work/build.log"; exit 1; }
  grep -E 'serving environment OK' "$work/build.log"
  say "built $image in $(($(stamp) - t0)) s, $(podman image inspect "$image" --format '{{.Size}}') bytes"
}

smoke() {
  models=$(cd "${1:?smoke needs MODELS_DIR}" && pwd)
  podman rm -f xmixup-build-local > /dev/null 2>&1 || true
  t0=$(stamp)
  # --health-interval disable: podman runs HEALTHCHECKs from systemd timers (none here);
  # `podman healthcheck run` below still runs the image's check once.
  podman run -d --name xmixup-build-local --health-interval disable -p "127.0.0.1:$port:8000" --read-only --tmpfs /tmp \
    --cap-drop all --security-opt no-new-privileges -v "$models:/models:ro" "$image" > /dev/null
  i=0
  until [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/readyz")" = 200 ]; do
    i=$((i + 1)); [ "$i" -lt 240 ] || { podman logs xmixup-build-local; exit 1; }; sleep 0.5
  done
  say "ready in <= $(($(stamp) - t0)) s: $(curl -s "http://127.0.0.1:$port/readyz")"
  say "user $(podman exec xmixup-build-local id -u); models: $(curl -s "http://127.0.0.1:$port/v1/models" \
    | python3 -c 'import json,sys; print([m["name"] for m in json.load(sys.stdin)["data"]])')"
  say "classify: $(curl -sf "http://127.0.0.1:$port/classify" -H 'content-type: application/json' \
    -d '{"inputs":[{"target":"Wo ist der Bahnhof?","source":"Where is the station?"}]}')"
  podman healthcheck run xmixup-build-local 2> /dev/null && say "HEALTHCHECK passes"
  podman stop -t 45 xmixup-build-local > /dev/null 2>&1
  code=$(podman inspect xmixup-build-local --format '{{.State.ExitCode}}')
  podman logs xmixup-build-local > "$work/serve.log" 2>&1; podman rm xmixup-build-local > /dev/null
  say "stopped (SIGTERM, drained), exit code $code"; [ "$code" = 0 ]
}

clean() {
  # only this script's storage (CONTAINERS_STORAGE_CONF): other podman images are untouched
  podman rm --all --force > /dev/null 2>&1 || true
  podman rmi --all --force > /dev/null 2>&1 || true
  rm -rf "$work"; say "removed $work"
}

cmd=${1:-}; [ $# -gt 0 ] && shift
setup
case "$cmd" in
  base) make_base ;;
  build) build ;;
  smoke) smoke "$@" ;;
  all) make_base; build; smoke "$@" ;;
  clean) clean ;;
  *) sed -n '2,13p' "$0" >&2; exit 2 ;;
esac
