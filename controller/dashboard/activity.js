/* A unit's recent activity in plain words, with what decided it ("Dilewati: rumput,
 * tanah basah 34 % >= 30 %", "Dipotong ke 45 mnt: batas waktu nyala", feedings with
 * grams, postponements with the oxygen reading), from
 * GET /api/v1/dashboard/units/{id}/activity; and the ponds' latest water readings. */

import {S, onLive} from "./state.js";
import {ago, alarmText, duration, grams, num, reasonText, t, wita} from "./format.js";
import {el, icon} from "./dom.js";
import {api} from "./api.js";
import {STOPPED} from "./commands.js";

const pct = (v) => num(v, 0) + " %";
const mgl = (v) => num(v, 1) + " mg/L";

/* [words, tone] of one event; tone: ok, stopped, skipped, bad, info. */
export function describeEvent(ev) {
  const d = ev.details || {};
  const what = d.zone || (d.zones || []).join(", ") || d.pond || d.feeder || "";
  switch (ev.type) {
    case "run_started":
      return [t("act.run_started", {zone: d.zone, dur: d.planned_s ? duration(d.planned_s) : "—"}), "info"];
    case "run_finished": {
      const dur = duration(d.duration_s || 0);
      if (d.ended === "completed") {
        return [t("act.run_finished", {zone: d.zone, dur, litres: num(d.litres || 0, 1)}), "ok"];
      }
      if (STOPPED.includes(d.ended)) return [t("act.run_stopped", {zone: d.zone, dur}), "stopped"];
      return [t("act.run_ended", {zone: d.zone, dur, why: reasonText(d.ended || "error")}), "bad"];
    }
    case "run_skipped":
      if (d.reason === "soil_wet" && typeof d.moisture_pct === "number") {
        return [typeof d.skip_above_pct === "number"
          ? t("act.skip_wet", {zone: what, m: pct(d.moisture_pct), th: pct(d.skip_above_pct)})
          : t("act.skip_wet_only", {zone: what, m: pct(d.moisture_pct)}), "skipped"];
      }
      return [t("act.skipped", {zone: what, why: reasonText(d.reason || "error")}), "skipped"];
    case "run_interrupted":
      return [t("act.interrupted", {zone: what, how: t("act.interrupted." + (d.action || "dropped"))}), "bad"];
    case "limit_clamped": {
      const to = d.field === "duration_s" ? duration(d.allowed) : d.field === "dose_g" ? grams(d.allowed)
        : num(d.allowed, 1);
      return [t("act.clamped", {to, limit: known("limit.", d.limit)}), "skipped"];
    }
    case "feed_dispensed": {
      const g = d.measured_g ?? d.commanded_g ?? d.planned_g ?? 0;
      return [t("act.fed", {pond: d.pond, g: grams(g)}) + (d.fault ? " — " + reasonText(d.fault) : ""),
        d.fault ? "bad" : "ok"];
    }
    case "feeding_postponed":
      if (d.reason === "do_low" && typeof d.do_mg_l === "number") {
        return [t("act.postponed_do", {pond: what, v: mgl(d.do_mg_l), min: mgl(d.do_min_mg_l)}), "skipped"];
      }
      return [t("act.postponed", {pond: what, why: reasonText(d.reason || "error")}), "skipped"];
    case "feeding_skipped":
      if (typeof d.temp_c === "number") {
        return [t("act.feed_skipped_temp", {pond: what, why: reasonText(d.reason), v: num(d.temp_c, 1)}), "skipped"];
      }
      return [t("act.feed_skipped", {pond: what, why: reasonText(d.reason || "error")}), "skipped"];
    case "alarm":
      return [t("act.alarm", {what: alarmText(d.code)}) + (what ? ` (${what})` : ""), "bad"];
    case "alarm_cleared":
      return [t("act.alarm_cleared", {what: alarmText(d.code)}) + (what ? ` (${what})` : ""), "ok"];
    case "config_applied":
      return [t("act.config_applied", {v: d.version ?? "?"}), "ok"];
    case "config_rejected":
      return [t("act.config_rejected", {v: d.version ?? "?"}), "bad"];
    default:
      return [ev.type, "info"];
  }
}
function known(prefix, code) {
  const s = t(prefix + code);
  return s === prefix + code ? code : s;
}

export function activityCard(u) {
  const list = el("ol", {class: "activity", "data-testid": "activity"}, el("li", {class: "muted"}, t("common.loading")));
  const view = S.view;
  async function load() {
    let data;
    try { data = await api(`/dashboard/units/${encodeURIComponent(u.device_id)}/activity?limit=30`); } catch (err) { return; }
    if (view !== S.view) return;
    list.textContent = "";
    if (!data.items.length) list.appendChild(el("li", {class: "muted"}, t("act.none")));
    data.items.forEach((ev) => {
      const [words, tone] = describeEvent(ev);
      list.appendChild(el("li", {class: "act tone-" + tone, "data-type": ev.type, "data-tone": tone},
        el("span", {class: "muted when"}, wita(ev.ts)), " ", el("span", {class: "what"}, words)));
    });
  }
  load();
  onLive((c) => { if (!c || (c.device_id === u.device_id && c.what === "events")) load(); });
  return el("section", {class: "card activity-card"}, el("h2", {}, icon("list"), t("act.title")), list);
}

/* The ponds' latest dissolved oxygen, temperature, pH and hopper level, with their age. */
export function pondsCard(u) {
  const r = u.readings || {};
  const feeders = (u.limits && u.limits.feeders) || {};
  const rows = (u.ponds || []).map((pond) => {
    const parts = [];
    if (typeof r["do_mg_l." + pond] === "number") parts.push(["do", t("pond.do") + " " + mgl(r["do_mg_l." + pond])]);
    if (typeof r["temp_c." + pond] === "number") parts.push(["temp", num(r["temp_c." + pond], 1) + " °C"]);
    if (typeof r["ph." + pond] === "number") parts.push(["ph", "pH " + num(r["ph." + pond], 1)]);
    Object.entries(feeders).filter(([, f]) => f.pond === pond).forEach(([name]) => {
      if (typeof r["hopper_pct." + name] === "number") {
        parts.push(["hopper", t("pond.hopper", {feeder: name}) + " " + pct(r["hopper_pct." + name])]);
      }
    });
    return el("li", {"data-pond": pond}, el("b", {}, pond), ": ",
      parts.length ? parts.map(([k, text], i) => [i ? " · " : "", el("span", {"data-reading": k}, text)])
        : el("span", {class: "muted"}, t("pond.none")));
  });
  return el("section", {class: "card ponds-card", "data-testid": "ponds"}, el("h2", {}, icon("fish"), t("pond.title")),
    el("ul", {class: "ponds"}, rows),
    el("p", {class: "muted", "data-testid": "readings-age"}, u.readings_ts
      ? t("pond.age", {ago: ago(u.readings_ts), at: wita(u.readings_ts)}) : t("pond.none")));
}
