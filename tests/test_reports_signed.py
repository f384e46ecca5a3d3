"""Signed reports: a report made by the CLI or the server carries an Ed25519 signature by the
ledger's key over its JSON bytes, and a report.generated entry in the ledger (and the `reports`
projection) records that signature. `certify report verify` accepts the file as written and
refuses it with any byte changed; an independent check (cryptography only) agrees."""

from __future__ import annotations

import base64
import json

import duckdb
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ledger import iter_entries
from reports.signature import verify_report
from streams.cli import main
from tests.test_permit_kit import LiveServer
from tests.test_reports_kit import build_history

JANUARY = ["--from", "2030-01-01", "--to", "2030-01-31", "--as-of", "2030-02-03"]


def independent_check(data: bytes) -> bool:
    """The documented rule, with no code of ours: the signed bytes are the file's bytes before
    its last `,"signature":` plus `}`; Ed25519 with the public key in the signature's vkey."""
    data = data.rstrip(b"\n")
    at = data.rindex(b',"signature":{')
    block = json.loads(data[at + len(b',"signature":'):-1])
    public = base64.b64decode(block["vkey"].split("+", 2)[2])[1:]
    try:
        Ed25519PublicKey.from_public_bytes(public).verify(base64.b64decode(block["value"]),
                                                          data[:at] + b"}")
    except InvalidSignature:
        return False
    return True


def recorded(ledger_dir, partitions, report_id):
    return [e for p in range(partitions) for e in iter_entries(ledger_dir, p)
            if e.event["type"] == "report.generated" and e.event["subject"] == report_id]


@pytest.fixture(scope="module")
def cli(tmp_path_factory):
    path = tmp_path_factory.mktemp("signed")
    h = build_history(path)
    vkey = h.runner.ledger.signer.vkey()
    h.close()
    base = ["--data-dir", str(path / "data"), "--key-dir", str(path / "keys"),
            "--partitions", "3"]
    out = path / "sox.json"
    assert main([*base, "report", "sox", *JANUARY, "--format", "json", "--out", str(out)]) == 0
    return {"path": path, "base": base, "out": out, "vkey": vkey, "data": out.read_bytes()}


def test_a_cli_report_is_signed_and_verifies(cli, capsys):
    document = json.loads(cli["data"])
    assert list(document)[-1] == "signature"
    assert document["signature"]["vkey"] == cli["vkey"]
    assert independent_check(cli["data"])
    capsys.readouterr()
    assert main([*cli["base"], "report", "verify", str(cli["out"]), "--json"]) == 0
    verdict = json.loads(capsys.readouterr().out)
    assert verdict["verified"] is True
    assert [c["check"] for c in verdict["checks"]] == ["signature", "evidence", "key", "ledger",
                                                      "checkpoint"]


def test_evidence_that_does_not_lead_to_the_signed_checkpoints_fails(cli):
    from ledger import SigningKey
    from reports.signature import sign

    offline = verify_report(cli["data"], trusted=[cli["vkey"]])  # no ledger: the notes' keys
    assert offline.verified and "proven included" in offline.checks[1]["detail"]
    document = json.loads(cli["data"])
    del document["signature"]
    entry = next(iter(document["evidence"]["entries"].values()))
    entry["leaf_hash"] = "00" * 32
    data = sign(document, SigningKey.generate("forger"))  # a good signature over bad evidence
    checks = {c["check"]: c["passed"] for c in verify_report(data, trusted=[cli["vkey"]]).checks}
    assert checks["signature"] and not checks["evidence"]


