/* Admins' pages: the audit log (#/audit). */

import {t, wita} from "./format.js";
import {el, icon, problem} from "./dom.js";
import {api} from "./api.js";
import {mount, shell} from "./shell.js";

function compact(v) {
  if (v === null || v === undefined) return "—";
  const s = JSON.stringify(v);
  return s.length > 160 ? s.slice(0, 157) + "…" : s;
}
export async function renderAudit() {
  const main = el("div", {class: "audit-page"});
  mount(shell("audit", main));
  const body = el("tbody", {});
  const more = el("button", {type: "button", class: "btn ghost", "data-testid": "older"}, t("audit.more"));
  main.appendChild(el("section", {class: "card"}, el("h1", {}, icon("list"), t("audit.title")),
    el("div", {class: "table-wrap"}, el("table", {class: "audit", "data-testid": "audit"},
      el("thead", {}, el("tr", {}, ["when", "who", "what", "target", "change"].map((k) => el("th", {}, t("audit." + k))))),
      body)), more));
  let before = null;
  async function page() {
    let rows;
    try {
      rows = await api("/audit?limit=50" + (before ? "&before_id=" + before : ""));
    } catch (err) { main.appendChild(problem(err)); return; }
    rows.forEach((a) => body.appendChild(el("tr", {"data-action": a.action},
      // the record as stored (names, actions, values): not words of the page
      el("td", {}, wita(a.ts)), el("td", {translate: "no"}, a.actor),
      el("td", {translate: "no"}, el("b", {}, a.action)), el("td", {translate: "no"}, a.target),
      el("td", {class: "change", translate: "no"}, compact(a.before), " → ", compact(a.after)))));
    if (rows.length) before = rows[rows.length - 1].id;
    more.hidden = rows.length < 50;
  }
  more.addEventListener("click", page);
  await page();
}
