// leadrouter console: follows the assignment events (server-sent events), lists them, and
// reloads the page's board (#board) from the server after each burst, so every number on
// screen is the server's own, never a client-side tally.
"use strict";
(function () {
  const state = document.getElementById("live-state");
  const list = document.getElementById("events");
  const board = document.getElementById("board");
  let loading = false, again = false, timer = null, last = 0;
  // At most one board read a second: a busy pool emits hundreds of events a second and a
  // board (a queue of 100k leads) is not free to read. The event list itself is immediate.
  const GAP_MS = 1000;

  function setState(s) {
    document.body.dataset.live = s;
    if (state) state.textContent = s === "on" ? "live" : s;
  }

  async function reload() {
    if (loading) { again = true; return; }
    loading = true;
    last = Date.now();
    try {
      const r = await fetch(location.href, { headers: { "x-console-part": "board" }, credentials: "same-origin" });
      if (r.ok && board) {
        board.innerHTML = await r.text();
        document.body.dataset.refreshed = String(Date.now());
      }
    } catch (e) {
      setState("reconnecting");
    } finally {
      loading = false;
      if (again) { again = false; schedule(); }
    }
  }

  function schedule() {
    if (timer) return;
    const wait = Math.max(100, GAP_MS - (Date.now() - last));
    timer = setTimeout(() => { timer = null; reload(); }, wait);
  }

  function show(e) {
    if (!list) return;
    const li = document.createElement("li");
    li.dataset.lead = e.lead_id;
    li.dataset.kind = e.kind;
    li.dataset.seen = String(Date.now());
    const t = document.createElement("time");
    t.textContent = new Date(e.at_ms).toISOString().replace("T", " ").slice(0, 19);
    const a = document.createElement("a");
    a.href = "/ui/lead?id=" + encodeURIComponent(e.lead_id);
    a.textContent = e.lead_id;
    const k = document.createElement("span");
    k.className = "kind " + e.kind;
    k.textContent = e.kind;
    li.append(t, " ", k, " ", a, e.rep_id ? " · " + e.rep_id : "", " · " + e.pool);
    list.prepend(li);
    while (list.children.length > 50) list.lastElementChild.remove();
  }

  if (!("EventSource" in window) || !list) return;
  const source = new EventSource("/ui/events");
  source.onopen = () => setState("on");
  source.onerror = () => setState("reconnecting");
  source.addEventListener("assignment", (m) => {
    try { show(JSON.parse(m.data)); } catch (e) { return; }
    schedule();
  });
  // Ages and "on shift" move with the clock, not only with events.
  setInterval(schedule, 30000);
})();
