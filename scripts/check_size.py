"""Size limits for the product's Python code, run by ``make lint``.

A function over ``MAX_FUNCTION_LINES`` lines or a file over ``MAX_FILE_LINES`` lines (outside
``tests/``) fails the check: long units hide more than one job. Data tables that are long by
nature may be listed in ``ALLOWLIST`` with the reason; nothing else is exempt.

    python scripts/check_size.py [ROOT]    # exit 1 and one line per offender
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import NamedTuple

MAX_FUNCTION_LINES = 80
MAX_FILE_LINES = 400
# Directories never checked: tests, generated or installed trees.
SKIP_DIRS = frozenset(
    {"tests", ".venv", ".git", "build", "dist", "demo", "artifacts", "results", "cache"}
)
# path (relative to the root, POSIX) -> why the file may exceed MAX_FILE_LINES. Data tables only.
ALLOWLIST: dict[str, str] = {}


class Offence(NamedTuple):
    path: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}"


def check_source(path: str, text: str, *, allowed_file: bool = False) -> list[Offence]:
    """Offences of one file's source: every function too long, and the file if too long."""
    offences: list[Offence] = []
    n_lines = len(text.splitlines())
    if n_lines > MAX_FILE_LINES and not allowed_file:
        offences.append(Offence(path, 1, f"file has {n_lines} lines (limit {MAX_FILE_LINES})"))
    for node in ast.walk(ast.parse(text, filename=path)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            length = (node.end_lineno or node.lineno) - node.lineno + 1
            if length > MAX_FUNCTION_LINES:
                offences.append(
                    Offence(
                        path,
                        node.lineno,
                        f"function {node.name!r} has {length} lines (limit {MAX_FUNCTION_LINES})",
                    )
                )
    return sorted(offences, key=lambda o: o.line)


def python_files(root: Path) -> Iterator[Path]:
    """The checked files under ``root``, in a stable order."""
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root).parts
        if not any(part in SKIP_DIRS or part.startswith(".") for part in parts[:-1]):
            yield path


def check_tree(root: Path, allowlist: Mapping[str, str] = ALLOWLIST) -> list[Offence]:
    """Offences under ``root``; an allowlist entry that no longer applies is one too."""
    offences: list[Offence] = []
    used: set[str] = set()
    for path in python_files(root):
        rel = path.relative_to(root).as_posix()
        text = path.read_text(encoding="utf-8")
        allowed = rel in allowlist
        if allowed and len(text.splitlines()) > MAX_FILE_LINES:
            used.add(rel)
        offences.extend(check_source(rel, text, allowed_file=allowed))
    # A stale entry would silently exempt the file's next growth: drop it once it fits.
    for rel in sorted(set(allowlist) - used):
        offences.append(Offence(rel, 1, "allowlisted but missing or within the limit; unlist it"))
    return offences


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    root = Path(args[0]) if args else Path(__file__).resolve().parent.parent
    offences = check_tree(root)
    for offence in offences:
        print(offence)
    if offences:
        print(
            f"{len(offences)} size offence(s): split the unit, or allowlist a data table with "
            "its reason in scripts/check_size.py",
            file=sys.stderr,
        )
    return 1 if offences else 0


if __name__ == "__main__":
    sys.exit(main())
