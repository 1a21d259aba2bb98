"""The `flowkernel` command: exit statuses, one-line errors, db, class and demo commands."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from flowkernel import Flowkernel
from flowkernel.cli import main
from flowkernel.documents.classes import dump_class, loads
from flowkernel.errors import ItemNotFound
from flowkernel.store.database import head_revision

STATION_YAML = Path(__file__).resolve().parents[1] / "examples" / "station.yaml"


@pytest.fixture(autouse=True)
def station_handlers(monkeypatch: pytest.MonkeyPatch) -> None:
    """The station document names the example's handlers: register its plugin by name."""
    monkeypatch.setenv("FLOWKERNEL_PLUGINS", "flowkernel.examples.charging_station")


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty current folder and no database URL in the environment."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FLOWKERNEL_DATABASE_URL", raising=False)
    return tmp_path


def one_line_error(err: str, prefix: str) -> None:
    assert err.count("\n") == 1, err
    assert err.startswith(f"flowkernel: {prefix}"), err
    assert "Traceback" not in err


def test_db_upgrade_current_downgrade_on_the_default_sqlite_file(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["db", "current"]) == 0
    assert capsys.readouterr().out.startswith("none (not migrated")
    assert not (workdir / "flowkernel.db").exists()  # asking does not create a database
    assert main(["db", "upgrade"]) == 0
    head = head_revision()
    assert f"at revision {head} (head)" in capsys.readouterr().out
    assert (workdir / "flowkernel.db").exists()
    assert main(["db", "current"]) == 0
    assert capsys.readouterr().out == f"{head} (head)\n"
    assert main(["db", "downgrade", "base"]) == 0
    capsys.readouterr()
    assert main(["db", "current"]) == 0
    assert capsys.readouterr().out.startswith("none")


def test_unknown_revisions_and_the_wrong_direction_are_usage_errors(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["db", "upgrade", "0003"]) == 0
    capsys.readouterr()
    for command, message in [
        (["upgrade", "9999"], "unknown revision '9999'; this version knows 0001, "),
        (["downgrade", "nosuch"], "unknown revision 'nosuch'; this version knows 0001, "),
        (
            ["upgrade", "0002"],
            "the database is at revision 0003, past 0002; `flowkernel db downgrade 0002`",
        ),
        (
            ["downgrade", "0004"],
            "the database is at revision 0003, before 0004; `flowkernel db upgrade 0004`",
        ),
        (
            ["downgrade", "head"],
            "the database is at revision 0003, before head; `flowkernel db upgrade head`",
        ),
    ]:
        assert main(["db", *command]) == 2, command
        one_line_error(capsys.readouterr().err, f"usage error: {message}")
    assert main(["db", "current"]) == 0
    assert capsys.readouterr().out.startswith("0003 (head is ")


