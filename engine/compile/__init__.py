"""Compiling: definition rows into an immutable `CompiledClass` and its `transitions` machine,
cached per class version."""
