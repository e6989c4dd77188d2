"""Drives the console in headless Chromium (Debian's, through Playwright):
log in, watch an upload move, end its session, run a sync job and read its
report, lift a ban. tests/suite/admin.rs starts the gateway and the upload, runs
this, then checks the bucket. Screenshots go to $SHOTS."""

import os
import tempfile

from playwright.sync_api import expect, sync_playwright

URL = os.environ["CONSOLE_URL"]
SHOTS = os.environ["SHOTS"]
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]

os.makedirs(SHOTS, exist_ok=True)
expect.set_options(timeout=30_000)

with sync_playwright() as p, tempfile.TemporaryDirectory() as profile:
    browser = p.chromium.launch_persistent_context(
        profile, executable_path=CHROMIUM, headless=True, args=FLAGS,
        viewport={"width": 1280, "height": 860},
    )
    page = browser.new_page()
    problems = []
    # The page asks who it is before the login (401), and the wrong
    # password is refused (401): those are expected, nothing else is.
    page.on("console", lambda m: problems.append(m.text)
            if m.type == "error" and "status of 401" not in m.text else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on("dialog", lambda d: d.accept())

    page.goto(URL)
    page.fill("#name", "ops")
    page.fill("#password", "wrong")
    page.click("#login-button")
    expect(page.locator("#login-error")).to_contain_text("wrong name or password")
    page.fill("#password", "demo")
    page.click("#login-button")
    expect(page.locator("#nav")).to_be_visible()

    # The dashboard shows the upload in flight.
    expect(page.locator("[data-transfer='/big.bin']")).to_be_visible()
    page.screenshot(path=f"{SHOTS}/dashboard.png")

    # Sessions: alice's upload, its bytes moving.
    page.click("nav a[href='#sessions']")
    row = page.locator("tr[data-user='alice']")
    expect(row.locator("[data-transfer='/big.bin']")).to_be_visible()
    first = row.locator(".bytes").inner_text()
    page.wait_for_function(
        """first => {
            const e = document.querySelector("tr[data-user='alice'] .bytes");
            return e && e.textContent !== first;
        }""",
        arg=first,
    )
    page.screenshot(path=f"{SHOTS}/sessions.png")
    row.locator("button.end").click()
    expect(page.locator("tr[data-user='alice']")).to_have_count(0)
    expect(page.locator("#notice")).to_contain_text("Ended alice's session")
    page.screenshot(path=f"{SHOTS}/session-ended.png")

    # The transfers log has the aborted upload.
    page.click("nav a[href='#transfers']")
    page.fill("#filter-path", "big.bin")
    page.press("#filter-path", "Enter")
    expect(page.locator("td.bad").first).to_be_visible()
    page.screenshot(path=f"{SHOTS}/transfers.png")

    # A sync job run from the page, and its report.
    page.click("nav a[href='#syncs']")
    job = page.locator("[data-job='nightly']")
    job.locator("button.run").click()
    expect(job.locator("tr.report .outcome").first).to_contain_text("done")
    page.screenshot(path=f"{SHOTS}/sync-report.png")

    # A ban, lifted.
    page.click("nav a[href='#bans']")
    ban = page.locator("tr[data-ban='127.0.0.2']")
    expect(ban).to_be_visible()
    ban.locator("button.lift").click()
    expect(page.locator("tr[data-ban='127.0.0.2']")).to_have_count(0)
    page.screenshot(path=f"{SHOTS}/ban-lifted.png")

    # Users: gil's limits, and his home's usage against its quota.
    page.click("nav a[href='#users']")
    expect(page.locator("tr[data-user='gil'] .limits")).to_contain_text("quota 1.0 GiB · down 5.0 MiB/s")
    expect(page.locator("tr[data-target='store:/gil']")).to_contain_text("0 B")
    expect(page.locator("tr[data-target='store:/gil']")).to_contain_text("1.0 GiB (0%)")
    page.screenshot(path=f"{SHOTS}/users.png")

    # On a phone's screen.
    page.set_viewport_size({"width": 390, "height": 844})
    page.click("nav a[href='#dashboard']")
    expect(page.locator(".cards")).to_be_visible()
    page.screenshot(path=f"{SHOTS}/phone.png", full_page=True)

    browser.close()
    assert not problems, problems
print("console ok")
