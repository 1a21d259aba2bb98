"""`flowkernel pipeline ...` and `flowkernel board`: create (from a document or options), list,
show, dump, clone-template, remove-stage, and the board as columns; on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from sqlalchemy import func, select

from flowkernel import SYSTEM, Actor, Flowkernel
from flowkernel.cli import main
from flowkernel.store.tables import history, items, pipelines

ADMIN = Actor.user(42, 1)

STATION_YAML = Path(__file__).resolve().parents[1] / "examples" / "station.yaml"
SALES_YAML = """\
name: Sales
code: sales
object_type: deal
movement: {allow_backward: false, allowed_moves: [[lead, qualified], [lead, lost]]}
stages:
- {name: Lead, code: lead, color: '#94a3b8', probability: 10, sla_days: 7}
- {name: Qualified, code: qualified, probability: 30}
- name: Proposal
  probability: 60
  checklist: [{key: sent, label: Proposal sent, required: true}]
  requires: [close_date]
- {name: Won, code: won, probability: 100, is_won: true}
- {name: Lost, code: lost, probability: 0, is_lost: true}
columns:
- {name: amount, label: Amount, field_type: number}
- {name: close_date, label: Close date, field_type: date}
- {name: priority, field_type: select, options: [High, Low]}
- {name: legacy, is_active: false}
automations:
- {trigger: stage_entered, stage: won, event_name: deal.won, payload_template: {channel: sales}}
- {trigger: sla_breached, event_name: deal.stale, is_active: false}
"""


class Cli:
    """Runs `flowkernel` on one database; each call returns (status, stdout, stderr)."""

    def __init__(self, url: str, capsys: pytest.CaptureFixture[str]) -> None:
        self.url = url
        self.capsys = capsys

    def __call__(self, *args: str) -> tuple[int, str, str]:
        self.capsys.readouterr()
        status = main(["--database-url", self.url, *args])
        captured = self.capsys.readouterr()
        return status, captured.out, captured.err


@pytest.fixture(autouse=True)
def station_handlers(monkeypatch: pytest.MonkeyPatch) -> None:
    """The station document names the example's handlers: register its plugin by name. These
    commands are an administrator's script: it says once who acts."""
    monkeypatch.setenv("FLOWKERNEL_PLUGINS", "flowkernel.examples.charging_station")
    monkeypatch.setenv("FLOWKERNEL_AS", "system")


@pytest.fixture
def cli(database_url: str, capsys: pytest.CaptureFixture[str]) -> Cli:
    return Cli(database_url, capsys)


def one_line_error(err: str, prefix: str) -> None:
    assert err.count("\n") == 1, err
    assert err.startswith(f"flowkernel: {prefix}"), err
    assert "Traceback" not in err


def count(url: str, table: object) -> int:
    with Flowkernel(url) as fk, fk.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())  # type: ignore[arg-type]


# --- create, list, show, dump --------------------------------------------------------------


def test_create_from_a_document_then_show_and_dump_it_back(cli: Cli, tmp_path: Path) -> None:
    document = tmp_path / "sales.yaml"
    document.write_text(SALES_YAML)
    status, out, _ = cli("pipeline", "create", str(document), "--account", "1")
    assert status == 0
    assert out == (
        "created pipeline 'Sales' (id 1, code sales, account 1): 5 stages, 4 columns, "
        "2 automations, as system of account 1\n"
    )
    with Flowkernel(cli.url) as fk:
        info = fk.pipelines.get_pipeline(1, ADMIN)
    assert [s.code for s in info.stages] == ["lead", "qualified", "proposal", "won", "lost"]
    assert info.stage("proposal").required_columns == ("close_date",)
    assert [c.key for c in info.stage("proposal").checklist] == ["sent"]
    assert info.column("legacy").is_active is False
    assert info.column("priority").options == ("High", "Low")
    assert (info.allow_backward, info.allow_skip_forward) == (False, True)
    assert info.allowed_moves == (("lead", "qualified"), ("lead", "lost"))
    assert [(a.event_name, a.stage, a.is_active) for a in info.automations] == [
        ("deal.won", "won", True),
        ("deal.stale", None, False),
    ]

    status, out, _ = cli("pipeline", "show", "sales", "--account", "1")
    assert status == 0
    rows = [line.split() for line in out.splitlines()]
    assert out.startswith("pipeline 1: Sales\ncode sales, account 1, object type deal")
    assert "moving back refused, skipping forward allowed" in out
    assert "allowed moves: lead -> qualified, lead -> lost" in out
    for title in ("stages (5)", "columns (4)", "automations (2)"):
        assert f"\n{title}\n" in out
    assert ["2", "proposal", "Proposal", "60", "-", "-", "close_date", "sent*"] in rows
    assert ["priority", "priority", "select", "High,", "Low", "no", "yes"] in rows
    assert ["1", "stage_entered", "won", "deal.won", "-", "yes"] in rows

    # the dump is a document `create` reads back into the same definition
    status, dumped, _ = cli("pipeline", "dump", "1", "--account", "1")
    assert status == 0
    doc = yaml.safe_load(dumped)
    assert doc["stages"][2]["requires"] == ["close_date"]
    copy = tmp_path / "copy.json"
    copy.write_text(json.dumps({**doc, "code": "sales_copy"}))
    status, out, _ = cli("pipeline", "create", str(copy), "--account", "1", "--json")
    assert status == 0
    created = json.loads(out)
    assert created["id"] == 2 and created["code"] == "sales_copy"
    status, again, _ = cli("pipeline", "dump", "sales_copy", "--account", "1")
    assert yaml.safe_load(again) == {**doc, "code": "sales_copy"}


