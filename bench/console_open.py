"""Keeps the console open in headless Chromium on the sessions view (it
refreshes every second) until killed: bench/sftp.sh's bucketgate-console
target. Prints "open" once logged in."""

import sys
import tempfile
import time

from playwright.sync_api import sync_playwright

url, name, password = sys.argv[1:4]
flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
with sync_playwright() as p, tempfile.TemporaryDirectory() as profile:
    browser = p.chromium.launch_persistent_context(
        profile, executable_path="/usr/bin/chromium", headless=True, args=flags)
    page = browser.new_page()
    page.goto(url + "#sessions")
    page.fill("#name", name)
    page.fill("#password", password)
    page.click("#login-button")
    page.wait_for_selector("#nav", state="visible")
    print("open", flush=True)
    while True:
        time.sleep(60)
