"""The dashboard in a real browser: Debian's headless Chromium driven by Playwright, against
the real aiohttp app (streams.web.create_app over an embedded runner) on a free loopback port.

An approver loads the key file `certify approver keygen` writes, approves a pending permit
with a signature made in the page (WebCrypto Ed25519) and sees it issued; an approval signed
with a key not registered to that approver is refused on screen; the audit viewer shows an
entry verified in the browser against the pinned ledger key. A screenshot is kept under
test-artifacts/.
"""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from events import utc_now
from ledger import SigningKey
from tests.test_permit_kit import TASKS, Approver, LiveServer
from tests.test_reports_kit import PLAN_TESTED

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"

from playwright import sync_api  # noqa: E402  (a test dependency: never skipped if missing)


@pytest.fixture(autouse=True)
def _chromium_is_installed():
    """A browser test that cannot run is a failure, not a skip (make test installs chromium)."""
    if shutil.which(CHROMIUM) is None and not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run scripts/ensure-chromium.sh (make test does)")


def pem_file(key: Ed25519PrivateKey, path: Path) -> Path:
    """The key file as `certify approver keygen` writes it (PEM PKCS#8, 0600)."""
    path.write_bytes(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    path.chmod(0o600)
    return path


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    from rules.policy import default_policy
    from streams.config import load_settings
    from streams.embedded import EmbeddedRunner

    path = tmp_path_factory.mktemp("dashboard")
    settings = load_settings(data_dir=str(path / "data"), key_dir=str(path / "keys"),
                             partitions=2)
    runner = EmbeddedRunner(settings, default_policy())  # the real clock: a live server
    tom = Approver("tom", "tech_lead")
    runner.pipeline.record(tom.registration(valid_from=utc_now() - timedelta(days=1)))
    server = LiveServer(runner.pipeline)
    server.runner, server.path, server.tom = runner, path, tom
    server.tom_key = pem_file(tom.key, path / "tom.key")
    server.forged_key = pem_file(Ed25519PrivateKey.generate(), path / "not-registered.key")
    yield server
    server.stop()
    runner.close()


def new_permit(site, task_id: str) -> str:
    status, _, decision = site.call("POST", "/v1/tasks", {**TASKS[2], "task_id": task_id})
    assert status == 200, decision
    status, _, created = site.call("POST", "/v1/permits", {
        "task_id": task_id, "requested_by": "master-1", "worker_id": "worker-7",
        "scope": {"operations": ["deploy"], "services": ["api"], "environment": "production"},
        "justification": "release 2.1", "rollback_plan": PLAN_TESTED,
        "constraints": {"max_error_rate": 0.01, "max_latency_p99_ms": 500}})
    assert status == 201, created
    return created["permit"]["permit_id"]


def signed_and_projected(site) -> None:
    site.runner.ledger.checkpoint_now()
    site.runner.projector.catch_up()


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield instance
        instance.close()


def open_dashboard(browser, site, key: Path):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"{site.url}/")  # redirects to /dashboard/
    page.wait_for_selector("body[data-ready=true]")
    page.fill("#approver-id", "tom")
    page.fill("#approver-role", "tech_lead")
    page.set_input_files("#key-file", str(key))
    page.wait_for_selector("#key-status[data-state=ok]")
    page.errors = errors
    return page


def test_an_approver_signs_in_the_browser_and_sees_the_permit_issued(browser, site):
    permit_id = new_permit(site, "browser-task-1")
    page = open_dashboard(browser, site, site.tom_key)
    assert site.tom.public_key in page.text_content("#key-status")
    page.click(f"#approve-{permit_id}")
    result = page.locator(f"[data-testid='result-{permit_id}']")
    result.wait_for()
    page.wait_for_function("id => document.getElementById('result-' + id)?.dataset.state"
                           " === 'ok'", arg=permit_id)
    assert "approved: the permit is now issued" in result.text_content()
    page.wait_for_function("id => document.getElementById('state-' + id)?.textContent"
                           " === 'issued'", arg=permit_id)
    assert site.call("GET", f"/v1/permits/{permit_id}")[2]["permit"]["state"] == "issued"
    approval = site.call("GET", f"/v1/permits/{permit_id}")[2]["permit"]["approvals"][0]
    assert (approval["approver_id"], approval["role"]) == ("tom", "tech_lead")
    assert not page.errors
    page.close()


def test_an_approval_signed_with_an_unregistered_key_is_refused_on_screen(browser, site):
    permit_id = new_permit(site, "browser-task-2")
    page = open_dashboard(browser, site, site.forged_key)
    page.click(f"#approve-{permit_id}")
    result = page.locator(f"[data-testid='result-{permit_id}']")
    page.wait_for_function("id => document.getElementById('result-' + id)?.dataset.state"
                           " === 'error'", arg=permit_id)
    assert "refused (approval.unknown_key" in result.text_content()
    assert site.call("GET", f"/v1/permits/{permit_id}")[2]["permit"]["state"] == "in_review"
    page.close()


def test_a_report_is_made_and_listed_from_the_page(browser, site):
    signed_and_projected(site)
    page = open_dashboard(browser, site, site.tom_key)
    today = utc_now().date().isoformat()
    page.select_option("#report-form select[name=framework]", "soc2")
    page.fill("#report-form input[name=from]", today)
    page.fill("#report-form input[name=to]", today)
    page.click("#report-form button[type=submit]")
    page.wait_for_selector("#report-status.ok", timeout=30_000)
    report_id = page.text_content("#report-status").removeprefix("made ").strip()
    link = page.locator(f"#report-list a[href='/reports/{report_id}.csv']")
    link.wait_for()
    status, _, document = site.call("GET", f"/reports/{report_id}.json")
    assert status == 200 and document["population"]["count"] >= 2
    assert {x["code"] for x in document["exceptions"]["items"]} == set()
    assert not page.errors
    page.close()


def test_the_audit_viewer_verifies_an_entry_in_the_browser(browser, site):
    permit_id = new_permit(site, "browser-task-3")
    signed_and_projected(site)
    page = open_dashboard(browser, site, site.tom_key)
    page.fill("#pinned-key", site.runner.ledger.signer.vkey())
    page.fill("#audit-form input[name=permit]", permit_id)
    page.click("#audit-form button[type=submit]")
    row = page.locator(f"#audit-rows tr[data-type='permit.requested'][data-subject='{permit_id}']")
    row.locator("[data-status=verified]").wait_for(timeout=15_000)
    assert "verified in browser" in row.locator(".verification").text_content()
    assert page.locator("#audit-rows [data-status=failed]").count() == 0
    # A key that did not sign the ledger: every entry fails, in the browser.
    page.fill("#pinned-key", SigningKey.generate("worker-certification.ledger").vkey())
    page.click("#audit-form button[type=submit]")
    page.locator("#audit-rows [data-status=failed]").first.wait_for(timeout=15_000)
    assert "not signed by a trusted key" in page.locator(
        "#audit-rows [data-status=failed]").first.text_content()
    page.fill("#pinned-key", "")
    page.click("#audit-form button[type=submit]")
    page.locator("#audit-rows [data-status=verified]").first.wait_for(timeout=15_000)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
    assert not page.errors
    page.close()
