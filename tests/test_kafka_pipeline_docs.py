"""docs/kafka-mode.md says what the code does: every flag and variable of Kafka mode is listed,
and every variable listed is one the code reads. No broker needed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from streams.cli import build_parser
from streams.topics import SPECS, TopicNames

ROOT = Path(__file__).resolve().parent.parent
DOC = (ROOT / "docs" / "kafka-mode.md").read_text()
SOURCES = "\n".join(p.read_text() for p in (ROOT / "streams").glob("*.py"))


def _flags(command: list[str]) -> set[str]:
    parser = build_parser()
    sub = parser._subparsers._group_actions[0]  # noqa: SLF001 - argparse has no public walk
    for name in command:
        parser = sub.choices[name]
        if parser._subparsers is not None:  # noqa: SLF001
            sub = parser._subparsers._group_actions[0]  # noqa: SLF001
    return {o for a in parser._actions for o in a.option_strings  # noqa: SLF001
            if o.startswith("--") and o != "--help"}


@pytest.mark.parametrize("command", [["worker"], ["produce"], ["topics", "create"]])
def test_every_flag_of_the_command_is_documented(command):
    missing = {flag for flag in _flags(command) if f"`{flag}" not in DOC}
    assert not missing


def test_every_documented_variable_is_read_by_the_code():
    variables = set(re.findall(r"`(CERTIFY_[A-Z_]+)", DOC)) - {"CERTIFY_KAFKA_BOOTSTRAP"}
    assert variables
    assert {v for v in variables if f'"{v}"' not in SOURCES} == set()


def test_every_topic_is_documented():
    for name in TopicNames().all():
        assert f"`{name}`" in DOC
    assert len(SPECS) == DOC.count("| `certify.")
