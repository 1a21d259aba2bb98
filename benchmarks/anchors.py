"""The floor and the peer every performance target is a ratio to, as the project's anchors
define them, run beside the engine in the same process.

- The floor: the LEO seed's four statements per stage move (the requirement check, the item
  update, the history row, the automation query), one transaction each, straight through the
  driver (`sqlite3`, `psycopg`) on the seed's bare tables with one index on history, 10,000
  items in five stages. Its batch form is one `UPDATE ... WHERE id = ANY(...)` (an `IN` list
  on SQLite) over the same bare `flow_items`.
- The peer: what a Python team writes without an engine: SQLAlchemy ORM rows, a `transitions`
  `Machine` built for each loaded row, an ORM history row, one commit per move, one Session
  for the whole run; its own two tables.

Both run in a space of their own: a file beside the benchmark's on SQLite, a schema on
PostgreSQL.
"""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Callable
from typing import Any, Final

from sqlalchemy import Engine, ForeignKey, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column
from transitions import Machine

from .scratch import Scratch

ITEMS: Final = 10_000
"""Items of the floor and of the peer, in five stages."""
STAGES: Final = 5

FLOOR_DDL: Final = """
CREATE TABLE flow_stages (id INTEGER PRIMARY KEY, flow_pipeline_id INTEGER, name TEXT, position INTEGER, sla_days INTEGER, is_won BOOLEAN, is_lost BOOLEAN);
CREATE TABLE flow_columns (id INTEGER PRIMARY KEY, flow_pipeline_id INTEGER, name TEXT, label TEXT);
CREATE TABLE flow_stage_required_columns (flow_stage_id INTEGER, flow_column_id INTEGER);
CREATE TABLE flow_items (id INTEGER PRIMARY KEY, flow_pipeline_id INTEGER, flow_stage_id INTEGER, object_type TEXT, object_id BIGINT, last_stage_changed_at TIMESTAMP, checklist_state TEXT, updated_at TIMESTAMP);
CREATE TABLE flow_item_values (flow_item_id INTEGER, flow_column_id INTEGER, value TEXT, PRIMARY KEY (flow_item_id, flow_column_id));
CREATE TABLE flow_stage_history (id {serial}, flow_item_id INTEGER, flow_pipeline_id INTEGER, from_stage_id INTEGER, to_stage_id INTEGER, moved_by_iam_user_id INTEGER, moved_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP);
CREATE TABLE flow_automations (id INTEGER PRIMARY KEY, flow_pipeline_id INTEGER, flow_stage_id INTEGER, trigger TEXT, event_name TEXT, payload_template TEXT, is_active BOOLEAN, deleted_at TIMESTAMP);
CREATE INDEX ON_history ON flow_stage_history (flow_item_id);
"""  # noqa: E501  (the anchor's own text)
"""The seed's bare tables, as the floor creates them."""

CHECK: Final = """SELECT fc.name, fc.label FROM flow_stage_required_columns fsr
JOIN flow_columns fc ON fc.id = fsr.flow_column_id
WHERE fsr.flow_stage_id = {p} AND NOT EXISTS (SELECT 1 FROM flow_item_values
  WHERE flow_item_id = {p} AND flow_column_id = fsr.flow_column_id AND value IS NOT NULL)"""
UPDATE: Final = """UPDATE flow_items SET flow_stage_id = {p}, last_stage_changed_at = CURRENT_TIMESTAMP,
checklist_state = NULL, updated_at = CURRENT_TIMESTAMP WHERE id = {p}"""  # noqa: E501
HISTORY: Final = """INSERT INTO flow_stage_history (flow_item_id, flow_pipeline_id, from_stage_id, to_stage_id, moved_by_iam_user_id)
VALUES ({p}, {p}, {p}, {p}, {p})"""  # noqa: E501
AUTOMATIONS: Final = """SELECT event_name, payload_template FROM flow_automations WHERE flow_pipeline_id = {p}
AND is_active AND deleted_at IS NULL AND trigger IN ('stage_entered', 'stage_exited')
AND (flow_stage_id IS NULL OR (trigger = 'stage_entered' AND flow_stage_id = {p})
OR (trigger = 'stage_exited' AND flow_stage_id = {p}))"""  # noqa: E501


