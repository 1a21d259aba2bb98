"""The statements of the hot path: loading items and writing what executions change.

A `Writer` holds every statement that loads, moves, logs and places items. What differs between
databases lives in one subclass per dialect (`SqliteWriter`, `PostgresqlWriter`), chosen once by
`writer_for`, as Alembic keeps one implementation class per dialect: the runtime asks for work
and never tests the dialect. Statements run on the driver connection inside a `transaction`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any, ClassVar, Final

from sqlalchemy import Engine, Table

from flowkernel.errors import ConcurrentUpdate
from flowkernel.kinds import CallLog
from flowkernel.store.prepared import Connections, Db, transaction


class Lock(Enum):
    """How loading holds the items' rows for the transaction."""

    NONE = "none"  # read only
    WAIT = "wait"  # lock, waiting for a transaction that holds one
    SKIP = "skip"  # lock, leaving out the rows another transaction holds


ITEM_COLUMNS: Final = (
    "i.id, i.flow_pipeline_id, i.flow_stage_id, i.object_type, i.object_id, i.iam_account_id, "
    "i.assigned_iam_user_id, i.position, i.checklist_state, i.version, "
    "i.deleted_at IS NOT NULL, i.last_stage_changed_at, p.version, "
    "EXISTS (SELECT 1 FROM flow_item_watchers w WHERE w.flow_item_id = i.id), i.object_key"
)
"""What loading an item reads: the item, its class version, whether anyone watches it."""

ITEM_FROM: Final = "flow_items i JOIN flow_pipelines p ON p.id = i.flow_pipeline_id"


class ItemRecord:
    """An item as loaded for an execution: its row, its class version, whether it is watched.

    `checklist` is the stored checklist state, read (`checklist_state`) only when a guard needs
    it; `last_changed` is when the item entered its stage.
    """

    __slots__ = (
        "_checklist", "account_id", "assigned", "class_id", "class_version", "deleted", "id",
        "last_changed", "object_id", "object_key", "object_type", "position", "stage_id",
        "version", "watched",
    )  # fmt: skip

    id: int
    class_id: int
    stage_id: int
    object_type: str
    object_id: int
    object_key: str | None
    account_id: int | None
    assigned: int | None
    position: int
    version: int
    deleted: bool
    last_changed: datetime | None
    class_version: int
    watched: bool

    def __init__(self, row: Sequence[Any], last_changed: datetime | None) -> None:
        (
            self.id,
            self.class_id,
            self.stage_id,
            self.object_type,
            self.object_id,
            self.account_id,
            self.assigned,
            self.position,
            self._checklist,
            self.version,
            deleted,
            _moment,
            self.class_version,
            watched,
            self.object_key,
        ) = row
        self.deleted = bool(deleted)
        self.watched = bool(watched)
        self.last_changed = last_changed

    @property
    def checklist_state(self) -> Any:
        """The stored checklist state (a mapping of entry keys), or None; SQLite keeps it as
        JSON text."""
        raw = self._checklist
        return json.loads(raw) if isinstance(raw, str) else raw


@dataclass(slots=True)
class Change:
    """What one execution writes for its item.

    `to_stage` is the state it changed into (a history row), `moved` whether the item's row
    follows it there; `deleted` is the item's deletion mark afterwards; `dropped` removes the
    row. A call that changed no state is logged as `log` says. `params` is JSON text. `action` is
    None for a move no method made (a definition change relocating the item).
    """

    item: ItemRecord
    method: str
    action: str | None
    to_stage: int | None
    moved: bool
    deleted: bool
    dropped: bool
    log: CallLog
    params: str | None

    @property
    def marks(self) -> bool:
        """Whether the item stays in its state with its deletion mark set or cleared."""
        return not self.moved and not self.dropped and self.deleted != self.item.deleted

    @property
    def logged(self) -> bool:
        """Whether a history row or a call-log row records the execution."""
        return self.to_stage is not None or self.log != CallLog.NONE


@dataclass(frozen=True, slots=True)
class Due:
    """An item whose SLA breach is due: a row of the due queue."""

    item_id: int
    pipeline_id: int
    stage_id: int
    due_at: datetime


@dataclass(frozen=True, slots=True)
class Placement:
    """An item to insert, with the history row of its first state."""

    class_id: int
    stage_id: int
    object_type: str
    object_id: int
    object_key: str | None
    account_id: int | None
    user_id: int | None
    is_system: bool
    assigned_user_id: int | None
    deleted: bool
    method: str
    action: str
    params: str | None


