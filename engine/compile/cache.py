"""The one cache of compiled classes: by class id, the version items run under."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from flowkernel.compile.compiled import CompiledClass
from flowkernel.compile.compiler import compile_class
from flowkernel.errors import ConcurrentUpdate, FlowkernelError
from flowkernel.store.tables import pipelines

ATTEMPTS = 20
"""How often a class is compiled again when its definition changed while it was read."""


class ClassCache:
    """Compiled classes by id, each at the version it was compiled from; a changed definition
    (a new version) compiles anew."""

    def __init__(self) -> None:
        self._compiled: dict[int, CompiledClass] = {}
        self._lock = threading.Lock()

    def get(self, class_id: int, version: int) -> CompiledClass | None:
        """The compiled class at `version`, if it is compiled."""
        cached = self._compiled.get(class_id)
        return cached if cached is not None and cached.version == version else None

    def compile(self, session: Session, class_id: int, version: int | None = None) -> CompiledClass:
        """The class compiled from the definition `session` reads (unless `version` is cached).

        A definition is read in several statements; where each statement sees the latest
        commit (PostgreSQL's read committed), a definition changed in between would be read
        half old, half new. So the versions of the class and its ancestors are read before
        and after: when one moved, the class is read again."""
        if version is not None:
            cached = self.get(class_id, version)
            if cached is not None:
                return cached
        lineage: Sequence[int] = (class_id,)
        for _attempt in range(ATTEMPTS):
            before = _versions(session, lineage)
            try:
                compiled = compile_class(session, class_id)
            except FlowkernelError:
                if _versions(session, lineage) == before:
                    raise  # the definition is wrong as it stands
                continue
            if compiled.lineage != tuple(lineage) or _versions(session, lineage) != before:
                lineage = compiled.lineage  # read again, with the ancestors now known
                continue
            with self._lock:
                self._compiled[class_id] = compiled
            return compiled
        raise ConcurrentUpdate(0)

    def known(self) -> list[CompiledClass]:
        """Every compiled class held."""
        return list(self._compiled.values())

    def clear(self) -> None:
        """Forget every compiled class."""
        with self._lock:
            self._compiled.clear()


def _versions(session: Session, class_ids: Sequence[int]) -> dict[int, int]:
    """The definition versions of the classes."""
    rows = session.execute(
        select(pipelines.c.id, pipelines.c.version).where(pipelines.c.id.in_(list(class_ids)))
    )
    return {int(class_id): int(version) for class_id, version in rows}
