#!/usr/bin/env python3
"""Drives the web console in headless Chromium (Playwright) for tests/api/console.rs.

The Rust test owns the server and the gRPC side; this script owns the browser. They talk in
JSON lines: the script prints what it read off each page ({"step": ...}), the test compares
it with the API and, for the live check, answers with a lead id on stdin. Usage:

    console.py BASE_URL TOKEN [SCREENSHOT_DIR]

Chromium is Debian's (/usr/bin/chromium, or $LEADROUTER_CHROMIUM): Playwright's own browser
download cannot work offline.
"""
import json
import os
import sys
import time

from playwright.sync_api import sync_playwright

BASE, TOKEN = sys.argv[1], sys.argv[2]
SHOTS = sys.argv[3] if len(sys.argv) > 3 else ""
CHROMIUM = os.environ.get("LEADROUTER_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def say(step, **kw):
    print(json.dumps({"step": step, **kw}), flush=True)


def ask():
    line = sys.stdin.readline()
    if not line:
        sys.exit("the test closed stdin")
    return json.loads(line)


def cells(page, row_selector, key_attr):
    """{row key: {data-k: text}} for every row matching the selector."""
    return page.eval_on_selector_all(
        row_selector,
        """(rows, key) => Object.fromEntries(rows.map(r => [r.getAttribute(key),
             Object.fromEntries([...r.querySelectorAll('[data-k]')].map(c => [c.dataset.k, c.textContent.trim()]))]))""",
        key_attr)


def shot(page, name):
    if SHOTS:
        page.screenshot(path=os.path.join(SHOTS, f"{name}.png"), full_page=True)


def main():
    errors = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        page = browser.new_context(viewport={"width": 1360, "height": 900}).new_page()
        page.on("console", lambda m: m.type == "error" and errors.append(m.text))
        page.on("pageerror", lambda e: errors.append(str(e)))

        # A first visit has no session: the login form, then the board.
        page.goto(f"{BASE}/ui")
        login_url = page.url
        if SHOTS:
            shot(page, "login")
        page.fill("input[name=token]", TOKEN)
        page.click("button[type=submit]")
        page.wait_for_selector("#team")
        say("login", login_url=login_url, url=page.url)

        page.wait_for_selector("body[data-live=on]", timeout=5000)
        say("team", reps=cells(page, "#team tr[data-rep]", "data-rep"))

        # Live: the test submits a lead once we wait; it must show without a reload, and the
        # board must then be reloaded from the server.
        lead = ask()["lead"]
        page.evaluate("window.__no_reload = true")
        t0 = time.monotonic()
        say("waiting")
        row = f'#events li[data-lead="{lead}"]'
        page.wait_for_selector(row, timeout=5000)
        event_ms = (time.monotonic() - t0) * 1000
        page.wait_for_function(
            "(sel) => Number(document.body.dataset.refreshed || 0) >= Number(document.querySelector(sel).dataset.seen)",
            arg=row, timeout=5000)
        board_ms = (time.monotonic() - t0) * 1000
        reloaded = not page.evaluate("window.__no_reload === true")
        say("live", event_ms=event_ms, board_ms=board_ms, reloaded=reloaded,
            kind=page.get_attribute(row, "data-kind"),
            reps=cells(page, "#team tr[data-rep]", "data-rep"))
        shot(page, "team")

        page.goto(f"{BASE}/ui/lead?id={lead}")
        page.wait_for_selector("#candidates")
        say("lead",
            fields={el.get_attribute("data-k"): el.text_content().strip()
                    for el in page.query_selector_all("#board [data-k]")},
            candidates=cells(page, "#candidates tr[data-rep]", "data-rep"),
            events=[r.get_attribute("data-kind") for r in page.query_selector_all("#lead-events tr[data-kind]")])
        shot(page, "lead")

        page.goto(f"{BASE}/ui/queue")
        page.wait_for_selector("#queues")
        say("queue", pools=cells(page, "#queues tr[data-pool]:not([data-segment])", "data-pool"),
            places=cells(page, "table.queue tr[data-lead]", "data-lead"),
            unroutable=cells(page, "#unroutable tr[data-lead]", "data-lead"))
        shot(page, "queue")

        page.goto(f"{BASE}/ui/forecast?period=month&by=rep")
        page.wait_for_selector("#board svg")
        say("forecast", groups=cells(page, "#performance tr[data-group]", "data-group"),
            open=cells(page, "#open tr[data-group]", "data-group"))
        shot(page, "forecast")

        page.goto(f"{BASE}/ui/model")
        page.wait_for_selector("#psi")
        say("model", fields={el.get_attribute("data-k"): el.text_content().strip()
                             for el in page.query_selector_all("#board dd[data-k]")},
            psi=cells(page, "#psi tr[data-feature]", "data-feature"))
        shot(page, "model")

        # Logging out ends the session: the board is refused again.
        page.goto(f"{BASE}/ui/logout")
        page.goto(f"{BASE}/ui/queue")
        say("logout", url=page.url)
        browser.close()
    say("errors", errors=errors)


if __name__ == "__main__":
    main()
