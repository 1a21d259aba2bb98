"""Request and response bodies of the pipeline endpoints that change a pipeline's shape: a
template's clone, and a stage's removal."""

from __future__ import annotations

from pydantic import Field

from flowkernel.http.bodies import Code, Id, In, Out


class CloneIn(In):
    """Copy a template into a live pipeline of an account."""

    account_id: Id | None = Field(
        None, description="the account of the copy (default: the token's)"
    )
    name: str | None = Field(
        None, min_length=1, max_length=255, description="default: the template's"
    )
    code: Code | None = Field(None, description="default: the template's code")


class StageRemovalOut(Out):
    """What removing a stage moved (or, as a dry run, would move) and where to."""

    pipeline_id: int
    stage: str
    stage_id: int
    target: str | None
    target_id: int | None
    item_ids: list[int]
    count: int
    dry_run: bool
