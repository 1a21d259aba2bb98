"""The bases: every error is a `FlowkernelError`; definitions and executions have their own."""

from __future__ import annotations


class FlowkernelError(Exception):
    """Base of every error Flowkernel raises on purpose."""

    code: str = "flowkernel_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def details(self) -> dict[str, object]:
        """Structured attributes of the error, for APIs and logs."""
        return {k: v for k, v in vars(self).items() if k != "message" and not k.startswith("_")}


class DefinitionError(FlowkernelError):
    """A class, pipeline or document is not a valid definition."""

    code = "definition_error"


class ExecutionError(FlowkernelError):
    """An operation on items was refused; nothing was changed."""

    code = "execution_error"
