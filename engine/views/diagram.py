"""Drawing a class's state machine: Mermaid, Graphviz dot, and SVG through Graphviz's `dot`.

A kernel class's states are grouped by state type. A pipeline's stages stand in board order,
left to right, with no grouping; the won and lost stages say so. A transition is an arrow
labelled with its method code (on a pipeline an arrow into a stage is its `move_to_<stage>`
method and carries no label), dashed when the method is hidden (only the system actor runs
it) and dotted grey when the pipeline's movement rules refuse the move to users. A legend
says what the drawing's line styles mean. Methods without a transition are listed inside
their state's box rather than drawn as loops, since the default lifecycle alone would put
eight loops on every state.

Three more nodes: the start node leads into the state `create` places items in; a method whose
chain removes the item (the `drop_object` handler) leads from a state of type deleted to the
end node; the "any state" node (on a pipeline "any stage") stands for every state not of type
deleted. A method leading to one target from every other such state is drawn once from it (a
pipeline's free moves), and the methods without a transition that every such state has are
listed in it. A deleted item is offered only restore and drop, so a state of type deleted
shows nothing else.
"""

from __future__ import annotations

import html
import itertools
import json
import re
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from sqlalchemy import func, or_, select

from flowkernel.actors import Actor
from flowkernel.compile.compiled import CompiledClass, CompiledMethod, CompiledState
from flowkernel.definition.classes import Definitions
from flowkernel.errors import GraphvizUnavailable, InvalidArgument, UnknownDefinition
from flowkernel.kinds import MOVE_PREFIX, STATE_TYPES
from flowkernel.previews import preview
from flowkernel.store.database import reading
from flowkernel.store.tables import items
from flowkernel.views.formats import DIAGRAM_FORMATS

if TYPE_CHECKING:
    from flowkernel.kernel import Flowkernel

FORMATS: Final = DIAGRAM_FORMATS
START: Final = "fk_start"
END: Final = "fk_end"
ANY: Final = "*"
"""The source of an edge drawn once for every state (not a valid state code)."""
ANY_NODE: Final = "fk_any"
LEGEND_NODE: Final = "fk_legend"
REFUSED_COLOR: Final = "#9ca3af"
"""The colour of a move the movement rules refuse to users."""
DROP_HANDLER: Final = "drop_object"
DELETED_OFFERS: Final = ("restore", "drop")
"""The actions the runtime offers an item in a state of type deleted."""
DOT_TIMEOUT: Final = 60.0
WRAP: Final = 40
_COLOR = re.compile(r"#[0-9A-Fa-f]{3,8}")
_EdgeKey = tuple[str, str | None, bool, str | None]
"""What makes two arrows the same but for their source: method, target, dashed, note."""


@dataclass(frozen=True, slots=True)
class DiagramState:
    """A state as drawn: its box text and the methods without a transition."""

    code: str
    label: str
    state_type: str
    count: int | None
    color: str | None
    in_place: tuple[str, ...]
    """Methods without a transition, by sequence; hidden ones end in " (hidden)"."""
    outcome: str | None = None
    """"won" or "lost" for a pipeline's outcome stages."""


@dataclass(frozen=True, slots=True)
class DiagramEdge:
    """An arrow: a method from a state to a state (None: the end node).

    The source None is the start node; `ANY` is the "any state" node.
    """

    source: str | None
    target: str | None
    method: str
    dashed: bool
    """The method is hidden: only the system actor runs it."""
    note: str | None
    """Why users may not take it (a movement restriction), if that is the reason."""

    @property
    def refused(self) -> bool:
        """The pipeline's movement rules refuse the move to users."""
        return self.note is not None


