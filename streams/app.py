"""The Faust App, built from `KafkaSettings` and nothing else (no module-level app, no globals).

At-least-once processing (not Faust's exactly-once, see docs/kafka-mode.md): the ledger refuses
a second copy of an event id, so a replay after a crash records nothing twice.
"""

from __future__ import annotations

from typing import Any

import faust
from faust.sensors import Monitor

from streams.topics import MAX_MESSAGE_BYTES
from streams.worker_config import KafkaSettings


class LeanMonitor(Monitor):
    """Faust's monitor without its per-message statistics (a few dicts, deques and clock reads
    for every record, which nothing here reads: the web server's /stats page shows zeros).
    Commit, rebalance and assignment statistics are kept."""

    def on_message_in(self, *args: Any, **kwargs: Any) -> None:
        return None

    def on_stream_event_in(self, *args: Any, **kwargs: Any) -> None:
        return None

    def on_stream_event_out(self, *args: Any, **kwargs: Any) -> None:
        return None

    def on_message_out(self, *args: Any, **kwargs: Any) -> None:
        return None


def build_app(config: KafkaSettings) -> faust.App:
    settings = config.settings
    return faust.App(
        config.app_id,
        broker=config.broker_urls,
        store="memory://",  # no tables yet; state is folded from the ledger
        datadir=str(settings.data_dir / "faust"),
        topic_partitions=settings.partitions,  # = every topic's count (co-partitioning)
        topic_replication_factor=config.replication,
        processing_guarantee="at_least_once",
        consumer_auto_offset_reset="earliest",
        consumer_max_fetch_size=MAX_MESSAGE_BYTES,
        producer_max_request_size=MAX_MESSAGE_BYTES + 64 * 1024,
        producer_acks=-1,
        broker_session_timeout=config.session_timeout_s,
        broker_heartbeat_interval=min(3.0, config.session_timeout_s / 3),
        web_enabled=config.web_enabled,
        web_bind=config.web_host,
        web_host=config.web_host,
        web_port=config.web_port,
        web_tables_enabled=False,  # the built-in /table endpoint would serve table data
        Monitor=LeanMonitor,
    )
