"""Readiness probe for the development/test Kafka broker (used by scripts/kafka.sh).

    python kafka/ready.py 127.0.0.1:PORT [--timeout SECONDS] [--quiet]

Exits 0 as soon as the broker answers a metadata request that lists at least one broker,
1 when the timeout runs out. Two probes, chosen automatically:

* ``aiokafka`` (when importable, e.g. with .venv/bin/python): an admin client's
  ``list_topics()``: the same API-version negotiation the application will do.
* ``raw`` (stdlib only, for a fresh clone without the venv): one Metadata v1 request over
  a plain TCP socket, response parsed by hand.

``--probe raw|aiokafka`` forces one of them. Only the given loopback address is contacted.
"""

from __future__ import annotations

import argparse
import socket
import struct
import sys
import time


def _raw_metadata(host: str, port: int, timeout: float) -> list[tuple[int, str, int]]:
    """Send MetadataRequest v1 with an empty topic list; return the brokers it reports."""
    client_id = b"certify-ready"
    correlation_id = 7
    # request header v1: api_key=3 (Metadata), api_version=1, correlation_id, client_id
    header = struct.pack(">hhih", 3, 1, correlation_id, len(client_id)) + client_id
    body = struct.pack(">i", 0)  # topics: empty array (v1: empty = none, null = all)
    payload = header + body
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        sock.sendall(struct.pack(">i", len(payload)) + payload)
        size = struct.unpack(">i", _recv_exact(sock, 4))[0]
        data = _recv_exact(sock, size)
    pos = 0

    def take(fmt: str):
        nonlocal pos
        values = struct.unpack_from(fmt, data, pos)
        pos += struct.calcsize(fmt)
        return values

    (corr,) = take(">i")
    if corr != correlation_id:
        raise RuntimeError(f"correlation id mismatch: {corr}")
    (count,) = take(">i")
    brokers = []
    for _ in range(count):
        (node_id,) = take(">i")
        (hlen,) = take(">h")
        host_name = data[pos : pos + hlen].decode()
        pos += hlen
        (bport,) = take(">i")
        (rlen,) = take(">h")
        if rlen > 0:
            pos += rlen
        brokers.append((node_id, host_name, bport))
    return brokers


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed by broker")
        buf += chunk
    return bytes(buf)


def probe_raw(bootstrap: str, attempt_timeout: float) -> str:
    host, _, port = bootstrap.rpartition(":")
    brokers = _raw_metadata(host, int(port), attempt_timeout)
    if not brokers:
        raise RuntimeError("metadata lists no broker yet")
    return "brokers " + ", ".join(f"{n}@{h}:{p}" for n, h, p in brokers)


def probe_aiokafka(bootstrap: str, attempt_timeout: float) -> str:
    import asyncio

    from aiokafka.admin import AIOKafkaAdminClient

    async def once() -> str:
        admin = AIOKafkaAdminClient(
            bootstrap_servers=bootstrap, request_timeout_ms=int(attempt_timeout * 1000)
        )
        await admin.start()
        try:
            topics = await admin.list_topics()
        finally:
            await admin.close()
        return f"{len(topics)} topics listed"

    return asyncio.run(once())


def _aiokafka_available() -> bool:
    try:
        import aiokafka.admin  # noqa: F401
    except Exception:
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bootstrap", help="host:port, e.g. 127.0.0.1:39092")
    parser.add_argument("--timeout", type=float, default=90.0, help="total budget in seconds")
    parser.add_argument("--probe", choices=["auto", "raw", "aiokafka"], default="auto")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)

    kind = args.probe
    if kind == "auto":
        kind = "aiokafka" if _aiokafka_available() else "raw"
    probe = probe_aiokafka if kind == "aiokafka" else probe_raw

    import logging

    logging.disable(logging.CRITICAL)  # aiokafka logs every refused connection
    start = time.monotonic()
    deadline = start + args.timeout
    last_error = "no attempt made"
    while True:
        attempt_timeout = max(0.5, min(3.0, deadline - time.monotonic()))
        try:
            what = probe(args.bootstrap, attempt_timeout)
        except Exception as exc:  # refused, reset, timeout, not-yet-ready metadata ...
            last_error = f"{type(exc).__name__}: {exc}"
        else:
            if not args.quiet:
                print(
                    f"kafka ready at {args.bootstrap} after {time.monotonic() - start:.1f}s "
                    f"({kind} probe: {what})"
                )
            return 0
        if time.monotonic() + 0.5 >= deadline:
            if not args.quiet:
                print(
                    f"kafka at {args.bootstrap} not ready after {args.timeout:.0f}s "
                    f"({kind} probe; last error: {last_error})",
                    file=sys.stderr,
                )
            return 1
        time.sleep(0.5)


if __name__ == "__main__":
    sys.exit(main())
