"""Keeps the admin console open while bench/sftp.sh's bucketgate-console
target runs, until killed; prints "open" once logged in.

  console_open.py URL NAME PASSWORD          # headless Chromium on the live Sessions view
  console_open.py URL NAME PASSWORD poll     # the page's requests only (the dashboard's
                                             # three, every second), without a browser

The second tells the gateway's cost apart from the browser's, which on a
small machine competes with the transfers for the same cores."""

import json
import sys
import tempfile
import time
import urllib.request

url, name, password = sys.argv[1:4]
mode = sys.argv[4] if len(sys.argv) > 4 else "browser"

if mode == "poll":
    login = urllib.request.Request(
        url + "api/v1/login", data=json.dumps({"name": name, "password": password}).encode(),
        headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(login) as r:
        cookie = r.headers["Set-Cookie"].split(";")[0]
    print("open", flush=True)
    while True:
        for path in ("sessions", "remotes", "operations?limit=200"):
            req = urllib.request.Request(url + "api/v1/" + path, headers={"Cookie": cookie})
            with urllib.request.urlopen(req) as r:
                r.read()
        time.sleep(1)

from playwright.sync_api import sync_playwright

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
