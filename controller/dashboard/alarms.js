/* Alarms across units (#/alarms): the alarms the caller may see, not cleared (or the
 * cleared ones), critical first and newest first within a severity; acknowledge (with a
 * note) and clear. Clearing a fault the unit holds locked sends it clear_fault (the API
 * answers 202): the page says the alarm closes when the unit confirms. Also the
 * header's count of open alarms (alarmBadge). */

import {S, onLive} from "./state.js";
import {alarmText, t, wita} from "./format.js";
import {el, icon, problem} from "./dom.js";
import {api} from "./api.js";
import {mount, shell} from "./shell.js";
import {ask} from "./commands.js";

const RANK = {critical: 0, warning: 1, info: 2};

/* The header's count of open alarms (nobody acknowledged yet, offline units'
 * unit_offline included), kept current by the live stream. */
export function alarmBadge() {
  const badge = el("b", {class: "count-badge", "data-testid": "alarm-count", hidden: true}, "0");
  const view = S.view;
  async function load() {
    let c;
    try { c = await api("/alarms/counts"); } catch (err) { return; }
    if (view !== S.view) return;
    badge.textContent = String(c.open);
    badge.hidden = c.open === 0;
    badge.dataset.open = String(c.open);
    badge.title = t("alarms.header", {n: c.open});
  }
  load();
  onLive((change) => { if (!change || change.what === "alarms") load(); });
  S.alarmCount = load;  // an alarm this page acts on is counted at once, without the push
  return badge;
}

function who(by) {
  if (!by) return "";
  if (by === "unit" || by === "controller") return t("alarms.by." + by);
  return by.replace(/^person:/, "");
}

function alarmCard(a, act) {
  const can = S.me.role !== "viewer" && a.state !== "cleared";
  return el("li", {class: `card alarm-row sev-${a.severity} st-${a.state}`, "data-alarm-id": a.id,
    "data-code": a.code, "data-device": a.device_id, "data-state": a.state},
  el("div", {class: "alarm-top"},
    el("span", {class: `pill sev ${a.severity}`}, icon("alert"), t("sev." + a.severity)),
    el("b", {class: "alarm-code"}, alarmText(a.code)),
    a.subject ? el("span", {class: "muted"}, " · ", a.subject) : null),
  el("div", {class: "line"}, el("a", {href: "#/unit/" + encodeURIComponent(a.device_id)}, a.device_name),
    el("span", {class: "muted"}, " · ", a.opd.toUpperCase())),
  el("div", {class: "line muted"}, t("alarms.since", {at: wita(a.raised_at)}),
    a.count > 1 ? [" · ", t("alarms.count", {n: a.count}), " · ", t("alarms.last", {at: wita(a.last_raised_at)})] : null),
  el("div", {class: "line"}, el("span", {class: "tag st", "data-testid": "alarm-state"}, t("alarms.state." + a.state)),
    a.acked_at ? el("span", {class: "muted"}, " ", t("alarms.acked_by", {who: who(a.acked_by), at: wita(a.acked_at)}),
      a.ack_note ? [" — ", el("q", {translate: "no"}, a.ack_note)] : null) : null,  // as written
    a.cleared_at ? el("span", {class: "muted"}, " ", t("alarms.cleared_by", {who: who(a.cleared_by), at: wita(a.cleared_at)})) : null),
  a.clear_command && a.state !== "cleared" ? el("p", {class: "hint", "data-testid": "clear-requested"}, icon("hourglass"), t("alarms.clear_requested")) : null,
  can ? el("div", {class: "actions"},
    a.state === "open" ? el("button", {type: "button", class: "btn", "data-act": "ack",
      onclick: () => act(a, "ack")}, icon("check"), t("alarms.ack")) : null,
    a.clear_command ? null : el("button", {type: "button", class: "btn", "data-act": "clear",
      onclick: () => act(a, "clear")}, icon("cross"), t("alarms.clear"))) : null);
}

export async function renderAlarms(params) {
  const main = el("div", {class: "alarms-page"}, el("p", {class: "muted"}, t("common.loading")));
  mount(shell("alarms", main));
  const view = S.view;
  const which = params.get("state") === "cleared" ? "cleared" : "active";
  const note = el("div", {class: "alarm-note", role: "status", "aria-live": "polite"});
  const list = el("ul", {class: "alarm-list", "data-testid": "alarms"});
  const filter = el("div", {class: "seg", role: "group"}, ["active", "cleared"].map((w) =>
    el("a", {href: w === "active" ? "#/alarms" : "#/alarms?state=cleared", "data-filter": w,
      class: "btn small" + (which === w ? " on" : "")}, t("alarms." + w))));
  main.textContent = "";
  main.appendChild(el("section", {class: "card"},
    el("div", {class: "card-head"}, el("h1", {}, icon("alert"), t("alarms.title")), filter), note));
  main.appendChild(list);

  async function act(a, what) {
    const ok = await ask({title: t("alarms." + what) + ": " + alarmText(a.code),
      text: t(`alarms.${what}.text`), note: t("alarms.note")});
    if (ok === null) return;
    let r;
    try {
      r = await api(`/alarms/${a.id}/${what}`, {method: "POST", json: {note: ok}, raw: true});
    } catch (err) { note.textContent = ""; note.appendChild(problem(err)); return; }
    note.textContent = "";
    note.appendChild(el("p", {class: "ok", "data-testid": "alarm-done", "data-http": r.status},
      icon("check"), r.status === 202 ? t("alarms.clear_requested") : t("alarms.done." + what)));
    load();
    if (S.alarmCount) S.alarmCount();
  }
  async function load() {
    let rows;
    try {
      rows = await api("/alarms?limit=500" + (which === "cleared" ? "&state=cleared" : ""));
    } catch (err) { if (view === S.view) { list.textContent = ""; list.appendChild(problem(err)); } return; }
    if (view !== S.view) return;
    rows.sort((x, y) => (RANK[x.severity] ?? 3) - (RANK[y.severity] ?? 3)
      || Date.parse(y.last_raised_at) - Date.parse(x.last_raised_at));
    list.textContent = "";
    if (!rows.length) list.appendChild(el("li", {class: "muted empty"}, t("alarms.none")));
    rows.forEach((a) => list.appendChild(alarmCard(a, act)));
  }
  await load();
  onLive((change) => { if (!change || change.what === "alarms") load(); });
}
