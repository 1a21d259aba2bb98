"""The CLI reference as Markdown, generated from the `flowkernel` argument parser itself.

Regenerate the checked-in page with
`python -m flowkernel.cli.reference > docs/cli-reference.md`; a test
fails when the page and the parser disagree.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from typing import Final

WIDTH: Final = 100
"""Usage lines are wrapped at this width, whatever the terminal, so the output is stable."""

REGENERATE: Final = "python -m flowkernel.cli.reference > docs/cli-reference.md"


def render(parser: argparse.ArgumentParser) -> str:
    """Markdown for `parser` and every subcommand below it: usage, description, options."""
    out = [
        f"# `{parser.prog}` command reference",
        "",
        f"<!-- Generated from the argument parser by `{REGENERATE}`; do not edit. -->",
        "",
    ]
    commands = list(_walk(parser))
    if len(commands) > 1:
        out.append("Commands:")
        out.append("")
        for name, _, summary in commands[1:]:
            depth = len(name.split()) - len(parser.prog.split()) - 1
            suffix = f": {summary}" if summary else ""
            out.append(f"{'  ' * depth}- [`{name}`](#{_anchor(name)}){suffix}")
        out.append("")
    root_epilog = parser.epilog
    for name, sub, summary in commands:
        out.extend(_section(name, sub, summary, root_epilog if sub is not parser else None))
    return "\n".join(out).rstrip("\n") + "\n"


def _walk(
    parser: argparse.ArgumentParser, summary: str | None = None
) -> Iterator[tuple[str, argparse.ArgumentParser, str | None]]:
    """(command line, parser, one-line help) of `parser` and its subcommands, depth first."""
    yield parser.prog, parser, summary
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help for choice in action._choices_actions}
            seen: set[int] = set()
            for name, sub in action.choices.items():
                if id(sub) in seen:  # an alias of a command already listed
                    continue
                seen.add(id(sub))
                yield from _walk(sub, helps.get(name))


def _section(
    name: str,
    parser: argparse.ArgumentParser,
    summary: str | None,
    skip_epilog: str | None,
) -> list[str]:
    out = [f"## `{name}`", ""]
    text = parser.description or summary
    if text:
        out += [_sentence(text), ""]
    formatter = argparse.HelpFormatter(prog=parser.prog, width=WIDTH)
    formatter.add_usage(parser.usage, parser._actions, parser._mutually_exclusive_groups)
    out += ["```text", formatter.format_help().strip("\n"), "```", ""]
    rows = [
        (_invocation(action), _help(parser, action))
        for action in parser._actions
        if action.help != argparse.SUPPRESS
        and not isinstance(action, argparse._HelpAction | argparse._SubParsersAction)
    ]
    if rows:
        out += ["| argument | meaning |", "|---|---|"]
        out += [f"| {_cell(f'`{arg}`')} | {_cell(meaning)} |" for arg, meaning in rows]
        out.append("")
    if parser.epilog and parser.epilog != skip_epilog:
        out += ["```text", parser.epilog.strip("\n"), "```", ""]
    return out


def _invocation(action: argparse.Action) -> str:
    """How an argument is written: `--format {yaml,json}`, `--counts`, `CODE`."""
    if action.metavar is not None:
        metavar = " ".join(action.metavar) if isinstance(action.metavar, tuple) else action.metavar
    elif action.choices is not None:
        metavar = "{" + ",".join(str(c) for c in action.choices) + "}"
    else:
        metavar = action.dest.upper() if action.option_strings else action.dest
    if not action.option_strings:
        return metavar
    flags = ", ".join(action.option_strings)
    return flags if action.nargs == 0 else f"{flags} {metavar}"


def _help(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    """The argument's help with argparse's `%(default)s`-style fields filled in."""
    text = action.help or ""
    if "%" in text:
        params: dict[str, object] = {**vars(action), "prog": parser.prog}
        if action.choices is not None:
            params["choices"] = ", ".join(str(c) for c in action.choices)
        text = text % params
    if action.choices is not None and action.metavar is not None:
        text += f" (one of: {', '.join(str(c) for c in action.choices)})"
    if not action.option_strings and action.nargs == "?":
        text += f" (optional; default: {action.default})"
    return _sentence(text) if text else ""


def _sentence(text: str) -> str:
    return " ".join(text.split())


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _anchor(name: str) -> str:
    """GitHub's heading anchor for a `## \\`name\\`` heading."""
    return "".join(c for c in name.lower() if c.isalnum() or c in " -_").replace(" ", "-")


def main() -> int:
    """Print the reference of the `flowkernel` command."""
    from flowkernel.cli import build_parser  # the command's module imports the whole engine

    sys.stdout.write(render(build_parser()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
