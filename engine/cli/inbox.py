"""`inbox` and `watch`: users watching items, and their notifications."""

from __future__ import annotations

import argparse

from flowkernel.cli.arguments import (
    Commands,
    acted_as,
    actor_of,
    add_actor_options,
    add_json_option,
    positive_int,
)
from flowkernel.cli.connection import kernel
from flowkernel.cli.output import print_json, table
from flowkernel.cli.refusals import EXIT_OK, UsageError


def add_commands(commands: Commands) -> None:
    """Add `watch` and `inbox`."""
    watch = commands.add_parser(
        "watch",
        help="make a user watch an item (--stop: no longer); without USER, list its watchers",
    )
    watch.add_argument("item", type=positive_int, metavar="ITEM")
    watch.add_argument("user", type=positive_int, nargs="?", metavar="USER")
    watch.add_argument("--stop", action="store_true", help="stop USER watching the item")
    add_actor_options(watch)
    add_json_option(watch)
    watch.set_defaults(command=_watch)

    inbox = commands.add_parser(
        "inbox", help="a user's notifications of watched items, newest first"
    )
    inbox.add_argument("user", type=positive_int, metavar="USER")
    inbox.add_argument("--unread", action="store_true", help="only the unread ones")
    inbox.add_argument("--limit", type=positive_int, default=100, metavar="N", help="at most N")
    inbox.add_argument(
        "--mark-read",
        nargs="*",
        type=positive_int,
        metavar="ENTRY",
        help="mark these entries read (none named: all of them)",
    )
    add_actor_options(inbox)
    add_json_option(inbox)
    inbox.set_defaults(command=_inbox)


def _watch(args: argparse.Namespace) -> int:
    actor = actor_of(args)
    with kernel(args) as fk:
        if args.user is None:
            if args.stop:
                raise UsageError("--stop needs the USER who stops watching")
            found = fk.items.watchers(args.item, actor)
            if args.json:
                print_json(found)
            else:
                print(" ".join(map(str, found)) or "(no watchers)")
            return EXIT_OK
        change = fk.items.unwatch if args.stop else fk.items.watch
        changed = change(args.item, args.user, actor)
    if args.json:
        print_json({"user_id": args.user, "watching": not args.stop, "changed": changed})
    else:
        state = "no longer watches" if args.stop else "watches"
        same = "" if changed else " (already so)"
        print(f"user {args.user} {state} item {args.item}{same}, {acted_as(actor)}")
    return EXIT_OK


def _inbox(args: argparse.Namespace) -> int:
    actor = actor_of(args)
    with kernel(args) as fk:
        marked = None
        if args.mark_read is not None:
            marked = fk.items.mark_read(args.user, actor, args.mark_read or None)
        found = fk.items.inbox(args.user, actor, unread_only=args.unread, limit=args.limit)
    if args.json:
        print_json(found if marked is None else {"marked": marked, "entries": found})
        return EXIT_OK
    if marked is not None:
        print(f"marked {marked} notification(s) read, {acted_as(actor)}")
    print(
        table(
            ("id", "item", "message", "at", "read"),
            [
                (e.id, e.item_id, e.message, f"{e.created_at:%Y-%m-%d %H:%M:%S}", e.read_at)
                for e in found
            ],
        )
    )
    return EXIT_OK