def test_environment_variable_picks_the_database(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    target = workdir / "chosen.db"
    monkeypatch.setenv("FLOWKERNEL_DATABASE_URL", f"sqlite:///{target}")
    assert main(["db", "upgrade"]) == 0
    assert target.exists() and not (workdir / "flowkernel.db").exists()
    other = workdir / "option.db"
    assert main(["--database-url", f"sqlite:///{other}", "db", "upgrade"]) == 0  # option wins
    assert other.exists()


def test_class_commands(database_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    db = ["--database-url", database_url]
    assert main([*db, "class", "load", str(STATION_YAML)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("loaded class 'station' (6 states, 27 methods, 18 transitions, 5 events)")

    assert main([*db, "class", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == [
        "code", "label", "parent", "movement", "abstract", "account", "version",
    ]  # fmt: skip
    assert lines[1].split()[:6] == ["station", "Charging", "station", "-", "explicit", "no"]

    assert main([*db, "class", "show", "station"]) == 0
    shown = capsys.readouterr().out
    for title in ("states (6)", "methods (27)", "transitions (18)", "events (5)"):
        assert f"\n{title}\n" in shown
    assert "access rules" not in shown
    rows = [line.split() for line in shown.splitlines()]
    assert ["available", "enabled", "Available", "1"] in rows
    assert ["available", "heartbeat", "heartbeat", "Heartbeat", "15", "no"] in rows
    assert ["(any)", "create", "created"] in rows
    assert ["available", "0", "station_available", "Station", "available", "yes"] in rows

    with Flowkernel(database_url) as fk:
        stored = dump_class(fk, "station")
    for fmt in ("yaml", "json"):
        assert main([*db, "class", "dump", "station", "--format", fmt]) == 0
        assert loads(capsys.readouterr().out, fmt) == stored
    assert main([*db, "class", "dump", "station"]) == 0
    assert capsys.readouterr().out.startswith("class: station\n")


def test_load_from_json_file_and_into_an_account(
    database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = ["--database-url", database_url]
    path = tmp_path / "door.json"
    path.write_text(
        '{"class": "door", "states": [{"code": "shut", "type": "created"}],'
        ' "methods": [{"action": "create"}], "transitions": [{"method": "create", "to": "shut"}]}'
    )
    assert main([*db, "class", "load", str(path), "--account-id", "9"]) == 0
    capsys.readouterr()
    assert main([*db, "class", "show", "door"]) == 3
    assert "unknown class 'door'" in capsys.readouterr().err
    assert main([*db, "class", "show", "door", "--account-id", "9"]) == 0
    assert "account 9" in capsys.readouterr().out


def test_a_plugin_is_registered_by_name_from_the_command_line(
    database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("FLOWKERNEL_PLUGINS")
    db = ["--database-url", database_url]
    assert main([*db, "class", "load", str(STATION_YAML)]) == 3
    err = capsys.readouterr().err
    one_line_error(err, "definition error: events[0].handler: no plugin provides")
    assert "--plugin MODULE, or $FLOWKERNEL_PLUGINS" in err
    with Flowkernel(database_url) as fk:
        assert fk.definitions.list_classes() == []

    assert main([*db, "--plugin", "flowkernel.nope", "class", "list"]) == 2
    one_line_error(capsys.readouterr().err, "usage error: plugin 'flowkernel.nope' cannot be")

    plugin = ["--plugin", "flowkernel.examples.charging_station"]
    assert main([*db, *plugin, "class", "load", str(STATION_YAML)]) == 0
    monkeypatch.setenv("FLOWKERNEL_PLUGINS", "flowkernel.examples.charging_station")
    assert (
        main([*db, *plugin, "item", "place", "station", "charging_station", "5", "--as", "3"]) == 0
    )
    with Flowkernel(database_url) as fk:  # the library alone has no station handlers
        assert "station_available" not in fk.handlers


def test_refused_document_exits_3_and_changes_nothing(
    database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(STATION_YAML.read_text().replace("type: disabled", "type: off_duty"))
    assert main(["--database-url", database_url, "class", "load", str(bad)]) == 3
    one_line_error(capsys.readouterr().err, "definition error: states[4].type: 'off_duty'")
    with Flowkernel(database_url) as fk:
        assert fk.definitions.list_classes() == []

    assert main(["--database-url", database_url, "class", "load", str(STATION_YAML)]) == 0
    assert main(["--database-url", database_url, "class", "load", str(STATION_YAML)]) == 3
    one_line_error(capsys.readouterr().err, "definition error: class 'station' already exists")
    assert main(["--database-url", database_url, "class", "dump", "nope"]) == 3
    one_line_error(capsys.readouterr().err, "definition error: unknown class 'nope'")


def test_usage_errors_exit_2(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "required: COMMAND" in capsys.readouterr().err
    assert main(["class", "dump"]) == 2
    capsys.readouterr()
    assert main(["class", "dump", "x", "--format", "xml"]) == 2
    capsys.readouterr()
    assert main(["class", "load", "missing.yaml"]) == 2
    one_line_error(capsys.readouterr().err, "usage error: cannot read missing.yaml")
    assert main(["--database-url", "not a url", "class", "list"]) == 2
    one_line_error(capsys.readouterr().err, "usage error: invalid database URL")
    assert main(["--database-url", "mysql+nodriver://h/db", "class", "list"]) == 2
    one_line_error(capsys.readouterr().err, "usage error: cannot open")
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("flowkernel ")
    assert main(["--help"]) == 0
    help_text = capsys.readouterr().out
    for status in ("2  usage error", "3  definition error", "4  execution error", "5  database"):
        assert status in help_text
    for family in ("db", "item", "sla"):  # each family's help keeps the list's lines
        assert main([family, "--help"]) == 0
        assert "\nexit status:\n  0  success\n  1  another" in capsys.readouterr().out
    assert main(["token", "create", "--name", "x", "--account", "0", "--user", "1"]) == 2
    assert "argument --account: expected an integer >= 1, not '0'" in capsys.readouterr().err
    assert main(["item", "move", "abc", "won"]) == 2
    one_line_error(
        capsys.readouterr().err,
        "usage error: flowkernel item move: argument ITEM: expected an integer >= 1, not 'abc'; "
        "`flowkernel item move --help` shows the usage",
    )


def test_database_problems_exit_5(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["class", "list"]) == 5
    one_line_error(capsys.readouterr().err, "database error: database sqlite:///flowkernel.db")
    assert not (workdir / "flowkernel.db").exists()

    sqlite3.connect(workdir / "flowkernel.db").close()  # an empty, unmigrated database
    assert main(["class", "load", str(STATION_YAML)]) == 5
    err = capsys.readouterr().err
    one_line_error(err, "database error:")
    assert "run `flowkernel db upgrade`" in err

    unreachable = ["--database-url", "postgresql://postgres:secret@127.0.0.1:1/none"]
    assert main([*unreachable, "class", "list"]) == 5
    err = capsys.readouterr().err
    one_line_error(err, "database error: cannot connect to postgresql+psycopg://postgres:***@")
    assert "secret" not in err
    assert main([*unreachable, "db", "upgrade"]) == 5
    capsys.readouterr()


def test_driver_errors_that_are_not_lost_connections_exit_5(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (workdir / "notes.db").write_text("not a database\n" * 100)
    assert main(["--database-url", "sqlite:///notes.db", "db", "upgrade"]) == 5
    err = capsys.readouterr().err
    one_line_error(err, "database error: cannot connect to sqlite:///notes.db: file is not a")

    bad_option = ["--database-url", "postgresql://postgres@127.0.0.1:1/none?no_such_option=1"]
    assert main([*bad_option, "class", "list"]) == 5
    err = capsys.readouterr().err
    one_line_error(err, "database error: cannot connect to postgresql+psycopg://postgres@")
    assert 'invalid connection option "no_such_option"' in err

    assert main(["db", "upgrade"]) == 0
    capsys.readouterr()
    read_only = ["--database-url", f"sqlite:///file:{workdir / 'flowkernel.db'}?mode=ro&uri=true"]
    assert main([*read_only, "class", "load", str(STATION_YAML)]) == 5
    err = capsys.readouterr().err
    one_line_error(err, "database error: attempt to write a readonly database")
    assert "is read-only; check its permissions" in err


def test_execution_errors_exit_4(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import flowkernel.examples

    def refused(database_url: str) -> None:
        raise ItemNotFound(99)

    monkeypatch.setattr(flowkernel.examples, "run", refused)
    assert main(["demo"]) == 4
    one_line_error(capsys.readouterr().err, "execution error: no item 99")


def test_demo_runs_twice_in_an_empty_folder(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["demo"]) == 0
    assert main(["demo"]) == 0
    assert capsys.readouterr().out
    assert (workdir / "flowkernel.db").exists()


def _console_script() -> list[str]:
    script = Path(sys.executable).with_name("flowkernel")
    found = str(script) if script.exists() else shutil.which("flowkernel")
    if found is None:
        pytest.fail("the flowkernel console script is not installed; run pip install -e .")
    return [found]


@pytest.mark.parametrize(
    "command",
    [_console_script, lambda: [sys.executable, "-m", "flowkernel"]],
    ids=["script", "-m"],
)
def test_installed_command(workdir: Path, command: object) -> None:
    assert callable(command)
    argv: list[str] = command()
    env = {k: v for k, v in os.environ.items() if k != "FLOWKERNEL_DATABASE_URL"}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*argv, *args], cwd=workdir, env=env, capture_output=True, text=True, timeout=120
        )

    missing = run("class", "list")
    assert missing.returncode == 5
    one_line_error(missing.stderr, "database error:")
    assert run("db", "upgrade").returncode == 0
    loaded = run("class", "load", str(STATION_YAML))
    assert loaded.returncode == 0, loaded.stderr
    listed = run("class", "list")
    assert listed.returncode == 0 and "station" in listed.stdout


@pytest.mark.parametrize("url", ["mysql://x/y", "not a url"])
def test_unsupported_database_urls_are_usage_errors_without_a_traceback(
    workdir: Path, capsys: pytest.CaptureFixture[str], url: str
) -> None:
    assert main(["db", "upgrade", "--database-url", url]) == 2
    err = capsys.readouterr().err
    assert err.startswith("flowkernel: usage error:") and "Traceback" not in err
    assert not any(workdir.iterdir())
