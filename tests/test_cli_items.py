"""`flowkernel item ...`, `sla scan` and `events deliver`: placing (one object or a CSV file),
moving, executing, explaining and reading items, the workers, and user errors end to end; on
SQLite and PostgreSQL, plus real processes for exit statuses and signals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO

import pytest
from sqlalchemy import func, select, update

from flowkernel import SYSTEM, Actor, Flowkernel
from flowkernel.cli import main
from flowkernel.definition.pipelines.admin import PipelineInfo
from flowkernel.store.tables import history, item_values, items, method_calls, outbox

STATION_YAML = Path(__file__).resolve().parents[1] / "examples" / "station.yaml"
ACCOUNT = 1
ADMIN = Actor.user(42, ACCOUNT)
AS_REP = ("--account", "1", "--as", "7")


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
    """The station document names the example's handlers: register its plugin by name."""
    monkeypatch.setenv("FLOWKERNEL_PLUGINS", "flowkernel.examples.charging_station")


@pytest.fixture
def cli(database_url: str, capsys: pytest.CaptureFixture[str]) -> Cli:
    return Cli(database_url, capsys)


@pytest.fixture
def sales(database_url: str) -> PipelineInfo:
    """Pipeline `sales` of account 1: lead (SLA 7 days), qualified, proposal (needs
    close_date, checklist item `sent`), won, lost; entering won fires `deal.won`."""
    with Flowkernel(database_url) as fk:
        p = fk.pipelines.create_pipeline(
            "Sales",
            ADMIN,
            code="sales",
            stages=[
                {"name": "Lead", "sla_days": 7},
                {"name": "Qualified"},
                {"name": "Proposal", "checklist": [{"key": "sent", "required": True}]},
                {"name": "Won", "is_won": True},
                {"name": "Lost", "is_lost": True},
            ],
            columns=[
                {"name": "amount", "field_type": "number"},
                {"name": "close_date", "field_type": "date"},
                {"name": "priority", "field_type": "select", "options": ["High", "Low"]},
            ],
        )
        fk.pipelines.require_column(p.id, "proposal", "close_date", ADMIN)
        fk.pipelines.add_automation(p.id, "stage_entered", "deal.won", ADMIN, stage="won")
        return fk.pipelines.get_pipeline(p.id, ADMIN)


def one_line_error(err: str, prefix: str) -> None:
    assert err.count("\n") == 1, err
    assert err.startswith(f"flowkernel: {prefix}"), err
    assert "Traceback" not in err


def rows(url: str) -> list[object]:
    """Every row a refused command must leave alone."""
    with Flowkernel(url) as fk, fk.engine.connect() as conn:
        return [
            conn.execute(select(t).order_by(t.c.id)).all()
            for t in (items, item_values, history, method_calls, outbox)
        ]


def table(out: str) -> list[list[str]]:
    return [line.split() for line in out.splitlines()]


# --- one item ----------------------------------------------------------------------------


