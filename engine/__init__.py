"""Flowkernel: a persistent state-machine and pipeline engine.

A pipeline compiles into a class; a `transitions` machine drives the class; pluggy plugins
handle its events; SQLAlchemy persists everything (SQLite by default, PostgreSQL in production).

The names of `__all__` load their modules on first use: `import flowkernel` costs almost
nothing, and each name brings only what it needs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Final

from flowkernel.previews import preview

if TYPE_CHECKING:
    from flowkernel.actors import (
        SYSTEM as SYSTEM,
    )
    from flowkernel.actors import (
        Actor as Actor,
    )
    from flowkernel.definition.pipelines.admin import (
        ColumnSpec as ColumnSpec,
    )
    from flowkernel.definition.pipelines.admin import (
        StageSpec as StageSpec,
    )
    from flowkernel.errors import (
        AbstractClassError as AbstractClassError,
    )
    from flowkernel.errors import (
        AccessDenied as AccessDenied,
    )
    from flowkernel.errors import (
        ChecklistIncomplete as ChecklistIncomplete,
    )
    from flowkernel.errors import (
        ColumnInactive as ColumnInactive,
    )
    from flowkernel.errors import (
        ConcurrentUpdate as ConcurrentUpdate,
    )
    from flowkernel.errors import (
        DatabaseBusy as DatabaseBusy,
    )
    from flowkernel.errors import (
        DatabaseConnectionLost as DatabaseConnectionLost,
    )
    from flowkernel.errors import (
        DatabaseError as DatabaseError,
    )
    from flowkernel.errors import (
        DatabaseFull as DatabaseFull,
    )
    from flowkernel.errors import (
        DatabaseNotMigrated as DatabaseNotMigrated,
    )
    from flowkernel.errors import (
        DatabasePoolExhausted as DatabasePoolExhausted,
    )
    from flowkernel.errors import (
        DatabaseTimeout as DatabaseTimeout,
    )
    from flowkernel.errors import (
        DatabaseUnreachable as DatabaseUnreachable,
    )
    from flowkernel.errors import (
        DefinitionError as DefinitionError,
    )
    from flowkernel.errors import (
        DefinitionInUse as DefinitionInUse,
    )
    from flowkernel.errors import (
        DefinitionWarning as DefinitionWarning,
    )
    from flowkernel.errors import (
        DuplicateCode as DuplicateCode,
    )
    from flowkernel.errors import (
        DuplicateTransition as DuplicateTransition,
    )
    from flowkernel.errors import (
        ExecutionError as ExecutionError,
    )
    from flowkernel.errors import (
        FlowkernelError as FlowkernelError,
    )
    from flowkernel.errors import (
        ForeignReference as ForeignReference,
    )
    from flowkernel.errors import (
        HandlerFailed as HandlerFailed,
    )
    from flowkernel.errors import (
        IdempotencyKeyReused as IdempotencyKeyReused,
    )
    from flowkernel.errors import (
        InvalidArgument as InvalidArgument,
    )
    from flowkernel.errors import (
        InvalidDefinition as InvalidDefinition,
    )
    from flowkernel.errors import (
        InvalidDocument as InvalidDocument,
    )
    from flowkernel.errors import (
        InvalidToken as InvalidToken,
    )
    from flowkernel.errors import (
        InvalidValue as InvalidValue,
    )
    from flowkernel.errors import (
        InvalidValues as InvalidValues,
    )
    from flowkernel.errors import (
        ItemDeleted as ItemDeleted,
    )
    from flowkernel.errors import (
        ItemNotDeleted as ItemNotDeleted,
    )
    from flowkernel.errors import (
        ItemNotFound as ItemNotFound,
    )
    from flowkernel.errors import (
        MethodHidden as MethodHidden,
    )
    from flowkernel.errors import (
        MethodNotAvailable as MethodNotAvailable,
    )
    from flowkernel.errors import (
        MoveNotAllowed as MoveNotAllowed,
    )
    from flowkernel.errors import (
        ObjectAlreadyPlaced as ObjectAlreadyPlaced,
    )
    from flowkernel.errors import (
        RequirementMissing as RequirementMissing,
    )
    from flowkernel.errors import (
        StageNotEmpty as StageNotEmpty,
    )
    from flowkernel.errors import (
        UnknownDefinition as UnknownDefinition,
    )
    from flowkernel.errors import (
        UnknownHandler as UnknownHandler,
    )
    from flowkernel.errors import (
        WrongObjectType as WrongObjectType,
    )
    from flowkernel.hookspecs import (
        hookimpl as hookimpl,
    )
    from flowkernel.kernel import (
        Flowkernel as Flowkernel,
    )
    from flowkernel.runtime.batch import (
        BatchFailure as BatchFailure,
    )
    from flowkernel.runtime.batch import (
        BatchResult as BatchResult,
    )
    from flowkernel.runtime.explain import (
        Explanation as Explanation,
    )
    from flowkernel.runtime.explain import (
        Reason as Reason,
    )
    from flowkernel.snapshots import (
        ChangeState as ChangeState,
    )
    from flowkernel.snapshots import (
        DefinitionProblem as DefinitionProblem,
    )
    from flowkernel.snapshots import (
        DropItem as DropItem,
    )
    from flowkernel.snapshots import (
        EventContext as EventContext,
    )
    from flowkernel.snapshots import (
        ExecutionResult as ExecutionResult,
    )
    from flowkernel.snapshots import (
        HistoryEntry as HistoryEntry,
    )
    from flowkernel.snapshots import (
        ItemSnapshot as ItemSnapshot,
    )
    from flowkernel.snapshots import (
        MethodInfo as MethodInfo,
    )
    from flowkernel.snapshots import (
        OutgoingEvent as OutgoingEvent,
    )
    from flowkernel.snapshots import (
        Restore as Restore,
    )
    from flowkernel.snapshots import (
        SoftDelete as SoftDelete,
    )
    from flowkernel.snapshots import (
        WatcherNotification as WatcherNotification,
    )

_EXPORTS: Final = {
    "AbstractClassError": "flowkernel.errors",
    "AccessDenied": "flowkernel.errors",
    "Actor": "flowkernel.actors",
    "BatchFailure": "flowkernel.runtime.batch",
    "BatchResult": "flowkernel.runtime.batch",
    "ChangeState": "flowkernel.snapshots",
    "ChecklistIncomplete": "flowkernel.errors",
    "ColumnInactive": "flowkernel.errors",
    "ColumnSpec": "flowkernel.definition.pipelines.admin",
    "ConcurrentUpdate": "flowkernel.errors",
    "DatabaseConnectionLost": "flowkernel.errors",
    "DatabaseTimeout": "flowkernel.errors",
    "DatabasePoolExhausted": "flowkernel.errors",
    "DatabaseFull": "flowkernel.errors",
    "DatabaseBusy": "flowkernel.errors",
    "DatabaseError": "flowkernel.errors",
    "DatabaseNotMigrated": "flowkernel.errors",
    "DatabaseUnreachable": "flowkernel.errors",
    "DefinitionError": "flowkernel.errors",
    "DefinitionInUse": "flowkernel.errors",
    "DefinitionProblem": "flowkernel.snapshots",
    "DefinitionWarning": "flowkernel.errors",
    "DropItem": "flowkernel.snapshots",
    "DuplicateCode": "flowkernel.errors",
    "DuplicateTransition": "flowkernel.errors",
    "EventContext": "flowkernel.snapshots",
    "ExecutionError": "flowkernel.errors",
    "ExecutionResult": "flowkernel.snapshots",
    "Explanation": "flowkernel.runtime.explain",
    "Flowkernel": "flowkernel.kernel",
    "FlowkernelError": "flowkernel.errors",
    "ForeignReference": "flowkernel.errors",
    "HandlerFailed": "flowkernel.errors",
    "HistoryEntry": "flowkernel.snapshots",
    "IdempotencyKeyReused": "flowkernel.errors",
    "InvalidArgument": "flowkernel.errors",
    "InvalidDefinition": "flowkernel.errors",
    "InvalidDocument": "flowkernel.errors",
    "InvalidToken": "flowkernel.errors",
    "InvalidValue": "flowkernel.errors",
    "InvalidValues": "flowkernel.errors",
    "ItemDeleted": "flowkernel.errors",
    "ItemNotDeleted": "flowkernel.errors",
    "ItemNotFound": "flowkernel.errors",
    "ItemSnapshot": "flowkernel.snapshots",
    "MethodHidden": "flowkernel.errors",
    "MethodInfo": "flowkernel.snapshots",
    "MethodNotAvailable": "flowkernel.errors",
    "MoveNotAllowed": "flowkernel.errors",
    "ObjectAlreadyPlaced": "flowkernel.errors",
    "WrongObjectType": "flowkernel.errors",
    "OutgoingEvent": "flowkernel.snapshots",
    "Reason": "flowkernel.runtime.explain",
    "RequirementMissing": "flowkernel.errors",
    "Restore": "flowkernel.snapshots",
    "SYSTEM": "flowkernel.actors",
    "SoftDelete": "flowkernel.snapshots",
    "StageNotEmpty": "flowkernel.errors",
    "StageSpec": "flowkernel.definition.pipelines.admin",
    "UnknownDefinition": "flowkernel.errors",
    "UnknownHandler": "flowkernel.errors",
    "WatcherNotification": "flowkernel.snapshots",
    "hookimpl": "flowkernel.hookspecs",
}
"""Each public name and the module it lives in."""

__all__ = [
    "SYSTEM",
    "AbstractClassError",
    "AccessDenied",
    "Actor",
    "BatchFailure",
    "BatchResult",
    "ChangeState",
    "ChecklistIncomplete",
    "ColumnInactive",
    "ColumnSpec",
    "ConcurrentUpdate",
    "DatabaseBusy",
    "DatabaseConnectionLost",
    "DatabaseError",
    "DatabaseFull",
    "DatabaseNotMigrated",
    "DatabasePoolExhausted",
    "DatabaseTimeout",
    "DatabaseUnreachable",
    "DefinitionError",
    "DefinitionInUse",
    "DefinitionProblem",
    "DefinitionWarning",
    "DropItem",
    "DuplicateCode",
    "DuplicateTransition",
    "EventContext",
    "ExecutionError",
    "ExecutionResult",
    "Explanation",
    "Flowkernel",
    "FlowkernelError",
    "ForeignReference",
    "HandlerFailed",
    "HistoryEntry",
    "IdempotencyKeyReused",
    "InvalidArgument",
    "InvalidDefinition",
    "InvalidDocument",
    "InvalidToken",
    "InvalidValue",
    "InvalidValues",
    "ItemDeleted",
    "ItemNotDeleted",
    "ItemNotFound",
    "ItemSnapshot",
    "MethodHidden",
    "MethodInfo",
    "MethodNotAvailable",
    "MoveNotAllowed",
    "ObjectAlreadyPlaced",
    "OutgoingEvent",
    "Reason",
    "RequirementMissing",
    "Restore",
    "SoftDelete",
    "StageNotEmpty",
    "StageSpec",
    "UnknownDefinition",
    "UnknownHandler",
    "WatcherNotification",
    "WrongObjectType",
    "hookimpl",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'flowkernel' has no attribute {preview(name)}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
