/* Commands: the confirmation dialog, sending a command, and following it (sent,
 * accepted, done or why not) in the unit's list of commands. */

import {S} from "./state.js";
import {duration, grams, known, num, t, wita} from "./format.js";
import {$, el, icon} from "./dom.js";
import {api} from "./api.js";

const FINAL = ["done", "failed", "rejected", "expired", "error"];
const BAD = ["failed", "rejected", "expired", "error"];
/* How a run a person ended ends (run_finished ended / run_skipped reason): "Dihentikan",
 * in a neutral colour, not "Gagal". */
export const STOPPED = ["stopped", "stop_all", "stop_zone", "paused"];

/* The confirmation dialog. opts: title, text, danger; choices [{label, value}] with
 * initial, where a choice above `limit` is disabled; custom {label, min, max, step,
 * map, limit (the text: "maks. 45 mnt")}: a number of one's own, checked before anything
 * is sent (an empty, negative or out-of-range value gets a message next to the field);
 * note (a label): a free text, resolved instead of a choice. Resolves null on cancel. */
export function ask(opts) {
  const dlg = $("#confirm");
  $("#confirm-title").textContent = opts.title;
  const content = $(".dialog-content", dlg);
  content.textContent = "";
  content.appendChild(el("p", {class: "dialog-text"}, opts.text));
  let noteBox = null;
  if (opts.note) {
    noteBox = el("textarea", {rows: 2, maxlength: 500, "data-testid": "note", "aria-label": opts.note});
    content.appendChild(el("label", {class: "field"}, el("span", {}, opts.note), noteBox));
  }
  const allowed = (c) => opts.limit === undefined || c.value <= opts.limit;
  let value = true;
  let custom = null, customBox = null;
  if (opts.choices) {
    const first = opts.choices.findIndex(allowed);
    const initial = allowed(opts.choices[opts.initial || 0]) ? opts.initial || 0 : first;
    value = initial >= 0 ? opts.choices[initial].value : null;
    const chips = el("div", {class: "chips", role: "radiogroup"});
    opts.choices.forEach((c, i) => {
      const b = el("button", {type: "button", class: "chip" + (i === initial ? " on" : ""),
        role: "radio", disabled: !allowed(c), "data-choice": String(c.value), onclick: () => {
          value = c.value;
          chips.querySelectorAll(".chip").forEach((x) => x.classList.remove("on"));
          b.classList.add("on");
          if (custom) { custom.value = ""; clearError(); }
        }}, c.label);
      chips.appendChild(b);
    });
    content.appendChild(chips);
  }
  if (opts.custom) {
    custom = el("input", {type: "number", inputmode: "decimal", min: opts.custom.min,
      max: opts.custom.max, step: opts.custom.step || "any", "data-testid": "custom",
      placeholder: opts.custom.label, "aria-label": opts.custom.label,
      "aria-describedby": "custom-limit"});
    customBox = el("label", {class: "custom field"}, opts.custom.label, custom,
      el("small", {class: "limit", id: "custom-limit", "data-testid": "limit"}, opts.custom.limit));
    content.appendChild(customBox);
  }
  function clearError() {
    if (customBox) customBox.querySelectorAll(".field-error").forEach((e) => e.remove());
    if (custom) custom.removeAttribute("aria-invalid");
  }
  function refuse(message) {
    clearError();
    custom.setAttribute("aria-invalid", "true");
    customBox.appendChild(el("small", {class: "field-error", role: "alert", "data-testid": "field-error"}, message));
    custom.focus();
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
      if (noteBox) { done(noteBox.value.trim()); return; }
      if (custom && (custom.value !== "" || custom.validity.badInput || value === null)) {
        const problem = checkNumber(custom, opts.custom);
        if (problem) { refuse(problem); return; }
        const v = Number(custom.value);
        value = opts.custom.map ? opts.custom.map(v) : v;
      }
      if (value === null) return;
      done(value);
    };
    cancel.onclick = () => done(null);
    dlg.onclose = () => done(null);
    dlg.showModal();
  });
}

