/* Commands: the confirmation dialog, sending a command, and following it (sent,
 * accepted, done or why not) in the unit's list of commands. */

import {S} from "./state.js";
import {num, t, wita} from "./format.js";
import {$, el, icon} from "./dom.js";
import {api} from "./api.js";

const FINAL = ["done", "failed", "rejected", "expired", "error"];

function ask(opts) {
  const dlg = $("#confirm");
  $("#confirm-title").textContent = opts.title;
  const content = $(".dialog-content", dlg);
  content.textContent = "";
  content.appendChild(el("p", {class: "dialog-text"}, opts.text));
  let value = opts.choices ? opts.choices[opts.initial || 0].value : true;
  let custom = null;
  if (opts.choices) {
    const chips = el("div", {class: "chips", role: "radiogroup"});
    opts.choices.forEach((c, i) => {
      const b = el("button", {type: "button", class: "chip" + (i === (opts.initial || 0) ? " on" : ""),
        role: "radio", "data-choice": String(c.value), onclick: () => {
          value = c.value;
          chips.querySelectorAll(".chip").forEach((x) => x.classList.remove("on"));
          b.classList.add("on");
          if (custom) custom.value = "";
        }}, c.label);
      chips.appendChild(b);
    });
    content.appendChild(chips);
    if (opts.custom) {
      custom = el("input", {type: "number", inputmode: "decimal", min: opts.custom.min,
        max: opts.custom.max, step: opts.custom.step || "any", "data-testid": "custom",
        placeholder: opts.custom.label, "aria-label": opts.custom.label});
      content.appendChild(el("label", {class: "custom"}, opts.custom.label, custom));
    }
  }
  const ok = $('[data-role="ok"]', dlg), cancel = $('[data-role="cancel"]', dlg);
  ok.textContent = t("confirm.yes");
  ok.className = "btn " + (opts.danger ? "danger" : "primary");
  cancel.textContent = t("confirm.cancel");
  return new Promise((resolve) => {
    function done(result) {
      ok.onclick = cancel.onclick = null;
      dlg.onclose = null;
      if (dlg.open) dlg.close();
      resolve(result);
    }
    ok.onclick = () => {
      if (custom && custom.value !== "") {
        const v = Number(custom.value);
        if (!(v >= opts.custom.min && v <= opts.custom.max)) { custom.focus(); return; }
        value = opts.custom.map ? opts.custom.map(v) : v;
      }
      done(value);
    };
    cancel.onclick = () => done(null);
    dlg.onclose = () => done(null);
    dlg.showModal();
  });
}

function describe(cmd) {
  const p = cmd.params || {};
  const base = t("action." + cmd.action);
  if (cmd.action === "run_zone") {
    const dur = p.duration_s < 60 ? p.duration_s + " s" : num(p.duration_s / 60, 1) + " min";
    return `${base}: ${p.zone} · ${dur}`;
  }
  if (cmd.action === "feed_now") return `${base}: ${p.feeder} · ${num(p.dose_g, 0)} g`;
  if (cmd.action === "pause") return `${base} → ${wita(p.until)}`;
  if (cmd.action === "rain_delay") return `${base}: ${num(p.hours, 1)} h`;
  if (cmd.action === "skip_next" && (p.zone || p.feeder)) return `${base}: ${p.zone || p.feeder}`;
  return base;
}
function stepper(status) {
  const steps = ["sent", "accepted", "done"];
  const failed = ["failed", "rejected", "expired", "error"].includes(status);
  const reached = {pending: 0, sent: 1, accepted: 2, done: 3}[status] ?? (failed ? 1 : 0);
  return el("ol", {class: "steps"}, steps.map((s, i) => {
    let cls = i < reached ? "ok" : "";
    if (failed && i === reached) cls = "bad";
    const label = failed && i === reached ? t("cmd." + status) : t("cmd." + s);
    const ic = cls === "ok" ? "check" : cls === "bad" ? "cross" : "hourglass";
    return el("li", {class: cls}, icon(ic), label);
  }));
}
function commandRow(cmd) {
  return el("li", {class: `cmd c-${cmd.status}`, "data-command": cmd.id, "data-status": cmd.status},
    el("div", {class: "cmd-head"}, el("b", {}, describe(cmd)),
      el("span", {class: "muted"}, wita(cmd.issued_at))),
    stepper(cmd.status),
    cmd.detail ? el("div", {class: "cmd-detail" + (["failed", "rejected", "expired", "error"]
      .includes(cmd.status) ? " bad" : "")}, cmd.detail) : null);
}
export function watchCommand(list, cmd, changed) {
  const view = S.view;
  let row = commandRow(cmd);
  list.prepend(row);
  const empty = $(".empty", list.parentNode);
  if (empty) empty.remove();
  if (FINAL.includes(cmd.status)) return;
  const id = setInterval(async () => {
    if (view !== S.view) { clearInterval(id); return; }
    let now;
    try { now = await api("/commands/" + encodeURIComponent(cmd.id)); } catch (err) { return; }
    const fresh = commandRow(now);
    row.replaceWith(fresh);
    if (row.dataset.status !== now.status && changed) changed();
    row = fresh;
    if (FINAL.includes(now.status)) clearInterval(id);
  }, 700);
  S.timers.push(id);
}
async function send(unit, list, action, params) {
  try {
    const cmd = await api(`/devices/${encodeURIComponent(unit.device_id)}/commands`,
      {method: "POST", json: {action, params}});
    watchCommand(list, cmd, list.refresh);
  } catch (err) {
    watchCommand(list, {id: "x" + Date.now(), action, params, status: "error",
      issued_at: new Date().toISOString(), detail: err.message});
  }
}
const hours = (list) => list.map((h) => ({label: t("dur.hours", {n: h}), value: h}));
export async function command(unit, list, action, target) {
  let params = {};
  const title = t("action." + action);
  if (action === "run_zone") {
    const choices = [{label: t("dur.test"), value: 10}, ...[5, 10, 20, 30].map((m) =>
      ({label: t("dur.min", {n: m}), value: m * 60}))];
    const s = await ask({title, text: t("confirm.run_zone", {zone: target}), choices, initial: 2,
      custom: {label: t("dur.custom_min"), min: 0.5, max: 240, step: 0.5, map: (m) => Math.round(m * 60)}});
    if (s === null) return;
    params = {zone: target, duration_s: s};
  } else if (action === "feed_now") {
    const choices = [100, 250, 500, 1000].map((g) => ({label: g + " g", value: g}));
    const g = await ask({title, text: t("confirm.feed_now", {feeder: target}), choices, initial: 1,
      custom: {label: t("dose.custom"), min: 1, max: 100000, step: 1}});
    if (g === null) return;
    params = {feeder: target, dose_g: g};
  } else if (action === "pause") {
    const h = await ask({title, text: t("confirm.pause"), choices: hours([2, 6, 12, 24, 48]), initial: 3});
    if (h === null) return;
    params = {until: new Date(Date.now() + h * 3600e3).toISOString()};
  } else if (action === "rain_delay") {
    const h = await ask({title, text: t("confirm.rain_delay"), choices: hours([12, 24, 48, 72]), initial: 1});
    if (h === null) return;
    params = {hours: h};
  } else {
    const ok = await ask({title, text: t("confirm." + action), danger: action === "stop_all"});
    if (ok === null) return;
  }
  await send(unit, list, action, params);
}
