"""The `pipeline forecast` command: weighted value by close period, conversion, time in stage
and idle items of a pipeline, beside the previous period's."""

from __future__ import annotations

import argparse
from decimal import Decimal
from typing import Any

from flowkernel.cli.arguments import (
    actor_of,
    add_actor_options,
    add_json_option,
    moment,
    pipeline_id,
)
from flowkernel.cli.connection import kernel
from flowkernel.cli.output import print_json
from flowkernel.cli.refusals import EPILOG, EXIT_OK, UsageError


def add_commands(sub: Any) -> None:
    """Add `pipeline forecast` to the `pipeline` subcommands."""
    forecast = sub.add_parser(
        "forecast",
        help="weighted value by expected close period, conversion and time per stage, idle "
        "items; beside the previous period's",
        epilog=EPILOG,
    )
    forecast.add_argument("pipeline", metavar="PIPELINE", help="pipeline id or code")
    forecast.add_argument(
        "--close-column", metavar="COLUMN", help="the date column of the expected close"
    )
    forecast.add_argument(
        "--period", choices=("week", "month", "quarter"), default="month", help="default: month"
    )
    forecast.add_argument(
        "--value-column",
        metavar="COLUMN",
        help="the number column to sum (default: the pipeline's first one; '' for none)",
    )
    forecast.add_argument(
        "--idle-days",
        action="append",
        metavar="DAYS|STAGE=DAYS",
        help="an item is idle after this many days without a move or a call: for every open "
        "stage, or for one stage (repeatable)",
    )
    forecast.add_argument("--as-of", type=moment, metavar="WHEN", help="default: now")
    add_actor_options(forecast)
    add_json_option(forecast)
    forecast.set_defaults(command=_forecast)


def _idle_days(given: list[str] | None) -> int | dict[str, int] | None:
    if not given:
        return None
    if len(given) == 1 and "=" not in given[0]:
        return _days(given[0])
    by_stage: dict[str, int] = {}
    for entry in given:
        code, sep, days = entry.partition("=")
        if not sep:
            raise UsageError(
                f"--idle-days {entry}: give one number for every stage, or STAGE=DAYS each"
            )
        by_stage[code] = _days(days)
    return by_stage


def _days(text: str) -> int:
    if not text.strip().isdecimal():
        raise UsageError(f"--idle-days: expected whole days, not {text!r}")
    return int(text)


def _forecast(args: argparse.Namespace) -> int:
    from flowkernel.runtime.board_results import FIRST_NUMBER_COLUMN

    actor = actor_of(args)
    column = FIRST_NUMBER_COLUMN if args.value_column is None else args.value_column or None
    idle = _idle_days(args.idle_days)
    with kernel(args) as fk:
        pipeline = pipeline_id(fk, args.pipeline, actor)
        found = fk.queries.forecast(
            pipeline,
            actor,
            close_column=args.close_column,
            period=args.period,
            value_column=column,
            idle_days=idle,
            as_of=args.as_of,
        )
    if args.json:
        print_json(found)
        return EXIT_OK
    before = found.previous
    print(
        f"pipeline {found.pipeline_id}: as of {found.as_of:%Y-%m-%d %H:%M} UTC, flows over the "
        f"{found.period} since {found.window_start:%Y-%m-%d %H:%M}"
    )
    print(
        f"open: {found.open_count} item(s), value {_num(found.open_value)}, weighted "
        f"{_num(found.weighted_value)}"
        + (
            f" (previous: {before.open_count}, {_num(before.open_value)}, "
            f"{_num(before.weighted_value)})"
            if before is not None
            else ""
        )
    )
    print("")
    print(f"{'close period':<14} {'items':>6} {'value':>14} {'weighted':>14}")
    for p in found.by_period:
        print(
            f"{p.period or '(no date)':<14} {p.count:>6} {_num(p.value):>14} "
            f"{_num(p.weighted_value):>14}"
        )
    print("")
    print(
        f"{'stage':<16} {'now':>5} {'entered':>8} {'conversion':>16} {'p50 days':>14} "
        f"{'p90 days':>14} {'idle':>10}"
    )
    previous = {s.stage_id: s for s in before.stages} if before is not None else {}
    for s in found.stages:
        was = previous.get(s.stage_id)
        print(
            f"{s.code:<16} {s.in_stage:>5} {s.entered:>8} "
            f"{_pair(_rate(s.conversion), _rate(was.conversion) if was else None):>16} "
            f"{_pair(_day(s.p50_days), _day(was.p50_days) if was else None):>14} "
            f"{_pair(_day(s.p90_days), _day(was.p90_days) if was else None):>14} "
            f"{_idle(s.idle, s.idle_days):>10}"
        )
    print("\n(previous period in brackets)")
    return EXIT_OK


def _num(value: Decimal | None) -> str:
    return "-" if value is None else f"{value.normalize():,f}"


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def _day(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _pair(now: str, before: str | None) -> str:
    return now if before is None else f"{now} ({before})"


def _idle(count: int | None, days: int | None) -> str:
    return "-" if count is None else f"{count} >{days}d"
