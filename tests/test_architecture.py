"""The package's architecture: its layers and the names its modules share."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
from importlinter.cli import lint_imports

ROOT = Path(__file__).resolve().parents[1]


def test_the_import_contracts_hold(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The layers and the forbidden imports of `[tool.importlinter]` in pyproject.toml."""
    monkeypatch.chdir(ROOT)
    status = lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True)
    out = capsys.readouterr().out
    assert status == 0, out
    assert "0 broken" in out, out


def test_the_command_line_starts_without_the_database_layers() -> None:
    """`flowkernel --help` and `--version` build the parser only: SQLAlchemy, Alembic and the
    engine load when a command opens a database (start-up is measured by
    `benchmarks/startup.py`, not here)."""
    script = (
        "import sys, flowkernel.cli\n"
        "flowkernel.cli.build_parser()\n"
        "heavy = ('sqlalchemy', 'alembic', 'transitions', 'pluggy', 'flowkernel.kernel',\n"
        "         'flowkernel.store.database', 'flowkernel.runtime.executor')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert run.stdout.strip() == "[]", run.stdout


PACKAGE_FOLDERS = ("engine", "plugins", "migrations", "examples", "benchmarks")
"""The repository folders that install as `flowkernel` and its subpackages."""


def _sources() -> list[Path]:
    return sorted(p for folder in PACKAGE_FOLDERS for p in (ROOT / folder).rglob("*.py"))


def test_no_module_imports_another_modules_private_name() -> None:
    """`from flowkernel.x import _name` (or a relative import of one) reaches into a module's
    insides; what another module needs is public in its own."""
    found = []
    for path in _sources():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in ast.walk(tree):
            if not isinstance(node, ast.ImportFrom):
                continue
            ours = node.level > 0 or (node.module or "").split(".")[0] == "flowkernel"
            for alias in node.names:
                if ours and alias.name.startswith("_") and not alias.name.startswith("__"):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno} {alias.name}")
    assert found == []


MAX_LINES = 600
"""The most lines a module of the package may have: one concept, a few hundred lines."""


def test_every_module_is_a_few_hundred_lines() -> None:
    long = {
        str(path.relative_to(ROOT)): lines
        for path in _sources()
        if (lines := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
        and "versions" not in path.parts  # a migration is as long as the change it makes
    }
    assert long == {}


def test_only_the_store_knows_the_dialects() -> None:
    """Every statement that differs between SQLite and PostgreSQL is in the writer of its
    dialect (`flowkernel.store`): the engine's logic neither tests the dialect nor imports one.
    (The migrations and the benchmarks' raw baselines are written per database on purpose.)"""
    found = []
    for path in _sources():
        relative = path.relative_to(ROOT)
        if relative.parts[:2] == ("engine", "store") or relative.parts[0] in (
            "migrations",
            "benchmarks",
        ):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                "sqlalchemy.dialects"
            ):
                found.append(f"{relative}:{node.lineno} imports {node.module}")
            if isinstance(node, ast.Compare) and any(
                isinstance(side, ast.Attribute)
                and side.attr == "name"
                and isinstance(side.value, ast.Attribute)
                and side.value.attr == "dialect"
                for side in (node.left, *node.comparators)
            ):
                found.append(f"{relative}:{node.lineno} tests the dialect")
    assert found == []
