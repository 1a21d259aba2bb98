"""Arguments the commands share: the acting actor, class and pipeline references, numbers,
COLUMN=VALUE pairs and input files."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Final, TypeAlias

from flowkernel.actors import Actor
from flowkernel.cli.parser import Parser
from flowkernel.cli.refusals import UsageError
from flowkernel.errors import InvalidArgument
from flowkernel.previews import preview

if TYPE_CHECKING:
    from flowkernel.kernel import Flowkernel

ACTING_ENV: Final = "FLOWKERNEL_AS"
"""The environment variable a script sets to say who acts when a command has no `--as`."""

Commands: TypeAlias = "argparse._SubParsersAction[Parser]"
"""The `commands` of `build_parser`, which each command family adds its commands to."""


def add_actor_options(parser: argparse.ArgumentParser) -> None:
    """Add `--account`, `--as` and `--group`, which `actor_of` reads."""
    parser.add_argument(
        "--account",
        type=positive_int,
        metavar="ID",
        help="the tenant account of the actor (default: none, the platform)",
    )
    parser.add_argument(
        "--as",
        dest="actor",
        type=_actor_arg,
        metavar="ACTOR",
        help=f"who acts: a user id, or system for the system actor; required unless "
        f"${ACTING_ENV} says it",
    )
    parser.add_argument(
        "--group",
        dest="groups",
        action="append",
        default=[],
        metavar="NAME",
        help="a group of the acting user, for access rules (repeatable)",
    )


def add_json_option(parser: argparse.ArgumentParser, text: str = "print JSON") -> None:
    """Add `--json`."""
    parser.add_argument("--json", action="store_true", help=text)


def _actor_arg(text: str) -> str | int:
    if text == "system":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a user id or 'system', not {preview(text)}"
        ) from None


def positive_int(text: str) -> int:
    """An argument type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, not {preview(text)}")
    return value


_UNITS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def duration(text: str) -> timedelta:
    """An argument type: a span such as `90s`, `30m`, `12h`, `30d` or `2w`."""
    number, unit = text.strip()[:-1], text.strip()[-1:].lower()
    if unit in _UNITS and number.isdecimal() and 0 < int(number) <= 10**9:
        return timedelta(seconds=int(number) * _UNITS[unit])
    raise argparse.ArgumentTypeError(
        f"expected a span such as 90s, 30m, 12h, 30d or 2w, not {preview(text)}"
    )


def moment(text: str) -> datetime:
    """An argument type: an ISO 8601 date or date and time (UTC unless it names an offset)."""
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected an ISO 8601 date or time such as 2027-01-31 or 2027-01-31T18:00:00Z, "
            f"not {preview(text)}"
        ) from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def positive_float(text: str) -> float:
    """An argument type: a finite number of seconds > 0."""
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number of seconds > 0, not {preview(text)}")
    return value


def actor_of(args: argparse.Namespace) -> Actor:
    """The actor of `--as` (else `$FLOWKERNEL_AS`) and `--account`; one of them must say who
    acts, so nothing runs as the system actor unless asked to."""
    acting = _acting(args)
    if isinstance(acting, int):
        return Actor.user(acting, args.account, tuple(args.groups))
    if args.groups:
        raise UsageError("--group applies to a user: pass --as USER_ID with it")
    return Actor.system(args.account)


def _acting(args: argparse.Namespace) -> str | int:
    if args.actor is not None:
        acting: str | int = args.actor
        return acting
    named = os.environ.get(ACTING_ENV, "").strip()
    if not named:
        raise UsageError(
            "say who acts: --as USER_ID (with --account ID for a tenant's user) or --as system; "
            f"a script may set ${ACTING_ENV} instead"
        )
    try:
        return _actor_arg(named)
    except argparse.ArgumentTypeError as exc:
        raise UsageError(f"${ACTING_ENV}: {exc}") from None


def acted_as(actor: Actor) -> str:
    """Who acted, as the output of a command that changed data says it: `as system`,
    `as user 7 of account 1`."""
    who = "system" if actor.is_system else f"user {actor.user_id}"
    if actor.account_id is not None:
        who += f" of account {actor.account_id}"
    if actor.groups:
        who += f" (groups {', '.join(sorted(actor.groups))})"
    return f"as {who}"


def acting_options(args: argparse.Namespace) -> str:
    """The actor options the command was given (`--account 1 --as 7 --group ops`), to repeat
    in a suggested command."""
    parts = [] if getattr(args, "account", None) is None else [f"--account {args.account}"]
    if getattr(args, "actor", None) is not None:
        parts.append(f"--as {args.actor}")
    parts.extend(f"--group {group}" for group in getattr(args, "groups", None) or ())
    return " ".join(parts)


def code_or_id(text: str) -> str | int:
    """A code, or an id when the text is a number."""
    return int(text) if text.isascii() and text.isdigit() else text


def pipeline_id(fk: Flowkernel, text: str, actor: Actor) -> int:
    """The id of the pipeline named by id or code among those the actor reads; a code of
    several is a usage error (pass the id or --account)."""
    try:
        return fk.pipelines.pipeline_id(code_or_id(text), actor)
    except InvalidArgument as exc:
        if getattr(exc, "pipeline", None) is None:
            raise
        raise UsageError(exc.message.replace("or the account", "or --account")) from None


def assignments(texts: Sequence[str], option: str = "COLUMN=VALUE") -> dict[str, object]:
    """The values of NAME=VALUE texts, by name; `option` names the form in the error."""
    values: dict[str, object] = {}
    for text in texts:
        name, sep, value = text.partition("=")
        if not sep or not name:
            raise UsageError(f"expected {option}, not {preview(text)}")
        values[name] = value
    return values


def read(path: str) -> str:
    """The text of the file `path`; `-` reads standard input."""
    if path == "-":
        return sys.stdin.read()
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise UsageError(f"cannot read {path}: not UTF-8 text ({exc.reason})") from exc
