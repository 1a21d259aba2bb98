"""The README's commands and examples: every `python` block runs as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
BLOCK = re.compile(r"^```python\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def python_blocks() -> list[tuple[int, str]]:
    """(line number, source) of every python block of the README."""
    text = README.read_text(encoding="utf-8")
    return [(text.count("\n", 0, m.start()) + 1, m.group(1)) for m in BLOCK.finditer(text)]


def test_readme_has_python_examples() -> None:
    assert len(python_blocks()) >= 3


def test_python_blocks_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FLOWKERNEL_DATABASE_URL", f"sqlite:///{tmp_path / 'readme.db'}")
    for line, source in python_blocks():
        code = compile(source, f"{README}:{line}", "exec")
        exec(code, {"__name__": f"readme_line_{line}"})
    out = capsys.readouterr().out
    assert "created -> enabled" in out
    assert "broken" in out
    assert "['7: created -> enabled']" in out
    assert not (tmp_path / "flowkernel.db").exists()  # the environment variable was used


def test_first_commands_are_the_ones_ci_runs() -> None:
    text = README.read_text(encoding="utf-8")
    shell = re.findall(r"^```sh\n(.*?)^```$", text, re.MULTILINE | re.DOTALL)
    assert shell[:2] == [
        "pip install . && flowkernel demo\n",
        "pip install -e '.[test]' && pytest\n",
    ]
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "flowkernel demo && flowkernel demo" in ci
    # CI reads its test command from the README line above instead of repeating it.
    assert """sed -n "s/^pip install -e '\\.\\[test\\]' && //p" README.md""" in ci
