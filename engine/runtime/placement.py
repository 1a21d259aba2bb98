"""Placing an object into a class: its global create method runs and the item lands.

Placement goes through the executor's parts: the transaction, the compiled class, the handler
chain (whose effects apply: a `SoftDelete` places the item deleted), the writer (the item and
its first history row) and the outbox (`item_created` automations).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.exc import IntegrityError

from flowkernel.actors import Actor
from flowkernel.compile.compiled import CompiledClass, CompiledState
from flowkernel.errors import (
    AbstractClassError,
    AccessDenied,
    HandlerFailed,
    InvalidArgument,
    InvalidDefinition,
    ItemNotFound,
    ObjectAlreadyPlaced,
    RequirementMissing,
    WrongObjectType,
)
from flowkernel.keys import HostKey, object_key
from flowkernel.kinds import Permission, StateType
from flowkernel.previews import preview
from flowkernel.runtime.executor import Executor
from flowkernel.runtime.outbox import CREATED, event_rows
from flowkernel.snapshots import DropItem, EventContext, ItemSnapshot, Restore, SoftDelete
from flowkernel.store.prepared import Db
from flowkernel.store.writer import Placement
from flowkernel.validation import (
    MAX_OBJECT_TYPE,
    check_key,
    check_optional_id,
    check_params,
    check_text,
)


def place(
    executor: Executor,
    class_id: int,
    object_type: str,
    object_id: HostKey,
    actor: Actor,
    *,
    account_id: int | None = None,
    state: str | None = None,
    assigned_user_id: int | None = None,
    params: Mapping[str, Any] | None = None,
) -> ItemSnapshot:
    """Place an object, keyed by the host's integer, UUID or text key, into class `class_id` by
    running its global create method."""
    check_text("object_type", object_type, max_length=MAX_OBJECT_TYPE, error=InvalidArgument)
    key = object_key(object_id)
    check_optional_id("account_id", account_id)
    check_optional_id("assigned_user_id", assigned_user_id)
    if state is not None:
        check_key("state", state, error=InvalidArgument)
    checked = check_params(params)
    account = account_id if account_id is not None else actor.account_id
    if not actor.reaches(account):
        raise AccessDenied(
            f"actor of account {actor.account_id} cannot place items into account {account}",
            account_id=account,
        )

    def work(db: Db) -> tuple[ItemSnapshot, list[int]]:
        version = executor.writer.class_version(db, class_id)
        if version is None:
            raise ItemNotFound(f"class {class_id}")
        compiled = executor.compiled(class_id, version)
        owner, target = _checked(compiled, actor, account, state)
        if compiled.object_type is not None and object_type != compiled.object_type:
            raise WrongObjectType(compiled.code, compiled.object_type, object_type)
        existing = executor.writer.find_object(db, compiled.id, object_type, key.object_id)
        if existing is not None:
            raise ObjectAlreadyPlaced(compiled.code, object_type, key.value, existing)
        if target.required:
            raise RequirementMissing(target.code, [(r.name, r.label) for r in target.required])
        now = datetime.now(UTC)
        create = compiled.create
        assert create is not None
        placement = Placement(
            class_id=compiled.id,
            stage_id=target.id,
            object_type=object_type,
            object_id=key.object_id,
            object_key=key.text,
            account_id=owner,
            user_id=actor.user_id,
            is_system=actor.is_system,
            assigned_user_id=assigned_user_id,
            deleted=target.state_type == StateType.DELETED,
            method=create.code,
            action=create.action,
            params=json.dumps(checked) if checked else None,
        )
        try:
            item_id, position = executor.writer.place(db, placement, now)
        except IntegrityError as exc:  # placed by another transaction meanwhile
            raise ObjectAlreadyPlaced(compiled.code, object_type, key.value, -1) from exc
        item = ItemSnapshot(
            id=item_id,
            class_id=compiled.id,
            class_code=compiled.code,
            object_type=object_type,
            object_id=key.object_id,
            object_key=key.text,
            account_id=owner,
            state=target.code,
            state_id=target.id,
            state_type=target.state_type,
            assigned_user_id=assigned_user_id,
            position=position,
            deleted=placement.deleted,
            last_state_changed_at=now,
        )
        context = EventContext(item, create.info(), "", target.code, actor, dict(checked or {}))
        deleted = placement.deleted
        for name in create.chain:
            for effect in executor.call(name, context):
                if isinstance(effect, SoftDelete):
                    deleted = True
                elif isinstance(effect, Restore):
                    deleted = placement.deleted
                elif isinstance(effect, DropItem):
                    cause = ValueError("an item cannot be dropped while it is placed")
                    raise HandlerFailed(name, create.code, item_id, cause)
        if deleted != placement.deleted:
            executor.mark(db, item_id, deleted, actor, now)
            item = replace(item, deleted=deleted)
        rows = event_rows(compiled, item, actor, now, CREATED, None, target, ())
        return item, executor.writer.outbox(db, rows, now) if rows else []

    item, outbox_ids = executor.transact(work)
    executor.after_commit(outbox_ids, ())
    return item


def _checked(
    compiled: CompiledClass, actor: Actor, account: int | None, state: str | None
) -> tuple[int | None, CompiledState]:
    """The item's account and its first state, after the class's and the actor's checks."""
    if not actor.reaches(compiled.account_id):
        raise ItemNotFound(f"class {compiled.code}")
    if compiled.is_abstract:
        raise AbstractClassError(compiled.code)
    if compiled.is_template:
        raise InvalidArgument(
            f"pipeline {preview(compiled.name)} is a template and holds no items; clone it into "
            f"the "
            "account and place items into the clone",
            class_code=compiled.code,
        )
    if compiled.account_id is not None:  # an account's class holds that account's items
        if account is None:
            account = compiled.account_id
        elif account != compiled.account_id:
            raise InvalidArgument(
                f"class {preview(compiled.code)} belongs to account {compiled.account_id}; its "
                f"items "
                f"cannot belong to account {account}",
                class_code=compiled.code,
                account_id=account,
            )
    create = compiled.create
    if create is None or create.target is None:
        raise InvalidDefinition(
            f"class {preview(compiled.code)} has no create transition and no state of type "
            f"created; "
            "add one before placing items",
            class_code=compiled.code,
        )
    if not compiled.allowed(actor, create, Permission.EXECUTE):
        raise AccessDenied(
            f"this actor may not create items in class {preview(compiled.code)}; ask for an access "
            "rule that allows it",
            method=create.code,
        )
    target = compiled.state(state) if state is not None else compiled.state(create.target)
    if state is not None and not compiled.is_pipeline and not actor.is_system:
        raise AccessDenied(
            "only the system actor may place an item of a kernel class into a chosen state",
            state=state,
        )
    return account, target
