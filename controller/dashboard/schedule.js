/* The schedule editor (#/unit/<id>/schedule): a form per unit kind (programs and zone
 * minutes for watering, feeding plans per pond), checked by the server before saving,
 * then followed until the unit applies it. */

import {S} from "./state.js";
import {duration, grams, num, t, wita} from "./format.js";
import {$, $$, el, field, icon, problem} from "./dom.js";
import {api} from "./api.js";
import {mount, shell} from "./shell.js";
import {checkNumber} from "./commands.js";

const WEEKDAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

function splitList(text) {
  return text.split(/[,\s;]+/).map((s) => s.trim()).filter(Boolean);
}
/* The numeric fields of a form and their limits, checked in the page before anything
 * is sent: each gets a message next to it (in the page's language) when it is empty,
 * not a number, or out of range. A field not shown (another day mode, a pond on its
 * local plan) is not checked. */
function numbers() {
  const list = [];
  return {
    add(input, spec) { list.push({input, spec}); return input; },
    problems() {
      return list.filter(({input}) => input.isConnected).map(({input, spec}) =>
        [input, spec.check ? spec.check(input) : checkNumber(input, spec)]).filter(([, p]) => p);
    },
  };
}
const limitHint = (text) => el("small", {class: "limit", "data-testid": "limit"}, t("form.limit", {v: text}));

