"""The architecture checks of `make lint` can fail: import contracts and size limits.

The import contracts (pyproject.toml ``[tool.importlinter]``) run on tiny fake package trees
with the product's package names, one violation per contract, and on the real tree. The size
check (scripts/check_size.py) runs on synthetic sources at and just past each limit.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"

CORE = "xmixup.core is torch-free and depends on no product package"
SERVICE = "service imports only xmixup.core and xmixup.errors of the project"
TRAINING = "training imports neither service nor model_export"
PYAPI = "the Python API and batch scoring need neither torch nor FastAPI"

# A layout that keeps every contract: the CLI root may import everything.
CLEAN_TREE = {
    "xmixup/__init__.py": "",
    "xmixup/errors.py": "",
    "xmixup/cli.py": "import training\nimport model_export\nimport service\n",
    "xmixup/core/__init__.py": "",
    "xmixup/core/bundle.py": "import json\nimport pydantic\nfrom xmixup import errors\n",
    "xmixup/predictor.py": "import numpy\nimport xmixup.core.bundle\n",
    "xmixup/batch/__init__.py": "",
    "xmixup/batch/run.py": "import xmixup.predictor\n",
    "training/__init__.py": "",
    "training/trainer.py": "import torch\nimport transformers\nfrom xmixup.core import bundle\n",
    "model_export/__init__.py": "",
    "model_export/export.py": "import torch\nimport training.trainer\nimport xmixup.core.bundle\n",
    "service/__init__.py": "",
    "service/app.py": "import fastapi\nimport xmixup.core.bundle\nfrom xmixup import errors\n",
}


def _lint_imports(cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--no-logo"],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(cwd)},
        capture_output=True,
        text=True,
        timeout=60,
    )


def _fake_tree(tmp_path: Path, extra: dict[str, str]) -> Path:
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    for rel, text in {**CLEAN_TREE, **extra}.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return tmp_path


def test_contracts_keep_a_clean_tree(tmp_path: Path) -> None:
    result = _lint_imports(_fake_tree(tmp_path, {}))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 kept, 0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "source", "contract", "culprit"),
    [
        ("xmixup/core/runner.py", "import torch\n", CORE, "torch"),
        ("xmixup/core/decode.py", "from transformers import AutoModel\n", CORE, "transformers"),
        ("xmixup/core/vocab.py", "from service import app\n", CORE, "service"),
        ("xmixup/core/featurize.py", "import training.trainer\n", CORE, "training"),
        ("service/routes.py", "from model_export import export\n", SERVICE, "model_export"),
        ("service/batcher.py", "import torch\n", SERVICE, "torch"),
        # indirect: the CLI root imports training, so the service may not import it
        ("service/cli.py", "import xmixup.cli\n", SERVICE, "xmixup.cli"),
        ("training/evaluate.py", "import model_export.export\n", TRAINING, "model_export"),
        ("xmixup/predictor.py", "import fastapi\n", PYAPI, "fastapi"),
        ("xmixup/batch/run.py", "import service.app\n", PYAPI, "service"),
        ("training/serve.py", "from service import app\n", TRAINING, "service"),
    ],
)
def test_each_contract_breaks_on_a_violation(
    tmp_path: Path, module: str, source: str, contract: str, culprit: str
) -> None:
    result = _lint_imports(_fake_tree(tmp_path, {module: source}))
    assert result.returncode != 0
    broken = result.stdout.split("Broken contracts", 1)[-1]
    assert "1 broken" in result.stdout, result.stdout
    assert contract in broken
    assert f"not allowed to import {culprit}" in broken


def test_the_repository_keeps_its_contracts() -> None:
    result = _lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


# ---------------------------------------------------------------------------------------------
# scripts/check_size.py
# ---------------------------------------------------------------------------------------------
def _load_check_size() -> ModuleType:
    spec = importlib.util.spec_from_file_location("check_size", ROOT / "scripts/check_size.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


check_size = _load_check_size()


def _function(name: str, n_lines: int, *, is_async: bool = False, indent: str = "") -> str:
    """A function of exactly ``n_lines`` lines (def line included)."""
    head = f"{indent}{'async ' if is_async else ''}def {name}():\n"
    body = "".join(f"{indent}    x{i} = {i}\n" for i in range(n_lines - 1))
    return head + body


def test_a_function_at_the_limit_passes_one_line_more_fails() -> None:
    limit = check_size.MAX_FUNCTION_LINES
    assert limit == 80
    assert check_size.check_source("m.py", _function("ok", limit)) == []
    source = "import os\n\n" + _function("long", limit + 1)
    offences = check_size.check_source("m.py", source)
    assert [str(o) for o in offences] == ["m.py:3: function 'long' has 81 lines (limit 80)"]


def test_async_methods_and_nested_functions_count() -> None:
    nested = "class C:\n" + _function("outer", 90, indent="    ")
    nested += _function("inner", 85, indent="        ")
    offences = check_size.check_source("c.py", nested + _function("a", 81, is_async=True))
    names = [o.message.split("'")[1] for o in offences]
    assert names == ["outer", "inner", "a"]
    assert "has 175 lines" in offences[0].message  # the outer function contains the inner one


def test_a_file_at_the_limit_passes_one_line_more_fails() -> None:
    limit = check_size.MAX_FILE_LINES
    assert limit == 400
    assert check_size.check_source("f.py", "x = 1\n" * limit) == []
    offences = check_size.check_source("f.py", "x = 1\n" * (limit + 1))
    assert [str(o) for o in offences] == ["f.py:1: file has 401 lines (limit 400)"]
    assert check_size.check_source("f.py", "x = 1\n" * (limit + 1), allowed_file=True) == []


def test_tree_skips_tests_and_honours_only_a_live_allowlist(tmp_path: Path) -> None:
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_big.py").write_text(_function("t", 200))
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "table.py").write_text("ROW = 1\n" * 500)
    (tmp_path / "pkg" / "small.py").write_text("ROW = 1\n")
    (tmp_path / "pkg" / "big.py").write_text(_function("f", 81))
    allow = {"pkg/table.py": "a data table", "pkg/small.py": "was big once"}
    offences = [str(o) for o in check_size.check_tree(tmp_path, allow)]
    assert offences == [
        "pkg/big.py:1: function 'f' has 81 lines (limit 80)",
        "pkg/small.py:1: allowlisted but missing or within the limit; unlist it",
    ]
    assert [str(o) for o in check_size.check_tree(tmp_path, {})] == [
        "pkg/big.py:1: function 'f' has 81 lines (limit 80)",
        "pkg/table.py:1: file has 500 lines (limit 400)",
    ]


def test_main_exit_status(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "ok.py").write_text(_function("f", 10))
    assert check_size.main([str(tmp_path)]) == 0
    (tmp_path / "bad.py").write_text(_function("g", 100))
    assert check_size.main([str(tmp_path)]) == 1
    assert "bad.py:1: function 'g' has 100 lines" in capsys.readouterr().out
