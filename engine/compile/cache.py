"""The one cache of compiled classes: by class id, the version items run under."""

from __future__ import annotations

import threading

from sqlalchemy.orm import Session

from flowkernel.compile.compiled import CompiledClass
from flowkernel.compile.compiler import compile_class


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
        """The class compiled from the definition `session` reads (unless `version` is cached)."""
        if version is not None:
            cached = self.get(class_id, version)
            if cached is not None:
                return cached
        compiled = compile_class(session, class_id)
        with self._lock:
            self._compiled[class_id] = compiled
        return compiled

    def known(self) -> list[CompiledClass]:
        """Every compiled class held."""
        return list(self._compiled.values())

    def clear(self) -> None:
        """Forget every compiled class."""
        with self._lock:
            self._compiled.clear()
