/* Live updates: one server-sent events stream per page (GET /api/v1/stream) while
 * someone is signed in. EventSource cannot send the bearer token, so each connection
 * starts with a one-time ticket (POST /api/v1/stream/tickets). On an error or the end
 * of a stream the page asks for a new ticket and connects again (1 s, 2 s, ... 15 s
 * apart); each time a stream opens the screen reads everything again. The screen's handlers are
 * registered with onLive (state.js). `document.documentElement.dataset.live` is "on"
 * while the stream is open. */

import {S} from "./state.js";
import {api} from "./api.js";

let source = null;
let timer = null;
let failures = 0;

function tell(change) {
  S.listeners.slice().forEach((fn) => {
    try { fn(change); } catch (err) { console.error(err); }
  });
}

function again() {
  if (timer || !S.token) return;
  failures += 1;
  timer = setTimeout(() => { timer = null; connectLive(); }, Math.min(1000 * 2 ** (failures - 1), 15000));
}

export async function connectLive() {
  if (source || timer || !S.token || typeof EventSource === "undefined") return;
  let ticket;
  try {
    ticket = (await api("/stream/tickets", {method: "POST"})).ticket;
  } catch (err) { again(); return; }
  if (source || !S.token) return;
  source = new EventSource("/api/v1/stream?ticket=" + encodeURIComponent(ticket));
  source.onopen = () => {
    document.documentElement.dataset.live = "on";
    failures = 0;
    // what changed between the screen's first reading (or the last stream) and now is
    // not known: the screen reads again
    tell(null);
  };
  source.onmessage = (ev) => {
    let change;
    try { change = JSON.parse(ev.data); } catch (err) { return; }
    tell(change);
  };
  source.onerror = () => {
    document.documentElement.dataset.live = "off";
    if (source) source.close();
    source = null;
    again();
  };
}

export function disconnectLive() {
  if (source) source.close();
  if (timer) clearTimeout(timer);
  source = null;
  timer = null;
  failures = 0;
  document.documentElement.dataset.live = "off";
}
