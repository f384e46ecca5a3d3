"""`certify serve` as a real process: it serves the API on the port it is given, records into
the embedded ledger, and on Ctrl-C closes the ledger so that the next process may write."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from ledger import iter_entries
from streams.cli import main

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(url: str, body: dict | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    with urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=5) as r:  # noqa: S310
        return json.loads(r.read())


def test_certify_serve_serves_records_and_stops_cleanly(tmp_path, monkeypatch):
    port = free_port()
    env = {**os.environ, "CERTIFY_KEY_DIR": str(tmp_path / "keys"), "PYTHONPATH": str(REPO)}
    data = tmp_path / "data"
    process = subprocess.Popen(
        [sys.executable, "-m", "streams.cli", "--data-dir", str(data), "serve", "--port",
         str(port), "--tick-seconds", "0.2"], env=env, cwd=REPO, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                health = get(url + "/healthz")
                break
            except OSError:
                assert process.poll() is None, process.stderr.read().decode()
                assert time.monotonic() < deadline, "certify serve did not come up"
                time.sleep(0.2)
        assert health["status"] == "ok"
        decision = get(url + "/v1/tasks", {"task": "Deploy api", "environment": "production",
                                           "task_id": "served-1"})
        assert decision["certification_decision"]["certification_level_required"] == 2
        verdict = get(url + "/v1/authorize", {
            "worker": {"id": "w-1", "certification_level": 2}, "permit_id": "prm-none",
            "operation": {"type": "deploy", "environment": "production"}})
        assert verdict["reason_code"] == "permit_unknown"
        time.sleep(0.5)  # a few ticks (timers, checkpoints, projections in a thread)
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(30) == 0, process.stderr.read().decode()
    types = [e.event["type"] for p in range(4) for e in iter_entries(data / "ledger", p)
             if "payload" in e.event]
    assert {"task.submitted", "certification.decided", "operation.authorized",
            "violation.recorded"} <= set(types)
    monkeypatch.setenv("CERTIFY_KEY_DIR", str(tmp_path / "keys"))
    assert main(["--data-dir", str(data), "permit", "list"]) == 0  # the lock was released
