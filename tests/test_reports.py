"""Compliance reports over a generated history with planted exceptions (tests/test_reports_kit):
every planted exception is reported and nothing else is; every line's evidence verifies with
an independent checker against the named, signed checkpoint; two reports are proven
consistent (independently); the sample is reproducible from the seed alone; the framework
sections (HIPAA PHI access, GDPR Art. 30 and erasures, PCI retention) are what the history
holds; the CLI writes every format."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import math

import pytest

from reports import EXCEPTIONS, Registry, ReportContext, build_report, framework, render
from rules.policy import default_policy
from tests.test_reports_kit import (
    AS_OF,
    PERIOD,
    add_clean_change,
    build_history,
    check_note,
    consistent,
    root_from_multiproof,
)

POLICY = default_policy()
FRAMEWORK_KEYS = ("soc2", "sox", "hipaa", "pci", "gdpr")


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    h = build_history(tmp_path_factory.mktemp("reports"))
    yield h
    h.close()


def context(h, **extra):
    return ReportContext(governance=POLICY.governance, policy_version=POLICY.version,
                         policy_sha256=POLICY.sha256, ledger_dir=h.runner.settings.ledger_dir,
                         trusted=[h.runner.ledger.signer.vkey()], now=AS_OF, **extra)


def report(h, fw, **extra):
    return build_report(h.runner.projector.cursor(), framework(fw), *PERIOD,
                        context=context(h, **extra))


@pytest.fixture(scope="module")
def reports(history):
    return {fw: report(history, fw) for fw in FRAMEWORK_KEYS}


def found(document):
    out: dict[str, set[str]] = {}
    for item in document["exceptions"]["items"]:
        out.setdefault(item["change_id"], set()).add(item["code"])
    return out


@pytest.mark.parametrize("fw", FRAMEWORK_KEYS)
def test_every_planted_exception_is_reported_and_nothing_else(history, reports, fw):
    document = reports[fw]
    expected = history.expected[fw]
    names = {v: k for k, v in history.names.items()}
    population = {line["change_id"] for line in document["population"]["changes"]}
    assert population == set(expected), sorted(names.get(x, x) for x in population ^ set(expected))
    got = {names.get(k, k): v for k, v in found(document).items()}
    want = {names.get(k, k): v for k, v in expected.items() if v}
    assert got == want
    for line in document["population"]["changes"]:
        assert set(line["exceptions"]) == expected[line["change_id"]]


def test_the_soc2_report_has_one_exception_of_every_planted_kind(reports):
    codes = reports["soc2"]["exceptions"]["by_code"]
    assert codes == {"emergency_without_review": 1, "late_approval": 1,
                     "missing_rollback_plan": 1, "missing_test_evidence": 1, "no_approval": 2,
                     "self_approval": 1, "violation": 1}
    assert set(reports["sox"]["exceptions"]["by_code"]) == {"level_below_minimum",
                                                            "emergency_without_review"}
    assert all(item["description"] == EXCEPTIONS[item["code"]]
               for item in reports["soc2"]["exceptions"]["items"])


def test_re_verifying_signatures_finds_the_forged_approval(history):
    document = report(history, "soc2", verify_signatures=True)
    extra = {k: v for k, v in found(document).items()
             if "approval_signature_invalid" in v}
    assert extra == {history.forged_approval: {"approval_signature_invalid"}}


def test_every_line_has_evidence_that_verifies_independently(history, reports):
    document = reports["soc2"]
    vkey = history.runner.ledger.signer.vkey()
    roots = {}
    for cp in document["checkpoints"]:
        size, root = check_note(cp["note"], vkey)  # signed by the ledger key
        assert (size, base64.b64encode(root).decode()) == (cp["size"], cp["root"])
        roots[cp["partition"]] = (size, root)
    entries = document["evidence"]["entries"]
    proofs = document["evidence"]["multiproofs"]
    assert set(proofs) == {str(p) for p in roots}
    proven = set()
    for partition, proof in proofs.items():
        size, root = roots[int(partition)]
        assert proof["tree_size"] == size
        leaves = {i: bytes.fromhex(entries[f"{partition}:{i}"]["leaf_hash"])
                  for i in proof["indexes"]}
        nodes = [base64.b64decode(h) for h in proof["nodes"]]
        assert root_from_multiproof(size, leaves, nodes) == root
        proven |= {f"{partition}:{i}" for i in proof["indexes"]}
        # one proof for all: fewer nodes than the single paths would carry
        assert len(nodes) < sum(size.bit_length() for _ in leaves)
    assert proven == set(entries)  # proofs="all": every cited entry
    for line in document["population"]["changes"]:
        types = {entries[key]["type"] for key in line["evidence"]}
        assert types & {"permit.requested", "override.requested", "execution.reported"}, line
        assert set(line["evidence"]) <= proven
    for item in document["exceptions"]["items"]:
        assert item["evidence"], item
        assert item["evidence"][0] in proven


def test_a_multiproof_with_a_changed_leaf_or_node_fails(history, reports):
    document = reports["soc2"]
    entries = document["evidence"]["entries"]
    partition, proof = next(iter(document["evidence"]["multiproofs"].items()))
    root = base64.b64decode(next(c["root"] for c in document["checkpoints"]
                                 if str(c["partition"]) == partition))
    leaves = {i: bytes.fromhex(entries[f"{partition}:{i}"]["leaf_hash"])
              for i in proof["indexes"]}
    nodes = [base64.b64decode(h) for h in proof["nodes"]]
    size = proof["tree_size"]
    assert root_from_multiproof(size, leaves, nodes) == root
    first = proof["indexes"][0]
    assert root_from_multiproof(size, {**leaves, first: bytes(32)}, nodes) != root
    assert root_from_multiproof(size, leaves, [bytes(32), *nodes[1:]]) != root
    with pytest.raises(AssertionError, match="too short"):
        root_from_multiproof(size, leaves, nodes[:-1])


def test_the_leaf_hash_binds_the_entry_content(history, reports):
    """The evidence's leaf hash is SHA-256(0x00 || the ledger's stored bytes of that event)."""
    from ledger import inclusion_proof

    document = reports["soc2"]
    key = document["population"]["changes"][0]["evidence"][0]
    ref = document["evidence"]["entries"][key]
    partition, index = map(int, key.split(":"))
    proof = inclusion_proof(history.runner.settings.ledger_dir, partition, index)
    data = base64.b64decode(proof["leafData"])
    assert hashlib.sha256(b"\x00" + data).hexdigest() == ref["leaf_hash"]
    assert json.loads(data[46:])["type"] == ref["type"]  # the entry the position names


def test_two_reports_are_proven_consistent_independently(tmp_path):
    """... and a report never reaches past what the projections hold."""
    h = build_history(tmp_path)
    try:
        registry = Registry(tmp_path / "reports")
        first = report(h, "soc2", registry=registry)
        assert first["consistency"]["previous_report"] is None
        later = add_clean_change(h)
        second = report(h, "soc2", registry=registry)
        # The ledger signs more than the projections hold: the report takes the newest
        # checkpoint they have reached (found in the segment), not the latest file.
        projected = dict(h.runner.projector.con.execute(
            "SELECT partition, next_index FROM projection_state").fetchall())
        h.clean(2, "unprojected")
        h.runner.ledger.checkpoint_now()
        third = report(h, "soc2")
    finally:
        h.close()
    assert all(c["size"] <= projected[c["partition"]] for c in third["checkpoints"])
    assert [c["size"] for c in third["checkpoints"]] == [c["size"] for c in
                                                         second["checkpoints"]]
    assert third["population"]["digest"] == second["population"]["digest"]
    assert later in {line["change_id"] for line in second["population"]["changes"]}
    assert second["consistency"]["previous_report"] == first["report_id"]
    assert second["consistency"]["verified"] is True
    vkey = h.runner.ledger.signer.vkey()
    old = {c["partition"]: c for c in first["checkpoints"]}
    grown = 0
    for proof in second["consistency"]["proofs"]:
        size1, root1 = check_note(old[proof["partition"]]["note"], vkey)
        size2, root2 = check_note(proof["checkpoint2"], vkey)
        path = [base64.b64decode(x) for x in proof["proof"]]
        assert (proof["size1"], proof["size2"]) == (size1, size2)
        assert consistent(size1, size2, root1, root2, path)
        if size2 > size1:
            grown += 1
            assert not consistent(size1, size2, root1, root2, path[:-1])  # the checker checks
            assert not consistent(size1, size2, root1, hashlib.sha256(b"x").digest(), path)
    assert grown >= 1
    entries = [json.loads(x) for x in (tmp_path / "reports" / "registry.jsonl").read_text()
               .splitlines()]
    assert [e["report_id"] for e in entries] == [first["report_id"], second["report_id"]]
    stored = json.loads((tmp_path / "reports" / f"{second['report_id']}.json").read_text())
    assert hashlib.sha256((tmp_path / "reports" / f"{second['report_id']}.json").read_bytes()
                          ).hexdigest() == entries[1]["sha256"]
    assert stored["report_id"] == second["report_id"]


def test_the_sample_is_reproducible_from_the_seed_alone(history, reports):
    document = reports["soc2"]
    sample = document["sample"]
    assert sample["size"] == min(25, document["population"]["count"])
    seed_text = "\n".join(f"{c['partition']}:{c['size']}:{c['root']}"
                          for c in document["checkpoints"])
    assert sample["seed"] == hashlib.sha256(seed_text.encode()).hexdigest()[:16]

    def redo(seed, size):  # the documented method, from the population alone
        keys = []
        for line in document["population"]["changes"]:
            w = 3 if line["kind"] == "emergency" else 1  # (no weekend changes in this history)
            u = (int(hashlib.sha256(f"{seed}:{line['change_id']}".encode()).hexdigest(), 16)
                 + 0.5) / 2**256
            keys.append((math.log(u) / w, line["change_id"]))
        return [c for _, c in sorted(keys, key=lambda x: (-x[0], x[1]))[:size]]

    small = report(history, "soc2", seed="auditor-42", sample_size=5, proofs="none")
    assert [s["change_id"] for s in small["sample"]["changes"]] == redo("auditor-42", 5)
    again = report(history, "soc2", seed="auditor-42", sample_size=5, proofs="none")
    assert again["sample"] == small["sample"]
    assert [s["change_id"] for s in sample["changes"]] == redo(sample["seed"], sample["size"])
    sampled = {line["change_id"]: line["sampled"] for line in small["population"]["changes"]
               if line["sampled"]}
    assert sampled == {s["change_id"]: s["rank"] for s in small["sample"]["changes"]}


def test_hipaa_lists_every_access_to_phi(history, reports):
    hipaa = next(v for k, v in history.names.items() if k == "clean HIPAA")
    accesses = reports["hipaa"]["sections"]["phi_access"]
    assert {(a["access"], a["operation"], a["outcome"]) for a in accesses} == {
        ("operation", "deploy", "allowed"), ("operation", "query", "allowed"),
        ("execution", "deploy", "completed")}
    assert {a["permit_id"] for a in accesses} == {hipaa}
    assert all(a["evidence"] for a in accesses)


def test_gdpr_has_the_processing_record_and_the_erasures(reports):
    gdpr = reports["gdpr"]
    processing = gdpr["sections"]["processing"]
    assert len(processing) == 1 and processing[0]["data_categories"] == ["pii"]
    assert processing[0]["retention_days"] == 2555 and processing[0]["purposes"]
    erasures = gdpr["sections"]["erasures"]
    assert [e["subject_ref"] for e in erasures] == [
        hashlib.sha256(b"jane@example.org").hexdigest()[:16]]
    assert "jane@example.org" not in json.dumps(gdpr)


def test_pci_retention_checks_pass(reports):
    checks = reports["pci"]["sections"]["retention"]
    assert checks and all(c["passed"] for c in checks), checks


def test_every_format_renders(reports):
    document = reports["hipaa"]
    html = render(document, "html")
    assert document["report_id"] in html and "Every access to PHI" in html
    assert "<script" not in html
    md = render(document, "md")
    assert "## Exceptions" in md and "emergency_without_review" in md
    rows = list(csv.DictReader(io.StringIO(render(document, "csv"))))
    assert {r["change_id"] for r in rows} == {x["change_id"] for x in
                                             document["population"]["changes"]}
    evidence = list(csv.DictReader(io.StringIO(render(document, "csv", section="evidence"))))
    assert len(evidence) == len(document["evidence"]["entries"])
    assert {e["proven"] for e in evidence} == {"True"}  # proofs="all"
    proofs = list(csv.DictReader(io.StringIO(render(document, "csv", section="multiproofs"))))
    assert sum(int(p["leaves"]) for p in proofs) == len(evidence)
    phi = list(csv.DictReader(io.StringIO(render(document, "csv", section="phi_access"))))
    assert len(phi) == 3
    with pytest.raises(ValueError, match="section"):
        render(document, "csv", section="erasures")
    assert json.loads(render(document, "json"))["report_id"] == document["report_id"]


def test_the_cli_writes_every_format_and_registers_the_reports(tmp_path):
    from streams.cli import main

    h = build_history(tmp_path)
    vkey = h.runner.ledger.signer.vkey()
    h.close()
    base = ["--data-dir", str(tmp_path / "data"), "--key-dir", str(tmp_path / "keys"),
            "--partitions", "3"]
    args = ["report", "sox", "--from", "2030-01-01", "--to", "2030-01-31", "--as-of",
            "2030-02-03"]
    for fmt in ("json", "html", "csv", "md"):
        out = tmp_path / f"sox.{fmt}"
        assert main([*base, *args, "--format", fmt, "--out", str(out)]) == 0
        assert out.stat().st_size > 0
    document = json.loads((tmp_path / "sox.json").read_text())
    assert document["ledger"]["anchored"] and document["ledger"]["trusted_keys"] == [vkey]
    assert found(document) == {k: v for k, v in h.expected["sox"].items() if v}
    registry = Registry(tmp_path / "data" / "reports").entries()
    assert len(registry) == 4 and all(e["framework"] == "sox" for e in registry)
    last = json.loads((tmp_path / "data" / "reports" / f"{registry[-1]['report_id']}.json")
                      .read_text())
    assert last["consistency"]["verified"] is True
    assert main([*base, *args, "--to", "2029-12-01"]) == 2  # an empty period
    assert main([*base, "report", "gdpr", "--from", "2030-13-01"]) == 2


@pytest.mark.parametrize("extra", [{}, {"proofs": "none"}, {"proofs": "tested"},
                                   {"verify_signatures": True}, {"lazy": True},
                                   {"lazy": True, "proofs": "none"},
                                   {"lazy": True, "proofs": "tested"}], ids=str)
def test_the_json_written_is_the_document(history, extra):
    """The lines and entries are written as the JSON text DuckDB built (not encoded again):
    what is written parses back to exactly the document."""
    ctx = context(history, want_json=True, **extra)
    document = build_report(history.runner.projector.cursor(), framework("hipaa"), *PERIOD,
                            context=ctx)
    assert ctx.json_bytes is not None and ctx.json_bytes.endswith(b"}\n")
    assert render(document, "json").encode() == ctx.json_bytes  # before anything reads it
    assert json.loads(ctx.json_bytes) == document
    assert json.loads(render(document, "json")) == document
    plain = build_report(history.runner.projector.cursor(), framework("hipaa"), *PERIOD,
                         context=context(history, seed=document["sample"]["seed"], **{
                             k: v for k, v in extra.items() if k != "lazy"}))
    for key in ("population", "exceptions", "sample", "sections", "evidence"):
        assert document[key] == plain[key]


def test_a_decision_long_before_the_period_still_scopes_its_change(tmp_path):
    """Reports read the decisions of the 30 days before the period by time (row groups
    skipped) and look for any other named decision wherever it is: a change whose decision is
    45 days older than its request is in scope, with its tags and its decision's data classes."""
    from datetime import timedelta

    from tests.test_permit_kit import Clock
    from tests.test_reports_kit import MASTER, T0, History, register_all

    h = History(tmp_path, clock=Clock(T0 - timedelta(days=45)))
    try:
        register_all(h.pipe)
        h.pipe.record(MASTER.registration())
        # a HIPAA-tagged change, and one whose PII only its decision finds (its request names
        # no data class): GDPR scopes it through the decision's minimums and factors
        hipaa_decision = h.certify(3, compliance=["HIPAA"], data_classes=["phi"])
        pii_decision = h.certify(3, data_classes=["pii"])
        h.later(45 * 24 * 60)
        views = {}
        for label, decision, data in (("hipaa", hipaa_decision, ["phi"]),
                                      ("gdpr", pii_decision, None)):
            view = h.approve(h.request(decision, **({"data_classes": data} if data else {})))
            assert h.authorize(view, "deploy")["allowed"]
            h.execute(view["permit_id"], outcome={"services_touched": ["api"]})
            views[label] = view["permit_id"]
        h.checkpoint()
        docs = {fw: build_report(h.runner.projector.cursor(), framework(fw), *PERIOD,
                                 context=context(h)) for fw in FRAMEWORK_KEYS}
        lines = {fw: {line["change_id"]: line for line in d["population"]["changes"]}
                 for fw, d in docs.items()}
        assert set(lines["soc2"]) == set(views.values())
        assert set(lines["hipaa"]) == {views["hipaa"]}
        assert set(lines["gdpr"]) == {views["gdpr"]}
        assert set(lines["sox"]) == set(lines["pci"]) == set()
        assert lines["hipaa"][views["hipaa"]]["frameworks"] == ["HIPAA"]
        assert lines["soc2"][views["gdpr"]]["data_classes"] == ["pii"]
        assert lines["soc2"][views["hipaa"]]["decision_level"] == 3
        assert not any(d["exceptions"]["items"] for d in docs.values())
        # a period longer than a quarter scans every factor instead: the same scope
        long = build_report(h.runner.projector.cursor(), framework("gdpr"),
                            PERIOD[0] - timedelta(days=70), PERIOD[1], context=context(h))
        assert [line["change_id"] for line in long["population"]["changes"]] == [views["gdpr"]]
    finally:
        h.close()


def test_tested_proofs_cover_exactly_the_sample_and_the_exceptions(history):
    document = build_report(history.runner.projector.cursor(), framework("soc2"), *PERIOD,
                            context=context(history, proofs="tested", sample_size=3))
    proven = {f"{p}:{i}" for p, m in document["evidence"]["multiproofs"].items()
              for i in m["indexes"]}
    tested = {key for line in document["population"]["changes"]
              if line["sampled"] is not None or line["exceptions"] for key in line["evidence"]}
    tested |= {key for item in document["exceptions"]["items"] for key in item["evidence"]}
    assert proven == tested
    assert proven < set(document["evidence"]["entries"])  # the clean, unsampled lines: none