@dataclass(frozen=True, slots=True)
class Diagram:
    """What a drawing shows, independent of the output format."""

    title: str
    groups: tuple[tuple[str, tuple[DiagramState, ...]], ...]
    """(state type, its states by position), in the order created, enabled, disabled, deleted;
    on a pipeline one group ("") of every stage in board order, drawn without a box."""
    edges: tuple[DiagramEdge, ...]
    everywhere: tuple[str, ...]
    """Methods without a transition in every state not of type deleted (listed once)."""
    any_label: str
    """What the `ANY` node is called: "any state", or "any stage" on a pipeline."""

    pipeline: bool = False

    @property
    def has_any(self) -> bool:
        """Whether the drawing needs the "any state" node."""
        return bool(self.everywhere) or any(e.source == ANY for e in self.edges)

    def label(self, edge: DiagramEdge) -> str:
        """An arrow's text: its method, none for a pipeline's move into its target stage."""
        if self.pipeline and edge.target is not None and edge.method == MOVE_PREFIX + edge.target:
            return ""
        return edge.method

    def legend(self) -> list[str]:
        """What the drawing's line styles mean, for the styles it uses."""
        lines = ["solid arrow: users may take it"]
        if any(e.dashed for e in self.edges):
            lines.append("dashed arrow: a hidden method, run by the system actor only")
        reasons = sorted({e.note for e in self.edges if e.note is not None})
        if reasons:
            lines.append("dotted grey arrow: the movement rules refuse it to users")
            lines.append(f"({', '.join(reasons)}); the system actor may take it")
        if self.pipeline:
            lines.append("an arrow into a stage is its move_to_<stage> method")
        listed = [*self.everywhere]
        listed += [m for _, group in self.groups for state in group for m in state.in_place]
        if any(m.endswith(" (hidden)") for m in listed):
            lines.append("(hidden): a method without a transition, system actor only")
        return lines


def layout(compiled: CompiledClass, counts: Mapping[str, int] | None = None) -> Diagram:
    """The states, groups and arrows of `compiled`; `counts` (state code -> items) adds counts."""
    edges: list[DiagramEdge] = []
    in_place: dict[str, list[str]] = {}
    for state in compiled.ordered_states:
        in_place[state.code] = []
        for method in _offered(compiled, state):
            removes = method.target is None and DROP_HANDLER in method.chain
            if method.target is not None or (removes and state.state_type == "deleted"):
                edge = DiagramEdge(
                    state.code, method.target, method.code, not method.visible, method.restriction
                )
                edges.append(edge)
            elif removes and not compiled.is_pipeline:
                continue  # refused outside a deleted state: only deleted items are dropped
            else:
                in_place[state.code].append(
                    method.code if method.visible else f"{method.code} (hidden)"
                )
    live = [s.code for s in compiled.ordered_states if s.state_type != "deleted"]
    everywhere = (
        [m for m in in_place[live[0]] if all(m in in_place[c] for c in live)]
        if len(live) > 1
        else []
    )
    edges = _merge_any(edges, live)
    drawn: dict[str, list[DiagramState]] = (
        {"": []} if compiled.is_pipeline else {kind: [] for kind in STATE_TYPES}
    )
    for state in compiled.ordered_states:
        color = state.color if state.color and _COLOR.fullmatch(state.color) else None
        outcome = "won" if state.is_won else "lost" if state.is_lost else None
        drawn.setdefault("" if compiled.is_pipeline else state.state_type, []).append(
            DiagramState(
                code=state.code,
                label=state.label,
                state_type=state.state_type,
                count=None if counts is None else counts.get(state.code, 0),
                color=color,
                in_place=tuple(m for m in in_place[state.code] if m not in everywhere),
                outcome=outcome if compiled.is_pipeline else None,
            )
        )
    create = compiled.create
    if create is not None and create.target is not None:
        edges.insert(0, DiagramEdge(None, create.target, create.code, not create.visible, None))
    return Diagram(
        title=f"{compiled.name} ({compiled.code})",
        groups=tuple((kind, tuple(states)) for kind, states in drawn.items() if states),
        edges=tuple(edges),
        everywhere=tuple(everywhere),
        any_label="any stage" if compiled.is_pipeline else "any state",
        pipeline=compiled.is_pipeline,
    )


