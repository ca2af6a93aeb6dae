/* Admins' updates page (#/updates): start a rollout of a release added before (release
 * add), follow it unit by unit (version running and offered, stage, state, result), stop
 * it. Every word comes from codes (rollout states and reasons, unit states, results, the
 * update's steps); the unit's own reason is shown as it sent it. */

import {S, coalesce, every, onLive} from "./state.js";
import {known, num, t, windowText, wita} from "./format.js";
import {el, field, icon, problem} from "./dom.js";
import {api} from "./api.js";
import {mount, shell} from "./shell.js";

const STATE_ICON = {waiting: "clock", offered: "hourglass", accepted: "hourglass",
  applied: "check", failed: "cross", skipped: "check"};

function stageName(n) {
  return n === 0 ? t("rollout.stage.canary") : t("rollout.stage.n", {n});
}
/* The unit's result in words: the code's, then the step, then what the unit said. */
function resultText(u) {
  if (!u.result) return "";
  const out = [known("rollout.result.", u.result)];
  if (u.step) out.push(" · ", t("rollout.step"), " ", known("rollout.step.", u.step));
  if (u.reason && u.state === "failed") out.push(": ", el("q", {translate: "no", class: "muted"}, u.reason));
  return out;
}
function unitsTable(r) {
  return el("div", {class: "table-wrap"}, el("table", {class: "rollout-units", "data-testid": "rollout-units"},
    el("thead", {}, el("tr", {}, ["unit", "opd", "running", "offered", "window", "stage", "state", "result",
      "updated"].map((k) => el("th", {}, t("rollout.col." + k))))),
    el("tbody", {}, r.units.map((u) => el("tr", {"data-device": u.device_id, "data-state": u.state},
      el("td", {translate: "no"}, el("b", {}, u.device_id)),
      el("td", {}, u.opd.toUpperCase()),
      el("td", {translate: "no", "data-col": "running"}, u.running || "—"),
      el("td", {translate: "no", "data-col": "offered"}, u.offered || "—"),
      el("td", {"data-col": "window", "data-label": t("rollout.col.window"), title: t("rollout.col.window")},
        windowText(u.update_window) || "—"),
      el("td", {}, stageName(u.stage)),
      el("td", {}, el("span", {class: `tag ru-${u.state}`, "data-unit-state": u.state},
        icon(STATE_ICON[u.state] || "clock"), t("rollout.unit." + u.state))),
      el("td", {"data-col": "result"}, resultText(u)),
      el("td", {class: "muted"}, wita(u.updated_at)))))));
}
function summaryLine(r) {
  const order = ["applied", "skipped", "failed", "accepted", "offered", "waiting"];
  return el("p", {class: "muted", "data-testid": "rollout-counts"}, order.filter((k) => r.counts[k])
    .map((k, i) => [i ? " · " : "", num(r.counts[k], 0), " ", t("rollout.unit." + k).toLowerCase()]));
}
function detail(r, reload) {
  const stop = el("form", {class: "stop-rollout", onsubmit: async (ev) => {
    ev.preventDefault();
    try {
      await api(`/rollouts/${r.id}/stop`, {method: "POST", json: {reason: note.value.trim()}});
    } catch (err) { stop.appendChild(problem(err)); return; }
    reload();
  }});
  const note = el("input", {type: "text", name: "note", maxlength: "500", "data-testid": "stop-note"});
  if (r.state === "running") {
    stop.append(field(t("rollout.stop.note"), note),
      el("button", {type: "submit", class: "btn danger", "data-testid": "stop"}, icon("stop"), t("rollout.stop")));
  }
  return el("section", {class: "card rollout", "data-rollout": r.id, "data-state": r.state},
    el("h2", {}, t("rollout.title", {id: r.id}), " · ", el("span", {translate: "no"}, r.version)),
    el("p", {}, el("span", {class: `tag ro-${r.state}`, "data-testid": "rollout-state"},
      t("rollout.state." + r.state)),
    r.reason ? [" ", el("span", {"data-testid": "rollout-reason"}, known("rollout.reason.", r.reason))] : null,
    r.state === "running" ? [" · ", stageName(r.stage), " ", t("rollout.of"), " ", num(r.stages, 0)] : null),
    el("p", {class: "muted"}, t("rollout.plan", {canary: num(r.canary, 0),
      stages: r.stage_percents.map((p) => p + " %").join(", "),
      share: num(r.max_failure_share * 100, 0) + " %"}), " · ", wita(r.created_at)),
    summaryLine(r), unitsTable(r), stop);
}
function startForm(releases, opds, done) {
  const msg = el("div", {"aria-live": "polite"});
  const version = el("select", {name: "version", "data-testid": "version"},
    releases.map((x) => el("option", {value: x.version}, x.version)));
  const how = el("select", {name: "how", "data-testid": "target-kind"},
    ["opd", "devices", "percent"].map((k) => el("option", {value: k}, t("rollout.target." + k))));
  const opd = el("select", {name: "opd", "data-testid": "target-opd"},
    el("option", {value: ""}, t("rollout.target.all")), opds.map((o) => el("option", {value: o}, o.toUpperCase())));
  const devices = el("input", {type: "text", name: "devices", "data-testid": "target-devices",
    placeholder: "taman-01, taman-02"});
  const percent = el("input", {type: "number", name: "percent", min: "1", max: "100", value: "100",
    "data-testid": "target-percent"});
  const canary = el("input", {type: "number", name: "canary", min: "1", value: "1", "data-testid": "canary"});
  const stages = el("input", {type: "text", name: "stages", value: "100", "data-testid": "stages"});
  const share = el("input", {type: "number", name: "share", min: "0", max: "100", value: "20",
    "data-testid": "threshold"});
  const fDevices = field(t("rollout.target.devices"), devices, t("rollout.target.devices.hint"));
  const fPercent = field(t("rollout.target.percent"), percent);
  function shown() {
    fDevices.hidden = how.value !== "devices";
    fPercent.hidden = how.value !== "percent";
  }
  how.addEventListener("change", shown);
  shown();
  const form = el("form", {class: "card start-rollout", "data-testid": "start-rollout", onsubmit: async (ev) => {
    ev.preventDefault();
    msg.textContent = "";
    const target = {};
    if (how.value === "devices") target.devices = devices.value.split(/[\s,]+/).filter(Boolean);
    else {
      if (opd.value) target.opd = opd.value;
      if (how.value === "percent") target.percent = Number(percent.value);
    }
    const body = {version: version.value, target, canary: Number(canary.value),
      stage_percents: stages.value.split(/[\s,]+/).filter(Boolean).map(Number),
      max_failure_share: Number(share.value) / 100};
    try {
      const r = await api("/rollouts", {method: "POST", json: body});
      done(r.id);
    } catch (err) {
      // the server's 422 names the field, in this page's language (Accept-Language)
      const items = Array.isArray(err.detail) ? err.detail : null;
      msg.appendChild(items ? el("ul", {class: "error", "data-testid": "problems"}, items.map((p) =>
        el("li", {}, el("b", {}, p.loc.slice(1).join(".")), ": ", p.msg))) : problem(err));
    }
  }},
  el("h2", {}, icon("download"), t("rollout.start.title")),
  releases.length ? null : el("p", {class: "muted"}, t("rollout.no_releases")),
  el("div", {class: "form-grid"},
    field(t("rollout.version"), version), field(t("rollout.target"), how),
    field(t("rollout.target.opd"), opd), fDevices, fPercent,
    field(t("rollout.canary"), canary, t("rollout.canary.hint")),
    field(t("rollout.stages"), stages, t("rollout.stages.hint")),
    field(t("rollout.threshold"), share, t("rollout.threshold.hint"))),
  msg,
  el("button", {type: "submit", class: "btn primary", "data-testid": "start", disabled: !releases.length},
    icon("play"), t("rollout.start")));
  return form;
}
export async function renderUpdates(params) {
  const main = el("div", {class: "updates-page"}, el("p", {class: "muted"}, t("common.loading")));
  mount(shell("updates", main));
  const view = S.view;
  let chosen = params && params.get("rollout") ? Number(params.get("rollout")) : null;
  let releases, units;
  try {
    [releases, units] = await Promise.all([api("/releases"), api("/unit-versions")]);
  } catch (err) { main.textContent = ""; main.appendChild(problem(err)); return; }
  if (view !== S.view) return;
  const opds = [...new Set(units.map((u) => u.opd))].sort();
  const list = el("section", {class: "card rollouts"});
  const shown = el("div", {"data-testid": "rollout-detail"});
  let last = "";
  async function load() {
    let rollouts, r = null;
    try {
      rollouts = await api("/rollouts?limit=20");
      const id = chosen || (rollouts[0] && rollouts[0].id);
      if (id) r = await api(`/rollouts/${id}`);
    } catch (err) { if (view === S.view) { shown.textContent = ""; shown.appendChild(problem(err)); } return; }
    if (view !== S.view) return;
    const key = JSON.stringify([rollouts, r, S.lang]);
    if (key === last) return;  // unchanged: leave the page (and a note being typed) alone
    last = key;
    list.textContent = "";
    list.appendChild(el("h2", {}, icon("list"), t("rollout.list")));
    list.appendChild(rollouts.length ? el("ul", {class: "rollout-list"}, rollouts.map((x) =>
      el("li", {"data-rollout": x.id}, el("a", {href: `#/updates?rollout=${x.id}`},
        t("rollout.title", {id: x.id}), " · ", el("span", {translate: "no"}, x.version), " · ",
        t("rollout.state." + x.state), " · ", wita(x.created_at))))) : el("p", {class: "muted"}, t("rollout.none")));
    shown.textContent = "";
    if (r) shown.appendChild(detail(r, load));
  }
  main.textContent = "";
  main.append(el("h1", {}, t("updates.title")),
    el("p", {class: "muted"}, t("updates.intro")),
    startForm(releases, opds, (id) => { chosen = id; location.hash = `#/updates?rollout=${id}`; }),
    shown, list);
  await load();
  onLive(coalesce(400, load));
  every(2000, load);  // outcomes come through the controller's periodic work
}
