"""Multiproofs (reports.evidence.Prover.multiproof, reports.multiproof) rebuild the signed root
with no more nodes than the single RFC 9162 paths (Prover.path), for trees of every shape, as an
independent checker does; a damaged stored node is caught by the one root comparison."""

from __future__ import annotations

import base64
import random

import pytest

from ledger import Ledger, SigningKey
from ledger.layout import partition_dir
from ledger.proofs import latest_checkpoint
from ledger.sidefiles import level_path
from reports.evidence import EvidenceError, Prover, verify_checkpoint


@pytest.fixture(scope="module")
def ledger_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("proofs") / "ledger"
    with Ledger.open(path, signer=SigningKey.generate("t"), partitions=1, origin="t") as ledger:
        for i in range(1336):  # not a power of two: a ragged right edge
            ledger.append(0, {"event_id": f"e{i}", "type": "t", "schema_version": 1,
                              "occurred_at": "2030-01-01T00:00:00.000000Z", "producer": "t",
                              "subject": "s", "correlation_id": None, "causation_id": None,
                              "payload": {"i": i}})
        ledger.checkpoint_now()
    return path


def prover(ledger_dir):
    return Prover(ledger_dir, verify_checkpoint(ledger_dir, 0, latest_checkpoint(ledger_dir, 0)))


def test_a_damaged_node_is_caught(ledger_dir, tmp_path):
    import shutil

    copy = tmp_path / "ledger"
    shutil.copytree(ledger_dir, copy)
    level = level_path(partition_dir(copy, 0) / "index", 3)
    data = bytearray(level.read_bytes())
    data[1 * 32] ^= 0xFF  # the stored node over leaves 8..15
    level.write_bytes(bytes(data))
    p = prover(copy)
    try:
        with pytest.raises(EvidenceError, match="root"):
            p.multiproof([3])  # its path takes that node as a sibling
        with pytest.raises(EvidenceError, match="root"):
            p.multiproof([3, 700, 1335])
    finally:
        p.close()


@pytest.mark.parametrize("pick", ["all", "first-last", "random", "dense-run", "one"])
def test_a_multiproof_rebuilds_the_signed_root_with_fewer_nodes(ledger_dir, pick):
    from reports.multiproof import root
    from tests.test_reports_kit import root_from_multiproof

    p = prover(ledger_dir)
    size = p.checkpoint.size
    wanted = sorted(set({"all": range(size), "first-last": [0, size - 1],
                         "random": random.Random(7).sample(range(size), 97),
                         "dense-run": range(1000, size), "one": [size // 3]}[pick]))
    try:
        nodes = [base64.b64decode(h) for h in p.multiproof(wanted)]
        leaves = {i: p.leaf(i) for i in wanted}
        assert root(size, leaves, nodes) == p.checkpoint.root
        assert root_from_multiproof(size, leaves, nodes) == p.checkpoint.root  # independent
        assert len(nodes) <= sum(len(p.path(i)) for i in wanted)
    finally:
        p.close()


def test_a_multiproof_that_does_not_fit_is_refused(ledger_dir):
    from reports.multiproof import MultiproofError, root

    p = prover(ledger_dir)
    try:
        size, wanted = p.checkpoint.size, [3, 700, 1335]
        nodes = [base64.b64decode(h) for h in p.multiproof(wanted)]
        leaves = {i: p.leaf(i) for i in wanted}
        with pytest.raises(MultiproofError, match="short"):
            root(size, leaves, nodes[:-1])
        with pytest.raises(MultiproofError, match="long"):
            root(size, leaves, [*nodes, nodes[0]])
        assert root(size, {**leaves, 3: bytes(32)}, nodes) != p.checkpoint.root
    finally:
        p.close()
