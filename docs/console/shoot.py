#!/usr/bin/env python3
"""Screenshots of every console page for docs/ (run by shoot.sh against a loaded server).

    shoot.py BASE_URL TOKEN OUT_DIR
"""
import os
import sys

from playwright.sync_api import sync_playwright

BASE, TOKEN, OUT = sys.argv[1:4]
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
PAGES = [
    ("team", "/ui?period=quarter&at=2017-06-30"),
    ("queue", "/ui/queue"),
    ("forecast", "/ui/forecast?period=quarter&by=rep&at=2017-06-30"),
    ("model", "/ui/model"),
]

with sync_playwright() as p:
    browser = p.chromium.launch(executable_path=os.environ.get("LEADROUTER_CHROMIUM", "/usr/bin/chromium"),
                                headless=True, args=ARGS)
    page = browser.new_context(viewport={"width": 1360, "height": 900}).new_page()
    errors = []
    page.on("console", lambda m: m.type == "error" and errors.append(m.text))
    page.goto(f"{BASE}/ui/login")
    page.screenshot(path=os.path.join(OUT, "login.png"))
    page.fill("input[name=token]", TOKEN)
    page.click("button[type=submit]")
    page.wait_for_selector("#team")
    for name, path in PAGES:
        page.goto(BASE + path)
        page.wait_for_selector("body[data-live=on]")
        page.screenshot(path=os.path.join(OUT, f"{name}.png"), full_page=name != "queue")
    # The newest lead of the queue board's list, looked up (its decision record is among
    # the newest this replica keeps).
    page.goto(f"{BASE}/ui/queue")
    links = page.query_selector_all("table.queue tr[data-lead] a")
    newest = max(links, key=lambda a: a.text_content())
    newest.click()
    page.wait_for_selector("#lead-events")
    page.screenshot(path=os.path.join(OUT, "lead.png"), full_page=True)
    browser.close()
    if errors:
        sys.exit(f"console errors: {errors}")