def test_place_move_execute_and_read_an_item(cli: Cli, sales: PipelineInfo) -> None:
    status, out, err = cli(
        "item", "place", "sales", "deal", "1001", "--set", "amount=1200", "--set",
        "priority=High", "--assign", "7", *AS_REP,
    )  # fmt: skip
    assert (status, err) == (0, "")
    assert out == "placed deal 1001 into 'sales' as item 1, state 'lead', as user 7 of account 1\n"

    status, out, _ = cli("item", "values", "1", *AS_REP)
    assert table(out) == [
        ["column", "label", "type", "required", "value"],
        ["amount", "amount", "number", "no", "1200"],
        ["close_date", "close_date", "date", "no", "-"],
        ["priority", "priority", "select", "no", "High"],
    ]

    status, out, _ = cli("item", "move", "1", "qualified", *AS_REP)
    assert (status, out) == (
        0,
        "item 1: lead -> qualified (move_to_qualified), as user 7 of account 1\n",
    )
    status, out, _ = cli("item", "methods", "1", *AS_REP)
    assert table(out)[0] == ["code", "action", "label", "target", "visible"]
    assert ["move_to_lead", "move", "Move", "to", "Lead", "lead", "yes"] in table(out)
    assert "sla_breach" not in out  # hidden from users

    status, out, _ = cli("item", "set", "1", "close_date=2030-01-31", "--clear", "priority",
                         *AS_REP)  # fmt: skip
    assert (status, out) == (
        0,
        "item 1: close_date=2030-01-31; cleared priority, as user 7 of account 1\n",
    )
    status, out, _ = cli("item", "set", "1", "amount=99", *AS_REP, "--json")
    assert json.loads(out)["set"][0]["parsed"] == "99"

    status, out, _ = cli("item", "exec", "1", "move_to_proposal", "--param", "why=ready",
                         "--params", '{"score": 3}', *AS_REP, "--json")  # fmt: skip
    result = json.loads(out)
    assert (result["from_state"], result["to_state"], result["changed"]) == (
        "qualified", "proposal", True,
    )  # fmt: skip
    assert result["actor"] == {"user_id": 7, "account_id": 1, "groups": [], "is_system": False}
    with Flowkernel(cli.url) as fk, fk.engine.connect() as conn:
        params = conn.execute(  # a state change's parameters are in its history row
            select(history.c.params).order_by(history.c.id.desc()).limit(1)
        ).scalar_one()
    assert params == {"score": 3, "why": "ready"}

    status, out, _ = cli("item", "exec", "1", "delete", "--action", *AS_REP)
    assert (status, out) == (0, "item 1: delete ran; still in 'proposal', as user 7 of account 1\n")
    status, out, _ = cli("item", "history", "1", *AS_REP)
    lines = table(out)
    assert lines[0] == ["moved", "at", "from", "to", "method", "by", "until"]
    assert [line[2:6] for line in lines[1:]] == [  # after "moved at", the date and time
        ["-", "lead", "create", "7"],
        ["lead", "qualified", "move_to_qualified", "7"],
        ["qualified", "proposal", "move_to_proposal", "7"],
    ]
    # each state held until the next move (a date and a time), the last one still holds
    assert [line[6:] for line in lines[1:]] == [lines[2][:2], lines[3][:2], ["now"]]
    status, out, _ = cli("item", "history", "1", "--account", "1", "--as", "system", "--json")
    entries = json.loads(out)
    assert [e["to_state"] for e in entries] == ["lead", "qualified", "proposal"]
    assert [e["valid_to"] for e in entries] == [e["moved_at"] for e in entries[1:]] + [None]


def test_complete_and_reopen_a_checklist_entry(cli: Cli, sales: PipelineInfo) -> None:
    assert cli("item", "place", "sales", "deal", "1", *AS_REP)[0] == 0
    assert cli("item", "set", "1", "close_date=2030-01-31", *AS_REP)[0] == 0
    assert cli("item", "move", "1", "proposal", *AS_REP)[0] == 0
    status, _, err = cli("item", "move", "1", "won", *AS_REP)
    assert status == 4 and "complete sent" in err
    status, out, _ = cli("item", "checklist", "1", "--json", *AS_REP)
    assert status == 0
    assert [(e["key"], e["required"], e["completed"]) for e in json.loads(out)] == [
        ("sent", True, False)
    ]
    status, out, _ = cli("item", "checklist", "1", "sent", *AS_REP)
    assert status == 0
    assert out.splitlines()[-1].split()[:5] == ["sent", "sent", "yes", "yes", "7"]  # by user 7
    status, out, _ = cli("item", "checklist", "1", "sent", "--reopen", "--json", *AS_REP)
    assert status == 0 and json.loads(out)[0]["completed"] is False
    status, _, err = cli("item", "checklist", "1", "--reopen", *AS_REP)
    assert status == 2 and "--reopen needs the KEY" in err
    status, _, err = cli("item", "checklist", "1", "nope", *AS_REP)
    assert status == 3 and "nope" in err
    assert cli("item", "checklist", "1", "sent", *AS_REP)[0] == 0
    assert cli("item", "move", "1", "won", *AS_REP)[0] == 0