/* Why a number field's value is refused, in the page's language, or null. spec: min,
 * max, minText, maxText (the limits as shown: "45 mnt"), optional (empty allowed). */
export function checkNumber(input, spec) {
  if (input.validity && input.validity.badInput) return t("form.nan");
  const raw = String(input.value).trim();
  if (raw === "") return spec.optional ? null : t("form.required");
  const v = Number(raw);
  if (!Number.isFinite(v)) return t("form.nan");
  if (v < spec.min) return t("form.min", {v: spec.minText ?? num(spec.min, 2)});
  if (v > spec.max) return t("form.max", {v: spec.maxText ?? num(spec.max, 2)});
  return null;
}

function describe(cmd) {
  const p = cmd.params || {};
  const base = t("action." + cmd.action);
  if (cmd.action === "run_zone") return `${base}: ${p.zone} · ${duration(p.duration_s)}`;
  if (cmd.action === "stop_zone") return `${base}: ${p.zone}`;
  if (cmd.action === "feed_now") return `${base}: ${p.feeder} · ${grams(p.dose_g)}`;
  if (cmd.action === "pause") return `${base} → ${wita(p.until)}`;
  if (cmd.action === "rain_delay") return `${base}: ${num(p.hours, 1)} ${t("u.h")}`;
  if (cmd.action === "skip_next" && (p.zone || p.feeder)) return `${base}: ${p.zone || p.feeder}`;
  if (cmd.action === "clear_fault" && (p.feeder || p.zone)) return `${base}: ${p.feeder || p.zone}`;
  return base;
}
/* The outcome to show: the command's status, or "stopped" for a run a person ended
 * (the reply's run_ended with how it ended, or the run's end event). */
function outcome(cmd, ended) {
  const reply = lastReply(cmd);
  const how = (reply.code === "run_ended" && reply.params && reply.params.ended) || (ended && ended[cmd.id]);
  return cmd.status === "failed" && STOPPED.includes(how) ? "stopped" : cmd.status;
}
/* The code and params of the answer that set the command's status (reply_code on the
 * command), else of its last reply with a code. */
function lastReply(cmd) {
  if (cmd.reply_code) return {code: cmd.reply_code, params: cmd.reply_params || {}};
  const r = (cmd.replies || []).filter((x) => x.code).slice(-1)[0];
  return r ? {code: r.code, params: r.params || {}} : {code: cmd.code, params: cmd.code_params || {}};
}
/* A reply's params in the page's language: durations, grams, times, reasons. */
function shownParams(params) {
  const out = {};
  for (const [k, v] of Object.entries(params || {})) {
    if (v === null || v === undefined) out[k] = "?";
    else if (k === "duration_s") out[k] = duration(v);
    else if (/_g$/.test(k) && typeof v === "number") out[k] = grams(v);
    else if (k === "hours") out[k] = num(v, 1) + " " + t("u.h");
    else if (k === "max_daily_water_min") out[k] = duration(v * 60);
    else if ((k === "until" || k === "expires_at") && typeof v === "string") out[k] = wita(v);
    else if (k === "ended" || k === "reason" || k === "fault") out[k] = known("reason.", String(v));
    else if (k === "target" && v === "*") out[k] = t("unit.skip_next.all");
    else if (k === "cleared") {  // what a resume ended: "pause,rain_delay,faults,leak"
      out[k] = String(v).split(",").map(s => s.trim()).filter(Boolean)
        .map(s => known("hold.", s)).join(", ");
    }
    else if (Array.isArray(v)) out[k] = v.join(", ");
    else out[k] = typeof v === "number" ? num(v, 1) : String(v);
  }
  return out;
}
function stepper(status) {
  const steps = ["sent", "accepted", "done"];
  const failed = BAD.includes(status) || status === "stopped";
  const reached = {pending: 0, sent: 1, accepted: 2, done: 3}[status] ?? (status === "stopped" ? 2 : failed ? 1 : 0);
  return el("ol", {class: "steps"}, steps.map((s, i) => {
    let cls = i < reached ? "ok" : "";
    if (failed && i === reached) cls = status === "stopped" ? "stopped" : "bad";
    const label = failed && i === reached ? t("cmd." + status) : t("cmd." + s);
    const ic = cls === "ok" ? "check" : cls === "bad" ? "cross" : cls === "stopped" ? "stop" : "hourglass";
    return el("li", {class: cls}, icon(ic), label);
  }));
}
/* What the unit answered, in the page's language: the reply's code with its parameters
 * (reply.<code>) when it has one, else a sentence per status. The unit's own words
 * (detail, English) are shown as they are in the English view only; in Indonesian they
 * sit in a "technical detail" disclosure. */
