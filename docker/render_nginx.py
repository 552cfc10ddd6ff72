"""Render docker/nginx.conf.template for a known list of replicas (bare metal, tests).

    python docker/render_nginx.py --listen 8080 --upstream 10.0.0.2:8000 --upstream 10.0.0.3:8000

The substitution is envsubst's, restricted to ``${XMIXUP_*}`` names: the same template the
official nginx image renders in compose.yaml. The nginx-side values are derived from the
service's own settings so the two cannot drift: the body cap equals XMIXUP_MAX_BODY_BYTES and
the proxy read timeout is XMIXUP_REQUEST_TIMEOUT_S + READ_TIMEOUT_MARGIN_S.
"""

from __future__ import annotations

import argparse
import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

TEMPLATE = Path(__file__).resolve().parent / "nginx.conf.template"
# Passive health: this many failed attempts within FAIL_TIMEOUT take a replica out of rotation
# for FAIL_TIMEOUT. compose.yaml's XMIXUP_UPSTREAM_SERVERS uses the same values (tested).
SERVER_PARAMS = "max_fails=3 fail_timeout=10s"
READ_TIMEOUT_MARGIN_S = 5
DEFAULT_REQUEST_TIMEOUT_S = 30.0  # service.settings.Settings.request_timeout_s
DEFAULT_MAX_BODY_BYTES = 2_000_000  # service.settings.Settings.max_body_bytes
DEFAULT_TRIES = 3
_PLACEHOLDER = re.compile(r"\$\{(XMIXUP_[A-Z0-9_]+)\}")


def substitute(template: str, values: Mapping[str, str]) -> str:
    """Replace every ``${XMIXUP_*}`` placeholder; a missing value is an error, not an empty string."""
    missing = sorted({name for name in _PLACEHOLDER.findall(template) if name not in values})
    if missing:
        raise KeyError(f"no value for {missing}")
    return _PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), template)


def template_values(
    upstreams: Sequence[str],
    listen: str = "8080",
    request_timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    tries: int = DEFAULT_TRIES,
    resolver: str = "127.0.0.11",
) -> dict[str, str]:
    if not upstreams:
        raise ValueError("at least one upstream replica is needed")
    servers = "\n    ".join(f"server {addr} {SERVER_PARAMS};" for addr in upstreams)
    return {
        "XMIXUP_LB_LISTEN": listen,
        "XMIXUP_UPSTREAM_SERVERS": servers,
        "XMIXUP_LB_RESOLVER": resolver,
        "XMIXUP_MAX_BODY_BYTES": str(int(max_body_bytes)),
        "XMIXUP_LB_READ_TIMEOUT_S": str(math.ceil(request_timeout_s) + READ_TIMEOUT_MARGIN_S),
        "XMIXUP_LB_TRIES": str(int(tries)),
    }


def render(upstreams: Sequence[str], **kwargs: object) -> str:
    return substitute(TEMPLATE.read_text(), template_values(upstreams, **kwargs))  # type: ignore[arg-type]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upstream", action="append", required=True, help="HOST:PORT (repeat)")
    parser.add_argument("--listen", default="8080")
    parser.add_argument(
        "--request-timeout-s",
        type=float,
        default=float(os.environ.get("XMIXUP_REQUEST_TIMEOUT_S", DEFAULT_REQUEST_TIMEOUT_S)),
    )
    parser.add_argument(
        "--max-body-bytes",
        type=int,
        default=int(os.environ.get("XMIXUP_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES)),
    )
    parser.add_argument("--tries", type=int, default=DEFAULT_TRIES)
    parser.add_argument("--out", type=Path, help="write here instead of stdout")
    args = parser.parse_args(argv)
    text = render(
        args.upstream,
        listen=args.listen,
        request_timeout_s=args.request_timeout_s,
        max_body_bytes=args.max_body_bytes,
        tries=args.tries,
    )
    if args.out:
        args.out.write_text(text)
    else:
        print(text, end="")


if __name__ == "__main__":
    main()
