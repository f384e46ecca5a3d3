"""The one envelope every event travels in: Kafka value, ledger entry, projection row source."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

SCHEMA_VERSION = 1
MAX_ID_LENGTH = 200


def new_event_id() -> str:
    return str(uuid.uuid4())


def utc_now() -> datetime:
    """Only the shell calls this; rules receive time as an argument."""
    return datetime.now(UTC)


def format_time(moment: datetime) -> str:
    """ISO-8601 in UTC with microseconds and a Z: one spelling, so canonical bytes are stable."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Envelope(BaseModel):
    """Who said what about which subject, when, and why (correlation/causation).

    `payload` stays a plain dict here so that the ledger and projections never need the payload
    classes; `events.registry.parse_payload` validates it against the model of `type`.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_id: str = Field(default_factory=new_event_id, min_length=1, max_length=MAX_ID_LENGTH)
    type: str = Field(min_length=1, max_length=80)
    schema_version: int = Field(default=SCHEMA_VERSION, ge=1)
    occurred_at: datetime
    producer: str = Field(min_length=1, max_length=MAX_ID_LENGTH)
    subject: str = Field(min_length=1, max_length=MAX_ID_LENGTH)
    correlation_id: str | None = Field(default=None, max_length=MAX_ID_LENGTH)
    causation_id: str | None = Field(default=None, max_length=MAX_ID_LENGTH)
    payload: dict[str, Any] = Field(default_factory=dict)

    @field_validator("occurred_at")
    @classmethod
    def _must_be_aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("occurred_at needs a time zone (use Z for UTC)")
        return value.astimezone(UTC)

    def to_record(self) -> dict[str, Any]:
        """The JSON-able dict that the ledger hashes and Kafka carries."""
        record = self.model_dump(mode="json")
        record["occurred_at"] = format_time(self.occurred_at)
        return record
