"""A small synchronous client for the HTTP API (standard library only), for masters, workers,
approvers and incident commanders.

    from streams.client import Client
    api = Client("http://127.0.0.1:8080")
    decision = api.submit_task({"task": "Deploy api v2", "environment": "production"})
    permit = api.request_permit({"task_id": decision["task_id"], "requested_by": "master-1",
                                 "scope": {"operations": ["deploy"], "environment": "production"},
                                 "justification": "release 2.1",
                                 "rollback_plan": plan})  # `certify rollback-plan template`
    api.approve(permit["permit_id"], key, approver_id="tom", role="tech_lead")  # signs locally
    api.authorize({"worker": {"id": "w-7", "certification_level": 2},
                   "permit_id": permit["permit_id"],
                   "operation": {"type": "deploy", "environment": "production"}})

Signing happens here, never on the server: `approve`/`deny`/`revoke` fetch the permit,
recompute the hash of the request it shows (refusing to sign if the server's hash differs) and
sign the canonical approval with the approver's private key.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
import uuid
from datetime import datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from events.envelope import format_time, utc_now
from events.payloads import OverrideRequested, PermitRequested
from events.signing import request_sha256, sign_approval

DEFAULT_URL = "http://127.0.0.1:8080"


class ClientError(Exception):
    """An error answer from the API (or no answer): status, stable code, message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message


def signable_sha256(view: dict[str, Any]) -> str:
    """The request hash to sign, recomputed from the request the permit view shows.

    Raises ValueError if the server's `request_sha256` is not the hash of what it shows: an
    approver signs what they can see, never a hash they were merely told."""
    model = OverrideRequested if view.get("emergency") else PermitRequested
    document = dict(view["request"])
    document.setdefault("request_sha256", view["request_sha256"])
    document.setdefault("key_id", "")
    document.setdefault("signature", "")
    fields = model.model_fields
    computed = request_sha256(model.model_validate({k: v for k, v in document.items()
                                                    if k in fields}))
    if computed != view["request_sha256"]:
        raise ValueError(f"permit {view['permit_id']}: the request hash the server shows is not "
                         "the hash of the request it shows; refusing to sign")
    return computed


