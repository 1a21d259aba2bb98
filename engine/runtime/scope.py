"""What the read-side queries share: page limits, and what an actor reads of a pipeline.

A pipeline or item of an account the actor does not reach is reported as unknown, never as
forbidden. On a platform pipeline (no account) an actor confined to an account sees only the
items of that account (and the platform's own). A class-wide access rule that denies the actor
`visible` refuses the class's queries (`AccessDenied`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pluggy
from sqlalchemy import (
    ColumnElement,
    Connection,
    and_,
    or_,
    select,
)
from sqlalchemy.orm import Session, sessionmaker

from flowkernel.access import VISIBLE, check_class
from flowkernel.actors import Actor
from flowkernel.definition.rules import class_rules
from flowkernel.errors import InvalidArgument, UnknownDefinition
from flowkernel.keys import object_key
from flowkernel.previews import preview
from flowkernel.store.tables import (
    items,
    pipelines,
    stages,
)
from flowkernel.store.writer import Writer
from flowkernel.validation import (
    MAX_OBJECT_TYPE,
    check_id,
    check_text,
)

MAX_PAGE = 1000
"""The largest page a query hands out at once (per stage for the board)."""


class QueryBase:
    """The sessions, the database's writer (for its dialect's SQL) and the plugins the
    read-side queries run on."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        writer: Writer,
        plugin_manager: pluggy.PluginManager | None = None,
    ) -> None:
        self._sessions = sessions
        self._writer = writer
        self._plugin_manager = plugin_manager


def sees_every_account(actor: Actor) -> bool:
    """Whether the actor reads every account's items: the platform's system actor."""
    return actor.is_system and actor.account_id is None


def check_limit(name: str, value: object) -> None:
    """Refuse a page size outside 1 to `MAX_PAGE`."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_PAGE:
        raise InvalidArgument(
            f"{name} must be an integer from 1 to {MAX_PAGE}, not {preview(value)}", **{name: value}
        )


def readable_pipeline(conn: Connection, pipeline_id: int, actor: Actor) -> Any:
    """The pipeline row, if the actor reads it; else `UnknownDefinition` (or `AccessDenied`)."""
    check_id("pipeline_id", pipeline_id)
    row = conn.execute(
        select(pipelines.c.id, pipelines.c.name, pipelines.c.iam_account_id).where(
            pipelines.c.id == pipeline_id, pipelines.c.deleted_at.is_(None)
        )
    ).first()
    if row is None or not actor.reaches(row.iam_account_id):
        raise UnknownDefinition("pipeline", pipeline_id)
    if not actor.is_system:
        check_class(class_rules(conn, row.id), actor, VISIBLE, f"pipeline {preview(row.name)}")
    return row


def item_scope(actor: Actor, pipeline_account: int | None) -> ColumnElement[bool] | None:
    """Which items of a pipeline the actor sees; None means all of them (no extra filter)."""
    if sees_every_account(actor) or pipeline_account is not None:
        return None
    # A platform pipeline holds items of many accounts: show the actor's own only.
    return or_(items.c.iam_account_id.is_(None), items.c.iam_account_id == actor.account_id)


def stage_of(conn: Connection, pipeline: Any, key: str | int, at: datetime | None = None) -> int:
    """A stage of the pipeline by code or id: one not deleted, or not deleted at `at` (of two
    such stages of one code, the one that existed at `at`)."""
    live = (
        stages.c.deleted_at.is_(None)
        if at is None
        else or_(stages.c.deleted_at.is_(None), stages.c.deleted_at > at)
    )
    found = conn.execute(
        select(stages.c.id, stages.c.code, stages.c.created_at)
        .where(stages.c.flow_pipeline_id == pipeline.id, live)
        .order_by(stages.c.position, stages.c.id)
    ).all()
    if at is not None:  # those created by then first
        found = sorted(found, key=lambda r: r.created_at > at)
    rows = [(r.id, r.code) for r in found]
    for stage_id, code in rows:
        if (isinstance(key, int) and not isinstance(key, bool) and stage_id == key) or (
            isinstance(key, str) and (code or f"stage_{stage_id}") == key
        ):
            return int(stage_id)
    raise UnknownDefinition(
        "stage",
        key,
        f"pipeline {preview(pipeline.name)}",
        [code or f"stage_{stage_id}" for stage_id, code in rows],
    )


def object_filter(object_type: object, key: object, name: str = "key") -> ColumnElement[bool]:
    """The items of the object the host keys by (`object_type`, `key`): an integer, a UUID or a
    text key (the argument `name`), found by the object index."""
    check_text("object_type", object_type, max_length=MAX_OBJECT_TYPE, error=InvalidArgument)
    found = object_key(key, name)
    return and_(
        items.c.object_type == object_type,
        items.c.object_id == found.object_id,
        items.c.object_key.is_(None) if found.text is None else items.c.object_key == found.text,
    )