def test_a_refused_place_or_move_changes_nothing(cli: Cli, sales: PipelineInfo) -> None:
    before = rows(cli.url)
    for args, status, message in [
        (("--set", "amount=lots"), 4, "execution error: column 'amount' refuses 'lots'"),
        (("--set", "colour=red"), 3, "definition error: unknown column 'colour'"),
        (("--set", "amount"), 2, "usage error: expected COLUMN=VALUE, not 'amount'"),
        (("--stage", "nowhere"), 3, "definition error: unknown state 'nowhere'"),
    ]:
        result = cli("item", "place", "sales", "deal", "1", *args, *AS_REP)
        assert result[0] == status, result
        one_line_error(result[2], message)
    result = cli("item", "place", "sales", "deal", "1", "--account", "2", "--as", "system")
    assert result[0] == 3
    one_line_error(result[2], "definition error: unknown class 'sales'")
    assert rows(cli.url) == before

    assert cli("item", "place", "sales", "deal", "1", *AS_REP)[0] == 0
    before = rows(cli.url)
    status, _, err = cli("item", "move", "1", "proposal", *AS_REP)
    assert status == 4
    one_line_error(err, "execution error: cannot enter stage 'proposal': fill close_date")
    status, _, err = cli("item", "exec", "1", "sla_breach", *AS_REP)
    assert status == 4
    one_line_error(err, "execution error: method 'sla_breach' is not available in state 'lead'")
    assert "`flowkernel item explain 1 sla_breach --account 1 --as 7` tells why" in err
    status, _, err = cli("item", "move", "1", "won", "--account", "2", "--as", "system")
    assert status == 4
    one_line_error(err, "execution error: no item 1; check the id and the account")
    status, _, err = cli("item", "exec", "1", "delete", "--params", "[1]", *AS_REP)
    assert status == 2
    one_line_error(err, "usage error: --params must be a JSON object")
    assert rows(cli.url) == before


def test_explain_answers_without_changing_anything(cli: Cli, sales: PipelineInfo) -> None:
    assert cli("item", "place", "sales", "deal", "1", *AS_REP)[0] == 0
    before = rows(cli.url)
    status, out, err = cli("item", "explain", "1", "proposal", *AS_REP)
    assert (status, err) == (0, "")
    assert out.splitlines() == [
        "no: 'move_to_proposal' cannot run on item 1 now (1 reason)",
        "  - missing_fields: stage 'proposal' needs values in close_date (close_date): set "
        "them first",
    ]
    status, out, _ = cli("item", "explain", "1", "sla_breach", *AS_REP, "--json")
    answer = json.loads(out)
    assert answer["possible"] is False
    assert [r["code"] for r in answer["reasons"]] == ["hidden"]
    status, out, _ = cli("item", "explain", "1", "won", *AS_REP)
    assert out == (
        "yes: 'move_to_won' can run on item 1: moves it from 'lead' to 'won' through "
        "change_object_state; fires deal.won\n"
    )
    assert rows(cli.url) == before
    status, _, err = cli("item", "explain", "1", "nowhere", *AS_REP)
    assert status == 3
    one_line_error(err, "definition error: unknown method or state 'nowhere'")


def test_kernel_class_items_and_the_system_actor(cli: Cli) -> None:
    assert cli("class", "load", str(STATION_YAML))[0] == 0
    status, out, _ = cli("item", "place", "station", "charging_station", "5", "--as", "3")
    assert out == "placed charging_station 5 into 'station' as item 1, state 'created', as user 3\n"
    assert cli("item", "exec", "1", "enable", "--as", "3")[1] == (
        "item 1: created -> unavailable (enable), as user 3\n"
    )
    status, out, _ = cli("item", "explain", "1", "available", "--as", "3")
    assert status == 0
    assert out.startswith("no: 'available' cannot run on item 1 now")
    assert "  - hidden: method 'available' is not shown to user 3" in out
    # the device reports in as the system actor, which takes an explicit --as system
    status, out, err = cli("item", "exec", "1", "available")
    assert (status, out) == (2, "")
    one_line_error(err, "usage error: say who acts: --as USER_ID")
    assert cli("item", "exec", "1", "available", "--as", "system")[1] == (
        "item 1: unavailable -> available (available), as system\n"
    )
    assert cli("item", "exec", "1", "heartbeat", "--as", "system")[1] == (
        "item 1: heartbeat ran; still in 'available', as system\n"
    )


def test_database_url_may_follow_the_command(
    database_url: str, sales: PipelineInfo, capsys: pytest.CaptureFixture[str]
) -> None:
    status = main(["item", "place", "sales", "deal", "3", *AS_REP, "--database-url", database_url])
    assert status == 0
    capsys.readouterr()
    assert (
        main(["board", "sales", "--account", "1", "--as", "7", "--database-url", database_url]) == 0
    )
    assert "Sales: 1 item" in capsys.readouterr().out
    assert main(["class", "list", "--database-url", database_url, "--account", "1"]) == 0
    assert "sales" in capsys.readouterr().out


