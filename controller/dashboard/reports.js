/* Monthly reports (#/reports): per OPD and month, on screen, printable, as CSV or JSON. */

import {S} from "./state.js";
import {TZ, alarmText, fmt, num, reasonText, t, wita} from "./format.js";
import {el, field, icon, problem} from "./dom.js";
import {api} from "./api.js";
import {mount, shell} from "./shell.js";

function currentMonth() {
  const parts = new Intl.DateTimeFormat("en-CA", {timeZone: TZ, year: "numeric", month: "2-digit"})
    .formatToParts(new Date());
  return parts.find((p) => p.type === "year").value + "-" + parts.find((p) => p.type === "month").value;
}
const day = (v) => fmt(typeof v === "number" ? v : Date.parse(v), {day: "numeric", month: "long", year: "numeric"});
function tile(metric, value, unit, label, cls) {
  return el("div", {class: "tile " + (cls || ""), "data-metric": metric, "data-value": String(value ?? "")},
    el("b", {}, value === null || value === undefined ? "—" : num(value, value >= 100 ? 0 : 1),
      unit ? el("small", {}, " " + unit) : null),
    el("span", {}, label));
}
function reasons(title, map) {
  const entries = Object.entries(map || {});
  return el("div", {class: "reasons"}, el("h4", {}, title), entries.length ?
    el("ul", {}, entries.map(([code, n]) => el("li", {"data-reason": code}, reasonText(code), el("b", {}, n))))
    : el("p", {class: "muted"}, t("rep.none")));
}
function table(head, rows, attrs) {
  return el("div", {class: "table-wrap"}, el("table", attrs || {},
    el("thead", {}, el("tr", {}, head.map((h) => el("th", {}, h)))),
    el("tbody", {}, rows.map((r) => el("tr", {}, r.map((c) => el("td", {}, c)))))));
}
function reportView(r) {
  const parts = [];
  parts.push(el("header", {class: "rep-head"},
    el("h1", {"data-testid": "report-title"}, r.title),
    el("p", {}, t("rep.to"), ": ", r.addressed_to.join("; ")),
    el("p", {}, t("rep.pillars"), ": ", r.pillars.map((p) => el("span", {class: "tag pillar"}, p))),
    el("p", {class: "muted"}, t("rep.period"), ": ", day(r.period.start), " – ", day(Date.parse(r.period.end) - 1),
      r.period.partial ? [" · ", el("b", {class: "amber-text"}, t("rep.partial"), " ", wita(r.period.until))] : "")));
  const tiles = [];
  if (r.watering) {
    const w = r.watering.totals;
    tiles.push(tile("water_l", w.water_l, "L", t("rep.water"), "green"),
      tile("runs_done", w.done, "", t("rep.runs_done"), "green"),
      tile("runs_stopped", w.stopped, "", t("rep.runs_stopped")),
      tile("runs_skipped", w.skipped, "", t("rep.runs_skipped")),
      tile("runs_failed", w.failed, "", t("rep.runs_failed"), w.failed ? "red" : ""));
  }
  if (r.fisheries) {
    const f = r.fisheries.totals;
    tiles.push(tile("feed_kg", f.feed_kg, "kg", t("rep.feed"), "green"),
      tile("feedings", f.feedings, "", t("rep.feedings"), "green"),
      tile("postponed", f.postponed, "", t("rep.postponed"), f.postponed ? "amber" : ""),
      tile("feed_skipped", f.skipped, "", t("rep.skipped")));
  }
  tiles.push(tile("uptime_pct", r.uptime.average_pct, "%", t("rep.uptime_avg")),
    tile("alarms", r.alarms.total, "", t("rep.alarms_total"), r.alarms.total ? "red" : ""));
  parts.push(el("div", {class: "tiles"}, tiles));
  if (r.watering) {
    const w = r.watering;
    const rows = [];
    w.sites.forEach((s) => {
      rows.push([el("b", {}, s.site), "", el("b", {}, num(s.water_l, 0)), num(s.water_min, 0), s.done, s.stopped, s.skipped, s.failed]);
      s.zones.forEach((z) => rows.push(["", z.zone, num(z.water_l, 0), num(z.water_min, 0), z.done, z.stopped, z.skipped, z.failed]));
    });
    parts.push(el("section", {class: "rep-section", "data-section": "watering"},
      el("h2", {}, icon("drop"), t("rep.watering"), " ", el("span", {class: "tag pillar"}, w.pillar)),
      el("p", {class: "muted"}, w.programme),
      table([t("rep.site"), t("rep.zone"), t("rep.water") + " (L)", t("rep.water_time") + " (" + t("u.min") + ")",
        t("rep.runs_done"), t("rep.runs_stopped"), t("rep.runs_skipped"), t("rep.runs_failed")], rows),
      el("div", {class: "reason-cols"}, reasons(t("rep.reasons_stopped"), w.stopped_reasons),
        reasons(t("rep.reasons_skipped"), w.skipped_reasons), reasons(t("rep.reasons_failed"), w.failed_reasons))));
  }
  if (r.fisheries) {
    const f = r.fisheries;
    const rows = [], fcr = [];
    f.sites.forEach((s) => s.ponds.forEach((p) => {
      rows.push([s.site, p.pond, p.species || "—", num(p.feed_g / 1000, 2), p.feedings, p.postponed, p.skipped]);
      const c = p.conversion;
      const kg = (v) => (v === null ? "—" : num(v, 1) + " kg");
      fcr.push([p.pond, num(c.feed_kg, 1) + " kg",
        c.fish_count_start !== null ? `${kg(c.biomass_kg_start)} (${num(c.fish_count_start, 0)} × ${num(c.avg_weight_g_start, 0)} g)` : "—",
        c.fish_count_end !== null ? `${kg(c.biomass_kg_end)} (${num(c.fish_count_end, 0)} × ${num(c.avg_weight_g_end, 0)} g)` : "—",
        kg(c.biomass_gain_kg), el("b", {"data-fcr": p.pond}, c.fcr === null ? "—" : num(c.fcr, 2))]);
    }));
    parts.push(el("section", {class: "rep-section", "data-section": "fisheries"},
      el("h2", {}, icon("fish"), t("rep.fisheries"), " ", el("span", {class: "tag pillar"}, f.pillar)),
      el("p", {class: "muted"}, f.programme),
      table([t("rep.site"), t("rep.pond"), t("rep.species"), t("rep.feed") + " (kg)", t("rep.feedings"),
        t("rep.postponed"), t("rep.skipped")], rows),
      el("h3", {}, t("rep.fcr_inputs")),
      table([t("rep.pond"), t("rep.feed"), t("rep.biomass_start"), t("rep.biomass_end"), t("rep.gain"), t("rep.fcr")], fcr),
      el("div", {class: "reason-cols"}, reasons(t("rep.postponed"), f.postponed_reasons),
        reasons(t("rep.skipped"), f.skipped_reasons))));
  }
  parts.push(el("section", {class: "rep-section", "data-section": "uptime"},
    el("h2", {}, icon("wifi"), t("rep.uptime")),
    table([t("rep.site"), t("rep.uptime"), t("rep.online_h"), t("rep.covered_h"), t("rep.outages")],
      r.uptime.units.map((u) => [u.site, u.uptime_pct === null ? t("rep.unknown") : num(u.uptime_pct, 1) + " %",
        num(u.online_h, u.online_h < 1 ? 2 : 1), num(u.covered_h, u.covered_h < 1 ? 2 : 1), u.outages]))));
  parts.push(el("section", {class: "rep-section", "data-section": "alarms"},
    el("h2", {}, icon("alert"), t("rep.alarms")),
    r.alarms.total ? table([t("rep.site"), t("rep.code"), t("rep.count")],
      r.alarms.units.flatMap((u) => Object.entries(u.by_code).map(([code, n]) => [u.site, alarmText(code), n])))
      : el("p", {class: "muted"}, t("rep.none"))));
  return el("article", {class: "report card", "data-opd": r.opd, "data-month": r.month}, parts);
}
async function download(opd, month, format) {
  const r = await api(`/reports/monthly?opd=${encodeURIComponent(opd)}&month=${month}&format=${format}&lang=${S.lang}`, {raw: true});
  const blob = await r.blob();
  const a = el("a", {href: URL.createObjectURL(blob), download: `laporan-smartcity-${opd}-${month}.${format}`});
  document.body.appendChild(a);
  a.click();
  setTimeout(() => { URL.revokeObjectURL(a.href); a.remove(); }, 1000);
}
export async function renderReports(params) {
  const main = el("div", {class: "reports-page"}, el("p", {class: "muted"}, t("common.loading")));
  mount(shell("reports", main));
  const view = S.view;
  let opds;
  try { opds = await api("/opds"); } catch (err) { main.textContent = ""; main.appendChild(problem(err)); return; }
  if (view !== S.view) return;
  const opd = params.get("opd") || (S.me.opd || (opds[0] && opds[0].code) || "");
  const month = params.get("month") || currentMonth();
  const opdSel = el("select", {name: "opd"}, opds.map((o) => el("option", {value: o.code},
    o.code.toUpperCase() + (o.name ? " — " + o.name : ""))));
  opdSel.value = opd;
  const monthIn = el("input", {type: "month", name: "month", value: month, max: currentMonth()});
  const go = () => { location.hash = `#/reports?opd=${encodeURIComponent(opdSel.value)}&month=${monthIn.value}`; };
  const out = el("div", {class: "report-out"});
  main.textContent = "";
  main.appendChild(el("section", {class: "card no-print report-controls"},
    el("h1", {}, icon("report"), t("rep.title")),
    el("div", {class: "row"}, field(t("rep.opd"), opdSel), field(t("rep.month"), monthIn),
      el("button", {type: "button", class: "btn primary", "data-testid": "show-report", onclick: go}, t("rep.show"))),
    el("div", {class: "actions"},
      el("button", {type: "button", class: "btn", onclick: () => download(opd, month, "csv")}, icon("download"), t("rep.csv")),
      el("button", {type: "button", class: "btn", onclick: () => download(opd, month, "json")}, icon("download"), t("rep.json")),
      el("button", {type: "button", class: "btn", onclick: () => window.print()}, icon("print"), t("rep.print")))));
  main.appendChild(out);
  if (!opd) return;
  try {
    const r = await api(`/reports/monthly?opd=${encodeURIComponent(opd)}&month=${month}&lang=${S.lang}`);
    if (view !== S.view) return;
    out.appendChild(reportView(r));
  } catch (err) { out.appendChild(problem(err)); }
}
