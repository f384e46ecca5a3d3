"""Prometheus Alertmanager webhook (payload version 4) -> our events. Pure: no I/O, no clock.

Each alert becomes an `alert.received` event keyed by the permit or deployment it is about (the
first label found of KEY_LABELS, on the alert or in commonLabels). An alert that also carries a
`metric` label and a `value` annotation (a number, or a state such as "failed") becomes a
`metric.sample` too, observed at its startsAt, so the trigger engine judges it like any sample.
Alerts that name a rollback trigger (label `rollback_trigger`) fire that trigger directly; the
rollback service decides what that means (streams/rollback_service.py).

Event ids are derived from the alert's fingerprint, status and start, so Alertmanager's repeated
notifications of the same alert (repeat_interval, several receivers) are recorded once.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from events import Envelope, InputError, describe_validation_error
from events.payloads import AlertReceived, MetricSample

PRODUCER = "alertmanager"
SUPPORTED_VERSIONS = ("4",)
KEY_LABELS = ("permit_id", "permit", "deployment_id", "deployment")
TRIGGER_LABEL = "rollback_trigger"
ZERO_TIME = "0001-01-01T00:00:00Z"  # Alertmanager's "not set" for endsAt


@dataclass(frozen=True)
class WebhookResult:
    events: list[Envelope] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # "alerts.3: ..." for alerts left out


def parse_time(text: Any, where: str) -> datetime | None:
    """RFC 3339 as Alertmanager writes it (nanoseconds allowed); None for the zero time."""
    if text in (None, "", ZERO_TIME):
        return None
    if not isinstance(text, str):
        raise InputError("alertmanager.schema", f"{where}: expected an RFC 3339 time")
    value = text.strip().replace("Z", "+00:00").replace("z", "+00:00")
    main, dot, rest = value.partition(".")
    if dot:  # trim the fraction to microseconds, keep the offset
        digits = len(rest) - len(rest.lstrip("0123456789"))
        value = f"{main}.{rest[:min(digits, 6)]}{rest[digits:]}"
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise InputError("alertmanager.schema", f"{where}: not an RFC 3339 time: {text!r}") \
            from None
    if moment.tzinfo is None:
        raise InputError("alertmanager.schema", f"{where}: the time needs an offset or Z")
    if moment.year <= 1:
        return None
    return moment.astimezone(UTC)


def _labels(value: Any, where: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise InputError("alertmanager.schema", f"{where}: expected an object of labels")
    return {k: str(v) for k, v in value.items()}


def key_of(labels: Mapping[str, str], common: Mapping[str, str]) -> str | None:
    for source in (labels, common):
        for name in KEY_LABELS:
            if source.get(name):
                return source[name]
    return None


def _id(*parts: object) -> str:
    return hashlib.sha256("\0".join(map(str, parts)).encode()).hexdigest()[:32]


def from_webhook(document: Any, now: datetime) -> WebhookResult:
    """A webhook body (parsed JSON) -> events, and the alerts that could not be read.

    A body that is not a version-4 payload raises InputError (nothing to keep); one bad alert
    does not lose the others."""
    if not isinstance(document, Mapping):
        raise InputError("alertmanager.schema", "webhook: expected a JSON object")
    version = document.get("version")
    if str(version) not in SUPPORTED_VERSIONS:
        raise InputError("alertmanager.version",
                         f"version: unsupported Alertmanager payload version {version!r} "
                         f"(supported: {', '.join(SUPPORTED_VERSIONS)})")
    alerts = document.get("alerts")
    if not isinstance(alerts, list):
        raise InputError("alertmanager.schema", "alerts: expected a list")
    common = _labels(document.get("commonLabels"), "commonLabels")
    group = {k: document.get(k) for k in ("receiver", "groupKey", "externalURL")
             if isinstance(document.get(k), str)}
    result = WebhookResult()
    for index, alert in enumerate(alerts):
        try:
            result.events.extend(_alert_events(alert, f"alerts.{index}", common, group, now))
        except InputError as error:
            result.problems.append(error.message)
    return result


def _alert_events(alert: Any, where: str, common: Mapping[str, str],
                  group: Mapping[str, Any], now: datetime) -> list[Envelope]:
    if not isinstance(alert, Mapping):
        raise InputError("alertmanager.schema", f"{where}: expected an object")
    status = alert.get("status")
    if status not in ("firing", "resolved"):
        raise InputError("alertmanager.schema",
                         f"{where}.status: expected 'firing' or 'resolved', got {status!r}")
    labels = _labels(alert.get("labels"), f"{where}.labels")
    annotations = _labels(alert.get("annotations"), f"{where}.annotations")
    starts = parse_time(alert.get("startsAt"), f"{where}.startsAt")
    ends = parse_time(alert.get("endsAt"), f"{where}.endsAt")
    if starts is None:
        raise InputError("alertmanager.schema", f"{where}.startsAt: required")
    key = key_of(labels, common)
    if key is None:
        raise InputError("alertmanager.no_key",
                         f"{where}.labels: no {' / '.join(KEY_LABELS)} label names the permit "
                         "or deployment this alert is about")
    fingerprint = alert.get("fingerprint") if isinstance(alert.get("fingerprint"), str) else \
        _id(json.dumps(labels, sort_keys=True))
    body = {"status": status, "labels": labels, "annotations": annotations,
            "startsAt": starts.isoformat(), "endsAt": ends.isoformat() if ends else None,
            "fingerprint": fingerprint, "generatorURL": alert.get("generatorURL"), **group}
    try:
        payload = AlertReceived(key=key, source=PRODUCER, alert=body)
    except ValidationError as error:
        raise InputError("alertmanager.schema", describe_validation_error(error, where + "."))\
            from None
    moment = ends if status == "resolved" and ends else starts
    events = [Envelope(event_id=f"alertmanager:{_id(fingerprint, status, starts, ends)}",
                       type="alert.received", occurred_at=now, producer=PRODUCER, subject=key,
                       payload=payload.model_dump(mode="json"))]
    metric, value = labels.get("metric"), annotations.get("value")
    if status == "firing" and metric and value not in (None, ""):
        try:
            sample = MetricSample(key=key, metric=metric, value=value, observed_at=moment,
                                  labels={"source": PRODUCER,
                                          "alertname": labels.get("alertname", "")})
        except ValidationError as error:
            raise InputError("alertmanager.schema",
                             describe_validation_error(error, where + ".sample.")) from None
        events.append(Envelope(
            event_id=f"alertmanager-sample:{_id(fingerprint, metric, starts)}",
            type="metric.sample", occurred_at=now, producer=PRODUCER, subject=key,
            payload=sample.model_dump(mode="json")))
    return events
