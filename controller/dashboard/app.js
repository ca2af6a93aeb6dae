/* Smart City Balikpapan dashboard: one page, no build step, no outside resources.
 *
 * Routes (the part after #):  /  units   /unit/<id>  a unit   /unit/<id>/schedule  its
 * schedule editor   /alarms  alarms across units   /reports  monthly reports
 * /audit  the audit log (admins)   /updates  release rollouts (admins).
 * This module boots the page, signs the user in and routes; each screen is a module:
 * units.js, unit.js, schedule.js, commands.js (dialogs), alarms.js, reports.js,
 * admin.js, updates.js; live.js follows the server's changes; below
 * them shell.js (header, tabs), api.js (fetch, auth, errors), format.js (words, WITA
 * times, numbers), dom.js and state.js. i18n.js and chart.js are plain scripts that set
 * window.I18N and window.Charts. */

import {S, clearTimers, screen} from "./state.js";
import {t} from "./format.js";
import {el, icon} from "./dom.js";
import {api, onSignOut} from "./api.js";
import {connectLive, disconnectLive} from "./live.js";
import {langSwitch, mount} from "./shell.js";
import {renderUnits} from "./units.js";
import {renderUnit} from "./unit.js";
import {renderSchedule} from "./schedule.js";
import {renderReports} from "./reports.js";
import {renderAudit} from "./admin.js";
import {renderAlarms} from "./alarms.js";
import {renderUpdates} from "./updates.js";

function renderLogin(message) {
  const input = el("input", {id: "token", type: "password", autocomplete: "off",
    required: true, "aria-describedby": "token-hint", spellcheck: "false"});
  const form = el("form", {class: "card login", onsubmit: async (ev) => {
    ev.preventDefault();
    S.token = input.value.trim();
    try {
      S.me = await api("/users/me", {quiet401: true});
      sessionStorage.setItem("sc.token", S.token);
      render();
    } catch (err) {
      S.token = null;
      // 429: too many failed logins from here; the server says how long to wait, in
      // this page's language (the Accept-Language of api()).
      const locked = err.status === 429 && typeof err.detail === "string";
      renderLogin(err.status === 401 ? t("login.bad") : locked ? err.detail
        : t("login.error"));
    }
  }},
  el("h1", {}, icon("drop", "brand-icon big"), t("app.title")),
  el("p", {class: "muted"}, t("app.subtitle")),
  el("label", {for: "token"}, t("login.token")), input,
  el("p", {id: "token-hint", class: "hint"}, t("login.hint")),
  message ? el("p", {class: "error", role: "alert"}, icon("alert"), " ", message) : null,
  el("button", {type: "submit", class: "btn primary wide"}, t("login.submit")));
  mount(el("div", {class: "login-page"}, el("div", {class: "login-lang"}, langSwitch()), form));
  input.focus();
}
async function render() {
  clearTimers();
  document.documentElement.lang = S.lang;
  if (!S.token) return renderLogin();
  if (!S.me) {
    try { S.me = await api("/users/me"); } catch (err) { if (!S.me) return renderLogin(); }
  }
  connectLive();
  const hash = location.hash.replace(/^#/, "") || "/";
  const [path, query] = hash.split("?");
  const params = new URLSearchParams(query || "");
  let m;
  if ((m = path.match(/^\/unit\/([^/]+)\/schedule$/))) return renderSchedule(decodeURIComponent(m[1]));
  if ((m = path.match(/^\/unit\/([^/]+)$/))) return renderUnit(decodeURIComponent(m[1]));
  if (path === "/reports") return renderReports(params);
  if (path === "/alarms") return renderAlarms(params);
  if (path === "/audit" && S.me.role === "admin") return renderAudit();
  if (path === "/updates" && S.me.role === "admin") return renderUpdates(params);
  return renderUnits();
}
screen.render = render;
onSignOut(disconnectLive);
window.addEventListener("hashchange", render);
if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", render);
else render();
