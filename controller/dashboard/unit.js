/* A unit's page (#/unit/<id>): its state, controls, commands, schedule and charts. */

import {S, coalesce, every, onLive} from "./state.js";
import {ago, alarmText, duration, fmt, grams, num, t, windowText, wita} from "./format.js";
import {el, icon, line, problem} from "./dom.js";
import {api} from "./api.js";
import {mount, shell} from "./shell.js";
import {badges, nextLine, runningLine, statePill, todayLine} from "./units.js";
import {activityCard, pondsCard} from "./activity.js";
import {command, limitsOf, markEnded, stopZoneKnownMissing, watchCommand} from "./commands.js";

function controls(u, list) {
  const can = S.me.role !== "viewer";
  const box = el("section", {class: "card controls"}, el("h2", {}, t("unit.controls")));
  if (!can) { box.appendChild(el("p", {class: "muted"}, t("unit.readonly"))); return box; }
  const r = u.readings || {};
  if (u.kind === "irrigation") {
    box.appendChild(el("h3", {}, t("unit.zones")));
    if (!u.zones || !u.zones.length) box.appendChild(el("p", {class: "muted"}, t("unit.no_zones")));
    box.appendChild(el("ul", {class: "targets"}, (u.zones || []).map((z) => {
      const running = u.running.some((x) => x.zone === z);
      const m = r["moisture_pct." + z];
      const lim = limitsOf(u, z);
      return el("li", {class: running ? "on" : ""},
        el("span", {class: "target-name"}, icon(running ? "play" : "drop"), z),
        el("span", {class: "target-info muted"}, [
          m !== undefined ? `${t("unit.moisture")} ${num(m, 0)} %` : "",
          r["water_l_today." + z] !== undefined ? `${num(r["water_l_today." + z], 0)} L` : "",
          lim.maxS ? t("form.limit", {v: duration(lim.maxS)}) : "",
        ].filter(Boolean).join(" · ")),
        // stop one zone: offered while it runs, unless this unit refused stop_zone before
        running && !stopZoneKnownMissing(u.device_id) ? el("button", {type: "button", class: "btn",
          "data-action": "stop_zone", "data-zone": z, onclick: () => command(u, list, "stop_zone", z)},
        icon("stop"), t("action.stop_zone")) : null,
        el("button", {type: "button", class: "btn go", "data-action": "run_zone", "data-zone": z,
          onclick: () => command(u, list, "run_zone", z)}, icon("play"), t("action.run_zone")));
    })));
  } else {
    box.appendChild(el("h3", {}, t("unit.feeders")));
    box.appendChild(el("ul", {class: "targets"}, (u.feeders || []).map((f) =>
      el("li", {},
        el("span", {class: "target-name"}, icon("fish"), f),
        el("span", {class: "target-info muted"}, [
          r["feed_g_today." + f] !== undefined ? `${num(r["feed_g_today." + f] / 1000, 2)} kg` : "",
          r["hopper_pct." + f] !== undefined ? `${num(r["hopper_pct." + f], 0)} %` : "",
          limitsOf(u, f).maxG ? t("form.limit", {v: grams(limitsOf(u, f).maxG)}) : "",
        ].filter(Boolean).join(" · ")),
        el("button", {type: "button", class: "btn go", "data-action": "feed_now", "data-feeder": f,
          onclick: () => command(u, list, "feed_now", f)}, icon("feed"), t("action.feed_now"))))));
  }
  const actions = [["stop_all", "stop", "danger"], ["skip_next", "skip", ""], ["pause", "pause", ""]];
  if (u.kind === "irrigation") actions.push(["rain_delay", "rain", ""]);
  actions.push(["resume", "resume", ""]);
  box.appendChild(el("div", {class: "actions"}, actions.map(([a, ic, cls]) =>
    el("button", {type: "button", class: "btn big " + cls, "data-action": a,
      onclick: () => command(u, list, a)}, icon(ic), t("action." + a)))));
  return box;
}
function scheduleCard(u) {
  const c = u.config;
  return el("section", {class: "card schedule-card"},
    el("h2", {}, t("unit.schedule")),
    el("div", {class: "line"}, el("span", {class: `tag cfg-${c.state}`, "data-config": c.state},
      icon(c.state === "in_sync" ? "check" : c.state === "rejected" ? "cross" : c.state === "pending" ? "hourglass" : "clock"),
      t("config." + c.state)),
    c.desired ? el("span", {class: "muted"}, ` v${c.desired}` + (c.reported !== c.desired && c.reported ? ` (unit: v${c.reported})` : "")) : null),
    nextLine(u),
    S.me.role !== "viewer" ? el("a", {class: "btn", href: `#/unit/${encodeURIComponent(u.device_id)}/schedule`,
      "data-testid": "edit-schedule"}, icon("edit"), t("unit.schedule.edit")) : null);
}
function chartsCard(u) {
  const box = el("div", {class: "charts"});
  const seg = el("div", {class: "seg", role: "group"}, ["day", "week", "month"].map((p) =>
    el("button", {type: "button", "data-period": p, class: S.period === p ? "on" : "",
      onclick: () => { S.period = p; seg.querySelectorAll("button").forEach((b) =>
        b.classList.toggle("on", b.dataset.period === p)); load(); }}, t("period." + p))));
  const view = S.view;
  async function load() {
    let data;
    try {
      data = await api(`/dashboard/units/${encodeURIComponent(u.device_id)}/charts?period=${S.period}`);
    } catch (err) { box.textContent = ""; box.appendChild(problem(err)); return; }
    if (view !== S.view || data.period !== S.period) return;
    box.textContent = "";
    box.dataset.period = data.period;
    const label = data.period === "day" ? (ts) => fmt(ts, {hour: "2-digit", minute: "2-digit"})
      : (ts) => fmt(ts, {day: "numeric", month: "short"});
    const tip = (ts) => fmt(ts, {day: "numeric", month: "short", hour: "2-digit", minute: "2-digit"}) + " WITA";
    for (const c of data.charts) {
      const holder = el("div", {class: "chart-box", "data-chart": c.key});
      box.appendChild(el("figure", {class: "chart"},
        el("figcaption", {}, t("chart." + c.key), el("span", {class: "muted"}, " (" + c.unit + ")")), holder));
      const common = {unit: c.unit, since: data.since, until: data.until, label, tip,
        emptyText: t("chart.empty"), bucketS: data.bucket_s, num: (v, d) => num(v, d)};
      if (c.kind === "line") window.Charts.line(holder, {...common, series: c.series});
      else window.Charts.bar(holder, {...common, points: c.points, per: data.bars_per});
    }
  }
  load();
  S.timers.push(setInterval(load, 60000));
  return el("section", {class: "card charts-card"},
    el("div", {class: "card-head"}, el("h2", {}, t("unit.charts")), seg), box);
}
/* The release the unit runs, and the one a rollout offered it while it is not running it. */
function versionLine(u) {
  const v = u.version || {};
  const out = line("muted version-line", "download", t("unit.version"), ": ",
    el("b", {translate: "no", "data-testid": "version-running"}, v.running || "—"),
    v.offered && v.offered !== v.running ? el("span", {class: "offered", "data-testid": "version-offered"},
      "· ", t("unit.version.offered", {v: v.offered}), " (", t("rollout.unit." + v.offer_state).toLowerCase(), ")") : null,
    v.update_window ? el("span", {class: "window", "data-testid": "update-window"},
      "· ", t("unit.window", {w: windowText(v.update_window)})) : null);
  return out;
}
function header(u) {
  return el("section", {class: `card unit-head s-${u.state}`, "data-state": u.state},
    el("div", {class: "card-top"},
      el("span", {class: "kind big"}, icon(u.icon)),
      el("div", {class: "title"}, el("h1", {}, u.name),
        el("div", {class: "sub"}, t("kind." + u.kind), " · ", u.opd.toUpperCase(), " · ", u.device_id)),
      statePill(u.state, true)),
    runningLine(u), badges(u), versionLine(u),
    u.online ? todayLine(u) : line("muted", "clock", t("unit.last_seen"), ": ",
      u.last_seen ? ago(u.last_seen) + " (" + wita(u.last_seen) + ")" : t("unit.never")),
    u.alarms.length ? el("div", {class: "alarms", role: "alert"},
      el("b", {}, icon("alert"), t("unit.alarms")),
      el("ul", {}, u.alarms.map((a) => el("li", {"data-alarm": a.code},
        el("b", {}, alarmText(a.code)), a.subject ? ` · ${a.subject}` : "", " · ",
        el("span", {class: "muted"}, wita(a.ts)))))) : null);
}
export async function renderUnit(id) {
  const main = el("div", {class: "unit-page"}, el("p", {class: "muted"}, t("common.loading")));
  mount(shell("units", main));
  const view = S.view;
  let u, commands;
  try {
    [u, commands] = await Promise.all([
      api(`/dashboard/units/${encodeURIComponent(id)}`),
      api(`/devices/${encodeURIComponent(id)}/commands?limit=6`)]);
  } catch (err) { main.textContent = ""; main.appendChild(problem(err)); return; }
  if (view !== S.view) return;
  const list = el("ul", {class: "cmds", "data-testid": "commands"});
  list.ended = u.runs_ended || {};
  const cmdCard = el("section", {class: "card"}, el("h2", {}, t("unit.commands")),
    commands.length ? null : el("p", {class: "muted empty"}, t("unit.commands.none")), list);
  commands.slice().reverse().forEach((c) => watchCommand(list, c, () => list.refresh()));
  let head = header(u), sched = scheduleCard(u), ctl = controls(u, list);
  main.textContent = "";
  main.appendChild(el("a", {class: "back", href: "#/"}, icon("back"), t("unit.back")));
  main.appendChild(head);
  let ponds = u.kind === "fish_feeder" ? pondsCard(u) : null;
  main.appendChild(el("div", {class: "cols"},
    el("div", {class: "col"}, ctl, cmdCard, sched),
    el("div", {class: "col wide"}, ponds, chartsCard(u), activityCard(u))));
  async function refresh() {
    try { u = await api(`/dashboard/units/${encodeURIComponent(id)}`); } catch (err) { return; }
    if (view !== S.view) return;
    markEnded(list, u.runs_ended);
    const h2 = header(u), s2 = scheduleCard(u);
    head.replaceWith(h2); sched.replaceWith(s2);
    head = h2; sched = s2;
    if (ponds) { const p2 = pondsCard(u); ponds.replaceWith(p2); ponds = p2; }
    if (!document.querySelector("dialog[open]")) {
      const c2 = controls(u, list);
      ctl.replaceWith(c2);
      ctl = c2;
    }
  }
  // A command that moves on refreshes the unit at once (and once more when the unit's
  // events and status have had time to arrive).
  list.refresh = () => { refresh(); setTimeout(() => view === S.view && refresh(), 1500); };
  const soon = coalesce(250, refresh);
  onLive((change) => { if (!change || change.device_id === id) soon(); });
  every(15000, refresh);  // readings (telemetry is not pushed)
}
