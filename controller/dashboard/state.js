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
};

export function clearTimers() {
  S.timers.forEach((id) => clearInterval(id));
  S.timers = [];
  S.view += 1;
}
export function every(ms, fn) { S.timers.push(setInterval(fn, ms)); }

/* Draw the screen the address names again (set by app.js, which owns the router). */
export const screen = {render: () => {}};