function replyText(cmd, shown) {
  const reply = lastReply(cmd);
  if (reply.code && shown !== "stopped") {
    const words = known("reply.", reply.code);
    if (words !== reply.code) return t("reply." + reply.code, shownParams(reply.params));
  }
  if (shown === "pending" || shown === "sent") return null;
  return t("reply.status." + shown);
}
function commandRow(cmd, ended) {
  const shown = outcome(cmd, ended);
  const text = replyText(cmd, shown);
  const detail = cmd.detail && cmd.detail !== text ? cmd.detail : "";
  const bad = BAD.includes(shown);
  return el("li", {class: `cmd c-${shown}`, "data-command": cmd.id, "data-status": cmd.status,
    "data-outcome": shown},
  el("div", {class: "cmd-head"}, el("b", {}, describe(cmd)),
    el("span", {class: "muted"}, wita(cmd.issued_at))),
  stepper(shown),
  text ? el("div", {class: "cmd-detail" + (bad ? " bad" : ""), "data-testid": "reply"}, text) : null,
  detail && S.lang === "en" ? el("div", {class: "cmd-detail muted"}, detail) : null,
  detail && S.lang !== "en" ? el("details", {class: "tech"}, el("summary", {}, t("cmd.tech")),
    el("code", {}, detail)) : null);
}
export function watchCommand(list, cmd, changed) {
  const view = S.view;
  let row = commandRow(cmd, list.ended);
  row.cmd = cmd;
  list.prepend(row);
  const empty = $(".empty", list.parentNode);
  if (empty) empty.remove();
  if (FINAL.includes(cmd.status)) return;
  const id = setInterval(async () => {
    if (view !== S.view) { clearInterval(id); return; }
    let now;
    try { now = await api("/commands/" + encodeURIComponent(cmd.id)); } catch (err) { return; }
    const fresh = commandRow(now, list.ended);
    fresh.cmd = now;
    row.replaceWith(fresh);
    if (row.dataset.status !== now.status && changed) changed();
    row = fresh;
    if (FINAL.includes(now.status)) clearInterval(id);
  }, 700);
  S.timers.push(id);
}
/* Show the rows again with how their runs ended (`ended`: {cmd_id: ended}, from the
 * unit's view), so a run a person stopped reads "Dihentikan". */
export function markEnded(list, ended) {
  list.ended = ended || {};
  [...list.children].forEach((row) => {
    if (!row.cmd) return;
    const fresh = commandRow(row.cmd, list.ended);
    fresh.cmd = row.cmd;
    if (fresh.dataset.outcome !== row.dataset.outcome) row.replaceWith(fresh);
  });
}
/* Units (or controllers) that do not know stop_zone answer 422 or 400: the page then
 * stops offering it for that unit. */