def load_private_key(path: str) -> Ed25519PrivateKey:
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    with open(path, "rb") as handle:
        key = load_pem_private_key(handle.read(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path}: not an Ed25519 private key")
    return key


class Client:
    def __init__(self, base_url: str = DEFAULT_URL, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode("utf-8")
        request = urllib.request.Request(self.base_url + path, data=data, method=method,
                                         headers={"Content-Type": "application/json",
                                                  "Accept": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            try:
                detail = json.loads(error.read())["error"]
                raise ClientError(error.code, detail["code"], detail["message"]) from None
            except (ValueError, KeyError, TypeError):
                raise ClientError(error.code, "http.error", str(error)) from None
        except (urllib.error.URLError, OSError) as error:
            raise ClientError(0, "client.unreachable",
                              f"{self.base_url}: {getattr(error, 'reason', error)}") from None

    # --- masters -----------------------------------------------------------------------------

    def submit_task(self, task: dict[str, Any]) -> dict[str, Any]:
        return self._call("POST", "/v1/tasks", task)

    def decision(self, task_id: str) -> dict[str, Any]:
        return self._call("GET", f"/v1/decisions/{urllib.parse.quote(task_id, safe='')}")

    def request_permit(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._call("POST", "/v1/permits", body)["permit"]

    def permit(self, permit_id: str) -> dict[str, Any]:
        return self._call("GET", f"/v1/permits/{urllib.parse.quote(permit_id, safe='')}")["permit"]

    def permits(self, state: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        query = urllib.parse.urlencode({k: v for k, v in (("state", state), ("limit", limit))
                                        if v is not None})
        return self._call("GET", f"/v1/permits?{query}")["permits"]

    def pending(self) -> list[dict[str, Any]]:
        return self.permits("pending")

    def renew(self, permit_id: str, requested_by: str, extension_hours: float,
              justification: str) -> dict[str, Any]:
        return self._call("POST", f"/v1/permits/{urllib.parse.quote(permit_id, safe='')}/renewals",
                          {"requested_by": requested_by, "extension_hours": extension_hours,
                           "justification": justification})["permit"]

    def close(self, permit_id: str, requested_by: str, summary: dict[str, Any] | None = None
              ) -> dict[str, Any]:
        return self._call("POST", f"/v1/permits/{urllib.parse.quote(permit_id, safe='')}/closure",
                          {"requested_by": requested_by, "summary": summary or {}})["permit"]

    # --- approvers ---------------------------------------------------------------------------

    def sign(self, permit_id: str, key: Ed25519PrivateKey, *, approver_id: str, role: str,
             decision: str, comments: str = "", decided_at: datetime | None = None
             ) -> dict[str, Any]:
        """Fetch, check and sign: the approval body, ready for `send_signed`."""
        sha = signable_sha256(self.permit(permit_id))
        body = sign_approval(key, permit_id=permit_id, request_sha256=sha, decision=decision,
                             decided_at=decided_at or utc_now(), approver_id=approver_id,
                             approver_role=role)
        return {**body, "comments": comments}

    def send_signed(self, body: dict[str, Any]) -> dict[str, Any]:
        where = "revocations" if body.get("decision") == "revoke" else "approvals"
        path = f"/v1/permits/{urllib.parse.quote(body['permit_id'], safe='')}/{where}"
        return self._call("POST", path, body)["permit"]

    def approve(self, permit_id: str, key: Ed25519PrivateKey, **who: Any) -> dict[str, Any]:
        return self.send_signed(self.sign(permit_id, key, decision="approve", **who))

    def deny(self, permit_id: str, key: Ed25519PrivateKey, **who: Any) -> dict[str, Any]:
        return self.send_signed(self.sign(permit_id, key, decision="deny", **who))

    def revoke(self, permit_id: str, key: Ed25519PrivateKey, **who: Any) -> dict[str, Any]:
        return self.send_signed(self.sign(permit_id, key, decision="revoke", **who))

    # --- workers and incident commanders -------------------------------------------------------

    def authorize(self, request: dict[str, Any]) -> dict[str, Any]:
        return self._call("POST", "/v1/authorize", request)

    def report_execution(self, report: dict[str, Any]) -> dict[str, Any]:
        return self._call("POST", "/v1/executions", report)

    def override(self, key: Ed25519PrivateKey, *, commander_id: str, role: str, worker_id: str,
                 incident_ticket: str, trigger: str, scope: dict[str, Any], reason: str,
                 override_id: str | None = None, requested_at: datetime | None = None
                 ) -> dict[str, Any]:
        """Sign and send an emergency override; returns the emergency permit."""
        at = requested_at or utc_now()
        body: dict[str, Any] = {
            "override_id": override_id or f"ovr-{uuid.uuid4().hex[:12]}",
            "incident_ticket": incident_ticket, "trigger": trigger, "commander_id": commander_id,
            "commander_role": role, "worker_id": worker_id, "scope": scope, "reason": reason,
            "requested_at": format_time(at), "request_sha256": "0" * 64, "key_id": "",
            "signature": ""}
        body["request_sha256"] = request_sha256(OverrideRequested.model_validate(body))
        signed = sign_approval(key, permit_id=body["override_id"],
                               request_sha256=body["request_sha256"], decision="override",
                               decided_at=at, approver_id=commander_id, approver_role=role)
        body.update(key_id=signed["key_id"], signature=signed["signature"])
        return self._call("POST", "/v1/overrides", body)["permit"]

    def review_override(self, override_id: str, reviewer_id: str, report: dict[str, Any]
                        ) -> dict[str, Any]:
        path = f"/v1/overrides/{urllib.parse.quote(override_id, safe='')}/reviews"
        return self._call("POST", path, {"reviewer_id": reviewer_id, "report": report})["permit"]

    def health(self) -> dict[str, Any]:
        return self._call("GET", "/healthz")