def _merge_any(edges: list[DiagramEdge], live: list[str]) -> list[DiagramEdge]:
    """One arrow from `ANY` for each method leading to one target from every other live state.

    The target's own arrow (a loop), if any, goes too: `ANY` stands for it as well. The merged
    arrows come first, by target position (`live` is in position order).
    """
    sources: dict[_EdgeKey, set[str]] = {}
    for edge in edges:
        if edge.source is not None:
            key = (edge.method, edge.target, edge.dashed, edge.note)
            sources.setdefault(key, set()).add(edge.source)
    merged: list[_EdgeKey] = []
    for key, found in sources.items():
        others = {code for code in live if code != key[1]}
        if len(others) > 1 and others <= found:
            merged.append(key)
    order = {code: index for index, code in enumerate(live)}
    merged.sort(key=lambda k: order.get(k[1] or "", len(order)))
    kept = [
        e
        for e in edges
        if (e.method, e.target, e.dashed, e.note) not in merged or e.source not in order
    ]
    return [
        DiagramEdge(ANY, target, method, dashed, note) for method, target, dashed, note in merged
    ] + kept


def _offered(compiled: CompiledClass, state: CompiledState) -> list[CompiledMethod]:
    methods = compiled.methods.get(state.code, {}).values()
    if state.state_type == "deleted":
        return [m for m in methods if m.action in DELETED_OFFERS]
    return list(methods)


def _title_line(state: DiagramState) -> str:
    # The code is shown when it cannot be read off the label (`Closed won` is `closed_won`).
    if "_".join(state.label.lower().split()) == state.code:
        return state.label
    return f"{state.label} ({state.code})"


def _count_line(state: DiagramState) -> list[str]:
    lines = [] if state.outcome is None else [f"outcome: {state.outcome}"]
    if state.count is None:
        return lines
    return [*lines, f"{state.count} item" + ("" if state.count == 1 else "s")]


def _method_lines(methods: tuple[str, ...]) -> list[str]:
    """`no transition: a, b, ...` wrapped between methods, never inside one."""
    lines: list[str] = []
    line = "no transition:"
    for index, method in enumerate(methods):
        word = method + ("," if index < len(methods) - 1 else "")
        if len(line) + 1 + len(word) > WRAP and line:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}"
    return [*lines, line] if methods else []


def _edge_ends(edge: DiagramEdge) -> tuple[str, str]:
    if edge.source is None:
        source = START
    elif edge.source == ANY:
        source = ANY_NODE
    else:
        source = _node(edge.source)
    return source, END if edge.target is None else _node(edge.target)


def _node(code: str) -> str:
    # A prefix keeps state codes such as `end` apart from Mermaid's keywords.
    return f"s_{code}"


# --- Mermaid -------------------------------------------------------------------------------


def to_mermaid(compiled: CompiledClass, counts: Mapping[str, int] | None = None) -> str:
    """A Mermaid flowchart of the class (see the module's description of the drawing)."""
    diagram = layout(compiled, counts)
    out = ["---", f"title: {json.dumps(diagram.title)}", "---", "flowchart LR"]
    if any(e.source is None for e in diagram.edges):
        out.append(f'    {START}(("start"))')
    if diagram.has_any:
        lines = [diagram.any_label, *_method_lines(diagram.everywhere)]
        out.append(f'    {ANY_NODE}[/"{_mermaid_lines(lines)}"/]')
    for kind, states in diagram.groups:
        indent = "        " if kind else "    "
        if kind:
            out.append(f'    subgraph type_{kind} ["{kind}"]')
        for state in states:
            lines = [_title_line(state), *_count_line(state), *_method_lines(state.in_place)]
            text = _mermaid_lines(lines)
            shape = f'(["{text}"])' if state.outcome else f'("{text}")'
            out.append(f"{indent}{_node(state.code)}{shape}")
        if kind:
            out.append("    end")
    if any(e.target is None for e in diagram.edges):
        out.append(f'    {END}((("dropped")))')
    out.append(f'    {LEGEND_NODE}["{_mermaid_lines(["legend", *diagram.legend()])}"]')
    links = 0
    refused: list[int] = []
    if diagram.pipeline:  # board order, left to right
        codes = [_node(state.code) for _, states in diagram.groups for state in states]
        for left, right in itertools.pairwise(codes):
            out.append(f"    {left} ~~~ {right}")
            links += 1
    for edge in diagram.edges:
        arrow = "-.->" if edge.dashed or edge.refused else "-->"
        source, target = _edge_ends(edge)
        label = diagram.label(edge)
        text = f'|"{_mermaid_text(label)}"|' if label else ""
        out.append(f"    {source} {arrow}{text} {target}")
        if edge.refused:
            refused.append(links)
        links += 1
    if refused:
        numbers = ",".join(map(str, refused))
        out.append(f"    linkStyle {numbers} stroke:{REFUSED_COLOR},stroke-dasharray:2 4")
    for _, states in diagram.groups:
        for state in states:
            if state.color is not None:
                out.append(f"    style {_node(state.code)} fill:{state.color}")
    out.append(f"    style {LEGEND_NODE} fill:#ffffff,stroke:{REFUSED_COLOR}")
    return "\n".join(out) + "\n"


