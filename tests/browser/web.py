"""Drives the web client in headless Chromium (Debian's, through Playwright)
as a partner would: log in, upload three files (one of 50 MiB) with the
picker, upload one whose connection is cut and resumes, pick one again
after a reload and see it resume, download a file
and the folder as a zip, rename and delete, and as a read-only user find
no way to change anything. tests/suite/web.rs starts the gateway, makes the
files in $FILES, runs this, then checks the bucket. Screenshots go to
$SHOTS."""

import hashlib
import io
import json
import os
import tempfile
import zipfile

from playwright.sync_api import expect, sync_playwright

URL = os.environ["WEB_URL"]
SHOTS = os.environ["SHOTS"]
FILES = os.environ["FILES"]
EVIL = "<img src=x onerror=alert(1)>.txt"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]

os.makedirs(SHOTS, exist_ok=True)
expect.set_options(timeout=60_000)


def read(name):
    with open(os.path.join(FILES, name), "rb") as f:
        return f.read()


def watch(page):
    """Errors the page shows, and every dialog; prompts get `answer[0]`."""
    problems, dialogs, answer = [], [], [None]

    def on_dialog(d):
        dialogs.append((d.type, d.message))
        if d.type == "prompt":
            d.accept(answer[0])
        else:
            d.accept()

    # Expected: the 401 of the first "who am I", the refused wrong
    # password, the aborted PATCH; nothing else.
    page.on("console", lambda m: problems.append(m.text)
            if m.type == "error" and "status of 401" not in m.text
            and "net::ERR_CONNECTION_RESET" not in m.text else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on("dialog", on_dialog)
    return problems, dialogs, answer


def log_in(page, user, password="demo"):
    page.goto(URL)
    page.fill("#user", user)
    page.fill("#password", password)
    page.click("#login-button")


def cutting(patches, cut):
    """A route that notes each PATCH's offset in `patches` and cuts the
    connection of the n-th where `cut(n)`."""
    def handle(route):
        if route.request.method == "PATCH":
            patches.append(route.request.headers.get("upload-offset"))
            if cut(len(patches)):
                return route.abort("connectionreset")
        return route.continue_()
    return handle


def row(page, name):
    return page.locator("#listing tbody tr").filter(has=page.get_by_role("link", name=name, exact=True))


with sync_playwright() as p, tempfile.TemporaryDirectory() as profile:
    browser = p.chromium.launch_persistent_context(
        profile, executable_path=CHROMIUM, headless=True, args=FLAGS,
        viewport={"width": 1100, "height": 800}, accept_downloads=True,
    )
    page = browser.new_page()
    problems, dialogs, answer = watch(page)

    log_in(page, "alice", "wrong")
    expect(page.locator("#login-error")).to_have_text("wrong user name or password")
    page.fill("#password", "demo")
    page.click("#login-button")
    expect(page.locator("#files")).to_be_visible()

    # The hostile name is a name: shown as text, no script ran.
    expect(row(page, EVIL)).to_be_visible()
    assert page.locator("#listing img").count() == 0

    # Three files by the picker, one of 50 MiB: each bar reaches the end.
    names = ["notes.txt", "table.csv", "big.bin"]
    page.set_input_files("#upload", [os.path.join(FILES, n) for n in names])
    for n in names:
        item = page.locator(f"#progress li[data-file='{n}']")
        expect(item).to_have_class("done")
        value, top = item.locator("progress").evaluate("b => [b.value, b.max]")
        assert value == top, (n, value, top)
    for n in names:
        expect(row(page, n)).to_be_visible()
    page.screenshot(path=f"{SHOTS}/files.png")

    # A connection cut in the middle: the second PATCH of resume.bin is
    # aborted, the page asks where the upload stands and goes on.
    patches = []
    page.route("**/tus/*", cutting(patches, lambda n: n == 2))
    page.set_input_files("#upload", os.path.join(FILES, "resume.bin"))
    expect(page.locator("#progress li[data-file='resume.bin']")).to_have_class("done")
    page.unroute("**/tus/*")
    # The PATCH after the cut starts at the offset the first one reached.
    assert patches[1] == patches[2] == str(8 << 20), patches

    # The same file picked again in a page opened anew (as after a reload,
    # a new login or a gateway restart) goes on where the gateway's parts
    # end: no new upload, the first PATCH from 8 MiB.
    page.route("**/tus/*", cutting([], lambda n: n >= 2))
    page.set_input_files("#upload", os.path.join(FILES, "again.bin"))
    expect(page.locator("#progress li[data-file='again.bin'] .note")).to_have_text("connection lost; resuming…")
    page.unroute("**/tus/*")
    after = []
    page.on("request", lambda r: after.append((r.method, r.headers.get("upload-offset")))
            if "/tus/" in r.url else None)
    page.reload()
    expect(page.locator("#files")).to_be_visible()
    page.set_input_files("#upload", os.path.join(FILES, "again.bin"))
    expect(page.locator("#progress li[data-file='again.bin']")).to_have_class("done")
    assert "POST" not in [m for m, _ in after], after
    assert [o for m, o in after if m == "PATCH"][0] == str(8 << 20), after

    # A download by a click, and the folder as a zip: bytes as uploaded.
    with page.expect_download() as got:
        row(page, "notes.txt").get_by_role("link").click()
    assert got.value.suggested_filename == "notes.txt"
    with open(got.value.path(), "rb") as f:
        assert f.read() == read("notes.txt")
    with page.expect_download() as got:
        page.click("#zip")
    with open(got.value.path(), "rb") as f:
        z = zipfile.ZipFile(io.BytesIO(f.read()))
    inside = {i.filename: hashlib.sha256(z.read(i)).hexdigest() for i in z.infolist()}
    for n in names + ["resume.bin", "again.bin"]:
        assert inside[n] == hashlib.sha256(read(n)).hexdigest(), n
    assert EVIL in inside

    # Rename and delete, as alice may.
    answer[0] = "renamed.csv"
    row(page, "table.csv").get_by_role("button", name="Rename").click()
    expect(row(page, "renamed.csv")).to_be_visible()
    row(page, "renamed.csv").get_by_role("button", name="Delete").click()
    expect(row(page, "renamed.csv")).to_have_count(0)
    expect(row(page, "table.csv")).to_have_count(0)

    # A phone-width screen still shows the files.
    page.set_viewport_size({"width": 390, "height": 760})
    expect(row(page, "notes.txt")).to_be_visible()
    page.screenshot(path=f"{SHOTS}/phone.png")
    assert not any(t == "alert" for t, _ in dialogs), dialogs

    # The read-only user: no upload, new folder, rename or delete; the API
    # refuses a forged change, with or without the CSRF token.
    ro = browser.new_page()
    ro_problems, _, _ = watch(ro)
    ro.context.clear_cookies()
    log_in(ro, "ro")
    expect(ro.locator("#files")).to_be_visible()
    expect(row(ro, "notes.txt")).to_be_visible()
    expect(ro.locator("#upload-label")).to_be_hidden()
    expect(ro.locator("#new-folder")).to_be_hidden()
    assert ro.locator("#listing button", has_text="Delete").count() == 0
    assert ro.locator("#listing button", has_text="Rename").count() == 0
    assert not ro_problems, ro_problems
    statuses = ro.evaluate("""async () => {
        const me = await (await fetch("/api/me")).json();
        const post = (headers) => fetch("/api/delete", {method: "POST",
            headers: Object.assign({"content-type": "application/json"}, headers),
            body: JSON.stringify({path: "/notes.txt"})}).then(r => r.status);
        return [await post({}), await post({"x-csrf-token": me.csrf})];
    }""")
    assert statuses == [403, 403], statuses

    assert not problems, problems
    print(json.dumps({"patches": patches}))
    browser.close()