def test_create_from_options_and_list(cli: Cli) -> None:
    status, out, _ = cli(
        "pipeline", "create", "--account", "3", "--name", "Support", "--code", "desk",
        "--object-type", "ticket", "--stage", "New", "--stage", "Waiting: on client",
        "--stage", "Solved:won", "--column", "hours:number",
        "--column", "tier:select:Gold, Silver", "--as", "5",
    )  # fmt: skip
    assert status == 0, out
    with Flowkernel(cli.url) as fk:
        info = fk.pipelines.get_pipeline(1, Actor.user(5, 3))
    assert [(s.code, s.name, s.is_won) for s in info.stages] == [
        ("new", "New", False),
        ("waiting_on_client", "Waiting: on client", False),
        ("solved", "Solved", True),
    ]
    assert [(c.name, c.field_type, c.options) for c in info.columns] == [
        ("hours", "number", ()),
        ("tier", "select", ("Gold", "Silver")),
    ]
    assert (info.object_type, info.user_id) == ("ticket", 5)

    assert cli("pipeline", "create", "--account", "3", "--name", "Tmpl", "--template")[0] == 0
    status, out, _ = cli("pipeline", "list", "--account", "3")
    lines = out.splitlines()
    assert lines[0].split() == [
        "id", "code", "name", "account", "template", "stages", "columns", "version",
    ]  # fmt: skip
    assert lines[1].split()[:6] == ["1", "desk", "Support", "3", "no", "3"]
    assert len(lines) == 3
    assert len(cli("pipeline", "list", "--account", "3", "--templates")[1].splitlines()) == 2
    status, out, _ = cli("pipeline", "list", "--account", "3", "--live", "--json")
    assert [p["name"] for p in json.loads(out)] == ["Support"]
    status, out, _ = cli("pipeline", "list", "--account", "4")  # another account sees none
    assert out.splitlines()[1:] == []


