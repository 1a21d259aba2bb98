"""The documentation: executed examples, drawings that match the command, a current CLI
reference, and links that lead somewhere."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from flowkernel import SYSTEM, Actor, Flowkernel
from flowkernel.cli import build_parser
from flowkernel.cli.reference import REGENERATE, render
from flowkernel.examples.charging_station import build_station_class
from flowkernel.examples.sales_pipeline import ACCOUNT, build_sales_pipeline
from flowkernel.views.diagram import compiled_for, to_mermaid

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PYTHON = re.compile(r"^```python\n(.*?)^```$", re.MULTILINE | re.DOTALL)
MERMAID = re.compile(r"^```mermaid\n(.*?)^```$", re.MULTILINE | re.DOTALL)
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
EXECUTED = ("api-tour.md", "plugins.md")
"""Pages whose python blocks run; each page's blocks run in order as one program."""


def blocks(path: Path, pattern: re.Pattern[str] = PYTHON) -> list[tuple[int, str]]:
    """(line number, source) of every block of `path` matching `pattern`."""
    text = path.read_text(encoding="utf-8")
    return [(text.count("\n", 0, m.start()) + 1, m.group(1)) for m in pattern.finditer(text)]


def run_page(path: Path) -> None:
    namespace: dict[str, object] = {"__name__": f"docs_{path.stem.replace('-', '_')}"}
    try:
        for line, source in blocks(path):
            exec(compile(source, f"{path}:{line}", "exec"), namespace)
    finally:
        fk = namespace.get("fk")
        if isinstance(fk, Flowkernel):
            fk.close()  # also when a block failed: no connection outlives the test


# --- executed examples ---------------------------------------------------------------------


