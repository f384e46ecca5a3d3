"""Alertmanager webhook (version 4) -> alert.received / metric.sample events."""

from __future__ import annotations

import copy
from datetime import UTC, datetime

import pytest

from events import InputError, parse_event
from streams.alertmanager import from_webhook, parse_time

P = pytest.param
NOW = datetime(2025, 3, 1, 12, 5, tzinfo=UTC)

# The shape Alertmanager sends (docs: configuration/#webhook_config), trimmed.
WEBHOOK = {
    "version": "4",
    "groupKey": '{}:{alertname="HighErrorRate"}',
    "truncatedAlerts": 0,
    "status": "firing",
    "receiver": "certify",
    "groupLabels": {"alertname": "HighErrorRate"},
    "commonLabels": {"alertname": "HighErrorRate", "deployment": "checkout-v3"},
    "commonAnnotations": {},
    "externalURL": "http://alertmanager:9093",
    "alerts": [
        {"status": "firing",
         "labels": {"alertname": "HighErrorRate", "permit_id": "permit-7",
                    "rollback_trigger": "error_rate_threshold", "metric": "error_rate",
                    "severity": "critical"},
         "annotations": {"summary": "5xx above 1 %", "value": "0.034"},
         "startsAt": "2025-03-01T12:00:00.123456789Z",
         "endsAt": "0001-01-01T00:00:00Z",
         "generatorURL": "http://prometheus:9090/graph?g0.expr=...",
         "fingerprint": "b1946ac92492d234"},
        {"status": "resolved",
         "labels": {"alertname": "HighErrorRate", "instance": "web-2"},
         "annotations": {},
         "startsAt": "2025-03-01T11:50:00Z",
         "endsAt": "2025-03-01T11:58:00+00:00",
         "generatorURL": "",
         "fingerprint": "c3a8d1f0e7b2a912"},
    ],
}


def test_each_alert_becomes_an_event_keyed_by_permit_or_deployment():
    result = from_webhook(WEBHOOK, NOW)
    assert result.problems == []
    types = [(e.type, e.subject) for e in result.events]
    assert types == [("alert.received", "permit-7"), ("metric.sample", "permit-7"),
                     ("alert.received", "checkout-v3")]  # the second from commonLabels
    alert = result.events[0].payload["alert"]
    assert alert["labels"]["rollback_trigger"] == "error_rate_threshold"
    assert alert["startsAt"] == "2025-03-01T12:00:00.123456+00:00"
    assert alert["endsAt"] is None and alert["receiver"] == "certify"
    sample = result.events[1].payload
    assert (sample["metric"], sample["value"]) == ("error_rate", 0.034)


def test_events_are_valid_envelopes_of_our_vocabulary():
    for event in from_webhook(WEBHOOK, NOW).events:
        envelope, _ = parse_event(event.to_record())
        assert envelope == event


def test_repeated_notifications_are_the_same_events():
    first = [e.event_id for e in from_webhook(WEBHOOK, NOW).events]
    again = [e.event_id for e in from_webhook(WEBHOOK, datetime(2025, 3, 1, 13, tzinfo=UTC)
                                              ).events]
    assert first == again and len(set(first)) == len(first)


def test_state_value_becomes_a_state_sample():
    doc = copy.deepcopy(WEBHOOK)
    doc["alerts"][0]["labels"]["metric"] = "health_check_status"
    doc["alerts"][0]["annotations"]["value"] = "failed"
    sample = from_webhook(doc, NOW).events[1].payload
    assert (sample["value"], sample["state"]) == (None, "failed")


@pytest.mark.parametrize(("mutate", "problem"), [
    P(lambda a: a.update(status="pending"), "alerts.0.status", id="unknown status"),
    P(lambda a: a["labels"].pop("permit_id"), "alerts.0.labels: no permit_id", id="no key"),
    P(lambda a: a.update(startsAt="yesterday"), "alerts.0.startsAt: not an RFC 3339",
      id="bad time"),
    P(lambda a: a.update(startsAt="2025-03-01T12:00:00"), "alerts.0.startsAt: the time needs",
      id="naive time"),
    P(lambda a: a.update(labels=["x"]), "alerts.0.labels: expected an object", id="labels list"),
])
def test_one_bad_alert_is_reported_and_the_others_kept(mutate, problem):
    doc = copy.deepcopy(WEBHOOK)
    doc["commonLabels"].pop("deployment")
    doc["alerts"][1]["labels"]["deployment"] = "checkout-v3"
    mutate(doc["alerts"][0])
    result = from_webhook(doc, NOW)
    assert len(result.problems) == 1 and result.problems[0].startswith(problem)
    assert [e.subject for e in result.events] == ["checkout-v3"]


@pytest.mark.parametrize(("document", "code"), [
    P({**WEBHOOK, "version": "3"}, "alertmanager.version", id="old version"),
    P({**WEBHOOK, "alerts": "none"}, "alertmanager.schema", id="alerts not a list"),
    P([WEBHOOK], "alertmanager.schema", id="not an object"),
])
def test_unusable_payload_is_refused(document, code):
    with pytest.raises(InputError) as error:
        from_webhook(document, NOW)
    assert error.value.code == code


@pytest.mark.parametrize(("text", "expected"), [
    P("2025-03-01T12:00:00Z", datetime(2025, 3, 1, 12, tzinfo=UTC), id="Z"),
    P("2025-03-01T13:00:00.5+01:00", datetime(2025, 3, 1, 12, 0, 0, 500000, tzinfo=UTC),
      id="offset"),
    P("0001-01-01T00:00:00Z", None, id="zero time"),
    P(None, None, id="missing"),
])
def test_parse_time(text, expected):
    assert parse_time(text, "t") == expected
