/* The page's state: who is signed in, the language, and the timers of the screen shown.
 *
 * The bearer token lives in sessionStorage (this tab only); the language in
 * localStorage. `S.view` grows by one on every new screen, so a request started for an
 * old screen can tell it is no longer wanted. */

export const S = {
  token: sessionStorage.getItem("sc.token"),
  me: null,
  lang: localStorage.getItem("sc.lang") === "en" ? "en" : "id",
  timers: [],
  period: "day",
  view: 0,
  listeners: [],  // the shown screen's handlers of live changes (live.js)
  alarmCount: null,  // the header badge's reload (alarms.js): called after an alarm action
};

export function clearTimers() {
  S.timers.forEach((id) => clearInterval(id));
  S.timers = [];
  S.listeners = [];
  S.view += 1;
}

/* Call fn(change) for each live change while this screen is shown: change is
 * {device_id, what} (what: state, events, replies, alarms), or null after the stream
 * reconnected (changes may have been missed: read everything again). */
export function onLive(fn) { S.listeners.push(fn); }

/* fn, at most once per ms however often it is asked for (live changes come in bursts). */
export function coalesce(ms, fn) {
  let timer = null;
  return () => {
    if (timer) return;
    timer = setTimeout(() => { timer = null; fn(); }, ms);
  };
}
export function every(ms, fn) { S.timers.push(setInterval(fn, ms)); }

/* Draw the screen the address names again (set by app.js, which owns the router). */
export const screen = {render: () => {}};
