"""The dashboard's HTTP side on the real aiohttp app (streams.web.create_app) over the generated
history: reports made and downloaded through the server, the audit log with proofs that verify
independently, filters, errors, and what the routes answer without a data source."""

from __future__ import annotations

import base64
import csv
import hashlib
import http.client
import io
import json

import pytest

from tests.test_permit_kit import LiveServer, new_pipeline
from tests.test_reports_kit import build_history, check_note, root_from_path

JANUARY = {"from": "2030-01-01", "to": "2030-01-31", "as_of": "2030-02-03T00:00:00Z"}


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    history = build_history(tmp_path_factory.mktemp("dashboard-api"))
    server = LiveServer(history.pipe)
    server.history = history
    yield server
    server.stop()
    history.close()


def raw_get(live, path):
    connection = http.client.HTTPConnection("127.0.0.1", live.port, timeout=10)
    connection.request("GET", path)
    response = connection.getresponse()
    body = response.read()
    connection.close()
    return response.status, dict(response.getheaders()), body


def test_a_report_made_by_the_server_and_downloaded_in_every_format(live):
    status, _, made = live.call("POST", "/reports", {"framework": "soc2", **JANUARY})
    assert status == 201, made
    report_id = made["report"]["report_id"]
    assert made["links"]["csv"] == f"/reports/{report_id}.csv"
    _, _, document = live.call("GET", made["links"]["json"])
    expected = {k: v for k, v in live.history.expected["soc2"].items() if v}
    found: dict[str, set[str]] = {}
    for item in document["exceptions"]["items"]:
        found.setdefault(item["change_id"], set()).add(item["code"])
    assert found == expected
    status, headers, body = raw_get(live, made["links"]["csv"])
    assert status == 200 and headers["Content-Type"].startswith("text/csv")
    assert f'filename="{report_id}.csv"' in headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(body.decode())))
    assert len(rows) == document["population"]["count"]
    status, headers, body = raw_get(live, made["links"]["html"])
    assert status == 200 and report_id.encode() in body
    status, _, body = raw_get(live, f"{made['links']['csv']}?section=exceptions")
    assert status == 200 and len(body.decode().splitlines()) == 1 + len(
        document["exceptions"]["items"])
    _, _, listed = live.call("GET", "/reports")
    assert listed["reports"][0]["report_id"] == report_id
    status, _, again = live.call("POST", "/reports", {"framework": "hipaa", **JANUARY})
    assert status == 201
    _, _, second = live.call("GET", again["links"]["json"])
    assert second["consistency"]["previous_report"] == report_id
    assert second["consistency"]["verified"] is True


@pytest.mark.parametrize(("body", "code"), [
    pytest.param({"framework": "iso27001"}, "input.schema", id="unknown framework"),
    pytest.param({"framework": "sox", "from": "2030-02-30"}, "input.schema", id="bad date"),
    pytest.param({"framework": "sox", "from": "2030-02-01", "to": "2030-01-01"},
                 "input.schema", id="empty period"),
    pytest.param({"framework": "sox", "sample_size": -1}, "input.schema", id="bad sample"),
    pytest.param({"framework": "sox", "proofs": "some"}, "reports.bad_argument",
                 id="bad proofs"),
])
def test_bad_report_requests_are_400(live, body, code):
    status, _, answer = live.call("POST", "/reports", body)
    assert (status, answer["error"]["code"]) == (400, code)


def test_unknown_reports_are_404_and_formats_400(live):
    assert live.call("GET", "/reports/sox-nothing.json")[0] == 404
    status, _, answer = live.call("GET", "/reports/sox-nothing.pdf")
    assert (status, answer["error"]["code"]) == (400, "input.schema")


