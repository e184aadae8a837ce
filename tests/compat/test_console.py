"""The web console in a real browser (Debian's Chromium, driven by
Playwright): sign in with the admin token, create a tenant and a key in the
pages, use the key through the OpenAI SDK and find those requests in the
usage chart, table and CSV, revoke the key in the page and see the SDK's
next call refused; a tenant's key sees its own usage and none of the admin
pages. Each page is checked with axe-core against the WCAG 2.1 AA rules and
photographed on the way; with AITIER_CONSOLE_SHOTS set the pictures go
there (the README's are made so, into docs/img)."""

import json
import os
import shutil
import threading
import time
import uuid
from pathlib import Path

import httpx
import openai
import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Browser, Page, expect, sync_playwright

from conftest import MODEL, key_client, make_key, running_server, usage_rows

ADMIN = "admin-token-for-console-tests-0123"
CHROMIUM = "/usr/bin/chromium"
# What the machine's closed network needs: no background fetches, no QUIC.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LAPTOP = {"width": 1366, "height": 800}
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def tier(tmp_path_factory):
    db = f"sqlite://{tmp_path_factory.mktemp('console')}/aitier.db"
    log = tmp_path_factory.mktemp("console-log") / "server.log"
    with running_server(log, ["--database-url", db, "--admin-token", ADMIN]) as url:
        admin = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=30)
        yield url, admin


@pytest.fixture(scope="module")
def browser():
    if shutil.which(CHROMIUM) is None:
        pytest.fail(f"{CHROMIUM} is missing: scripts/install-test-deps.sh installs Debian's chromium")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    where = os.environ.get("AITIER_CONSOLE_SHOTS")
    return Path(where) if where else tmp_path_factory.mktemp("console-shots")


def new_page(browser: Browser, url: str, viewport=LAPTOP) -> Page:
    ctx = browser.new_context(base_url=url, viewport=viewport)
    page = ctx.new_page()
    errors: list[str] = []
    # Chromium logs each refused fetch (the sign-in check, a wrong token):
    # those are expected; a script error is not.
    page.on(
        "console",
        lambda m: errors.append(m.text)
        if m.type == "error" and not m.text.startswith("Failed to load resource")
        else None,
    )
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.errors = errors  # type: ignore[attr-defined]
    return page


def sign_in(page: Page, token: str) -> None:
    page.goto("/console/")
    page.get_by_label("Admin token or API key").fill(token)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()


def shoot(page: Page, shots: Path, name: str) -> None:
    """Checks the page with axe-core (WCAG 2.1 A and AA rules), then
    photographs it."""
    results = Axe().run(page, options={"runOnly": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]})
    found = [
        f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:3]}"
        for v in results.response["violations"]
    ]
    assert results.response["passes"], f"{name}: axe checked nothing"
    assert found == [], f"{name}: {found}"
    page.wait_for_timeout(300)  # charts finish drawing
    page.screenshot(path=str(shots / f"console-{name}.png"), full_page=True)


def series(page: Page, testid: str) -> dict[str, int]:
    raw = page.get_by_test_id(testid).get_attribute("data-series")
    return {s["label"]: s["total"] for s in json.loads(raw or "[]")}


