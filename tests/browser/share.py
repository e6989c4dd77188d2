"""Share links in headless Chromium: a user with `share` makes links in the
web client's Share dialog, and each is opened in a fresh browser context,
as a person who got the link by mail would: a folder to download, a
password that is refused then given, a link for one use, a revoked and an
expired link (410), and an upload link that takes a file and shows
nothing. tests/suite/web.rs starts the gateway and checks the bucket.
Screenshots go to $SHOTS."""

import os
import tempfile

from playwright.sync_api import expect, sync_playwright

URL = os.environ["WEB_URL"]
CONSOLE = os.environ["CONSOLE_URL"]
SHOTS = os.environ["SHOTS"]
FILES = os.environ["FILES"]
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]

os.makedirs(SHOTS, exist_ok=True)
expect.set_options(timeout=30_000)


def row(page, name):
    return page.locator("#listing tbody tr").filter(has=page.get_by_role("link", name=name, exact=True))


def make_link(page, name, kind="download", password="", uses=""):
    """The Share dialog of `name`: the link it shows."""
    row(page, name).get_by_role("button", name="Share").click()
    expect(page.locator("#share-dialog")).to_be_visible()
    page.check(f"#share-form input[value={kind}]")
    page.fill("#share-password", password)
    page.fill("#share-uses", uses)
    page.click("#share-create")
    expect(page.locator("#share-made")).to_be_visible()
    url = page.input_value("#share-url")
    page.click("#share-close")
    return url


with sync_playwright() as p, tempfile.TemporaryDirectory() as profile:
    browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
    owner = browser.new_context(viewport={"width": 1100, "height": 800})
    page = owner.new_page()
    problems = []
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.goto(URL)
    page.fill("#user", "sharer")
    page.fill("#password", "demo")
    page.click("#login-button")
    expect(row(page, "docs/")).to_be_visible()

    folder = make_link(page, "docs/")
    locked = make_link(page, "docs/", password="open sesame")
    once = make_link(page, "docs/", uses="1")
    revoked = make_link(page, "docs/", uses="7")
    dropbox = make_link(page, "inbox/", kind="upload")
    # Expired: the dialog offers days; the page's own API takes seconds.
    expired = page.evaluate("""async () => {
        const me = await (await fetch("/api/me")).json();
        const r = await fetch("/api/shares", {method: "POST", headers: {
            "content-type": "application/json", "x-csrf-token": me.csrf},
            body: JSON.stringify({path: "/docs", kind: "download", expires: "1s"})});
        return (await r.json()).url;
    }""")
    # Revoked in the page's list of links: the one for seven uses.
    seven = page.locator("#links-table tbody tr", has_text="0 of 7")
    expect(seven).to_have_count(1)
    page.screenshot(path=f"{SHOTS}/links.png")
    seven.get_by_role("button", name="Revoke").click()
    expect(seven).to_have_count(0)

    def fresh():
        """A person with the link and nothing else."""
        context = browser.new_context(viewport={"width": 900, "height": 700}, accept_downloads=True)
        return context, context.new_page()

    # The folder: listed, a file downloads, the zip too.
    context, visitor = fresh()
    visitor.goto(folder)
    expect(visitor.locator("#share-listing tr[data-name='a.txt']")).to_be_visible()
    visitor.screenshot(path=f"{SHOTS}/share.png")
    with visitor.expect_download() as got:
        visitor.click("#share-listing tr[data-name='a.txt'] a")
    with open(got.value.path(), "rb") as f:
        assert f.read() == b"file a"
    context.close()

    # The password: asked, a wrong one refused, the right one opens.
    context, visitor = fresh()
    visitor.goto(locked)
    expect(visitor.locator("#share-password")).to_be_visible()
    visitor.fill("#password", "guess")
    visitor.click("#share-password button")
    expect(visitor.locator("#share-error")).to_have_text("Wrong password.")
    visitor.fill("#password", "open sesame")
    visitor.click("#share-password button")
    expect(visitor.locator("#share-listing tr[data-name='a.txt']")).to_be_visible()
    context.close()

    # One use: the download is it; then 410.
    context, visitor = fresh()
    visitor.goto(once)
    with visitor.expect_download() as got:
        visitor.click("#share-listing tr[data-name='a.txt'] a")
    got.value.path()
    answer = visitor.goto(once)
    assert answer.status == 410, answer.status
    expect(visitor.locator("h1")).to_contain_text("used as many times")
    context.close()

    # Revoked and expired: 410 and a plain page.
    for url, words in [(revoked, "revoked"), (expired, "expired")]:
        context, visitor = fresh()
        answer = visitor.goto(url)
        assert answer.status == 410, (url, answer.status)
        expect(visitor.locator("h1")).to_contain_text(words)
        context.close()

    # The drop box: a file goes in; nothing is listed, before or after.
    context, visitor = fresh()
    visitor.goto(dropbox)
    expect(visitor.locator("#share-upload-label")).to_be_visible()
    assert visitor.locator("table").count() == 0
    visitor.set_input_files("#share-upload", os.path.join(FILES, "dropped.csv"))
    expect(visitor.locator("#share-progress li[data-file='dropped.csv']")).to_have_class("done")
    visitor.screenshot(path=f"{SHOTS}/dropbox.png")
    visitor.reload()
    assert "dropped.csv" not in visitor.content()
    context.close()

    # An operator in the console: every link listed, one made for the user.
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    ops = context.new_page()
    ops.on("pageerror", lambda e: problems.append(str(e)))
    ops.goto(CONSOLE)
    ops.fill("#name", "ops")
    ops.fill("#password", "demo")
    ops.click("#login-button")
    ops.click("nav a[href='#shares']")
    expect(ops.locator("tr[data-share]")).to_have_count(6)
    expect(ops.locator("tr[data-share]", has_text="revoked")).to_have_count(1)
    ops.fill("#share-user", "sharer")
    ops.fill("#share-path", "/docs/a.txt")
    ops.click("#share-form button[type=submit]")
    expect(ops.locator("#share-url")).not_to_have_value("")
    made = ops.input_value("#share-url")
    expect(ops.locator("tr[data-share]", has_text="admin:ops")).to_have_count(1)
    ops.screenshot(path=f"{SHOTS}/console-shares.png")
    context.close()
    context, visitor = fresh()
    visitor.goto(made)
    expect(visitor.locator("#share-download")).to_be_visible()
    context.close()

    assert not problems, problems
    browser.close()
