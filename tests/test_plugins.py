"""Plugins: entry-point discovery, handler registration, and every hook documented and used."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from flowkernel import Actor, Flowkernel, InvalidDefinition, hookimpl, hookspecs
from flowkernel.snapshots import EventContext, ExecutionResult

ROOT = Path(__file__).resolve().parent.parent


def hook_names() -> list[str]:
    return sorted(n for n in dir(hookspecs) if n.startswith("flowkernel_"))


@pytest.mark.parametrize("hook", hook_names())
def test_every_hook_is_documented(hook: str) -> None:
    text = (ROOT / "docs" / "plugins.md").read_text()
    assert re.search(rf"^### `{hook}\(", text, re.MULTILINE), f"{hook} lacks a section"


@pytest.mark.parametrize("hook", hook_names())
def test_every_hook_is_exercised_by_a_test(hook: str) -> None:
    users = [
        p.name
        for p in (ROOT / "tests").glob("test_*.py")
        if p.name != "test_plugins.py" and hook in p.read_text()
    ] + [p.name for p in (ROOT / "plugins").glob("*.py") if hook in p.read_text()]
    users += ["test_plugins.py"] if hook in Path(__file__).read_text().split("# ---")[1] else []
    assert users, f"no test or built-in plugin uses {hook}"


# --- exercised here --------------------------------------------------------------------------


def test_third_party_plugin_found_through_the_entry_point_group(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / "fk_thirdparty_plugin.py"
    package.write_text(
        "from flowkernel import hookimpl\n"
        "CALLS = []\n"
        "def audited(context):\n"
        "    CALLS.append((context.method.code, context.item.state))\n"
        "@hookimpl\n"
        "def flowkernel_event_handlers():\n"
        "    return {'audited': audited}\n"
    )
    dist = tmp_path / "fk_thirdparty_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: fk-thirdparty-plugin\nVersion: 1.0\n"
    )
    (dist / "entry_points.txt").write_text("[flowkernel]\naudit = fk_thirdparty_plugin\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "fk_thirdparty_plugin", raising=False)
    with Flowkernel(database_url) as fk:
        assert "audited" in fk.handlers
        fk.definitions.add_class("doc", "Document")
        fk.definitions.add_default_methods("doc")
        fk.definitions.add_event("doc", "enable", "audited")
        fk.definitions.add_event("doc", "enable", "change_object_state")
        alice = Actor.user(1, 1)
        item = fk.place("doc", "document", 1, alice)
        assert fk.execute(item.id, "enable", alice).to_state == "enabled"
        assert sys.modules["fk_thirdparty_plugin"].CALLS == [("enable", "created")]
    with Flowkernel(database_url, entry_points=False) as fk:
        assert "audited" not in fk.handlers


def test_a_handler_name_provided_twice_is_refused(database_url: str) -> None:
    class Twin:
        @hookimpl
        def flowkernel_event_handlers(self) -> dict[str, object]:
            return {"change_object_state": lambda context: None}

    with pytest.raises(InvalidDefinition, match="change_object_state"):
        Flowkernel(database_url, plugins=[Twin()])


def test_method_executed_is_observed_after_commit(fk: Flowkernel) -> None:
    seen: list[tuple[str, str, bool]] = []

    class Observer:
        @hookimpl
        def flowkernel_method_executed(self, result: ExecutionResult) -> None:
            # committed: visible from another connection, a state change in the history, a call
            # that changed none in the method-call log
            table = "flow_stage_history" if result.changed else "fk_method_calls"
            placeholder = "?" if fk.engine.dialect.name == "sqlite" else "%s"
            with fk.engine.connect() as conn:
                count = conn.exec_driver_sql(
                    f"SELECT count(*) FROM {table} WHERE flow_item_id = {placeholder} "
                    f"AND method_code = {placeholder}",
                    (result.item_id, result.method),
                ).scalar()
            seen.append((result.method, result.to_state, bool(count)))

    fk.register_plugin(Observer())
    fk.definitions.add_class("doc", "Document")
    fk.definitions.add_default_methods("doc")
    fk.definitions.add_method("doc", None, "submit")
    alice = Actor.user(1, 1)
    item = fk.place("doc", "document", 7, alice)
    fk.execute(item.id, "enable", alice)
    fk.execute(item.id, "submit", alice)
    assert seen == [("enable", "enabled", True), ("submit", "enabled", True)]


def test_handlers_receive_frozen_values(fk: Flowkernel) -> None:
    contexts: list[EventContext] = []

    class Recorder:
        @hookimpl
        def flowkernel_event_handlers(self) -> dict[str, object]:
            return {"record": contexts.append}

    fk.register_plugin(Recorder())
    fk.definitions.add_class("doc", "Document")
    fk.definitions.add_default_methods("doc")
    fk.definitions.add_event("doc", "edit", "record")
    alice = Actor.user(1, 1)
    item = fk.place("doc", "document", 8, alice)
    fk.execute(item.id, "edit", alice, params={"note": "hi"})
    (context,) = contexts
    assert context.item.state == "created" and context.params == {"note": "hi"}
    with pytest.raises(AttributeError):
        context.item.state = "enabled"  # type: ignore[misc]


def test_a_failing_observer_does_not_fail_the_committed_execution(
    fk: Flowkernel, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken:
        @hookimpl
        def flowkernel_method_executed(self, result: ExecutionResult) -> None:
            raise RuntimeError("metrics backend down")

    fk.register_plugin(Broken())
    fk.definitions.add_class("doc", "Document")
    fk.definitions.add_default_methods("doc")
    alice = Actor.user(1, 1)
    item = fk.place("doc", "document", 9, alice)
    assert fk.execute(item.id, "enable", alice).to_state == "enabled"
    assert fk.item(item.id, alice).state == "enabled"
    assert "metrics backend down" in caplog.text
