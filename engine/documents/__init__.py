"""Class and pipeline documents: definitions as plain data (YAML or JSON), dumped and loaded.

The functions below load their modules on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Final

from flowkernel.previews import preview

if TYPE_CHECKING:
    from flowkernel.documents.applying import (
        apply as apply,
    )
    from flowkernel.documents.classes import (
        dump_class as dump_class,
    )
    from flowkernel.documents.classes import (
        dumps as dumps,
    )
    from flowkernel.documents.classes import (
        load_class as load_class,
    )
    from flowkernel.documents.classes import (
        loads as loads,
    )
    from flowkernel.documents.pipelines import (
        dump_pipeline as dump_pipeline,
    )
    from flowkernel.documents.pipelines import (
        load_pipeline as load_pipeline,
    )
    from flowkernel.documents.pipelines import (
        parse_pipeline_text as parse_pipeline_text,
    )

_EXPORTS: Final = {
    "apply": "flowkernel.documents.applying",
    "dump_class": "flowkernel.documents.classes",
    "dumps": "flowkernel.documents.classes",
    "load_class": "flowkernel.documents.classes",
    "loads": "flowkernel.documents.classes",
    "dump_pipeline": "flowkernel.documents.pipelines",
    "load_pipeline": "flowkernel.documents.pipelines",
    "parse_pipeline_text": "flowkernel.documents.pipelines",
}

__all__ = [
    "apply",
    "dump_class",
    "dump_pipeline",
    "dumps",
    "load_class",
    "load_pipeline",
    "loads",
    "parse_pipeline_text",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'flowkernel.documents' has no attribute {preview(name)}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
