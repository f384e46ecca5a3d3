"""pytest plugin: the real Apache Kafka broker for tests marked ``kafka``.

Loaded by ``pytest_plugins = ["tests.conftest_kafka"]`` in tests/conftest.py.

The broker is NOT started here: ``scripts/kafka.sh start`` starts it (``make test`` does that,
then runs pytest with ``CERTIFY_KAFKA_BOOTSTRAP=$(cat .cache/kafka/bootstrap)``, then stops it).
By hand::

    scripts/kafka.sh start
    CERTIFY_KAFKA_BOOTSTRAP=$(cat .cache/kafka/bootstrap) .venv/bin/pytest -m kafka
    scripts/kafka.sh stop

Fixtures:

* ``kafka_bootstrap`` (session): ``"127.0.0.1:PORT"``. Fails the test (never skips) when the
  variable is missing or the broker does not answer.
* ``kafka_topics`` (function): async factory that creates uniquely named topics explicitly
  (the broker runs with ``auto.create.topics.enable=false``) and deletes them afterwards::

      async def test_x(kafka_bootstrap, kafka_topics):
          src, out = await kafka_topics("src", "out", partitions=3)
"""

from __future__ import annotations

import importlib.util
import os
import uuid
from pathlib import Path

import pytest

ENV_VAR = "CERTIFY_KAFKA_BOOTSTRAP"
_READY_PY = Path(__file__).resolve().parent.parent / "kafka" / "ready.py"


def _load_ready():
    # kafka/ is not a package (and "kafka" would clash with kafka-python): load by path.
    spec = importlib.util.spec_from_file_location("certify_kafka_ready", _READY_PY)
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    bootstrap = os.environ.get(ENV_VAR, "").strip()
    if not bootstrap:
        pytest.fail(
            f"{ENV_VAR} is not set. Kafka tests need the real broker: run `make test`, or "
            f"`scripts/kafka.sh start` and then "
            f"`{ENV_VAR}=$(cat .cache/kafka/bootstrap) .venv/bin/pytest ...`.",
            pytrace=False,
        )
    ready = _load_ready()
    problem = None
    try:
        # Plain-socket Metadata request: no event loop needed in a sync session fixture.
        ready.probe_raw(bootstrap, attempt_timeout=5.0)
    except Exception as exc:
        problem = f"{type(exc).__name__}: {exc}"
    if problem is not None:
        pytest.fail(
            f"{ENV_VAR}={bootstrap} but no Kafka broker answers there ({problem}). "
            f"Is it running? `scripts/kafka.sh status`; its log is .cache/kafka/logs/broker.out.",
            pytrace=False,
        )
    return bootstrap


@pytest.fixture
async def kafka_topics(kafka_bootstrap):
    """Factory: ``await kafka_topics("a", "b", partitions=3, config={...})`` -> unique names."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    created: list[str] = []

    async def create(*stems: str, partitions: int = 1, config: dict | None = None) -> list[str]:
        run = uuid.uuid4().hex[:8]
        names = [f"test-{stem}-{run}" for stem in stems]
        response = await admin.create_topics(
            [NewTopic(name, partitions, 1, topic_configs=config or {}) for name in names]
        )
        errors = [(t, code, msg) for t, code, msg in response.topic_errors if code != 0]
        assert not errors, f"create_topics failed: {errors}"
        created.extend(names)
        return names

    try:
        yield create
    finally:
        if created:
            try:
                await admin.delete_topics(created)
            except Exception:  # the broker's data is dropped by `scripts/kafka.sh stop` anyway
                pass
        await admin.close()
