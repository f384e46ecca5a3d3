"""Emergency overrides, pure (governance `emergency`, facts §9.7, C-18).

An override is an incident commander's (or on-call lead's) signed grant of temporary Level 3
to one worker, for one incident ticket and one of the emergency triggers, for 60 minutes from
when we accept it; then it revokes itself (the service's tick). Continuing needs a new override
with a new signature, by an incident commander, at most `max_renewals` times per ticket
(total <= 4 h). It never covers destructive operations (multi-person authorization for
destructive operations is never bypassable). A post-incident review is opened at the grant and
falls due `post_incident_review_due_hours` after the override ends.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from events.payloads import OverrideRequested
from events.signing import SigningError, canonical_approval
from rules.approvals import MAX_CLOCK_SKEW, Registry, verify_signed
from rules.governance import Governance
from rules.permits import Refusal
from rules.scoring_model import normalise_name

DAY = timedelta(days=1)


@dataclass(frozen=True)
class Grant:
    expires_at: datetime
    review_due_at: datetime
    sequence: int  # 1 = first override for this ticket, 2.. = renewals
    overrides_last_day: int  # including this one
    alert: bool  # more than daily_alert_threshold overrides in 24 h


def override_message(req: OverrideRequested) -> bytes | None:
    try:
        return canonical_approval(permit_id=req.override_id, request_sha256=req.request_sha256,
                                  decision="override", decided_at=req.requested_at,
                                  approver_id=req.commander_id, approver_role=req.commander_role)
    except SigningError:
        return None


def check_override(req: OverrideRequested, *, computed_sha256: str, registry: Registry,
                   governance: Governance, destructive_operations: Collection[str],
                   ticket_overrides: int, recent_grants: Iterable[datetime],
                   known_ids: Collection[str], seen_signatures: Collection[str], now: datetime
                   ) -> Grant | Refusal:
    e = governance.emergency
    if req.override_id in known_ids:
        return Refusal("override.id_conflict", f"override {req.override_id!r} already exists")
    signed = verify_signed(registry, approver_id=req.commander_id, role=req.commander_role,
                           key_id=req.key_id, signature=req.signature,
                           message=override_message(req), now=now,
                           seen_signatures=seen_signatures)
    if isinstance(signed, Refusal):
        return signed
    if req.commander_role not in e.approver_roles:
        return Refusal("approval.wrong_role",
                       f"emergency overrides need one of {', '.join(e.approver_roles)}")
    if req.request_sha256 != computed_sha256:
        return Refusal("approval.request_changed",
                       "request_sha256 is not the hash of this override request")
    if req.requested_at > now + MAX_CLOCK_SKEW:
        return Refusal("approval.future_dated", "requested_at lies in the future")
    if now - req.requested_at > timedelta(minutes=e.approval_max_minutes):
        return Refusal("approval.deadline_passed",
                       f"an override must reach us within {e.approval_max_minutes:g} minutes "
                       "of being signed")
    if req.commander_id == req.worker_id:
        return Refusal("approval.self_approval", "a commander cannot grant an override to "
                       "themselves")
    if not req.incident_ticket.strip():
        return Refusal("override.incident_ticket_missing", "incident_ticket: required")
    if req.trigger not in e.triggers:
        return Refusal("override.unknown_trigger",
                       f"trigger must be one of {', '.join(e.triggers)}")
    if not req.reason.strip():
        return Refusal("override.reason_missing", "reason: required")
    ops = {normalise_name(o) for o in req.scope.operations if o.strip()}
    if not ops:
        return Refusal("override.scope_empty", "scope.operations: name at least one operation")
    destructive = sorted(ops & set(destructive_operations))
    if destructive:
        return Refusal("override.destructive_not_allowed",
                       f"destructive operations ({', '.join(destructive)}) always need "
                       "multi-person authorization: no emergency override covers them")
    if ticket_overrides > e.max_renewals:
        return Refusal("override.renewals_exhausted",
                       f"incident {req.incident_ticket} already had {ticket_overrides} overrides "
                       f"(at most 1 + {e.max_renewals}, {e.max_total_minutes:g} minutes)")
    if ticket_overrides > 0 and req.commander_role not in e.renewal_approver_roles:
        return Refusal("approval.wrong_role",
                       f"continuing an override needs {', '.join(e.renewal_approver_roles)}")
    expires = now + timedelta(minutes=e.duration_minutes)
    day = [t for t in recent_grants if now - t < DAY]
    count = len(day) + 1
    return Grant(expires_at=expires,
                 review_due_at=expires + timedelta(hours=e.post_incident_review_due_hours),
                 sequence=ticket_overrides + 1, overrides_last_day=count,
                 alert=count > e.daily_alert_threshold)
