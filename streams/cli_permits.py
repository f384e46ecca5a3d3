"""Subcommands of `certify` for this area (filled in by its issue)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Adds this area's subcommands; none yet."""
