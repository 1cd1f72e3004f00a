"""Write docs/cli.md from the CLI's own help texts (run: .venv/bin/python scripts/gen_cli_reference.py)."""

from __future__ import annotations

from pathlib import Path

import click
from click.testing import CliRunner

from raypipe.cli import main


def _commands(group: click.Group, prefix: list[str]) -> list[list[str]]:
    found = [prefix]
    for name in sorted(group.list_commands(click.Context(group))):
        command = group.get_command(click.Context(group), name)
        if isinstance(command, click.Group):
            found += _commands(command, [*prefix, name])
        elif command is not None:
            found.append([*prefix, name])
    return found


def main_() -> None:
    runner = CliRunner()
    parts = [
        "# `raypipe` CLI reference\n",
        "Generated from the commands' own help by `scripts/gen_cli_reference.py`; do not edit.\n",
    ]
    for path in _commands(main, []):
        result = runner.invoke(main, [*path, "--help"], prog_name="raypipe", terminal_width=100)
        title = " ".join(["raypipe", *path])
        parts.append(f"\n## `{title}`\n\n```text\n{result.output.rstrip()}\n```\n")
    out = Path(__file__).resolve().parent.parent / "docs" / "cli.md"
    out.write_text("".join(parts))
    print(f"wrote {out}")


if __name__ == "__main__":
    main_()