def test_api_tour_runs(
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    workdir = tmp_path / "work"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    monkeypatch.setenv("FLOWKERNEL_DATABASE_URL", database_url)
    run_page(DOCS / "api-tour.md")
    out = capsys.readouterr().out.splitlines()
    for expected in (
        "new -> running True",
        "MethodHidden fail",
        "another tenant does not see the pump",
        "check_repair",
        "['fail: running -> broken', 'repair: broken -> running']",
        "(('close_date', 'Expected close'),)",
        "(('sent', 'Offer sent'),)",
        "no_moving_back",
        "['crm.deal_added', 'crm.deal_won']",
        "crm_deal 9001 moved from Offer to Won",
        "True ['new', 'solved']",
        "won 1 1250.5 1250.5",
        "mallory's account has no such pipeline",
        "()",
        "crm.deal_stale",
        "True ['lead', 'offer']",
        "{'new': 0, 'running': 1, 'broken': 0, 'scrapped': 0}",
    ):
        assert expected in out, f"{expected!r} not printed by docs/api-tour.md"
    assert not (workdir / "flowkernel.db").exists()  # the environment variable was used


def test_api_tour_covers_the_api() -> None:
    text = (DOCS / "api-tour.md").read_text(encoding="utf-8")
    for heading in (
        "Kernel classes",
        "Plugins",
        "Pipelines",
        "Automations",
        "watchers",
        "values, checklists",
        "Templates",
        "Queries",
        "SLA",
    ):
        assert re.search(rf"^## .*{heading}", text, re.MULTILINE), heading
    assert len(blocks(DOCS / "api-tour.md")) >= 10


@pytest.mark.parametrize("page", [p for p in EXECUTED if p != "api-tour.md"])
def test_python_blocks_of_other_pages_run(
    page: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FLOWKERNEL_DATABASE_URL", f"sqlite:///{tmp_path / 'docs.db'}")
    assert blocks(DOCS / page)
    run_page(DOCS / page)


# --- drawings ------------------------------------------------------------------------------


def test_concepts_drawings_are_the_commands_output(fk: Flowkernel) -> None:
    build_sales_pipeline(fk)
    build_station_class(fk)
    drawn = [source for _, source in blocks(DOCS / "concepts.md", MERMAID)]
    assert drawn == [
        to_mermaid(compiled_for(fk, "sales", Actor.system(ACCOUNT))),
        to_mermaid(compiled_for(fk, "station", SYSTEM)),
    ], "redraw with `flowkernel diagram sales --account 1` and `flowkernel diagram station`"


def test_concepts_has_the_vocabulary_and_the_pipeline_mapping() -> None:
    text = (DOCS / "concepts.md").read_text(encoding="utf-8")
    for kernel, flow in (
        ("class", "pipeline"),
        ("state", "stage"),
        ("method", "move / lifecycle call"),
        ("transition", "stage move"),
        ("event", "automation"),
        ("object", "item"),
    ):
        assert f"\n| {kernel} | {flow} |" in text
    assert "## How a pipeline compiles into a class" in text
    for compiled in ("move_to_<S>", "sla_breach", "`create`", "state of type disabled"):
        assert compiled in text


# --- the CLI reference ---------------------------------------------------------------------


def test_cli_reference_is_current() -> None:
    page = DOCS / "cli-reference.md"
    assert page.exists(), f"docs/cli-reference.md is missing; run `{REGENERATE}`"
    assert page.read_text(encoding="utf-8") == render(build_parser()), (
        f"docs/cli-reference.md is out of date; run `{REGENERATE}`"
    )


def test_reference_lists_every_command_and_option() -> None:
    text = render(build_parser())
    pending: list[argparse.ArgumentParser] = [build_parser()]
    while pending:
        parser = pending.pop()
        assert f"## `{parser.prog}`" in text
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                pending.extend(action.choices.values())
            elif action.help != argparse.SUPPRESS and not isinstance(action, argparse._HelpAction):
                flags = ", ".join(action.option_strings) or str(action.metavar or action.dest)
                assert f"| `{flags}" in text, f"{parser.prog}: {flags} is not in the reference"


def test_render_nested_commands_choices_defaults_and_hidden_options() -> None:
    parser = argparse.ArgumentParser(prog="tool", description="A tool.", epilog="exit 0: ok")
    parser.add_argument("--verbose", action="store_true", help="say more")
    parser.add_argument("--secret", help=argparse.SUPPRESS)
    commands = parser.add_subparsers(metavar="COMMAND")
    item = commands.add_parser("item", help="work on items", epilog="exit 0: ok")
    item_commands = item.add_subparsers(metavar="COMMAND")
    move = item_commands.add_parser("move", help="move an item", aliases=["mv"])
    move.add_argument("item", metavar="ITEM", help="the item id")
    move.add_argument("stage", nargs="?", default="next", help="where to")
    move.add_argument("--mode", choices=("fast", "safe"), default="safe", help="(%(default)s)")
    move.add_argument("--as", dest="actor", metavar="USER", help="act as | user")

    text = render(parser)
    assert text.startswith("# `tool` command reference\n")
    assert "- [`tool item`](#tool-item): work on items\n  - [`tool item move`]" in text
    assert text.count("## `tool item move`") == 1  # the alias is not a second command
    assert "usage: tool item move [-h] [--mode {fast,safe}] [--as USER] ITEM [stage]" in text
    assert "| `ITEM` | the item id |" in text
    assert "| `stage` | where to (optional; default: next) |" in text
    assert "| `--mode {fast,safe}` | (safe) |" in text
    assert "| `--as USER` | act as \\| user |" in text
    assert "| `--verbose` | say more |" in text
    assert "--secret" not in text
    assert text.count("exit 0: ok") == 1  # a subcommand's copy of the main epilog is left out
    assert text.endswith("\n") and not text.endswith("\n\n")


# --- links ---------------------------------------------------------------------------------


def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = heading.strip().lower()
    return "".join(c for c in text if c.isalnum() or c in " -_").replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = path.read_text(encoding="utf-8")
    text = re.sub(r"^```.*?^```$", "", text, flags=re.MULTILINE | re.DOTALL)
    return {slug(h) for h in re.findall(r"^#+ (.+)$", text, re.MULTILINE)}


def test_readme_links_the_documentation() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Documentation\n", 1)[1].split("\n## ", 1)[0]
    linked = set(re.findall(r"\(docs/([\w.-]+\.md)\)", section))
    for page in (
        "concepts.md",
        "api-tour.md",
        "plugins.md",
        "cli.md",
        "cli-reference.md",
        "class-documents.md",
        "operations.md",
        "decisions.md",
    ):
        assert page in linked, f"README's Documentation section does not link docs/{page}"


@pytest.mark.parametrize(
    "page", [ROOT / "README.md", *sorted(DOCS.glob("*.md"))], ids=lambda p: p.name
)
def test_links_lead_somewhere(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    text = re.sub(r"^```.*?^```$", "", text, flags=re.MULTILINE | re.DOTALL)
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target):
            continue  # an outside address
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        assert linked.exists(), f"{page.name} links {target}, which does not exist"
        if anchor and linked.suffix == ".md":
            assert anchor in anchors(linked), f"{page.name} links {target}: no such heading"