@pytest.mark.parametrize("where", ["digest", "middle", "signature", "newline"])
def test_a_report_with_one_changed_byte_fails(cli, tmp_path, where):
    data = bytearray(cli["data"])
    if where == "digest":  # still valid JSON, a different report
        at = data.index(b'"digest":"') + len(b'"digest":"')
        data[at] = ord("0") if data[at] != ord("0") else ord("1")
    elif where == "middle":
        data[len(data) // 2] ^= 0x01
    elif where == "signature":
        at = data.rindex(b'"value":"') + len(b'"value":"') + 3
        data[at] = ord("A") if data[at] != ord("A") else ord("B")
    else:  # a byte added before the signature
        at = data.rindex(b',"signature":{')
        data[at:at] = b" "
    bad = tmp_path / "bad.json"
    bad.write_bytes(bytes(data))
    assert main([*cli["base"], "report", "verify", str(bad)]) == 1
    assert not verify_report(bytes(data), ledger_dir=cli["path"] / "data" / "ledger").verified
    if where != "newline":
        assert not independent_check(bytes(data))


def test_the_report_is_in_the_ledger_and_in_the_projections(cli):
    document = json.loads(cli["data"])
    signature = document["signature"]
    entries = recorded(cli["path"] / "data" / "ledger", 3, document["report_id"])
    assert len(entries) == 1
    entry = entries[0]
    assert (entry.partition, entry.index) == (signature["ledger"]["partition"],
                                              signature["ledger"]["index"])
    payload = entry.event["payload"]
    assert payload["signature"] == signature["value"]
    assert payload["report_sha256"] == signature["sha256"]
    assert payload["key_id"] == signature["key_id"]
    assert (payload["framework"], payload["population"], payload["exceptions"]) == (
        "sox", document["population"]["count"], document["exceptions"]["count"])
    from streams.config import load_settings

    db = load_settings(data_dir=str(cli["path"] / "data"), key_dir=str(cli["path"] / "keys"),
                       partitions=3, broker=None).duckdb_path
    with duckdb.connect(str(db), read_only=True) as con:
        rows = con.execute("SELECT framework, report_sha256, signature, key_id, population, "
                           "partition, ledger_index FROM reports WHERE report_id = ?",
                           [document["report_id"]]).fetchall()
    assert rows == [("sox", signature["sha256"], signature["value"], signature["key_id"],
                     document["population"]["count"], entry.partition, entry.index)]


def test_a_report_the_ledger_does_not_record_fails(cli, tmp_path):
    """Signed by the right key but never recorded (--no-register): the ledger check fails."""
    out = tmp_path / "unrecorded.json"
    assert main([*cli["base"], "report", "sox", *JANUARY, "--format", "json", "--out",
                 str(out), "--no-register"]) == 0
    assert independent_check(out.read_bytes())
    verdict = verify_report(out.read_bytes(), ledger_dir=cli["path"] / "data" / "ledger")
    assert {c["check"]: c["passed"] for c in verdict.checks}["ledger"] is False
    assert main([*cli["base"], "report", "verify", str(out)]) == 1
    # offline, without the ledger, against the pinned key only
    assert main([*cli["base"], "report", "verify", str(out), "--ledger", "none",
                 "--trusted-key", cli["vkey"]]) == 0


def test_a_server_report_is_signed_recorded_and_verifies(tmp_path):
    history = build_history(tmp_path)
    server = LiveServer(history.pipe)
    try:
        status, _, made = server.call("POST", "/reports", {
            "framework": "hipaa", "from": "2030-01-01", "to": "2030-01-31",
            "as_of": "2030-02-03T00:00:00Z"})
        assert status == 201, made
        report_id = made["report"]["report_id"]
        import http.client

        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        connection.request("GET", made["links"]["json"])
        data = connection.getresponse().read()
        connection.close()
        ledger_dir = history.runner.settings.ledger_dir
        verdict = verify_report(data, ledger_dir=ledger_dir,
                                trusted=[history.runner.ledger.signer.vkey()])
        assert verdict.verified, verdict.to_dict()
        assert independent_check(data)
        assert made["report"]["signature"]["value"] == json.loads(data)["signature"]["value"]
        assert len(recorded(ledger_dir, history.runner.ledger.partitions, report_id)) == 1
        history.runner.projector.catch_up()
        count = history.runner.projector.cursor().execute(
            "SELECT count(*) FROM reports WHERE report_id = ?", [report_id]).fetchone()[0]
        assert count == 1
    finally:
        server.stop()
        history.close()
