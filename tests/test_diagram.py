"""Drawing classes: Mermaid and dot output, item counts, SVG through Graphviz, the command."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Final

import pytest

from flowkernel import SYSTEM, Actor, Flowkernel, UnknownDefinition
from flowkernel.cli import main
from flowkernel.definition.pipelines.admin import StageSpec
from flowkernel.errors import GraphvizUnavailable
from flowkernel.examples.charging_station import STATES, build_station_class
from flowkernel.examples.sales_pipeline import build_sales_pipeline
from flowkernel.views.diagram import (
    ANY,
    compiled_for,
    draw,
    item_counts,
    layout,
    to_dot,
    to_mermaid,
    to_svg,
)

STATE_TYPE = {code: state_type for state_type, code, _, _ in STATES}
COUNT = re.compile(r"(<br/>|<B>)\d+ items?\b")
GRAPHVIZ_HINT = "install Graphviz (apt-get install graphviz) or use --format dot|mermaid"


def station(fk: Flowkernel) -> str:
    build_station_class(fk)
    return to_mermaid(compiled_for(fk, "station", SYSTEM))


def mermaid_groups(text: str) -> dict[str, set[str]]:
    """Subgraph title -> the node ids declared inside it."""
    groups: dict[str, set[str]] = {}
    for title, body in re.findall(r'subgraph type_\w+ \["(\w+)"\]\n(.*?)\n    end', text, re.S):
        groups[title] = set(re.findall(r"^\s+(\w+)\(", body, re.M))
    return groups


def dot_clusters(text: str) -> dict[str, set[str]]:
    """Cluster label -> the node ids declared inside it."""
    clusters: dict[str, set[str]] = {}
    for kind, body in re.findall(r'subgraph "cluster_(\w+)" \{\n(.*?)\n    \}', text, re.S):
        clusters[kind] = set(re.findall(r'^\s+"(\w+)" \[label=', body, re.M))
    return clusters


STATION_EDGES: Final = (
    # (source node, target node, method, dashed); the global methods' transitions from every
    # state not of type deleted are drawn once, from the any-state node
    ("fk_start", "s_created", "create", False),
    ("fk_any", "s_created", "restore", False),
    ("fk_any", "s_disabled", "disable", False),
    ("fk_any", "s_deleted", "delete", False),
    ("s_created", "s_unavailable", "enable", False),
    ("s_available", "s_unavailable", "unavailable", True),
    ("s_available", "s_faulted", "faulted", True),
    ("s_unavailable", "s_available", "available", True),
    ("s_unavailable", "s_faulted", "faulted", True),
    ("s_faulted", "s_available", "available", True),
    ("s_disabled", "s_unavailable", "enable", False),
    ("s_deleted", "s_created", "restore", False),
    ("s_deleted", "fk_end", "drop", False),
)


def test_station_mermaid_has_every_transition_hidden_ones_dashed(fk: Flowkernel) -> None:
    text = station(fk)
    assert text.startswith('---\ntitle: "Charging station (station)"\n---\nflowchart LR\n')
    edges = [line.strip() for line in text.splitlines() if "-->" in line or "-.->" in line]
    expected = [
        f'{source} {"-.->" if dashed else "-->"}|"{method}"| {target}'
        for source, target, method, dashed in STATION_EDGES
    ]
    assert sorted(edges) == sorted(expected)
    assert sum("-.->" in e for e in edges) == 5  # unavailable, faulted, available x2 + faulted
    # heartbeat has no transition: listed in the boxes of the states that have it, marked hidden
    for code in ("available", "unavailable", "faulted"):
        box = next(line for line in text.splitlines() if line.strip().startswith(f"s_{code}("))
        assert "heartbeat (hidden)" in box
    assert "heartbeat" not in "".join(edges)
    # open, edit, save and update do nothing in the station: they are offered, and drawn, nowhere
    any_node = next(line for line in text.splitlines() if "fk_any[/" in line)
    assert any_node.strip() == 'fk_any[/"any state"/]'
    assert "edit" not in text


def test_station_mermaid_groups_states_by_state_type(fk: Flowkernel) -> None:
    groups = mermaid_groups(station(fk))
    assert list(groups) == ["created", "enabled", "disabled", "deleted"]
    expected: dict[str, set[str]] = {}
    for code, state_type in STATE_TYPE.items():
        expected.setdefault(state_type, set()).add(f"s_{code}")
    assert groups == expected
    assert groups["enabled"] == {"s_available", "s_unavailable", "s_faulted"}


def test_station_dot_has_every_transition_and_a_cluster_per_state_type(fk: Flowkernel) -> None:
    build_station_class(fk)
    text = to_dot(compiled_for(fk, "station", SYSTEM))
    assert text.startswith('digraph "station" {')
    edges = sorted(
        re.findall(r'^\s+"(\w+)" -> "(\w+)" \[label="(\w+)"(, style=dashed)?\];', text, re.M)
    )
    expected = [
        (source, target, method, ", style=dashed" if dashed else "")
        for source, target, method, dashed in STATION_EDGES
    ]
    assert edges == sorted(expected)
    clusters = dot_clusters(text)
    assert list(clusters) == ["created", "enabled", "disabled", "deleted"]
    assert clusters["enabled"] == {"s_available", "s_unavailable", "s_faulted"}
    assert clusters["deleted"] == {"s_deleted"}
    assert "heartbeat (hidden)" in text


def test_pipeline_stages_in_board_order_moves_unlabelled_with_a_legend(fk: Flowkernel) -> None:
    pipeline = build_sales_pipeline(fk)
    admin = Actor.user(42, pipeline.account_id)
    text = to_mermaid(compiled_for(fk, "sales", admin))
    for code in ("lead", "qualified", "proposal", "won", "lost"):
        assert f"fk_any --> s_{code}" in text  # an arrow into a stage: its move_to_<stage>
    assert "move_to_" not in text.replace("move_to_#lt;stage#gt;", "")
    assert 'fk_start -->|"create"| s_lead' in text
    assert "style s_won fill:#22c55e" in text
    assert mermaid_groups(text) == {}  # no state-type boxes: no "disabled" around won and lost
    assert 's_won(["Won<br/>outcome: won"])' in text
    assert 's_lost(["Lost<br/>outcome: lost"])' in text
    assert "sla_breach (hidden)" in text  # no transition, on every stage: the any-stage node
    legend = next(line for line in text.splitlines() if "fk_legend[" in line)
    assert "solid arrow: users may take it" in legend and "dashed" not in legend

    # board order, also after a reorder that puts an outcome stage between open ones
    fk.pipelines.reorder_stages(
        pipeline.id, ["lead", "won", "qualified", "proposal", "lost"], admin
    )
    text = to_mermaid(compiled_for(fk, "sales", admin))
    chain = re.findall(r"^    (s_\w+) ~~~ (s_\w+)$", text, re.M)
    assert chain == [
        ("s_lead", "s_won"),
        ("s_won", "s_qualified"),
        ("s_qualified", "s_proposal"),
        ("s_proposal", "s_lost"),
    ]
    declared = re.findall(r"^    (s_\w+)\(", text, re.M)
    assert declared == ["s_lead", "s_won", "s_qualified", "s_proposal", "s_lost"]
    dot = to_dot(compiled_for(fk, "sales", admin))
    assert '"s_lead" -> "s_won" [style=invis];' in dot
    assert "cluster_" not in dot and "peripheries=2" in dot


def test_pipeline_moves_refused_to_users_dotted_grey_not_dashed(fk: Flowkernel) -> None:
    pipeline = build_sales_pipeline(fk)
    admin = Actor.user(42, pipeline.account_id)
    fk.pipelines.set_movement(pipeline.id, admin, allow_backward=False)
    diagram = layout(compiled_for(fk, "sales", admin))
    edges = {(e.source, e.method): e for e in diagram.edges}
    back = edges[("proposal", "move_to_qualified")]
    assert back.refused and not back.dashed and back.note == "no_moving_back"
    assert not edges[("lead", "move_to_qualified")].refused
    assert (ANY, "move_to_qualified") not in edges
    assert not edges[(ANY, "move_to_lost")].refused  # open from every stage
    assert edges[(ANY, "move_to_lead")].note == "no_moving_back"  # closed from every stage

    dot = to_dot(compiled_for(fk, "sales", admin))
    assert '"s_proposal" -> "s_qualified" [label="", style=dotted, color="#9ca3af"];' in dot
    assert '"s_lead" -> "s_qualified" [label=""];' in dot
    assert "style=dashed" not in dot  # dashed is kept for hidden methods
    assert "(no_moving_back); the system actor may take it" in dot

    text = to_mermaid(compiled_for(fk, "sales", admin))
    links = [
        line.strip() for line in text.splitlines() if re.match(r"^    \S+ (-->|-\.->|~~~)", line)
    ]
    styled = re.search(r"linkStyle ([\d,]+) stroke:#9ca3af,stroke-dasharray:2 4", text)
    assert styled is not None
    dotted = {links[int(n)] for n in styled.group(1).split(",")}
    assert "s_proposal -.-> s_qualified" in dotted and "fk_any -.-> s_lead" in dotted
    assert all("-.->" in link for link in dotted)
    assert not any("-.->" in link for i, link in enumerate(links) if link not in dotted)


def test_counts_per_state_as_the_actor_sees_them(fk: Flowkernel) -> None:
    build_station_class(fk)
    ten, eleven = Actor.user(1, 10), Actor.user(2, 11)
    a = fk.place("station", "charging_station", 1, ten)
    fk.place("station", "charging_station", 2, ten)
    c = fk.place("station", "charging_station", 3, eleven)
    fk.execute(a.id, "enable", ten)
    fk.execute(c.id, "delete", eleven)
    compiled = compiled_for(fk, "station", SYSTEM)
    everyone = item_counts(fk, compiled, SYSTEM)
    assert everyone == {
        "created": 1, "available": 0, "unavailable": 1, "faulted": 0, "disabled": 0, "deleted": 1,
    }  # fmt: skip
    assert item_counts(fk, compiled, Actor.system(11))["deleted"] == 1  # a deleted item counts
    assert sum(item_counts(fk, compiled, Actor.system(11)).values()) == 1
    assert sum(item_counts(fk, compiled, ten).values()) == 2
    text = to_mermaid(compiled, everyone)
    assert 's_unavailable("Unavailable<br/>1 item<br/>' in text
    assert 's_faulted("Faulted<br/>0 items<br/>' in text
    assert '"s_created" [label=<Created<BR/><B>1 item</B>' in to_dot(compiled, everyone)
    assert not COUNT.search(to_mermaid(compiled)) and not COUNT.search(to_dot(compiled))
    assert "<br/>1 item<br/>" in draw(fk, "station", SYSTEM, "mermaid", counts=True)
    assert not COUNT.search(draw(fk, "station", SYSTEM, "mermaid"))


def test_soft_deleted_pipeline_items_are_not_counted(fk: Flowkernel) -> None:
    pipeline = build_sales_pipeline(fk)
    rep = Actor.user(7, pipeline.account_id)
    kept = fk.place(pipeline.id, "crm_opportunity", 1, rep)
    gone = fk.place(pipeline.id, "crm_opportunity", 2, rep)
    fk.items.delete(gone.id, rep)
    compiled = compiled_for(fk, pipeline.id, rep)
    assert item_counts(fk, compiled, rep)["lead"] == 1
    assert fk.item(kept.id, rep).state == "lead"


def test_a_class_of_another_account_is_unknown(fk: Flowkernel) -> None:
    pipeline = build_sales_pipeline(fk)
    stranger = Actor.system(2)
    for ref in ("sales", pipeline.id):
        with pytest.raises(UnknownDefinition):
            draw(fk, ref, stranger)
    compiled = compiled_for(fk, pipeline.id, SYSTEM)
    with pytest.raises(UnknownDefinition):
        item_counts(fk, compiled, stranger)
    assert draw(fk, "sales", Actor.system(1)).startswith('---\ntitle: "Sales Pipeline (sales)"')


def test_labels_are_escaped(fk: Flowkernel) -> None:
    owner = Actor.user(1, 5)
    fk.pipelines.create_pipeline(
        'Odd "one" <x>',
        owner,
        code="odd",
        stages=[StageSpec('R&D "fast" <x> #1', code="end"), StageSpec("Done", is_won=True)],
    )
    compiled = compiled_for(fk, "odd", owner)
    text = to_mermaid(compiled)
    assert 's_end("R&D #quot;fast#quot; #lt;x#gt; #35;1 (end)")' in text  # `end`: a keyword
    assert 'title: "Odd \\"one\\" <x> (odd)"' in text
    dot = to_dot(compiled)
    assert "label=<R&amp;D &quot;fast&quot; &lt;x&gt; #1 (end)>" in dot
    assert 'graph [label="Odd \\"one\\" <x> (odd)"' in dot


# --- SVG --------------------------------------------------------------------------------------


def test_svg_through_graphviz_or_a_clear_message(fk: Flowkernel) -> None:
    build_station_class(fk)
    compiled = compiled_for(fk, "station", SYSTEM)
    if shutil.which("dot") is None:
        with pytest.raises(GraphvizUnavailable, match=re.escape(GRAPHVIZ_HINT)):
            to_svg(compiled)
        return
    svg = to_svg(compiled, {"available": 3})
    assert "<svg" in svg and svg.rstrip().endswith("</svg>")
    for label in (
        "Available",
        "3 items",
        "heartbeat (hidden)",
        "cluster_enabled",
        "stroke-dasharray",
    ):
        assert label in svg


def test_svg_without_graphviz_names_the_fix(
    fk: Flowkernel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    build_station_class(fk)
    compiled = compiled_for(fk, "station", SYSTEM)
    empty = tmp_path / "empty-path"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(GraphvizUnavailable) as refused:
        to_svg(compiled)
    assert GRAPHVIZ_HINT in refused.value.message
    assert "not installed" in refused.value.message
    assert to_dot(compiled).startswith("digraph")  # the other formats need no program


# --- the command -------------------------------------------------------------------------------


def test_diagram_command(
    database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with Flowkernel(database_url) as fk:
        build_station_class(fk)
        pipeline = build_sales_pipeline(fk)
        fk.place("station", "charging_station", 1, SYSTEM)
        station_id = fk.definitions.get_class("station").id
    db = ["--database-url", database_url]

    assert main([*db, "diagram", "station"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("---\ntitle:") and 'fk_start -->|"create"| s_created' in out
    assert not COUNT.search(out)

    assert main([*db, "diagram", str(station_id), "--format", "dot", "--counts"]) == 0
    out = capsys.readouterr().out
    assert out.startswith('digraph "station"') and "<B>1 item</B>" in out

    target = tmp_path / "sales.mmd"
    assert main([*db, "diagram", "sales", "--account", "1", "--output", str(target)]) == 0
    assert capsys.readouterr().out == ""
    assert "fk_any --> s_won" in target.read_text()

    assert main([*db, "diagram", str(pipeline.id), "--account", "2"]) == 3  # another account
    err = capsys.readouterr().err
    assert err.startswith("flowkernel: definition error: unknown class") and err.count("\n") == 1

    assert main([*db, "diagram", "station", "--format", "png"]) == 2
    capsys.readouterr()
    assert main([*db, "diagram", "station", "--output", str(tmp_path / "no" / "x.mmd")]) == 2
    assert capsys.readouterr().err.startswith("flowkernel: usage error: cannot write")


def test_diagram_command_svg(
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with Flowkernel(database_url) as fk:
        build_station_class(fk)
    db = ["--database-url", database_url]
    target = tmp_path / "station.svg"
    if shutil.which("dot") is not None:
        assert main([*db, "diagram", "station", "--format", "svg", "--output", str(target)]) == 0
        assert "<svg" in target.read_text()
    target.unlink(missing_ok=True)
    empty = tmp_path / "empty-path"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    assert main([*db, "diagram", "station", "--format", "svg", "--output", str(target)]) == 1
    err = capsys.readouterr().err
    assert (
        err == f"flowkernel: error: cannot draw SVG: the Graphviz program `dot` is not "
        f"installed (not on PATH); {GRAPHVIZ_HINT}\n"
    )
    assert not target.exists()  # nothing written on refusal
