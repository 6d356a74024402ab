"""The README's command synopsis and `--help` name exactly the options the parser takes."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from hotpatch.cli import build_parser

README = Path(__file__).resolve().parents[2] / "README.md"


def synopsis() -> dict[str, set[str]]:
    """`sweep` -> the options its README line names ("same options as <command>" expanded,
    less those it names after "except")."""
    block = README.read_text(encoding="utf-8").split("## The command", 1)[1]
    block = block.split("```sh", 1)[1].split("```", 1)[0]
    lines: dict[str, set[str]] = {}
    for line in block.strip().splitlines():
        words = line.split()
        command = " ".join(w for w in words[1:3] if not w.startswith(("-", "[", "(")))
        options = set(re.findall(r"(--[a-z][a-z-]*)", line))
        same = re.search(r"same options as ([a-z]+)", line)
        if same is not None:
            excepted = set(re.findall(r"except (--[a-z][a-z-]*)", line))
            options = (options | lines[same.group(1)]) - excepted
        lines[command] = options
    return lines


def parsers() -> dict[str, argparse.ArgumentParser]:
    found: dict[str, argparse.ArgumentParser] = {}

    def walk(parser: argparse.ArgumentParser, prefix: str) -> None:
        subparsers = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subparsers:
            found[prefix.strip()] = parser
        for action in subparsers:
            for name, child in action.choices.items():
                walk(child, f"{prefix} {name}")

    walk(build_parser(), "")
    return found


def options_of(parser: argparse.ArgumentParser) -> set[str]:
    return {
        option
        for action in parser._actions
        for option in action.option_strings
        if option.startswith("--") and option != "--help"
    }


@pytest.mark.parametrize("command", sorted(parsers()))
def test_the_readme_names_every_option_of_each_command_and_no_other(command: str) -> None:
    assert synopsis()[command] == options_of(parsers()[command])


@pytest.mark.parametrize("option", ["--machines", "--seed", "--subscriptions", "--as-of"])
def test_sweep_help_says_which_options_need_the_sandbox(option: str) -> None:
    text = parsers()["sweep"].format_help().split("options:", 1)[1]
    described = text.split(option, 1)[1].split("\n  --", 1)[0]
    assert "--sandbox only" in " ".join(described.split())
