"""Flowkernel's built-in plugins: its own behaviour, shipped the way third parties ship theirs."""
