"""The contract between every layer: one envelope, one payload model per event type."""

from events.envelope import SCHEMA_VERSION, Envelope, format_time, new_event_id, utc_now
from events.registry import (
    EVENT_TYPES,
    INBOUND_TYPES,
    MAX_EVENT_BYTES,
    InputError,
    decode_json,
    describe_validation_error,
    parse_event,
    parse_payload,
)

__all__ = [
    "EVENT_TYPES", "INBOUND_TYPES", "MAX_EVENT_BYTES", "SCHEMA_VERSION", "Envelope", "InputError",
    "decode_json", "describe_validation_error", "format_time", "new_event_id", "parse_event",
    "parse_payload", "utc_now",
]