def _mermaid_lines(lines: list[str]) -> str:
    return "<br/>".join(_mermaid_text(line) for line in lines)


def _mermaid_text(text: str) -> str:
    """Text for a quoted Mermaid label: entity codes for the characters Mermaid reads."""
    text = text.replace("#", "#35;")
    for char, code in (('"', "#quot;"), ("<", "#lt;"), (">", "#gt;")):
        text = text.replace(char, code)
    return text


# --- Graphviz ------------------------------------------------------------------------------


def to_dot(compiled: CompiledClass, counts: Mapping[str, int] | None = None) -> str:
    """A Graphviz dot digraph of the class (see the module's description of the drawing)."""
    diagram = layout(compiled, counts)
    out = [
        f"digraph {_dot_string(compiled.code)} {{",
        f"    graph [label={_dot_string(diagram.title)}, labelloc=t, rankdir=LR,"
        ' fontname="Helvetica", nodesep=0.4, ranksep=0.8];',
        '    node [shape=box, style=rounded, fontname="Helvetica", fontsize=11];',
        '    edge [fontname="Helvetica", fontsize=9];',
    ]
    if any(e.source is None for e in diagram.edges):
        out.append(
            f'    "{START}" [label="", shape=circle, style=filled, fillcolor=black, width=0.2];'
        )
    if diagram.has_any:
        label = _dot_html(diagram.any_label, [], _method_lines(diagram.everywhere))
        out.append(f'    "{ANY_NODE}" [label={label}, shape=note, style=""];')
    for kind, states in diagram.groups:
        indent = "        " if kind else "    "
        if kind:
            out.append(f'    subgraph "cluster_{kind}" {{')
            out.append(f'        label="{kind}"; style=dashed; color=gray50; fontcolor=gray30;')
        for state in states:
            label = _dot_html(_title_line(state), _count_line(state), _method_lines(state.in_place))
            rounded = "rounded,filled" if state.color is not None else "rounded"
            shape = f', peripheries=2, style="{rounded}"' if state.outcome else ""
            fill = f", fillcolor={_dot_string(state.color)}" if state.color is not None else ""
            if state.color is not None and not state.outcome:
                fill = f', style="rounded,filled"{fill}'
            out.append(f'{indent}"{_node(state.code)}" [label={label}{shape}{fill}];')
        if kind:
            out.append("    }")
    if any(e.target is None for e in diagram.edges):
        out.append(
            f'    "{END}" [label="", shape=doublecircle, style=filled, fillcolor=black,'
            " width=0.15];"
        )
    legend = _dot_html("legend", [], diagram.legend())
    out.append(f'    "{LEGEND_NODE}" [label={legend}, shape=note, style="", color=gray50];')
    if diagram.pipeline:  # board order, left to right
        codes = [_node(state.code) for _, states in diagram.groups for state in states]
        for left, right in itertools.pairwise(codes):
            out.append(f'    "{left}" -> "{right}" [style=invis];')
    for edge in diagram.edges:
        source, target = _edge_ends(edge)
        style = ""
        if edge.refused:
            style = f', style=dotted, color="{REFUSED_COLOR}"'
        elif edge.dashed:
            style = ", style=dashed"
        out.append(
            f'    "{source}" -> "{target}" [label={_dot_string(diagram.label(edge))}{style}];'
        )
    out.append("}")
    return "\n".join(out) + "\n"