const noStopZone = new Set();
export const stopZoneKnownMissing = (deviceId) => noStopZone.has(deviceId);
async function send(unit, list, action, params) {
  try {
    const cmd = await api(`/devices/${encodeURIComponent(unit.device_id)}/commands`,
      {method: "POST", json: {action, params}});
    watchCommand(list, cmd, list.refresh);
  } catch (err) {
    if (action === "stop_zone" && (err.status === 422 || err.status === 400)) {
      noStopZone.add(unit.device_id);
      watchCommand(list, {id: "x" + Date.now(), action, params, status: "error",
        issued_at: new Date().toISOString(), code: "stop_zone_unsupported", detail: err.message});
      if (list.refresh) list.refresh();
      return;
    }
    watchCommand(list, {id: "x" + Date.now(), action, params, status: "error",
      issued_at: new Date().toISOString(), detail: err.message});
  }
}
const hours = (list) => list.map((h) => ({label: t("dur.hours", {n: h}), value: h}));
/* The unit's reported limits for a target: {maxS} of a zone (max_on_s), {maxG, dailyG}
 * of a feeder, {pauseH} of the unit; undefined where the unit reports none. */
export function limitsOf(unit, target) {
  const l = unit.limits || {};
  const zone = (l.zones || {})[target] || {};
  const feeder = (l.feeders || {})[target] || {};
  return {maxS: zone.max_on_s, maxG: feeder.max_dose_g, dailyG: feeder.max_daily_g,
    pauseH: l.max_pause_s ? l.max_pause_s / 3600 : undefined};
}
const limitText = (v) => t("form.limit", {v});

export async function command(unit, list, action, target) {
  let params = {};
  const title = t("action." + action);
  const lim = limitsOf(unit, target);
  if (action === "run_zone") {
    const maxMin = Math.min(lim.maxS ? lim.maxS / 60 : 240, 240);
    const choices = [{label: t("dur.test"), value: 10}, ...[5, 10, 20, 30].map((m) =>
      ({label: t("dur.min", {n: m}), value: m * 60}))];
    const s = await ask({title, text: t("confirm.run_zone", {zone: target}), choices, initial: 2,
      limit: maxMin * 60,
      custom: {label: t("dur.custom_min"), min: 0.5, max: maxMin, step: 0.5, map: (m) => Math.round(m * 60),
        minText: duration(30), maxText: duration(maxMin * 60), limit: limitText(duration(maxMin * 60))}});
    if (s === null) return;
    params = {zone: target, duration_s: s};
  } else if (action === "feed_now") {
    const maxG = lim.maxG || 100000;
    const choices = [100, 250, 500, 1000].map((g) => ({label: grams(g), value: g}));
    const g = await ask({title, text: t("confirm.feed_now", {feeder: target}), choices, initial: 1,
      limit: maxG,
      custom: {label: t("dose.custom"), min: 1, max: maxG, step: 1, minText: grams(1), maxText: grams(maxG),
        limit: [limitText(grams(maxG)), lim.dailyG ? " · " + t("form.daily", {v: grams(lim.dailyG)}) : ""].join("")}});
    if (g === null) return;
    params = {feeder: target, dose_g: g};
  } else if (action === "pause") {
    const h = await ask({title, text: t("confirm.pause"), choices: hours([2, 6, 12, 24, 48]), initial: 3,
      limit: lim.pauseH});
    if (h === null) return;
    params = {until: new Date(Date.now() + h * 3600e3).toISOString()};
  } else if (action === "rain_delay") {
    const h = await ask({title, text: t("confirm.rain_delay"), choices: hours([12, 24, 48, 72]), initial: 1,
      limit: 168});
    if (h === null) return;
    params = {hours: h};
  } else if (action === "stop_zone") {
    const ok = await ask({title, text: t("confirm.stop_zone", {zone: target})});
    if (ok === null) return;
    params = {zone: target};
  } else {
    const ok = await ask({title, text: t("confirm." + action), danger: action === "stop_all"});
    if (ok === null) return;
  }
  await send(unit, list, action, params);
}