class Floor:
    """The seed's SQL on the seed's bare tables, straight through the driver.

    `conn` is a driver connection whose default schema (PostgreSQL) or file (SQLite) is the
    floor's own; `p` is the driver's placeholder, `serial` the history's key column type.
    """

    def __init__(self, conn: Any, p: str, serial: str) -> None:
        self.conn = conn
        self.p = p
        cur = conn.cursor()
        for stmt in FLOOR_DDL.replace("{serial}", serial).split(";"):
            if stmt.strip():
                cur.execute(stmt)
        for s in range(STAGES):
            cur.execute(
                f"INSERT INTO flow_stages VALUES ({p},1,{p},{p},7,false,false)", (s + 1, f"s{s}", s)
            )
        cur.execute(f"INSERT INTO flow_columns VALUES ({p},1,'close_date','Expected Close')", (1,))
        cur.execute(f"INSERT INTO flow_stage_required_columns VALUES ({p},{p})", (3, 1))
        cur.execute(
            "INSERT INTO flow_automations VALUES (1,1,NULL,'stage_entered','moved','{}',true,NULL)"
        )
        cur.executemany(
            "INSERT INTO flow_items (id, flow_pipeline_id, flow_stage_id, object_type, object_id)"
            f" VALUES ({p},1,1,'crm',{p})",
            [(i, i) for i in range(1, ITEMS + 1)],
        )
        cur.executemany(
            f"INSERT INTO flow_item_values VALUES ({p},1,'2026-07-01')",
            [(i,) for i in range(1, ITEMS + 1)],
        )
        conn.commit()
        self.cur = cur
        self.check = CHECK.format(p=p)
        self.update = UPDATE.format(p=p)
        self.history = HISTORY.format(p=p)
        self.automations = AUTOMATIONS.format(p=p)
        self.stage: dict[int, int] = {}

    def close(self) -> None:
        self.conn.close()

    def move(self, item: int) -> None:
        """Move `item` one stage on (the fifth back to the first), as the anchor does."""
        cur, old = self.cur, self.stage.get(item, 1)
        new = old % STAGES + 1
        cur.execute(self.check, (new, item))
        assert cur.fetchall() == []
        cur.execute(self.update, (new, item))
        cur.execute(self.history, (item, 1, old, new, 42))
        cur.execute(self.automations, (1, new, old))
        cur.fetchall()
        self.conn.commit()
        self.stage[item] = new

    def batch_update(self, ids: list[int]) -> None:
        """The raw batched write: `UPDATE flow_items SET updated_at = now() WHERE id =
        ANY(...)` (an `IN` list on SQLite) over the bare table, one commit."""
        if self.p == "%s":
            self.cur.execute(
                "UPDATE flow_items SET updated_at = CURRENT_TIMESTAMP WHERE id = ANY(%s)", (ids,)
            )
        else:
            marks = ",".join("?" * len(ids))
            self.cur.execute(
                f"UPDATE flow_items SET updated_at = CURRENT_TIMESTAMP WHERE id IN ({marks})", ids
            )
        self.conn.commit()


def floor(space: Scratch) -> Floor:
    """The floor in an empty space, on a driver connection set up as the anchor sets its own:
    SQLite in WAL mode with `synchronous=NORMAL`, PostgreSQL as it comes."""
    if space.kind == "sqlite":
        assert space.path is not None
        conn = sqlite3.connect(space.path)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        return Floor(conn, "?", "INTEGER PRIMARY KEY")
    return Floor(space.driver(), "%s", "BIGSERIAL PRIMARY KEY")


# --- the peer --------------------------------------------------------------------------------


class _Base(DeclarativeBase):
    pass


class PeerItem(_Base):
    """The peer's item: its stage as a string column the machine drives."""

    __tablename__ = "naive_items"
    id: Mapped[int] = mapped_column(primary_key=True)
    object_type: Mapped[str]
    object_id: Mapped[int]
    stage: Mapped[str]


class PeerHistory(_Base):
    """The peer's history row."""

    __tablename__ = "naive_history"
    id: Mapped[int] = mapped_column(primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("naive_items.id"), index=True)
    from_stage: Mapped[str]
    to_stage: Mapped[str]
    user_id: Mapped[int]


PEER_STAGES: Final = [f"s{i}" for i in range(STAGES)]
PEER_TRANSITIONS: Final = [
    {"trigger": "advance", "source": s, "dest": PEER_STAGES[(i + 1) % STAGES]}
    for i, s in enumerate(PEER_STAGES)
]


class Peer:
    """The hand-rolled peer: one Session for the run, a `transitions` Machine built on each
    loaded row, an ORM history row, one commit per move."""

    def __init__(self, engine: Engine) -> None:
        _Base.metadata.drop_all(engine)
        _Base.metadata.create_all(engine)
        self.engine = engine
        with Session(engine) as session:
            session.add_all(
                PeerItem(id=i, object_type="crm", object_id=i, stage="s0")
                for i in range(1, ITEMS + 1)
            )
            session.commit()
        self.session = Session(engine)

    def move(self, item_id: int) -> None:
        """Advance the item one stage, as the peer does."""
        session = self.session
        item = session.scalars(
            select(PeerItem).where(PeerItem.id == item_id).with_for_update()
        ).one()
        old = item.stage
        Machine(
            model=item,
            states=PEER_STAGES,
            transitions=PEER_TRANSITIONS,
            initial=old,
            model_attribute="stage",
            auto_transitions=False,
        )
        advance: Callable[[], None] = item.advance  # type: ignore[attr-defined]
        advance()
        session.add(PeerHistory(item_id=item.id, from_stage=old, to_stage=item.stage, user_id=42))
        session.commit()

    def close(self) -> None:
        self.session.close()
        _Base.metadata.drop_all(self.engine)


def random_items(seed: int = 7) -> Callable[[], int]:
    """The anchors' choice of the next item to move: uniform over the items, seeded."""
    rnd = random.Random(seed)
    return lambda: rnd.randint(1, ITEMS)