def _dot_string(text: str) -> str:
    """A double-quoted dot string."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _dot_html(title: str, bold: list[str], small: list[str]) -> str:
    """An HTML-like dot label: the title, then `bold` lines, then `small` lines in a small font."""
    parts = [html.escape(title)]
    parts += [f"<B>{html.escape(line)}</B>" for line in bold]
    parts += [f'<FONT POINT-SIZE="9">{html.escape(line)}</FONT>' for line in small]
    return "<" + "<BR/>".join(parts) + ">"


def to_svg(compiled: CompiledClass, counts: Mapping[str, int] | None = None) -> str:
    """The dot drawing rendered to SVG by Graphviz's `dot` program.

    Raises `GraphvizUnavailable` when `dot` is not on PATH or fails.
    """
    program = shutil.which("dot")
    if program is None:
        raise GraphvizUnavailable("the Graphviz program `dot` is not installed (not on PATH)")
    try:
        done = subprocess.run(
            [program, "-Tsvg"],
            input=to_dot(compiled, counts),
            capture_output=True,
            text=True,
            timeout=DOT_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise GraphvizUnavailable(f"running {program} failed: {exc}") from exc
    if done.returncode != 0:
        first = (done.stderr.strip().splitlines() or ["no message"])[0]
        raise GraphvizUnavailable(f"{program} exited with status {done.returncode}: {first}")
    return done.stdout


def render(
    compiled: CompiledClass, fmt: str = "mermaid", counts: Mapping[str, int] | None = None
) -> str:
    """The class drawn in `fmt`: "mermaid", "dot" or "svg"."""
    if fmt == "mermaid":
        return to_mermaid(compiled, counts)
    if fmt == "dot":
        return to_dot(compiled, counts)
    if fmt == "svg":
        return to_svg(compiled, counts)
    raise InvalidArgument(
        f"diagram format {preview(fmt)} is not one of {', '.join(FORMATS)}", fmt=fmt
    )


# --- from the database ---------------------------------------------------------------------


def compiled_for(fk: Flowkernel, class_ref: str | int, actor: Actor) -> CompiledClass:
    """The compiled class (kernel class or pipeline) by code or id, as `actor` may read it.

    A code is looked up in the actor's account, then platform-wide; a class of an account the
    actor does not reach is unknown to it.
    """
    with reading(fk.sessions) as session:
        row = Definitions.class_row(
            session,
            class_ref,
            actor.account_id,
            any_account=actor.is_system and actor.account_id is None,
        )
        if not actor.reaches(row.iam_account_id):
            raise UnknownDefinition("class", class_ref)
        return fk.executor.current(session, row.id)


def item_counts(fk: Flowkernel, compiled: CompiledClass, actor: Actor) -> dict[str, int]:
    """Items per state code that `actor` reaches, as a board shows them.

    A soft-deleted pipeline item (which keeps its stage) is left out; an item in a state of
    type deleted is counted there.
    """
    if not actor.reaches(compiled.account_id):
        raise UnknownDefinition("class", compiled.code)
    stmt = (
        select(items.c.flow_stage_id, func.count(), func.count(items.c.deleted_at))
        .where(items.c.flow_pipeline_id == compiled.id)
        .group_by(items.c.flow_stage_id)
    )
    if not (actor.is_system and actor.account_id is None):
        # A platform class holds items of many accounts: count the actor's own only.
        stmt = stmt.where(
            or_(items.c.iam_account_id.is_(None), items.c.iam_account_id == actor.account_id)
        )
    counts = dict.fromkeys(compiled.states, 0)
    with reading(fk.sessions) as session:
        for stage_id, total, deleted in session.execute(stmt):
            state = compiled.states_by_id.get(stage_id)
            if state is not None:
                counts[state.code] = total if state.state_type == "deleted" else total - deleted
    return counts


def draw(
    fk: Flowkernel,
    class_ref: str | int,
    actor: Actor,
    fmt: str = "mermaid",
    *,
    counts: bool = False,
) -> str:
    """Draw a class by code or id in `fmt`, with live item counts per state when `counts`."""
    if fmt not in FORMATS:
        raise InvalidArgument(
            f"diagram format {preview(fmt)} is not one of {', '.join(FORMATS)}", fmt=fmt
        )
    compiled = compiled_for(fk, class_ref, actor)
    return render(compiled, fmt, item_counts(fk, compiled, actor) if counts else None)
