"""The `serve` command, which serves the HTTP API, and the `token` commands for its tokens."""

from __future__ import annotations

import argparse
import importlib
import sys
from datetime import UTC, datetime

from flowkernel.cli.arguments import Commands, add_json_option, duration, moment, positive_int
from flowkernel.cli.connection import connect, kernel
from flowkernel.cli.output import cell, jsonable_dict, print_json, table
from flowkernel.cli.refusals import EPILOG, EXIT_OK, UsageError
from flowkernel.cli.workers import stop_on_signals
from flowkernel.previews import preview


def add_commands(commands: Commands) -> None:
    """Add `serve` and the `token` commands."""
    serve = commands.add_parser(
        "serve",
        help="serve the HTTP API (OpenAPI at /docs) until interrupted",
        description=(
            "Serve the HTTP API on HOST:PORT until interrupted (Ctrl-C or SIGTERM end it "
            "cleanly). Requests authenticate with tokens from `flowkernel token create`; "
            "docs/http.md lists the endpoints."
        ),
        epilog=EPILOG,
    )
    serve.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)"
    )
    serve.add_argument("--port", type=_port, default=8000, help="port to listen on (default: 8000)")
    serve.set_defaults(command=_serve)

    token = commands.add_parser("token", help="create, list and revoke API tokens", epilog=EPILOG)
    sub = token.add_subparsers(title="token commands", required=True, metavar="COMMAND")
    create = sub.add_parser(
        "create",
        help="create a token for a user of an account, or for the system actor; printed once",
    )
    create.add_argument("--name", required=True, help="what the token is for, shown in lists")
    create.add_argument(
        "--account", type=positive_int, metavar="ID", help="the account it is bound to"
    )
    create.add_argument("--user", type=positive_int, metavar="ID", help="the user it acts as")
    create.add_argument(
        "--group",
        dest="groups",
        action="append",
        default=[],
        metavar="NAME",
        help="a group of the user, for access rules (repeatable)",
    )
    create.add_argument(
        "--system",
        action="store_true",
        help="act as the system actor (may fire hidden methods); with --account, only there",
    )
    expiry = create.add_mutually_exclusive_group()
    expiry.add_argument(
        "--expires-in",
        type=duration,
        metavar="SPAN",
        help="expire this long from now: 90s, 30m, 12h, 30d, 2w (default: never)",
    )
    expiry.add_argument(
        "--expires-at",
        type=moment,
        metavar="WHEN",
        help="expire at this ISO 8601 moment, UTC unless it names an offset (default: never)",
    )
    add_json_option(create)
    create.set_defaults(command=_token_create)
    listing = sub.add_parser("list", help="the tokens, never their secrets")
    listing.add_argument(
        "--account", type=positive_int, metavar="ID", help="only tokens of this account"
    )
    listing.add_argument("--all", action="store_true", help="revoked tokens too")
    add_json_option(listing)
    listing.set_defaults(command=_token_list)
    revoke = sub.add_parser("revoke", help="revoke a token by id; servers refuse it within 5 s")
    revoke.add_argument("id", type=positive_int, metavar="ID")
    revoke.set_defaults(command=_token_revoke)


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port number 0-65535, not {preview(text)}")
    return value


def _serve(args: argparse.Namespace) -> int:
    # imported here: only this command needs the web stack
    uvicorn = importlib.import_module("uvicorn")
    create_app = importlib.import_module("flowkernel.http").create_app
    # uvicorn stops on SIGINT and SIGTERM, then raises the signal again to its previous
    # handler: ours, so that a requested stop ends with status 0 like the workers do
    with kernel(args) as fk, stop_on_signals():
        uvicorn.run(create_app(fk), host=args.host, port=args.port, log_level="info")
    return EXIT_OK


def _token_create(args: argparse.Namespace) -> int:
    from flowkernel.http.tokens import ApiTokens

    if not args.system and (args.account is None or args.user is None):
        raise UsageError("a user token needs --account ID and --user ID (or pass --system)")
    if args.system and (args.user is not None or args.groups):
        raise UsageError("a --system token acts as the system actor: drop --user and --group")
    engine = connect(args)
    try:
        issued = ApiTokens(engine).issue(
            args.name,
            account_id=args.account,
            user_id=args.user,
            groups=args.groups,
            system=args.system,
            expires_at=args.expires_at,
            expires_in=args.expires_in,
        )
    finally:
        engine.dispose()
    if args.json:
        print_json({"token": issued.token, **jsonable_dict(issued.info)})
        return EXIT_OK
    info = issued.info
    who = "system actor" if info.is_system else f"user {info.user_id}"
    print(issued.token)
    print(
        f"token {info.id} ({info.prefix}) {preview(info.name)}: {who}, account "
        f"{cell(info.account_id) if info.account_id is not None else 'every account'}, "
        f"{f'expires {info.expires_at:%Y-%m-%d %H:%M:%S}Z' if info.expires_at else 'never expires'}"
        "; shown only now: store it",
        file=sys.stderr,
    )
    return EXIT_OK


def _token_list(args: argparse.Namespace) -> int:
    from flowkernel.http.tokens import ApiTokens

    engine = connect(args)
    try:
        found = ApiTokens(engine).list(account_id=args.account, include_revoked=args.all)
    finally:
        engine.dispose()
    if args.json:
        print_json(found)
        return EXIT_OK
    now = datetime.now(UTC)
    print(
        table(
            (
                "id",
                "prefix",
                "name",
                "account",
                "acts as",
                "groups",
                "last used",
                "expires",
                "revoked",
            ),
            [
                (
                    t.id,
                    t.prefix,
                    t.name,
                    t.account_id,
                    "system" if t.is_system else f"user {t.user_id}",
                    ", ".join(t.groups) or None,
                    f"{t.last_used_at:%Y-%m-%d %H:%M}" if t.last_used_at else None,
                    _expiry(t.expires_at, now),
                    f"{t.revoked_at:%Y-%m-%d %H:%M}" if t.revoked_at else None,
                )
                for t in found
            ],
        )
    )
    return EXIT_OK


def _token_revoke(args: argparse.Namespace) -> int:
    from flowkernel.http.tokens import ApiTokens

    engine = connect(args)
    try:
        info = ApiTokens(engine).revoke(args.id)
    finally:
        engine.dispose()
    print(f"revoked token {info.id} ({info.prefix}) {preview(info.name)}")
    return EXIT_OK


def _expiry(expires_at: datetime | None, now: datetime) -> str | None:
    if expires_at is None:
        return None
    return f"{expires_at:%Y-%m-%d %H:%M}{' (expired)' if expires_at <= now else ''}"
