"""docker-compose.yml: valid against the Compose Specification, and in step with the test broker.

No Docker engine runs here, so the file is checked statically: JSON-schema validation against
tests/data/compose-spec.json (a copy of the Compose Specification's schema, see docs/kafka.md),
plus the facts the deployment relies on: the Kafka service uses the same version and the same
settings as kafka/server.properties (the broker that the Kafka tests actually run against).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
SCHEMA = Path(__file__).resolve().parent / "data" / "compose-spec.json"

# server.properties keys whose values the compose broker must share
SHARED_SETTINGS = [
    "process.roles",
    "node.id",
    "controller.listener.names",
    "inter.broker.listener.name",
    "auto.create.topics.enable",
    "num.partitions",
    "default.replication.factor",
    "min.insync.replicas",
    "delete.topic.enable",
    "offsets.topic.replication.factor",
    "offsets.topic.num.partitions",
    "transaction.state.log.replication.factor",
    "transaction.state.log.min.isr",
    "transaction.state.log.num.partitions",
    "share.coordinator.state.topic.replication.factor",
    "share.coordinator.state.topic.min.isr",
    "group.initial.rebalance.delay.ms",
    "log.segment.bytes",
    "log.cleaner.dedupe.buffer.size",
]


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def _server_properties() -> dict[str, str]:
    props = {}
    for line in (ROOT / "kafka" / "server.properties").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            props[key.strip()] = value.strip()
    return props


def _kafka_env_as_properties(compose: dict) -> dict[str, str]:
    # the apache/kafka image turns KAFKA_FOO_BAR=x into foo.bar=x
    env = compose["services"]["kafka"]["environment"]
    return {
        key[len("KAFKA_") :].lower().replace("_", "."): str(value).lower()
        if isinstance(value, bool)
        else str(value)
        for key, value in env.items()
        if key.startswith("KAFKA_") and key not in ("KAFKA_HEAP_OPTS",)
    }


def test_compose_file_matches_the_compose_specification(compose):
    schema = json.loads(SCHEMA.read_text())
    validator = jsonschema.Draft7Validator(schema)
    errors = sorted(validator.iter_errors(compose), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(
        f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in errors
    )


def test_schema_rejects_a_broken_compose_file(compose):
    # guard against a schema copy that accepts anything
    broken = json.loads(json.dumps(compose))
    broken["services"]["kafka"]["healthcheck"]["interval_typo"] = "5s"
    validator = jsonschema.Draft7Validator(json.loads(SCHEMA.read_text()))
    assert list(validator.iter_errors(broken))


def test_kafka_image_version_is_the_tested_broker_version(compose):
    pom = (ROOT / "kafka" / "pom.xml").read_text()
    (version,) = re.findall(r"<kafka.version>([^<]+)</kafka.version>", pom)
    assert compose["services"]["kafka"]["image"] == f"apache/kafka:{version}"


@pytest.mark.parametrize("key", SHARED_SETTINGS)
def test_kafka_service_has_the_test_broker_setting(compose, key):
    assert _kafka_env_as_properties(compose).get(key) == _server_properties()[key]


def test_kafka_service_is_kraft_with_a_cluster_id_and_a_data_volume(compose):
    kafka = compose["services"]["kafka"]
    env = kafka["environment"]
    assert re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_-]{21}", env["CLUSTER_ID"])
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == "1@kafka:9093"
    assert "PLAINTEXT://kafka:9092" in env["KAFKA_ADVERTISED_LISTENERS"]
    assert f"kafka-data:{env['KAFKA_LOG_DIRS']}" in kafka["volumes"]
    assert "healthcheck" in kafka


def test_the_worker_runs_certify_after_kafka_is_healthy(compose):
    services = compose["services"]
    assert services["worker"]["command"] == ["worker", "--broker", "kafka://kafka:9092"]
    assert (ROOT / services["worker"]["build"]["dockerfile"]).is_file()
    service = services["worker"]
    assert service["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert service["environment"]["CERTIFY_DATA_DIR"] == "/data"
    assert service["environment"]["CERTIFY_KEY_DIR"].startswith("/data/")  # kept on a volume
    assert "healthcheck" in service
    assert set(compose["volumes"]) >= {"kafka-data", "ledger", "duckdb"}


def test_the_api_is_the_worker_s_web_port_and_no_second_ledger_writer(compose):
    """The HTTP API is mounted in the worker's web server (streams/worker_web.py): published
    from the worker, bound beyond the container's loopback; no `certify serve` next to it."""
    from streams.worker_config import DEFAULT_WEB_PORT

    services = compose["services"]
    worker = services["worker"]
    assert f"127.0.0.1:8080:{DEFAULT_WEB_PORT}" in worker["ports"]
    assert worker["environment"]["CERTIFY_WEB_HOST"] == "0.0.0.0"
    assert not [name for name, service in services.items()
                if "serve" in (service.get("command") or [])]


def test_each_ledger_has_one_writer_and_the_worker_publishes_duckdb_for_readers(compose):
    worker = compose["services"]["worker"]
    assert "ledger:/data" in worker["volumes"]
    assert [v for v in compose["services"]["worker"]["volumes"] if v.endswith(":/data")] == [
        "ledger:/data"]
    assert "deploy" not in worker and "scale" not in worker  # one worker per ledger
    snapshot = worker["environment"]["CERTIFY_DUCKDB_SNAPSHOT"]
    assert any(snapshot.startswith(v.split(":")[1] + "/") for v in worker["volumes"]
               if v.startswith("duckdb:"))


def test_worker_healthcheck_asks_the_port_the_worker_serves(compose):
    from streams.worker_config import DEFAULT_WEB_PORT

    worker = compose["services"]["worker"]
    assert f"127.0.0.1:{DEFAULT_WEB_PORT}/" in " ".join(worker["healthcheck"]["test"])
    assert "CERTIFY_WEB_PORT" not in worker["environment"] and "--web-port" not in worker["command"]


def test_every_certify_variable_is_one_the_code_reads(compose):
    sources = "\n".join(path.read_text() for path in (ROOT / "streams").glob("*.py"))
    for name, service in compose["services"].items():
        for variable in service.get("environment", {}):
            if variable.startswith("CERTIFY_"):
                assert f'"{variable}"' in sources, f"{name}: {variable} is read by nothing"


def test_published_ports_bind_to_loopback_only(compose):
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} on all interfaces"