def test_a_refused_document_names_the_path_and_creates_nothing(cli: Cli, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    cases = {
        SALES_YAML.replace("probability: 30", "colour: red"): "stages[1].colour: unknown key",
        SALES_YAML.replace("requires: [close_date]", "requires: [closing]"): (
            "stages[2].requires[0]: unknown column 'closing'"
        ),
        SALES_YAML.replace("event_name: deal.won", "event_name: deal.won, stage: nope"): None,
        SALES_YAML.replace("sla_days: 7", "sla_days: -1"): "document: ",
        SALES_YAML.replace("stage: won,", "stage: gone,"): "automations[0]: unknown stage 'gone'",
        "- just a list\n": "document: a pipeline document is a mapping, not a list",
        "name: [unclosed\n": "document: not valid YAML",
    }
    for text, message in cases.items():
        bad.write_text(text)
        status, out, err = cli("pipeline", "create", str(bad), "--account", "1")
        assert status == 3, err
        if message is not None:
            one_line_error(err, f"definition error: {message}")
        assert out == ""
    assert count(cli.url, pipelines) == 0

    bad.write_text(SALES_YAML)
    assert cli("pipeline", "create", str(bad), "--account", "1")[0] == 0
    status, _, err = cli("pipeline", "create", str(bad), "--account", "1")
    assert status == 3
    one_line_error(err, "definition error: document: pipeline 'sales' already exists in account 1")
    assert count(cli.url, pipelines) == 1


def test_usage_errors_of_pipeline_commands(cli: Cli, tmp_path: Path) -> None:
    document = tmp_path / "sales.yaml"
    document.write_text(SALES_YAML)
    for args, message in [
        (("pipeline", "create", "--account", "1"), "pass a pipeline document FILE, or --name"),
        (("pipeline", "create", str(document), "--name", "X", "--account", "1"), "pass a pipe"),
        (("pipeline", "create", str(document)), "a pipeline belongs to an account"),
        (("pipeline", "create", "nope.yaml", "--account", "1"), "cannot read nope.yaml"),
        (("pipeline", "clone-template", "1"), "pass --account ID"),
        (("pipeline", "show", "sales", "--group", "ops"), "--group applies to a user"),
        (
            ("pipeline", "create", "--account", "1", "--name", "X", "--stage", "A:maybe"),
            "--stage 'A:maybe': the mark after ':' is won or lost, not 'maybe'",
        ),
        (("pipeline", "show", "sales", "--account", "x"), "flowkernel pipeline show: argument"),
        (("class", "load", str(document)), f"{document} is a pipeline document (stages, not"),
        (
            ("pipeline", "create", str(STATION_YAML), "--account", "1"),
            f"{STATION_YAML} is a class document (states, not stages): `flowkernel class load",
        ),
    ]:
        status, _, err = cli(*args)
        assert status == 2, (args, err)
        one_line_error(err, f"usage error: {message}")
    status, _, err = cli("pipeline", "show", "nope", "--account", "1")
    assert status == 3
    one_line_error(err, "definition error: unknown pipeline 'nope'")
    assert "`flowkernel pipeline list --account 1` shows them" in err
    status, _, err = cli("pipeline", "show", "sales")  # the code is account 1's
    assert status == 3
    assert "`flowkernel pipeline list` shows them (an account's own need --account ID)" in err
    status, _, err = cli("pipeline", "show", "1", "--as", "nobody")
    assert status == 2 and "expected a user id or 'system'" in err


def test_a_code_in_several_accounts_needs_the_account_or_the_id(cli: Cli) -> None:
    for account in ("1", "2"):
        assert cli("pipeline", "create", "--account", account, "--name", "P", "--code", "p")[0] == 0
    status, _, err = cli("pipeline", "show", "p")  # the platform actor reads both
    assert status == 2
    one_line_error(err, "usage error: pipeline code 'p' names several pipelines: 1 (account 1)")
    status, out, _ = cli("pipeline", "show", "p", "--account", "2")
    assert status == 0 and out.startswith("pipeline 2: P")
    status, out, _ = cli("pipeline", "show", "1")
    assert status == 0 and out.startswith("pipeline 1: P")
    status, _, err = cli("pipeline", "show", "1", "--account", "2")  # not leaked to account 2
    assert status == 3
    one_line_error(err, "definition error: unknown pipeline 1")


def test_clone_a_system_template_into_an_account(cli: Cli, tmp_path: Path) -> None:
    document = tmp_path / "template.yaml"
    document.write_text(SALES_YAML.replace("code: sales", "code: sales_tpl\nis_system: true"))
    status, out, _ = cli("pipeline", "create", str(document))  # the platform's system actor
    assert status == 0, out
    assert "account -" in out
    status, out, _ = cli(
        "pipeline", "clone-template", "sales_tpl", "--account", "8", "--name", "Our sales",
        "--code", "ours",
    )  # fmt: skip
    assert status == 0
    assert out == (
        "cloned template 1 into pipeline 'Our sales' (id 2, code ours, account 8): 5 stages, "
        "4 columns, 2 automations, as system of account 8\n"
    )
    status, out, _ = cli("pipeline", "clone-template", "1", "--account", "9", "--json")
    assert json.loads(out)["template_id"] == 1
    status, _, err = cli("pipeline", "clone-template", "2", "--account", "8")
    assert status == 3
    one_line_error(err, "definition error: pipeline 'Our sales' is not a template")


# --- remove-stage ------------------------------------------------------------------------


def test_remove_a_stage_after_a_dry_run(cli: Cli, tmp_path: Path) -> None:
    document = tmp_path / "sales.yaml"
    document.write_text(SALES_YAML)
    assert cli("pipeline", "create", str(document), "--account", "1")[0] == 0
    with Flowkernel(cli.url) as fk:
        moved = [fk.place(1, "deal", n, SYSTEM, state="qualified").id for n in range(3)]
        fk.place(1, "deal", 99, SYSTEM)

    status, out, err = cli("pipeline", "remove-stage", "sales", "qualified", "--target", "lead",
                           "--dry-run", "--account", "1")  # fmt: skip
    assert status == 0 and err == ""
    assert out == "would remove stage 'qualified' and move 3 item(s) to 'lead': 1, 2, 3\n"
    assert count(cli.url, history) == 4  # nothing moved

    status, _, err = cli("pipeline", "remove-stage", "sales", "qualified", "--account", "1")
    assert status == 3
    one_line_error(
        err,
        "definition error: stage 'qualified' holds 3 item(s); --target STAGE moves them there "
        "while removing it (--dry-run lists them)",
    )
    status, out, _ = cli("pipeline", "remove-stage", "sales", "qualified", "--dry-run",
                         "--account", "1")  # fmt: skip
    assert (status, out) == (0, "stage 'qualified' holds 3 item(s): 1, 2, 3; removing it needs "
                                "--target STAGE\n")  # fmt: skip

    status, out, err = cli("pipeline", "remove-stage", "1", "qualified", "--target", "lead",
                           "--account", "1", "--json")  # fmt: skip
    assert status == 0
    assert err == ""  # standard error is no terminal here: no progress bar
    report = json.loads(out)
    assert (report["stage"], report["target"], report["item_ids"]) == ("qualified", "lead", moved)
    with Flowkernel(cli.url) as fk:
        assert [s.code for s in fk.pipelines.get_pipeline(1, ADMIN).stages] == [
            "lead", "proposal", "won", "lost",
        ]  # fmt: skip
        assert {fk.item(i, SYSTEM).state for i in moved} == {"lead"}
    assert count(cli.url, items) == 4


# --- board -------------------------------------------------------------------------------


def test_board_shows_stages_as_columns_fitted_to_the_width(cli: Cli, tmp_path: Path) -> None:
    document = tmp_path / "sales.yaml"
    document.write_text(SALES_YAML)
    assert cli("pipeline", "create", str(document), "--account", "1")[0] == 0
    with Flowkernel(cli.url) as fk:
        for n, (stage, amount) in enumerate(
            [("lead", "1200"), ("lead", "800.50"), ("qualified", "10000"), ("won", None)]
        ):
            item = fk.place(1, "deal", n + 1, SYSTEM, state=stage, assigned_user_id=7)
            if amount is not None:
                fk.items.set_value(item.id, "amount", amount, SYSTEM)

    status, out, _ = cli("board", "sales", "--account", "1", "--width", "100")
    assert status == 0
    lines = out.splitlines()
    assert lines[0] == "Sales: 4 items, amount 12,000.5 (weighted 3,200.05)"
    assert all(len(line) <= 100 for line in lines)
    header = lines[2].split(" | ")
    assert [h.strip() for h in header] == [
        "Lead",
        "Qualified",
        "Proposal",
        "Won (won)",
        "Lost (lost)",
    ]
    assert lines[3].split(" | ")[0].strip() == "2 items, 2,000.5"
    cards = lines[5].split(" | ")
    assert cards[0].split() == ["#1", "deal:1", "1,200"]  # no room for the assignee
    assert cards[2].strip() == "(empty)"
    assert cards[3].strip() == "#4 deal:4 @7"  # no value: room for the assignee

    status, narrow, _ = cli("board", "1", "--account", "1", "--width", "40", "--per-stage", "1")
    assert status == 0
    narrow_lines = narrow.splitlines()
    assert all(len(line) <= 40 for line in narrow_lines)
    assert "+1 more" in narrow  # the second lead item is past the page
    bands = [
        line.split(" | ") for line in narrow_lines if line.startswith(("Lead", "Prop", "Lost"))
    ]
    assert [[cell.strip() for cell in band] for band in bands] == [
        ["Lead", "Qualified"],
        ["Proposal", "Won (won)"],
        ["Lost (lost)"],
    ]  # two stages of at least 16 characters fit side by side in 40

    assert "shortened" not in out  # at 100 columns every character fits
    # at 80 columns (and narrower) no value is dropped: the text before it is cut, then the
    # value is written short, and the board says so
    for width, shortened in ((80, False), (40, True)):  # 40: the title is cut
        status, shown, _ = cli("board", "sales", "--account", "1", "--width", str(width))
        assert status == 0
        assert all(len(line) <= width for line in shown.splitlines())
        for value in ("1,200", "800.5", "10,000", "2,000.5"):  # no value is left out
            assert value in shown, (width, value, shown)
        assert ("~ shortened to fit" in shown) == shortened, shown

    status, out, _ = cli("board", "sales", "--account", "1", "--value-column", "", "--json")
    board = json.loads(out)
    assert board["value_column"] is None and board["count"] == 4
    assert [s["count"] for s in board["stages"]] == [2, 1, 0, 1, 0]
    status, _, err = cli("board", "sales", "--account", "1", "--value-column", "priority")
    assert status == 4
    one_line_error(err, "execution error: column 'priority' is a select column")
