"""Class and pipeline documents: definitions as plain data (YAML or JSON), dumped and loaded."""

from flowkernel.documents.classes import dump_class, dumps, load_class, loads
from flowkernel.documents.pipelines import dump_pipeline, load_pipeline, parse_pipeline_text

__all__ = [
    "dump_class",
    "dump_pipeline",
    "dumps",
    "load_class",
    "load_pipeline",
    "loads",
    "parse_pipeline_text",
]