function irrigationForm(body, zones, limits) {
  const checks = numbers();
  const pct = checks.add(el("input", {type: "number", name: "watering_pct", min: 0, max: 250, step: 1,
    value: body.watering_pct ?? 100}), {min: 0, max: 250, maxText: "250 %"});
  const delay = checks.add(el("input", {type: "number", name: "rain_delay_h", min: 0, max: 168, step: 0.5,
    value: body.rain_delay_h ?? 24}), {min: 0, max: 168, maxText: duration(168 * 3600)});
  const progBox = el("div", {class: "programs"});
  const programs = [];
  function addProgram(p) {
    const extra = {...p};
    ["name", "enabled", "start_times", "zones", "weekdays", "interval_days", "odd_even"].forEach((k) => delete extra[k]);
    const mode = p.weekdays ? "weekdays" : p.interval_days ? "interval" : p.odd_even || "every";
    const name = el("input", {type: "text", name: "name", value: p.name || "", maxlength: 64});
    const enabled = el("input", {type: "checkbox", name: "enabled"});
    enabled.checked = p.enabled !== false;
    const starts = el("input", {type: "text", name: "start_times", value: (p.start_times || []).join(", "),
      placeholder: "05:30, sunset+00:30"});
    const modeSel = el("select", {name: "days"}, ["every", "weekdays", "interval", "odd", "even"].map((m) =>
      el("option", {value: m}, t("sched.days." + m))));
    modeSel.value = mode;
    const wdBox = el("div", {class: "chips small"}, WEEKDAYS.map((d) => {
      const b = el("button", {type: "button", class: "chip" + ((p.weekdays || []).includes(d) ? " on" : ""),
        "data-day": d, onclick: () => b.classList.toggle("on")}, t("wd." + d));
      return b;
    }));
    const n = checks.add(el("input", {type: "number", name: "interval_days", min: 1, max: 31, step: 1,
      value: p.interval_days || 2}), {min: 1, max: 31});
    const dayExtra = el("div", {class: "day-extra"});
    function showDays() {
      dayExtra.textContent = "";
      if (modeSel.value === "weekdays") dayExtra.appendChild(wdBox);
      if (modeSel.value === "interval") dayExtra.appendChild(field(t("sched.interval_days"), n));
    }
    modeSel.addEventListener("change", showDays);
    showDays();
    const minutes = {};
    const zoneRows = el("div", {class: "zone-minutes"}, zones.map((z) => {
      const cur = (p.zones || []).find((x) => x.zone === z);
      const maxS = ((limits.zones || {})[z] || {}).max_on_s;
      const maxMin = maxS ? Math.min(720, maxS / 60) : 720;
      minutes[z] = checks.add(el("input", {type: "number", min: 1, max: maxMin, step: 1, "data-zone": z,
        value: cur ? cur.duration_min : "", "aria-label": z}), {optional: true, max: maxMin,
        maxText: duration(maxMin * 60), check: (input) => {
          const problem = checkNumber(input, {optional: true, min: -Infinity, max: maxMin,
            maxText: duration(maxMin * 60)});
          if (problem) return problem;
          return input.value !== "" && Number(input.value) <= 0 ? t("form.positive") : null;
        }});
      return el("label", {class: "zone-row"}, el("span", {}, z), minutes[z], el("small", {}, t("u.min")),
        limitHint(duration(maxMin * 60)));
    }));
    // zones named in the program but not reported by the unit stay as they are
    const kept = (p.zones || []).filter((x) => !zones.includes(x.zone));
    const card = el("div", {class: "program"},
      el("div", {class: "program-head"}, field(t("sched.name"), name),
        el("label", {class: "check"}, enabled, t("sched.enabled")),
        el("button", {type: "button", class: "btn ghost small", onclick: () => {
          programs.splice(programs.indexOf(entry), 1);
          card.remove();
        }}, icon("cross"), t("sched.remove"))),
      field(t("sched.start_times"), starts, t("sched.start_times.hint")),
      el("div", {class: "row"}, field(t("sched.days"), modeSel), dayExtra),
      el("div", {class: "field"}, el("span", {}, t("sched.minutes")), zoneRows));
    const entry = {card, read: () => {
      const out = {...extra, name: name.value.trim(), enabled: enabled.checked,
        start_times: splitList(starts.value),
        zones: [...zones.filter((z) => minutes[z].value !== "")
          .map((z) => ({zone: z, duration_min: Number(minutes[z].value)})), ...kept]};
      if (modeSel.value === "weekdays") {
        out.weekdays = [...wdBox.querySelectorAll(".chip.on")].map((b) => b.dataset.day);
      } else if (modeSel.value === "interval") out.interval_days = Number(n.value);
      else if (modeSel.value === "odd" || modeSel.value === "even") out.odd_even = modeSel.value;
      return out;
    }};
    programs.push(entry);
    progBox.appendChild(card);
  }
  (body.programs || []).forEach(addProgram);
  const form = el("div", {class: "sched-form"},
    el("div", {class: "row"}, field(t("sched.watering_pct"), pct, t("form.limit", {v: "250 %"})),
      field(t("sched.rain_delay_h"), delay, t("form.limit", {v: duration(168 * 3600)}))),
    el("h3", {}, t("sched.program")), progBox,
    el("button", {type: "button", class: "btn ghost", "data-testid": "add-program", onclick: () =>
      addProgram({name: "program-" + (programs.length + 1), start_times: ["05:30"], zones: []})},
    "+ ", t("sched.add_program")));
  function read() {
    return {...body, watering_pct: Number(pct.value), rain_delay_h: Number(delay.value),
      programs: programs.map((p) => p.read())};
  }
  // The element a problem's field names (the server checks; the form only shows where).
  function locate(path) {
    const [top, i, sub] = path.split(".");
    if (top !== "programs") return form.querySelector(`[name="${top}"]`);
    const prog = programs[Number(i)];
    if (!prog) return progBox;
    return (sub && prog.card.querySelector(sub === "zones" ? ".zone-minutes" : sub === "odd_even"
      ? "[name=days]" : `[name="${sub}"]`)) || prog.card;
  }
  return {form, read, locate, problems: checks.problems};
}
function fishForm(body, ponds, limits) {
  const checks = numbers();
  const cards = ponds.map((pond) => {
    const feeder = Object.values(limits.feeders || {}).find((f) => f.pond === pond) || {};
    const maxG = feeder.max_dose_g || 100000;
    const cur = (body.ponds || {})[pond];
    const plan = (cur && cur.plan) || {times: ["07:00", "16:00"], doses_g: [500, 500]};
    const local = el("input", {type: "checkbox", name: "use_local"});
    local.checked = !(cur && cur.plan);
    const times = el("input", {type: "text", name: "times", value: (plan.times || []).join(", ")});
    const mode = el("select", {name: "mode"}, ["doses", "biomass"].map((m) =>
      el("option", {value: m}, t("sched.mode." + m))));
    mode.value = plan.doses_g ? "doses" : "biomass";
    const doses = checks.add(el("input", {type: "text", name: "doses_g", value: (plan.doses_g || []).join(", ")}),
      {check: (input) => {
        const list = splitList(input.value);
        if (!list.length) return t("form.required");
        for (const d of list) {
          const problem = checkNumber({value: d}, {min: 0.5, max: maxG, minText: grams(0.5), maxText: grams(maxG)});
          if (problem) return `${d}: ${problem}`;
        }
        return null;
      }});
    const count = checks.add(el("input", {type: "number", name: "fish_count", min: 1, step: 1,
      value: plan.fish_count || ""}), {min: 1, max: 10000000});
    const weight = checks.add(el("input", {type: "number", name: "avg_weight_g", min: 0.1, step: 0.1,
      value: plan.avg_weight_g || ""}), {min: 0.1, max: 100000, maxText: grams(100000)});
    const rate = checks.add(el("input", {type: "number", name: "feeding_rate_pct", min: 0.1, max: 30, step: 0.1,
      value: plan.feeding_rate_pct || ""}), {optional: true, min: 0.1, max: 30, maxText: "30 %"});
    const detail = el("div", {class: "pond-plan"});
    function show() {
      detail.textContent = "";
      if (local.checked) return;
      detail.appendChild(field(t("sched.times"), times, t("sched.times.hint")));
      detail.appendChild(field(t("sched.mode"), mode));
      if (mode.value === "doses") {
        detail.appendChild(field(t("sched.doses_g"), doses, [t("form.limit", {v: grams(maxG)}),
          feeder.max_daily_g ? " · " + t("form.daily", {v: grams(feeder.max_daily_g)}) : ""].join("")));
      }
      else {
        detail.appendChild(el("div", {class: "row"}, field(t("sched.fish_count"), count),
          field(t("sched.avg_weight_g"), weight)));
        detail.appendChild(field(t("sched.feeding_rate_pct"), rate, t("form.limit", {v: "30 %"})));
      }
    }
    local.addEventListener("change", show);
    mode.addEventListener("change", show);
    show();
    const card = el("div", {class: "program", "data-pond": pond},
      el("div", {class: "program-head"}, el("h3", {}, icon("fish"), t("sched.pond"), " ", pond),
        el("label", {class: "check"}, local, t("sched.use_local"))), detail);
    return {pond, card, read: () => {
      if (local.checked) return null;
      const p = {times: splitList(times.value)};
      if (mode.value === "doses") p.doses_g = splitList(doses.value).map(Number);
      else {
        p.fish_count = Number(count.value);
        p.avg_weight_g = Number(weight.value);
        if (rate.value !== "") p.feeding_rate_pct = Number(rate.value);
      }
      return {...(cur || {}), plan: p};
    }};
  });
  function read() {
    const out = {...body, ponds: {...(body.ponds || {})}};
    cards.forEach((c) => {
      const v = c.read();
      if (v === null) delete out.ponds[c.pond]; else out.ponds[c.pond] = v;
    });
    return out;
  }
  function locate(path) {
    const [, pond, , sub] = path.split(".");
    const c = cards.find((x) => x.pond === pond);
    return c && ((sub && c.card.querySelector(`[name="${sub}"]`)) || c.card);
  }
  return {form: el("div", {class: "sched-form"}, cards.map((c) => c.card)), read, locate,
    problems: checks.problems};
}
export async function renderSchedule(id) {
  const main = el("div", {class: "schedule-page"}, el("p", {class: "muted"}, t("common.loading")));
  mount(shell("units", main));
  const view = S.view;
  let u, sched, etag;  // etag: the version this editor started from (sent as If-Match)
  try {
    let raw;
    [u, raw] = await Promise.all([api(`/dashboard/units/${encodeURIComponent(id)}`),
      api(`/devices/${encodeURIComponent(id)}/schedule`, {raw: true})]);
    etag = raw.headers.get("ETag");
    sched = await raw.json();
  } catch (err) { main.textContent = ""; main.appendChild(problem(err)); return; }
  if (view !== S.view) return;
  const base = sched.desired ? sched.desired.body
    : u.kind === "irrigation" ? {watering_pct: 100, rain_delay_h: 24, programs: [], zones: []} : {ponds: {}};
  const limits = u.limits || {};
  let editor = u.kind === "irrigation" ? irrigationForm(base, u.zones || [], limits)
    : fishForm(base, u.ponds || [], limits);
  const formHolder = el("div", {}, editor.form);
  const json = el("textarea", {class: "json", rows: 14, spellcheck: "false", "aria-label": "JSON"});
  const jsonBox = el("details", {class: "json-box", ontoggle: () => {
    if (jsonBox.open) json.value = JSON.stringify(editor.read(), null, 2);
  }}, el("summary", {}, t("sched.json")), json);
  const out = el("div", {class: "sched-result", "aria-live": "polite"});
  function current() {
    if (jsonBox.open) {
      try { return JSON.parse(json.value); } catch (err) { return {__bad: true}; }
    }
    return editor.read();
  }
  // The server's problems ([field, reason], in the page's language): listed, and each
  // shown next to the field it names.
  // A reason the server could only give in English (a rule's own words) reads "tidak
  // sah" in Indonesian, its words folded under "technical detail".
  function reason(r) {
    const m = S.lang === "id" && /^tidak sah: (.+)$/s.exec(r);
    return m ? ["tidak sah ", el("details", {class: "tech"}, el("summary", {}, t("cmd.tech")),
      el("code", {}, m[1]))] : r;
  }
  function showProblems(list) {
    out.textContent = "";
    $$(".field-error", formHolder).forEach((e) => e.remove());
    out.appendChild(el("div", {class: "problems", role: "alert", "data-testid": "problems"},
      el("b", {}, icon("alert"), t("sched.invalid")),
      el("ul", {}, list.map(([f, r]) => el("li", {}, el("code", {}, f), " ", reason(r))))));
    if (jsonBox.open) return;
    list.forEach(([f, r]) => {
      const at = editor.locate(f);
      if (!at) return;
      const box = at.closest(".field, label") || at;
      box.appendChild(el("small", {class: "field-error", "data-testid": "field-error",
        "data-field": f}, reason(r)));
    });
  }
  const bodyProblems = (detail) => (Array.isArray(detail) ? detail : []).map((d) =>
    [d.loc.slice(2).join("."), d.msg]);
  // The page's own checks (empty, not a number, out of the unit's limits), each message
  // next to its field: nothing goes to the server while one remains.
  function refuseFields(list) {
    out.textContent = "";
    $$(".field-error", formHolder).forEach((e) => e.remove());
    out.appendChild(el("div", {class: "problems", role: "alert", "data-testid": "problems"},
      el("b", {}, icon("alert"), t("form.fix"))));
    list.forEach(([input, message]) => {
      input.setAttribute("aria-invalid", "true");
      const box = input.closest(".field, label") || input.parentNode;
      box.appendChild(el("small", {class: "field-error", "data-testid": "field-error",
        "data-field": input.name || input.dataset.zone || ""}, message));
    });
    list[0][0].focus();
  }
  async function validate() {
    if (!jsonBox.open) {
      $$("[aria-invalid]", formHolder).forEach((e) => e.removeAttribute("aria-invalid"));
      const wrong = editor.problems();
      if (wrong.length) { refuseFields(wrong); return null; }
    }
    const body = current();
    if (body.__bad) { showProblems([["JSON", t("err.json")]]); return null; }
    const res = await api(`/dashboard/units/${encodeURIComponent(id)}/schedule/check`,
      {method: "POST", json: {body}});
    if (!res.ok) { showProblems(res.problems.map((p) => [p.field, p.reason])); return null; }
    out.textContent = "";
    out.appendChild(el("p", {class: "ok"}, icon("check"), t("sched.ok"), res.next && res.next.at ?
      [" ", t("sched.next"), ": ", el("b", {}, wita(res.next.at))] : ""));
    return body;
  }
  function stateBox(s) {
    return el("div", {class: "sync", "data-testid": "sync", "data-state": s.state},
      el("span", {class: `tag big cfg-${s.state}`}, icon({in_sync: "check", rejected: "cross",
        pending: "hourglass"}[s.state] || "clock"), t("config." + s.state)),
      s.desired ? el("span", {class: "muted"}, ` v${s.desired.version}`) : null,
      s.rejection ? el("pre", {class: "rejection"}, JSON.stringify(s.rejection.details, null, 1)) : null);
  }
  async function save() {
    const body = await validate();
    if (!body) return;
    let s;
    try {
      const r = await api(`/devices/${encodeURIComponent(id)}/schedule`,
        {method: "PUT", json: {body}, headers: etag ? {"If-Match": etag} : {}, raw: true});
      etag = r.headers.get("ETag");
      s = await r.json();
    } catch (err) {
      if (err.status === 412) showProblems([["If-Match", t("sched.conflict")]]);
      else if (err.status === 422 && bodyProblems(err.detail).length) showProblems(bodyProblems(err.detail));
      else showProblems([["HTTP " + err.status, err.message]]);
      return;
    }
    out.appendChild(el("p", {}, t("sched.sent", {v: s.desired.version})));
    const warn = $(".warn", main);
    if (warn) warn.remove();
    let box = stateBox(s);
    out.appendChild(box);
    const show = () => {
      const b2 = stateBox(s), top2 = stateBox(s);
      top2.dataset.testid = "sync-top";
      box.replaceWith(b2);
      topState.replaceWith(top2);
      box = b2;
      topState = top2;
    };
    show();
    const poll = setInterval(async () => {
      if (view !== S.view) { clearInterval(poll); return; }
      try { s = await api(`/devices/${encodeURIComponent(id)}/schedule`); } catch (err) { return; }
      show();
      if (s.state !== "pending") clearInterval(poll);
    }, 1000);
    S.timers.push(poll);
  }
  let topState = stateBox(sched);
  topState.dataset.testid = "sync-top";
  main.textContent = "";
  main.appendChild(el("a", {class: "back", href: `#/unit/${encodeURIComponent(id)}`}, icon("back"), u.name));
  main.appendChild(el("section", {class: "card"},
    el("h1", {}, icon("calendar"), t("sched.title"), " · ", u.name),
    el("div", {class: "state-line"}, t("sched.state"), ": ", topState),
    sched.desired ? null : el("p", {class: "warn"}, icon("alert"), t("sched.local_warning")),
    formHolder, jsonBox,
    el("div", {class: "actions"},
      el("button", {type: "button", class: "btn", "data-testid": "check", onclick: () => validate()},
        icon("check"), t("sched.check")),
      el("button", {type: "button", class: "btn primary", "data-testid": "save", onclick: () => save()},
        icon("play"), t("sched.save"))),
    out));
}
