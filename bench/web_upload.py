"""bench/web.sh: one file uploaded through the web client's page in
headless Chromium (log in as bench/bench, pick the file, wait for its bar
to finish). Usage: web_upload.py URL FILE"""

import os
import sys

from playwright.sync_api import expect, sync_playwright

url, path = sys.argv[1], sys.argv[2]
with sync_playwright() as p:
    browser = p.chromium.launch(
        executable_path=os.environ.get("CHROMIUM", "/usr/bin/chromium"),
        args=["--headless", "--no-sandbox", "--disable-gpu"],
    )
    page = browser.new_page()
    page.goto(url)
    page.fill("#user", "bench")
    page.fill("#password", "bench")
    page.click("#login-button")
    expect(page.locator("#files")).to_be_visible()
    page.set_input_files("#upload", path)
    name = os.path.basename(path)
    item = page.locator(f"#progress li[data-file='{name}']")
    expect(item).to_have_class("done", timeout=3_600_000)
    browser.close()