# --- many items from a CSV file ----------------------------------------------------------


def test_place_items_from_a_csv_file_reporting_refused_rows(
    cli: Cli, sales: PipelineInfo, tmp_path: Path
) -> None:
    data = tmp_path / "deals.csv"
    data.write_text(
        "object_type,object_id,stage,assigned_user_id,amount,priority\n"
        "deal,1,,,100,High\n"
        "deal,2,qualified,9,2500.5,\n"
        "deal,3,,,lots,\n"
        "deal,,,,,\n"
        "deal,1,,,,\n"
        "deal,4,proposal,,,\n"
        "deal,5,won,,,Low\n"
    )
    status, out, err = cli("item", "place", "sales", "--csv", str(data), *AS_REP)
    assert status == 4  # the first refusal's status: an execution error
    assert out == (
        "placed 3 of 7 row(s) into 'sales', as user 7 of account 1; refused: line(s) 4, 5, 6, 7\n"
    )
    assert err.splitlines() == [
        "flowkernel: line 4: execution error: column 'amount' refuses 'lots': expected a finite "
        'number such as 42500 or "-3.75" (int, float, Decimal or numeric string, at most 1000 '
        "digits before and after the point)",
        "flowkernel: line 5: usage error: object_id is empty",
        "flowkernel: line 6: execution error: deal 1 is already in class 'sales' as item 1; "
        "execute a method on that item instead",
        "flowkernel: line 7: execution error: cannot enter stage 'proposal': fill close_date "
        "(close_date) first",
    ]  # and no progress bar: standard error is no terminal here
    with Flowkernel(cli.url) as fk:
        placed = fk.queries.board(sales.id, ADMIN, value_column="amount")
        assert [(s.code, s.count, s.value_sum) for s in placed.stages if s.count] == [
            ("lead", 1, 100),
            ("qualified", 1, 2500.5),
            ("won", 1, 0),
        ]
        second = fk.item(2, SYSTEM)
        assert (second.state, second.assigned_user_id, second.object_id) == ("qualified", 9, 2)
        assert [v.value for v in fk.items.values(1, SYSTEM)] == ["100", None, "High"]

    again = tmp_path / "again.csv"
    again.write_text("object_type,object_id\ndeal,6\ndeal,1\ndeal,7\n")
    status, out, err = cli("item", "place", "sales", "--csv", str(again), "--stop-on-error",
                           *AS_REP, "--json")  # fmt: skip
    assert status == 4
    report = json.loads(out)
    assert [p["line"] for p in report["placed"]] == [2]
    assert [(f["line"], f["exit"]) for f in report["failed"]] == [(3, 4)]
    assert report["stopped"] is True
    with Flowkernel(cli.url) as fk, fk.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(items)).scalar_one() == 4


def test_a_csv_summary_names_the_first_refused_lines(
    cli: Cli, sales: PipelineInfo, tmp_path: Path
) -> None:
    data = tmp_path / "deals.csv"
    data.write_text("object_type,object_id\n" + "deal,\n" * 25)
    status, out, err = cli("item", "place", "sales", "--csv", str(data), *AS_REP)
    assert status == 2
    lines = ", ".join(str(n) for n in range(2, 22))
    assert out == (
        f"placed 0 of 25 row(s) into 'sales', as user 7 of account 1; refused: line(s) {lines} "
        "and 5 more\n"
    )
    assert len(err.splitlines()) == 25


def test_a_csv_file_with_a_bad_header_places_nothing(
    cli: Cli, sales: PipelineInfo, tmp_path: Path
) -> None:
    data = tmp_path / "deals.csv"
    before = rows(cli.url)
    for text, status, message in [
        ("type,id\ndeal,1\n", 2, "usage error: "),
        ("object_type,object_id,object_id\ndeal,1,1\n", 2, "usage error: "),
        ("object_type,object_id,colour\ndeal,1,red\n", 3, "definition error: unknown column"),
    ]:
        data.write_text(text)
        result = cli("item", "place", "sales", "--csv", str(data), *AS_REP)
        assert result[0] == status, result
        one_line_error(result[2], message)
    result = cli("item", "place", "sales", "deal", "1", "--csv", str(data), *AS_REP)
    assert result[0] == 2
    one_line_error(result[2], "usage error: --csv reads objects")
    assert rows(cli.url) == before


