"""The package's architecture: its layers and the names its modules share."""

from __future__ import annotations

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
