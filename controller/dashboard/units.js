/* The units list (#/): a card per unit, alarms first, and the pieces of a card that the
 * unit's own page shows too. */

import {S, coalesce, every, onLive} from "./state.js";
import {ago, alarmText, duration, grams, num, t, wita} from "./format.js";
import {el, icon, line, problem} from "./dom.js";
import {api} from "./api.js";
import {mount, shell} from "./shell.js";

const STATE_ICON = {running: "play", online: "wifi", offline: "offline", alarm: "alert"};
export function statePill(state, big) {
  return el("span", {class: `pill s-${state}${big ? " big" : ""}`, "data-state": state},
    icon(STATE_ICON[state]), t("state." + state));
}
export function runningLine(u) {
  if (!u.online) return line("muted", "offline", t("unit.unknown_offline"));
  if (u.running.length) {
    return line("run", "play",
      el("b", {}, t("unit.running"), ": "),
      u.running.map((r, i) => [i ? ", " : "", el("span", {"data-run": r.zone}, r.zone, " ",
        el("span", {class: "muted"}, t("unit.since"), " ", wita(r.since)),
        remaining(r))]));
  }
  if (u.outputs_on.length) {
    return line("run", "play",
      el("b", {}, u.kind === "fish_feeder" ? t("unit.feeding") : t("unit.running"), ": "),
      u.outputs_on.join(", "));
  }
  return line("muted", "clock", t("unit.idle"));
}
/* " · 4 mnt left" of a run that said how long it runs (run_started planned_s). */
function remaining(r) {
  if (typeof r.planned_s !== "number") return null;
  const left = (Date.parse(r.since) + r.planned_s * 1000 - Date.now()) / 1000;
  return el("span", {class: "remaining", "data-testid": "remaining"}, " · ",
    t("unit.remaining", {d: duration(left)}));
}
/* The next start as the unit reports it (its outlook), or why there is none. */
export function nextLine(u) {
  const n = u.next;
  let text;
  if (n.known) {
    text = [el("b", {}, wita(n.at)), " · ", n.program || n.pond || "",
      n.dose_g ? ` (${grams(n.dose_g)})` : ""];
  } else if (n.reason === "paused" && u.paused_until) {
    text = el("span", {class: "amber-text"}, t("unit.next.paused", {at: wita(u.paused_until)}));
  } else if (n.reason === "rain_delay" && u.rain_delay_until) {
    text = el("span", {class: "muted"}, t("unit.next.rain_delay", {at: wita(u.rain_delay_until)}));
  } else if (n.source === "unit" && n.reason) {
    text = el("span", {class: "muted"}, t("unit.next." + n.reason));
  } else {
    text = el("span", {class: "muted"}, n.reason === "local_schedule" ? t("unit.next.local") : t("unit.next.none"));
  }
  const out = line("", "calendar", t("unit.next"), ": ", text);
  out.dataset.testid = "next";
  out.dataset.reason = n.known ? "" : n.reason || "";
  return out;
}
export function badges(u) {
  const out = [];
  if (u.paused) {
    out.push(el("span", {class: "tag amber", "data-tag": "paused"}, icon("pause"),
      u.paused_until ? t("unit.paused_until", {at: wita(u.paused_until)}) : t("unit.paused")));
  }
  if (u.rain) out.push(el("span", {class: "tag blue", "data-tag": "rain"}, icon("rain"), t("unit.rain")));
  if (u.rain_delay_until) {
    out.push(el("span", {class: "tag blue", "data-tag": "rain_delay"}, icon("rain"),
      t("unit.rain_delay_until", {at: wita(u.rain_delay_until)}), " (", num(u.rain_delay_h, 0), " ", t("u.h"), ")"));
  } else if (u.rain_delay_h > 0) {
    out.push(el("span", {class: "tag blue", "data-tag": "rain_delay"}, icon("rain"), t("unit.rain_delay"), " ",
      num(u.rain_delay_h, 1), " ", t("u.h")));
  }
  if (u.skip_next && u.skip_next.length) {
    out.push(el("span", {class: "tag", "data-tag": "skip_next"}, icon("skip"), t("unit.skip_next", {what:
      u.skip_next.map((x) => (x === "*" ? t("unit.skip_next.all") : x)).join(", ")})));
  }
  return out.length ? el("div", {class: "tags"}, out) : null;
}
export function todayLine(u) {
  if (u.today.water_l !== undefined) {
    return line("muted", "drop", t("unit.today_water"), ": ",
      el("b", {}, num(u.today.water_l, 0), " L"));
  }
  if (u.today.feed_g !== undefined) {
    return line("muted", "feed", t("unit.today_feed"), ": ",
      el("b", {}, num(u.today.feed_g / 1000, 2), " kg"));
  }
  return null;
}
function unitCard(u) {
  return el("a", {class: `card unit s-${u.state}`, href: "#/unit/" + encodeURIComponent(u.device_id),
    "data-device": u.device_id, "data-state": u.state},
  el("div", {class: "card-top"},
    el("span", {class: "kind"}, icon(u.icon)),
    el("div", {class: "title"}, el("div", {class: "name"}, u.name),
      el("div", {class: "sub"}, t("kind." + u.kind), " · ", u.device_id)),
    statePill(u.state)),
  runningLine(u),
  nextLine(u),
  u.alarms.length ? line("alarm", "alert", u.alarms.map((a) => el("span", {class: `tag sev-${a.severity}`,
    "data-alarm": a.code}, alarmText(a.code) + (a.subject ? ` (${a.subject})` : "")))) : null,
  badges(u),
  u.online ? todayLine(u) : line("muted", "clock", t("unit.last_seen"), ": ",
    u.last_seen ? ago(u.last_seen) : t("unit.never")));
}
function summary(units) {
  const counts = {running: 0, online: 0, offline: 0, alarm: 0};
  // a unit with an alarm counts as one, offline or not
  units.forEach((u) => { counts[u.alarms.length ? "alarm" : u.state] += 1; });
  return el("div", {class: "summary"}, Object.entries(counts).map(([state, n]) =>
    el("div", {class: `count s-${state}`, "data-count": state}, icon(STATE_ICON[state]),
      el("b", {}, n), el("span", {}, t("units.count." + state)))));
}
export async function renderUnits() {
  const box = el("div", {class: "units"}, el("p", {class: "muted"}, t("common.loading")));
  mount(shell("units", box));
  const view = S.view;
  async function load() {
    let data;
    try { data = await api("/dashboard/units"); } catch (err) {
      if (view === S.view) { box.textContent = ""; box.appendChild(problem(err)); }
      return;
    }
    if (view !== S.view) return;
    box.textContent = "";
    box.appendChild(el("h1", {}, t("units.title")));
    if (!data.units.length) { box.appendChild(el("p", {class: "muted"}, t("units.none"))); return; }
    box.appendChild(summary(data.units));
    const opds = [...new Set(data.units.map((u) => u.opd))];
    for (const opd of opds) {
      if (opds.length > 1) box.appendChild(el("h2", {class: "opd"}, opd.toUpperCase()));
      box.appendChild(el("div", {class: "grid", "data-opd": opd},
        // in the API's order: units with alarms first (critical first), offline or not,
      // then offline ones, then the rest
      data.units.filter((u) => u.opd === opd).map(unitCard)));
    }
  }
  await load();
  // Pushed changes at once (a burst read once); telemetry (readings, today's water or
  // feed) is not pushed: read every 15 s.
  onLive(coalesce(400, load));
  every(15000, load);
}