# --- workers -----------------------------------------------------------------------------


def test_sla_scan_once_and_on_a_schedule(cli: Cli, sales: PipelineInfo) -> None:
    assert cli("item", "place", "sales", "deal", "1", *AS_REP)[0] == 0
    assert cli("item", "place", "sales", "deal", "2", *AS_REP)[0] == 0
    status, out, _ = cli("sla", "scan")
    assert status == 0 and " sla scan: 0 breached" in out
    with Flowkernel(cli.url) as fk, fk.engine.begin() as conn:
        conn.execute(
            update(items)
            .where(items.c.id == 1)
            .values(last_stage_changed_at=datetime.now(UTC) - timedelta(days=8))
        )
    status, out, _ = cli("sla", "scan", "--pipeline", "sales", "--json")
    assert status == 0
    report = json.loads(out)
    assert (report["fired"], report["skipped"], report["failures"]) == ([1], [], [])
    # a schedule: nothing more is due, so the scans print nothing
    status, out, _ = cli("sla", "scan", "--every", "0.01", "--max-runs", "3")
    assert (status, out) == (0, "")
    with Flowkernel(cli.url) as fk:
        assert [e.method for e in fk.history(1, SYSTEM)] == ["create"]
        assert fk.queries.board(sales.id, ADMIN).stages[0].items[0].sla_breached_at is not None
    status, _, err = cli("sla", "scan", "--every", "0")
    assert status == 2 and "expected a number of seconds > 0" in err


@pytest.mark.parametrize("every", [None, "0.01"])
def test_sla_scan_fires_in_batches(cli: Cli, sales: PipelineInfo, every: str | None) -> None:
    for n in range(1, 6):
        assert cli("item", "place", "sales", "deal", str(n), *AS_REP)[0] == 0
    with Flowkernel(cli.url) as fk, fk.engine.begin() as conn:
        conn.execute(
            update(items)
            .where(items.c.id <= 4)
            .values(last_stage_changed_at=datetime.now(UTC) - timedelta(days=8))
        )
    schedule = [] if every is None else ["--every", every, "--max-runs", "1"]
    status, out, _ = cli("sla", "scan", "--batch-size", "3", "--limit", "10", "--json", *schedule)
    assert status == 0
    assert json.loads(out)["fired"] == [1, 2, 3, 4]
    status, _, err = cli("sla", "scan", "--batch-size", "0")
    assert status == 2 and "--batch-size" in err
    status, _, err = cli("sla", "scan", "--batch-size", "10001")
    assert status == 4 and "batch_size must be an integer from 1 to 10000" in err


def test_events_deliver_once_and_on_a_schedule(cli: Cli, sales: PipelineInfo) -> None:
    with Flowkernel(cli.url, deliver_events=False) as fk:  # the events wait in the outbox
        for n in (1, 2):
            item = fk.place(sales.id, "deal", n, SYSTEM)
            fk.move(item.id, "won", SYSTEM)

    def pending() -> int:
        with Flowkernel(cli.url) as fk, fk.engine.connect() as conn:
            return int(
                conn.execute(
                    select(func.count()).select_from(outbox).where(outbox.c.status == "pending")
                ).scalar_one()
            )

    assert pending() == 2
    status, out, _ = cli("events", "deliver", "--limit", "1", "--json")
    assert status == 0
    passes = [json.loads(line) for line in out.splitlines()]
    assert [p["delivered"] for p in passes] == [1, 1, 0]  # a full pass goes on at once
    assert pending() == 0
    status, out, _ = cli("events", "deliver")
    assert status == 0 and " delivered 0, retried later 0, dead 0" in out
    status, out, _ = cli("events", "deliver", "--every", "0.01", "--max-runs", "2")
    assert (status, out) == (0, "")


# --- real processes ----------------------------------------------------------------------


