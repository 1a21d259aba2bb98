"""`events dead` and `events retry`: list the events that failed every attempt, and requeue
them for delivery (as the system actor)."""

from __future__ import annotations

import argparse

from flowkernel.cli.arguments import (
    Commands,
    actor_of,
    add_actor_options,
    add_json_option,
    positive_int,
)
from flowkernel.cli.connection import kernel
from flowkernel.cli.output import print_json, table
from flowkernel.cli.refusals import EXIT_OK


def add_commands(events: Commands) -> None:
    """Add `dead` and `retry` to the `events` commands."""
    dead = events.add_parser(
        "dead", help="the events that failed every attempt and are no longer retried"
    )
    dead.add_argument("--item", type=positive_int, metavar="ID", help="only this item's")
    dead.add_argument("--event-name", metavar="NAME", help="only events of this name")
    dead.add_argument("--limit", type=positive_int, default=100, metavar="N", help="at most N")
    add_actor_options(dead)
    add_json_option(dead)
    dead.set_defaults(command=_dead)

    retry = events.add_parser(
        "retry", help="requeue dead events for delivery: these ids, an item's, or every one"
    )
    retry.add_argument("event_ids", nargs="*", metavar="EVENT_ID")
    retry.add_argument("--item", type=positive_int, metavar="ID", help="only this item's")
    add_actor_options(retry)
    add_json_option(retry)
    retry.set_defaults(command=_retry)


def _dead(args: argparse.Namespace) -> int:
    with kernel(args) as fk:
        found = fk.delivery.dead_letters(
            actor_of(args), item_id=args.item, event_name=args.event_name, limit=args.limit
        )
    if args.json:
        print_json(found)
        return EXIT_OK
    print(
        table(
            ("event id", "name", "item", "attempts", "last error"),
            [(d.event_id, d.event_name, d.item_id, d.attempts, d.last_error) for d in found],
        )
    )
    return EXIT_OK


def _retry(args: argparse.Namespace) -> int:
    actor = actor_of(args)
    with kernel(args) as fk:
        count = fk.delivery.retry_dead(actor, args.event_ids or None, item_id=args.item)
    if args.json:
        print_json({"requeued": count})
    else:
        print(f"requeued {count} dead event(s) for delivery")
    return EXIT_OK
