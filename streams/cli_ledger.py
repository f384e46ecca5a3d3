"""`certify ledger ...` and `certify keys ...`: thin wrappers over ledger/."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:  # filled in when the ledger API lands
    sub.add_parser("ledger", help="verify, checkpoint, prove, export")
    sub.add_parser("keys", help="generate, rotate, show the ledger signing key")