def _run(workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "FLOWKERNEL_DATABASE_URL"}
    env["FLOWKERNEL_AS"] = "system"  # a script says once who acts
    return subprocess.run(
        [sys.executable, "-m", "flowkernel.cli", *args],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_user_errors_print_one_line_and_no_traceback(tmp_path: Path) -> None:
    assert _run(tmp_path, "db", "upgrade").returncode == 0
    created = _run(tmp_path, "pipeline", "create", "--account", "1", "--name", "S", "--code",
                   "s", "--stage", "A", "--stage", "B", "--column", "n:number")  # fmt: skip
    assert created.returncode == 0, created.stderr
    assert _run(tmp_path, "item", "place", "s", "deal", "1", "--account", "1").returncode == 0
    (tmp_path / "rows.csv").write_text("object_type,object_id,n\ndeal,2,1\ndeal,3,x\n")
    for args, status, prefix in [
        (("item", "move", "9", "b", "--account", "1"), 4, "execution error: no item 9"),
        (("item", "exec", "1", "fly", "--account", "1"), 4, "execution error: method 'fly'"),
        (("item", "explain", "1", "fly", "--account", "1"), 3, "definition error: unknown"),
        (("item", "set", "1", "n=abc", "--account", "1"), 4, "execution error: column 'n'"),
        (("board", "nope", "--account", "1"), 3, "definition error: unknown pipeline"),
        (("item", "place", "s", "--csv", "missing.csv"), 2, "usage error: cannot read"),
        (("pipeline", "create", "--name", "X"), 2, "usage error: a pipeline belongs"),
        (("item", "exec", "1", "x", "--params", "{"), 2, "usage error: --params is not valid"),
    ]:
        done = _run(tmp_path, *args)
        assert done.returncode == status, (args, done.stderr)
        one_line_error(done.stderr, prefix)
        assert done.stdout == ""
    placed = _run(tmp_path, "item", "place", "s", "--csv", "rows.csv", "--account", "1")
    assert placed.returncode == 4
    assert "Traceback" not in placed.stderr
    assert placed.stderr.startswith("flowkernel: line 3: execution error: column 'n' refuses")
    assert placed.stdout == (
        "placed 1 of 2 row(s) into 's', as system of account 1; refused: line(s) 3\n"
    )
    bad_actor = _run(tmp_path, "item", "methods", "1", "--as", "root")
    assert bad_actor.returncode == 2
    assert "Traceback" not in bad_actor.stderr
    assert "expected a user id or 'system', not 'root'" in bad_actor.stderr


def _first_line(stream: IO[str], timeout: float = 60) -> str:
    """The stream's first line, waiting at most `timeout` seconds for it."""
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.append(stream.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    assert lines, f"nothing printed within {timeout} s"
    return lines[0]


def test_a_scheduled_worker_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    assert _run(tmp_path, "db", "upgrade").returncode == 0
    env = {k: v for k, v in os.environ.items() if k != "FLOWKERNEL_DATABASE_URL"}
    for command in (["sla", "scan"], ["events", "deliver"]):
        worker = subprocess.Popen(
            [sys.executable, "-m", "flowkernel.cli", *command, "--every", "0.2"],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert worker.stderr is not None
        started = _first_line(worker.stderr)  # printed once the worker listens for signals
        assert started.startswith(f"flowkernel {' '.join(command)}: a pass every 0.2 s"), started
        assert worker.poll() is None
        worker.send_signal(signal.SIGTERM)
        _, err = worker.communicate(timeout=30)
        assert worker.returncode == 0, err
        assert "Traceback" not in err


def test_who_acts_is_explicit(
    cli: Cli, sales: PipelineInfo, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = rows(cli.url)
    for args in (
        ("item", "place", "sales", "deal", "1", "--account", "1"),
        ("board", "sales", "--account", "1"),
        ("pipeline", "create", "--account", "1", "--name", "P", "--stage", "A"),
    ):
        status, out, err = cli(*args)
        assert (status, out) == (2, ""), args
        one_line_error(err, "usage error: say who acts: --as USER_ID")
        assert "FLOWKERNEL_AS" in err
    assert rows(cli.url) == before
    monkeypatch.setenv("FLOWKERNEL_AS", "7")
    status, out, _ = cli("item", "place", "sales", "deal", "1", "--account", "1")
    assert out.endswith("as user 7 of account 1\n")
    status, out, _ = cli("item", "move", "1", "qualified", "--account", "1", "--as", "system")
    assert out.endswith("as system of account 1\n")  # --as wins over the variable
    monkeypatch.setenv("FLOWKERNEL_AS", "root")
    status, _, err = cli("item", "methods", "1", "--account", "1")
    assert status == 2
    one_line_error(err, "usage error: $FLOWKERNEL_AS: expected a user id or 'system'")