class Writer:
    """The hot path's statements for one database; subclasses hold what their dialect needs."""

    dialect: ClassVar[str]
    _dialects: ClassVar[dict[str, type[Writer]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        Writer._dialects[cls.dialect] = cls

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.connections = Connections(engine)

    def upsert(self, table: Table) -> Any:
        """The dialect's INSERT into `table`, which takes ON CONFLICT clauses."""
        raise NotImplementedError

    def seconds(self, end: Any, start: Any) -> Any:
        """`end - start` in seconds, as a SQL expression over two timestamp columns."""
        raise NotImplementedError

    # --- transactions --------------------------------------------------------------------

    @contextmanager
    def transaction(self, *, reads: bool = False) -> Iterator[Db]:
        """A transaction on a pooled driver connection, committed when the block ends;
        `reads`: one that only reads (`begin_reading`)."""
        with transaction(self.connections, self.begin_reading if reads else self.begin) as db:
            yield db

    def begin(self, db: Db) -> None:
        """Start the transaction (the driver starts one by itself unless told otherwise)."""

    def begin_reading(self, db: Db) -> None:
        """Start a transaction that only reads and so need not wait for writers."""

    # --- reading -------------------------------------------------------------------------

    def load(self, db: Db, ids: Sequence[int], *, lock: Lock) -> dict[int, ItemRecord]:
        """The items of `ids` that exist, by id, their rows held as `lock` says."""
        raise NotImplementedError

    def filled(self, db: Db, ids: Sequence[int]) -> dict[int, set[int]]:
        """The columns holding a value, by item."""
        raise NotImplementedError

    def class_version(self, db: Db, class_id: int) -> int | None:
        """The current version of a class's definition; None for no such class."""
        raise NotImplementedError

    def find_object(self, db: Db, class_id: int, object_type: str, object_id: int) -> int | None:
        """The item placing the object into the class, if any."""
        raise NotImplementedError

    def watchers(self, db: Db, ids: Sequence[int]) -> dict[int, list[int]]:
        """The users watching each item, in user order."""
        raise NotImplementedError

    # --- writing -------------------------------------------------------------------------

    def apply(
        self, db: Db, changes: Sequence[Change], user_id: int | None, is_system: bool, now: datetime
    ) -> None:
        """Write the changes of one transaction's executions, in order: moves, soft deletes,
        drops, a history row per state change, and the calls that changed no state as their
        methods log them. `ConcurrentUpdate` when an item changed since it was loaded."""
        raise NotImplementedError

    # --- the SLA due queue --------------------------------------------------------------

    def due(
        self,
        db: Db,
        moment: datetime,
        pipeline_id: int | None,
        excluded: Sequence[int],
        take: int,
    ) -> list[Due]:
        """Up to `take` queued breaches due at `moment`, in due order, held for this
        transaction (those another transaction holds are left out)."""
        raise NotImplementedError

    def due_plan(self, db: Db, moment: datetime, pipeline_id: int | None) -> list[str]:
        """The database's plan for `due`, as lines of text."""
        raise NotImplementedError

    def claim_due(self, db: Db, ids: Sequence[int], moment: datetime) -> None:
        """Take the items' breaches off the queue and record them as fired at `moment`."""
        raise NotImplementedError

    # --- outgoing events and placements --------------------------------------------------

    def outbox(self, db: Db, rows: Sequence[Mapping[str, Any]], now: datetime) -> list[int]:
        """Insert outbox rows in order; their ids."""
        raise NotImplementedError

    def place(self, db: Db, placement: Placement, now: datetime) -> tuple[int, int]:
        """Insert an item at the end of its stage, with its first history row: (id, position).

        `ObjectAlreadyPlaced` is the caller's to raise: this raises the driver's integrity
        error when the object is in the class already."""
        raise NotImplementedError


def writer_for(engine: Engine) -> Writer:
    """The writer of `engine`'s dialect."""
    from flowkernel.store import postgresql, sqlite  # noqa: F401  (each registers its writer)

    return Writer._dialects[engine.dialect.name](engine)


def check_count(changes: Sequence[Change], written: int) -> None:
    """`ConcurrentUpdate` unless every change found its item at the version it was loaded at."""
    if changes and written != len(changes):
        raise ConcurrentUpdate(changes[0].item.id)