def test_the_audit_log_gives_proofs_that_verify_independently(live):
    history = live.history
    history.checkpoint()
    permit = history.names["X3"]
    status, _, answer = live.call("GET", f"/dashboard/api/audit?permit={permit}")
    assert status == 200, answer
    entries = answer["entries"]
    assert {e["type"] for e in entries} >= {"permit.requested", "approval.signed",
                                            "permit.issued", "execution.reported"}
    vkey = history.runner.ledger.signer.vkey()
    assert answer["trusted_keys"] == [vkey]
    for entry in entries:
        assert entry["permit_id"] == permit or entry["subject"] == permit
        assert entry["server_verified"] and entry["status"] == "verified"
        size, root = check_note(answer["checkpoints"][str(entry["partition"])]["note"], vkey)
        data = base64.b64decode(entry["leaf_data"])
        leaf = hashlib.sha256(b"\x00" + data).digest()
        assert leaf.hex() == entry["leaf_hash"]
        assert json.loads(data[46:])["event_id"] == entry["event_id"]
        path = [base64.b64decode(h) for h in entry["proof"]]
        assert entry["tree_size"] == size
        assert root_from_path(entry["index"], size, leaf, path) == root


def test_audit_filters(live):
    history = live.history
    _, _, by_level = live.call("GET", "/dashboard/api/audit?level=4&limit=200")
    assert by_level["entries"] and {e["level"] for e in by_level["entries"]} == {4}
    _, _, by_worker = live.call("GET", "/dashboard/api/audit?worker=worker-9")
    assert by_worker["entries"] and all(e["worker_id"] == "worker-9"
                                        for e in by_worker["entries"])
    _, _, by_type = live.call("GET", "/dashboard/api/audit?type=review.&limit=10")
    assert len(by_type["entries"]) == 4
    _, _, by_time = live.call("GET", "/dashboard/api/audit?from=2031-01-01")
    assert by_time["entries"] == []
    task = history.pipe.permits.view(history.names["clean SOX"])["task_id"]
    _, _, by_task = live.call("GET", f"/dashboard/api/audit?task={task}")
    assert {e["type"] for e in by_task["entries"]} >= {"task.submitted",
                                                       "certification.decided"}
    _, _, page = live.call("GET", "/dashboard/api/audit?limit=2&offset=1")
    assert page["count"] == 2
    for query in ("level=7", "limit=0", "from=yesterday"):
        status, _, answer = live.call("GET", f"/dashboard/api/audit?{query}")
        assert (status, answer["error"]["code"]) == (400, "input.schema"), query


def test_the_page_and_its_files(live):
    status, headers, _ = raw_get(live, "/")
    assert status == 302 and headers["Location"] == "/dashboard/"
    status, headers, body = raw_get(live, "/dashboard/")
    assert status == 200 and b"dashboard.js" in body
    assert b"http://" not in body and b"https://" not in body  # no CDN, nothing remote
    status, headers, body = raw_get(live, "/dashboard/static/dashboard.js")
    assert status == 200 and headers["Content-Type"].startswith("application/javascript")
    assert b"crypto.subtle.sign" in body and b"https://" not in body
    assert raw_get(live, "/dashboard/static/..%2f..%2fweb.py")[0] == 404
    _, _, overview = live.call("GET", "/dashboard/api/overview")
    assert overview["origin"] == "worker-certification" and len(overview["checkpoints"]) == 3
    _, _, metrics = live.call("GET", "/dashboard/api/metrics?from=2030-01-01")
    assert metrics["reviews"]["total"] == 4


def test_without_a_data_source_the_data_routes_are_503():
    pipe, _ = new_pipeline()
    server = LiveServer(pipe)
    try:
        for method, path in (("GET", "/dashboard/api/metrics"), ("GET", "/metrics"),
                             ("GET", "/dashboard/api/audit"),
                             ("POST", "/reports")):
            status, _, answer = server.call(method, path, {"framework": "sox"}
                                            if method == "POST" else None)
            assert (status, answer["error"]["code"]) == (503, "dashboard.no_data"), path
        assert server.call("GET", "/dashboard/")[0] == 200
    finally:
        server.stop()
