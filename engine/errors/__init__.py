"""Typed errors: one base, definition errors apart from runtime and database errors.

Every error carries structured attributes and a message that names the values
involved and the next step.
"""

from __future__ import annotations

from flowkernel.errors.base import (
    DefinitionError,
    ExecutionError,
    FlowkernelError,
)
from flowkernel.errors.database import (
    DatabaseBusy,
    DatabaseConnectionLost,
    DatabaseError,
    DatabaseFull,
    DatabaseNotMigrated,
    DatabasePoolExhausted,
    DatabaseTimeout,
    DatabaseUnreachable,
)
from flowkernel.errors.definitions import (
    AbstractClassError,
    DefinitionInUse,
    DefinitionWarning,
    DuplicateCode,
    DuplicateTransition,
    ForeignReference,
    InvalidDefinition,
    InvalidDocument,
    StageNotEmpty,
    UnknownDefinition,
    UnknownHandler,
)
from flowkernel.errors.execution import (
    AccessDenied,
    ChecklistIncomplete,
    ColumnInactive,
    ConcurrentUpdate,
    EventNotFound,
    HandlerFailed,
    IdempotencyKeyReused,
    InvalidArgument,
    InvalidToken,
    InvalidValue,
    InvalidValues,
    ItemDeleted,
    ItemNotDeleted,
    ItemNotFound,
    MethodHidden,
    MethodNotAvailable,
    MoveNotAllowed,
    ObjectAlreadyPlaced,
    RequirementMissing,
    WrongObjectType,
)
from flowkernel.errors.services import (
    DeliveryFailed,
    GraphvizUnavailable,
)

__all__ = [
    "AbstractClassError",
    "AccessDenied",
    "ChecklistIncomplete",
    "ColumnInactive",
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
    "DefinitionWarning",
    "DeliveryFailed",
    "DuplicateCode",
    "DuplicateTransition",
    "EventNotFound",
    "ExecutionError",
    "FlowkernelError",
    "ForeignReference",
    "GraphvizUnavailable",
    "HandlerFailed",
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
    "MethodHidden",
    "MethodNotAvailable",
    "MoveNotAllowed",
    "ObjectAlreadyPlaced",
    "RequirementMissing",
    "StageNotEmpty",
    "UnknownDefinition",
    "UnknownHandler",
    "WrongObjectType",
]
