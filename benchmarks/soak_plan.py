"""The soak run's setup: what it builds, and the plan its workers and its check share."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Final

from flowkernel import (
    Actor,
    ColumnSpec,
    Flowkernel,
    StageSpec,
)

ACCOUNT: Final = 1
STAGES: Final = ("s0", "s1", "s2", "s3")
SLA_STAGE: Final = "s3"
LAMP: Final = "soak_lamp"
WATCHER: Final = 900
SHARED: Final = "shared"
OPERATIONS: Final = (
    ("move", 30),
    ("batch", 6),
    ("replay", 6),
    ("execute", 20),
    ("value", 18),
    ("assign", 6),
    ("reorder", 6),
    ("sla", 4),
    ("deliver", 6),
)
"""Operations a worker picks from, with their weights."""


def writer_column(index: int) -> str:
    """The custom column only worker `index` writes."""
    return f"w{index}"


@dataclass(frozen=True)
class Plan:
    """What the workers share: the database, the definitions and items, the time."""

    url: str
    folder: str
    workers: int
    seconds: float
    pipeline_id: int
    stage_ids: dict[str, int]
    items: list[int]
    lamps: list[int]
    seed: int = 0

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self)))

    @classmethod
    def load(cls, path: Path) -> Plan:
        return cls(**json.loads(path.read_text()))

    def journal(self, name: str) -> Path:
        return Path(self.folder) / f"{name}.jsonl"


def prepare(
    fk: Flowkernel,
    *,
    url: str,
    folder: str,
    workers: int,
    seconds: float,
    items: int,
    lamps: int,
    seed: int = 0,
) -> Plan:
    """Define the soak's pipeline and kernel class and place its items."""
    admin = Actor.user(1, ACCOUNT)
    info = fk.pipelines.create_pipeline(
        "Soak",
        admin,
        code="soak",
        stages=[
            StageSpec(code.upper(), code=code, sla_days=1 if code == SLA_STAGE else None)
            for code in STAGES
        ],
        columns=[ColumnSpec(SHARED), *(ColumnSpec(writer_column(w)) for w in range(workers))],
    )
    fk.pipelines.add_automation(info.id, "stage_entered", "soak.entered", admin)
    fk.pipelines.add_automation(info.id, "sla_breached", "soak.late", admin)
    d = fk.definitions
    d.add_class(LAMP, "Soak lamp")
    d.add_state(LAMP, "created", "off", "Off")
    d.add_state(LAMP, "enabled", "on", "On")
    d.add_method(LAMP, "off", "enable", code="switch_on")
    d.add_method(LAMP, "on", "disable", code="switch_off")
    d.add_method(LAMP, None, "edit")
    d.add_transition(LAMP, "off", "switch_on", "on")
    d.add_transition(LAMP, "on", "switch_off", "off")
    placed = [fk.place(info.id, "deal", n, admin).id for n in range(items)]
    for item in placed[::3]:
        fk.items.watch(item, WATCHER, admin)
    lit = [fk.place(LAMP, "device", n, admin).id for n in range(lamps)]
    compiled = fk.compiled(info.id, ACCOUNT)
    return Plan(
        url=url,
        folder=folder,
        workers=workers,
        seconds=seconds,
        pipeline_id=info.id,
        stage_ids={code: compiled.states[code].id for code in STAGES},
        items=placed,
        lamps=lit,
        seed=seed,
    )
