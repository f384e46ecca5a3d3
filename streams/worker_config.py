"""Kafka-mode settings: the base `Settings` plus what only the Faust worker needs.

Read once in the shell (flags over CERTIFY_* environment variables over defaults), passed down
as values; `streams.app.build_app` builds the Faust App from this and nothing else.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

from streams.config import Settings
from streams.topics import DEFAULT_PREFIX, TopicNames, bootstrap_servers

DEFAULT_APP_ID = "certify"
DEFAULT_WEB_PORT = 6066  # Faust's default; docker-compose.yml's worker healthcheck uses it
DEFAULT_WEB_HOST = "127.0.0.1"
DEFAULT_BATCH_SIZE = 500  # records an agent takes at once (latency: see batch_within_s)
DEFAULT_BATCH_WITHIN_S = 0.020  # at 1,000 records/s: batches of ~20-25. Against 40 ms, quiet
# runs of bench.kafka_bench: decision p99 71-100 ms (40 ms: 118-147), and no falling behind at
# 1,800/s; a backlog still fills whole batches (batch_size) at once
DEFAULT_PROJECTOR_INTERVAL_S = 0.05  # at most one DuckDB commit per interval in the projector
# process, as the agents' batches come (~35-45 ms of CPU each whatever its size): between one
# and two batch gaps (~25-30 ms at the 20 ms window), so every second batch is committed as it
# comes (streams.worker_projector.due); ~0.65 core at 1,000/s (70 ms and 40 ms: ~0.5)
DEFAULT_SNAPSHOT_INTERVAL_S = 60.0
DEFAULT_SESSION_TIMEOUT_S = 10.0  # a SIGKILLed worker's partitions move on after this


@dataclass(frozen=True)
class KafkaSettings:
    settings: Settings
    topic_prefix: str = DEFAULT_PREFIX
    app_id: str = DEFAULT_APP_ID
    replication: int = 1
    web_enabled: bool = True
    web_host: str = DEFAULT_WEB_HOST
    web_port: int = DEFAULT_WEB_PORT
    batch_size: int = DEFAULT_BATCH_SIZE
    batch_within_s: float = DEFAULT_BATCH_WITHIN_S
    projector: bool = True
    projector_interval_s: float = DEFAULT_PROJECTOR_INTERVAL_S
    session_timeout_s: float = DEFAULT_SESSION_TIMEOUT_S
    loglevel: str = "info"
    snapshot: Path | None = None  # DuckDB copy for readers in other processes
    snapshot_interval_s: float = DEFAULT_SNAPSHOT_INTERVAL_S

    @property
    def bootstrap(self) -> str:
        """host:port[,host:port] for aiokafka clients."""
        return bootstrap_servers(self.settings.broker)

    @property
    def broker_urls(self) -> list[str]:
        """kafka://host:port for each host, for Faust."""
        return [f"kafka://{host}" for host in self.bootstrap.split(",")]

    @property
    def topics(self) -> TopicNames:
        return TopicNames(self.topic_prefix)


def _env(name: str) -> str | None:
    value = os.environ.get(name)
    return value if value not in (None, "") else None


def _flag(name: str, default: bool) -> bool:
    value = _env(name)
    if value is None:
        return default
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{name}: expected 1/0, true/false, yes/no or on/off, got {value!r}")


def _pick(given, env: str, cast, default):  # type: ignore[no-untyped-def]
    if given is not None:
        return given
    value = _env(env)
    if value is None:
        return default
    try:
        return cast(value)
    except ValueError:
        raise ValueError(f"{env}: not a valid value: {value!r}") from None


def load_kafka_settings(settings: Settings, *, topic_prefix: str | None = None,
                        app_id: str | None = None, replication: int | None = None,
                        web: bool | None = None, web_host: str | None = None,
                        web_port: int | None = None, batch_size: int | None = None,
                        projector: bool | None = None, session_timeout_s: float | None = None,
                        loglevel: str | None = None, snapshot: str | None = None
                        ) -> KafkaSettings:
    config = KafkaSettings(
        settings=settings,
        topic_prefix=_pick(topic_prefix, "CERTIFY_TOPIC_PREFIX", str, DEFAULT_PREFIX),
        app_id=_pick(app_id, "CERTIFY_APP_ID", str, DEFAULT_APP_ID),
        replication=_pick(replication, "CERTIFY_REPLICATION", int, 1),
        web_enabled=web if web is not None else _flag("CERTIFY_WEB", True),
        web_host=_pick(web_host, "CERTIFY_WEB_HOST", str, DEFAULT_WEB_HOST),
        web_port=_pick(web_port, "CERTIFY_WEB_PORT", int, DEFAULT_WEB_PORT),
        batch_size=_pick(batch_size, "CERTIFY_BATCH_SIZE", int, DEFAULT_BATCH_SIZE),
        batch_within_s=_pick(None, "CERTIFY_BATCH_WITHIN_MS", lambda v: float(v) / 1000,
                             DEFAULT_BATCH_WITHIN_S),
        projector=projector if projector is not None else _flag("CERTIFY_PROJECTOR", True),
        projector_interval_s=_pick(None, "CERTIFY_PROJECTOR_INTERVAL_MS",
                                   lambda v: float(v) / 1000, DEFAULT_PROJECTOR_INTERVAL_S),
        session_timeout_s=_pick(session_timeout_s, "CERTIFY_SESSION_TIMEOUT_S", float,
                                DEFAULT_SESSION_TIMEOUT_S),
        loglevel=_pick(loglevel, "CERTIFY_LOGLEVEL", str, "info"),
        snapshot=_pick(snapshot, "CERTIFY_DUCKDB_SNAPSHOT", Path, None),
        snapshot_interval_s=_pick(None, "CERTIFY_SNAPSHOT_INTERVAL_S", float,
                                  DEFAULT_SNAPSHOT_INTERVAL_S),
    )
    bootstrap_servers(settings.broker)  # fail early on an empty broker spec
    if config.snapshot is not None and not isinstance(config.snapshot, Path):
        config = replace(config, snapshot=Path(config.snapshot))
    if config.replication < 1 or config.batch_size < 1 or config.session_timeout_s < 1:
        raise ValueError("replication, batch size and session timeout must be positive")
    if not config.topic_prefix or any(c in config.topic_prefix for c in " /\\:"):
        raise ValueError(f"topic prefix {config.topic_prefix!r}: use letters, digits, . _ -")
    return config
