/* The frame around every screen: the header (brand, language, who is signed in), the
 * tabs, and mounting a screen into the page. */

import {S, screen} from "./state.js";
import {t} from "./format.js";
import {$, el, icon} from "./dom.js";
import {signOut} from "./api.js";
import {alarmBadge} from "./alarms.js";

function setLang(lang) {
  S.lang = lang;
  localStorage.setItem("sc.lang", lang);
  screen.render();
}
export function langSwitch() {
  return el("div", {class: "lang", role: "group", "aria-label": t("lang.switch")},
    ["id", "en"].map((l) => el("button", {type: "button", "data-lang": l,
      class: S.lang === l ? "on" : "", "aria-pressed": S.lang === l ? "true" : "false",
      onclick: () => setLang(l)}, l.toUpperCase())));
}
export function shell(active, main) {
  const me = S.me;
  const links = [["units", "#/", "grid"], ["alarms", "#/alarms", "alert"],
    ["reports", "#/reports", "report"]];
  if (me.role === "admin") links.push(["audit", "#/audit", "list"], ["updates", "#/updates", "download"]);
  return el("div", {class: "shell"},
    el("header", {class: "top"},
      el("a", {class: "brand", href: "#/"}, icon("drop", "brand-icon"),
        el("span", {}, el("b", {}, t("app.title")), el("small", {}, t("app.subtitle")))),
      el("div", {class: "top-right"}, langSwitch(),
        el("span", {class: "who", title: me.user},
          el("b", {}, me.user), " · ", t("role." + me.role), me.opd ? " " + me.opd.toUpperCase() : ""),
        el("button", {type: "button", class: "icon-btn", "data-testid": "signout",
          title: t("nav.signout"), "aria-label": t("nav.signout"), onclick: signOut},
        icon("logout")))),
    el("nav", {class: "tabs"}, links.map(([key, href, ic]) =>
      el("a", {href, class: active === key ? "on" : "", "data-nav": key}, icon(ic),
        el("span", {}, t("nav." + key)), key === "alarms" ? alarmBadge() : null))),
    el("main", {id: "main"}, main));
}
export function mount(node) {
  const app = $("#app");
  app.textContent = "";
  app.appendChild(node);
  document.documentElement.lang = S.lang;
}
