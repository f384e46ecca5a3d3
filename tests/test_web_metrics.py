"""POST /v1/metrics and POST /v1/alerts/alertmanager against the running server (aiohttp on a
free loopback port, the embedded ledger on disk): samples recorded and judged, a sustained
breach rolled back once, Alertmanager v4 bodies, problems reported and rejected input recorded."""

from __future__ import annotations

from datetime import timedelta

import pytest

from events import format_time
from tests.test_permit_kit import T0, Clock, LiveServer, embedded_runner, ledger_records


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    path = tmp_path_factory.mktemp("metrics")
    clock = Clock()
    runner = embedded_runner(path, clock)
    server = LiveServer(runner.pipeline)
    server.runner, server.path, server.clock = runner, path, clock
    yield server
    server.stop()
    runner.close()


def sample(key, n, value=0.02, metric="error_rate"):
    return {"key": key, "metric": metric, "value": value,
            "observed_at": format_time(T0 + timedelta(seconds=30 * n))}


def records(live, kind, key=None):
    return [r for r in ledger_records(live.path) if r["type"] == kind
            and (key is None or r["subject"] == key)]


def test_one_sample_then_a_list_fire_one_rollback(live):
    status, _, body = live.call("POST", "/v1/metrics", sample("dep-1", 0))
    assert status == 202, body
    assert body["accepted"] == 1 and body["rollbacks"] == [] and body["problems"] == []
    status, _, body = live.call("POST", "/v1/metrics", [sample("dep-1", n) for n in range(1, 7)])
    assert status == 202, body
    assert body["accepted"] == 6
    assert [r["stage"] for r in body["rollbacks"]] == ["triggered", "commanded"]
    triggered = body["rollbacks"][0]
    assert triggered["trigger"] == "error_rate_threshold" and triggered["evidence"]["count"] == 5
    assert len(records(live, "metric.sample", "dep-1")) == 7
    assert [r["payload"]["stage"] for r in records(live, "rollback.event", "dep-1")] == \
        ["triggered", "commanded"]


def test_a_retried_post_is_recorded_once(live):
    for _ in range(2):
        status, _, body = live.call("POST", "/v1/metrics", sample("dep-2", 0, 0.001))
        assert status == 202, body
    assert len(records(live, "metric.sample", "dep-2")) == 1


def test_bad_samples_are_reported_and_recorded(live):
    bad = {"key": "dep-3", "metric": "error_rate", "value": 0.1}  # no observed_at
    status, _, body = live.call("POST", "/v1/metrics", [sample("dep-3", 0, 0.001), bad])
    assert status == 202, body
    assert body["accepted"] == 1 and len(body["problems"]) == 1
    assert body["problems"][0].startswith("1.observed_at")
    status, _, body = live.call("POST", "/v1/metrics", bad)
    assert status == 400 and body["error"]["code"] == "input.schema"
    for wrong in ([], "text", [bad]):
        status, _, body = live.call("POST", "/v1/metrics", wrong)
        assert status == 400 and body["error"]["code"] == "input.schema", body
    rejected = records(live, "input.rejected")
    assert any(r["payload"]["source"] == "http:/v1/metrics" and "observed_at" in
               r["payload"]["message"] for r in rejected)


def webhook(*alerts, version="4"):
    return {"version": version, "groupKey": "{}:{}", "status": "firing", "receiver": "certify",
            "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {},
            "externalURL": "http://alertmanager:9093", "alerts": list(alerts)}


def alert(key, fingerprint, **labels):
    return {"status": "firing", "labels": {"alertname": "Broken", "deployment": key, **labels},
            "annotations": {"summary": "broken"}, "startsAt": "2030-01-07T09:00:00.123456789Z",
            "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "http://prom",
            "fingerprint": fingerprint}


def test_alertmanager_webhook_fires_a_named_trigger_once(live):
    body = webhook(alert("dep-4", "fp-4", rollback_trigger="data_inconsistency_detected"),
                   alert("dep-4", "fp-5"),  # no trigger named: pages, never rolls back
                   {"status": "firing", "labels": {"alertname": "NoKey"},
                    "startsAt": "2030-01-07T09:00:00Z"})
    status, _, answer = live.call("POST", "/v1/alerts/alertmanager", body)
    assert status == 200, answer
    assert answer["alerts"] == 2 and len(answer["problems"]) == 1
    assert answer["problems"][0].startswith("alerts.2.labels")
    assert [r["stage"] for r in answer["rollbacks"]] == ["triggered", "commanded"]
    status, _, again = live.call("POST", "/v1/alerts/alertmanager", body)  # repeat_interval
    assert status == 200 and again["rollbacks"] == []
    assert len(records(live, "alert.received", "dep-4")) == 2
    assert [r["payload"]["stage"] for r in records(live, "rollback.event", "dep-4")] == \
        ["triggered", "commanded"]
    pages = [r for r in records(live, "escalation.raised", "dep-4")
             if r["payload"]["code"] == "alert.received"]
    assert len(pages) == 1
    rejected = [r for r in records(live, "input.rejected")
                if r["payload"]["code"] == "alertmanager.alert_rejected"]
    assert len(rejected) == 1  # the same body twice: recorded once


def test_alertmanager_metric_alert_becomes_a_sample(live):
    body = webhook(alert("dep-5", "fp-6", metric="error_rate") |
                   {"annotations": {"value": "0.2"}})
    status, _, answer = live.call("POST", "/v1/alerts/alertmanager", body)
    assert status == 200, answer
    assert len(records(live, "metric.sample", "dep-5")) == 1


@pytest.mark.parametrize("body", [webhook(version="3"), {"alerts": "x"}, [1]])
def test_alertmanager_bad_bodies(live, body):
    status, _, answer = live.call("POST", "/v1/alerts/alertmanager", body)
    assert status == 400, answer
    assert answer["error"]["code"].startswith("alertmanager.")