def test_admin_runs_a_tenant_from_the_console(tier, browser, shots):
    url, admin = tier
    page = new_page(browser, url)
    page.goto("/console/")
    expect(page.get_by_label("Admin token or API key")).to_be_visible()
    shoot(page, shots, "signin")
    page.get_by_label("Admin token or API key").fill("not-the-token")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("admin token")

    sign_in(page, ADMIN)
    cookie = next(c for c in page.context.cookies() if c["name"] == "aitier_console")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict", cookie

    # A tenant and its key, made in the pages.
    team = f"console-{uuid.uuid4().hex[:6]}"
    page.goto("/console/#/tenants")
    page.locator("#tenant-name").fill(team)
    page.get_by_label("RPM").first.fill("600")
    page.get_by_role("button", name="Create tenant").click()
    row = page.locator(f'[data-tenant="{team}"]')
    expect(row).to_be_visible()
    expect(row).to_contain_text("600")
    assert admin.get(f"/admin/v1/tenants/{team}").json()["rpm"] == 600

    page.get_by_role("button", name=f"Keys for {team}").click()
    page.locator("#key-name").fill("sdk")
    page.get_by_role("button", name="Create key").click()
    key = page.get_by_test_id("new-key").inner_text().strip()
    assert key.startswith("sk-aitier-"), key
    shoot(page, shots, "tenants")

    # Requests through the SDK with that key.
    sdk = key_client(url, key)
    total = 0
    for i in range(3):
        r = sdk.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": f"Say {i}"}], max_tokens=8, temperature=0
        )
        total += r.usage.total_tokens
    assert sum(r["requests"] for r in usage_rows(admin, team, 3)) == 3

    page.goto("/console/#/usage")
    page.locator("#bucket").select_option("hour")
    table = page.locator("#usage-table")
    expect(table.locator("tr", has_text=team)).to_contain_text(f"{total:,}")
    expect(table.locator("tr", has_text=team).locator("td").first).to_have_text("3")
    page.wait_for_function(
        "([id, name]) => (document.querySelector(`[data-testid=${id}]`)?.dataset.series ?? '').includes(name)",
        arg=["usage-chart", team],
    )
    assert series(page, "usage-chart")[team] == total
    shoot(page, shots, "usage")

    # The CSV link gives the charts' series: by hour and tenant, with percentiles.
    href = page.locator("#csv").get_attribute("href")
    csv = page.request.get(href)
    assert csv.ok and csv.headers["content-type"].startswith("text/csv"), csv.status
    header, *lines = csv.text().splitlines()
    assert header.startswith("hour,tenant_id,requests,") and header.endswith(",latency_ms_p99"), header
    tenant_id = admin.get(f"/admin/v1/tenants/{team}").json()["id"]
    mine = [ln.split(",") for ln in lines if ln.split(",")[1] == tenant_id]
    assert sum(int(c[2]) for c in mine) == 3 and sum(int(c[6]) for c in mine) == total, mine

    page.goto("/console/#/models")
    model_row = page.locator("tr", has_text=MODEL)
    expect(model_row).to_contain_text("loaded")
    # Finished requests leave nothing running (the engine told its gauges
    # only at its next request before).
    expect(model_row.locator("td").nth(2)).to_have_text("0", timeout=12_000)
    (state,) = [m for m in admin.get("/admin/v1/models").json()["data"] if m["id"] == MODEL]
    assert state["stats"]["running"] == 0 and state["stats"]["requests_finished"] >= 3, state
    expect(model_row.locator("td").nth(8)).to_have_text(f"{state['stats']['requests_finished']:,}")
    shoot(page, shots, "models")

    # Live: a stream generating while the page polls shows tokens per second.
    page.goto("/console/#/live")
    streaming = threading.Thread(
        target=lambda: list(
            sdk.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": "Count"}], max_tokens=800, stream=True,
                extra_body={"ignore_eos": True},
            )
        )
    )
    streaming.start()
    page.wait_for_function(
        "() => parseFloat((document.querySelector('[data-testid=live-tps]')?.textContent ?? '0').replace(/,/g, '')) > 0",
        timeout=30_000,
    )
    page.wait_for_timeout(6_000)  # a few samples on the chart
    shoot(page, shots, "live")
    streaming.join()

    # A write with the session cookie but without the CSRF token is refused.
    forged = page.request.post("/admin/v1/tenants", data={"name": f"forged-{team}"})
    assert forged.status == 403 and forged.json()["error"]["code"] == "csrf_failed", forged.text()
    assert admin.get(f"/admin/v1/tenants/forged-{team}").status_code == 404

    # Revoked in the page: the SDK's next call is refused.
    page.goto("/console/#/tenants")
    page.get_by_role("button", name=f"Keys for {team}").click()
    key_id = key.split("-")[2]
    page.get_by_role("button", name=f"Revoke key {key_id}").click()
    page.get_by_role("button", name="Confirm revoke").click()
    expect(page.locator(f'[data-key-id="{key_id}"]')).to_contain_text("revoked")
    with pytest.raises(openai.AuthenticationError) as e:
        sdk.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=1)
    assert e.value.status_code == 401
    assert page.errors == [], page.errors  # type: ignore[attr-defined]


def test_a_tenant_key_sees_its_own_usage_and_no_admin_page(tier, browser, shots):
    url, admin = tier
    mine = f"own-{uuid.uuid4().hex[:6]}"
    other = f"other-{uuid.uuid4().hex[:6]}"
    key = make_key(admin, {"name": mine})
    other_key = make_key(admin, {"name": other})
    for k in (key, other_key):
        key_client(url, k).chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=4, temperature=0
        )
    usage_rows(admin, mine, 1)
    usage_rows(admin, other, 1)

    # By keyboard alone: the field has the focus, Enter submits.
    page = new_page(browser, url, PHONE)
    page.goto("/console/")
    expect(page.get_by_label("Admin token or API key")).to_be_focused()
    page.keyboard.type(key)
    page.keyboard.press("Enter")
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    nav = page.get_by_role("navigation", name="Main")
    expect(nav.get_by_role("link", name="Usage")).to_be_visible()
    expect(nav.get_by_role("link", name="Tenants")).to_have_count(0)
    expect(page.locator("#usage-table")).to_contain_text("smollm2")
    shoot(page, shots, "usage-phone")

    page.goto("/console/#/tenants")
    expect(page.get_by_role("alert")).to_contain_text("needs the admin token")
    # The admin API, the usage of another tenant, and the models: refused.
    assert page.request.get("/admin/v1/tenants").status == 401
    assert page.request.get("/admin/v1/usage").status == 401
    assert page.request.get(f"/v1/usage?tenant={other}").status == 403
    # The cookie reads; it never runs a model.
    run = page.request.post(
        "/v1/chat/completions", data={"model": MODEL, "messages": [{"role": "user", "content": "Hi"}]}
    )
    assert run.status == 401, run.text()
    own = page.request.get("/v1/usage?group_by=tenant")
    assert own.ok and [r["requests"] for r in own.json()["data"]] == [1], own.text()

    # Signing out ends the session.
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_label("Admin token or API key")).to_be_visible()
    assert page.request.get("/console/session").status == 401
    assert page.errors == [], page.errors  # type: ignore[attr-defined]


def test_no_console_serves_none_of_it(tmp_path):
    with running_server(tmp_path / "server.log", ["--no-console", "--data-dir", str(tmp_path / "data")]) as url:
        for method, path in (("GET", "/console/"), ("GET", "/console/assets/x.js"), ("POST", "/console/session")):
            r = httpx.request(method, f"{url}{path}", json={"token": ADMIN} if method == "POST" else None)
            assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_url", (path, r.text)
        assert httpx.get(f"{url}/v1/models").status_code == 200
