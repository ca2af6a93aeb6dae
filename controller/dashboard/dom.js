/* Building the page: elements, icons, and the small pieces every screen uses.
 * All text from the server goes into text nodes (never innerHTML). */

import {t} from "./format.js";

export const ICONS = {
  drop: '<path d="M12 3c3.5 4.4 6 7.7 6 10.5a6 6 0 0 1-12 0C6 10.7 8.5 7.4 12 3z"/>',
  fish: '<path d="M2.5 12c3-4.6 9-6.2 14-2.2L21 6.5v11l-4.5-3.3c-5 4-11 2.4-14-2.2z"/><circle cx="15" cy="11.3" r=".9" fill="currentColor"/>',
  play: '<path d="M8 5v14l11-7z" fill="currentColor"/>',
  stop: '<rect x="6" y="6" width="12" height="12" rx="1.5" fill="currentColor"/>',
  skip: '<path d="M5 5v14l9-7z" fill="currentColor"/><path d="M18 5v14" stroke-width="2.6"/>',
  pause: '<path d="M8.5 5v14M15.5 5v14" stroke-width="3"/>',
  rain: '<path d="M7 14.5a4.3 4.3 0 0 1-.4-8.6A6 6 0 0 1 18 7a3.8 3.8 0 0 1-.4 7.5z"/><path d="M8 17.5l-1 3M12 17.5l-1 3M16 17.5l-1 3"/>',
  feed: '<path d="M4 9h16l-2 11H6z"/><path d="M8 9l1.5-5h5L16 9"/><path d="M10 14h4"/>',
  resume: '<path d="M5.5 13a6.5 6.5 0 1 0 2-5.5"/><path d="M6.5 3.5v4.5H11"/>',
  alert: '<path d="M12 3.5l9.5 17h-19z"/><path d="M12 10v4.5M12 17.6v.2"/>',
  calendar: '<rect x="3.5" y="5" width="17" height="15.5" rx="2"/><path d="M3.5 10h17M8 3v4M16 3v4"/>',
  wifi: '<path d="M2.5 9a14 14 0 0 1 19 0M5.5 12.3a9.5 9.5 0 0 1 13 0M8.8 15.6a5 5 0 0 1 6.4 0"/><path d="M12 19.3v.2" stroke-width="3"/>',
  offline: '<path d="M2.5 9a14 14 0 0 1 19 0M5.5 12.3a9.5 9.5 0 0 1 13 0M8.8 15.6a5 5 0 0 1 6.4 0"/><path d="M12 19.3v.2" stroke-width="3"/><path d="M3.5 3.5l17 17"/>',
  check: '<path d="M5 12.5l4.5 4.5L19 7.5"/>',
  cross: '<path d="M6.5 6.5l11 11M17.5 6.5l-11 11"/>',
  back: '<path d="M15 5l-7 7 7 7"/>',
  report: '<path d="M6 3h9l4 4v14H6z"/><path d="M9.5 12h6M9.5 16h6M9.5 8h2.5"/>',
  list: '<path d="M9 6h11M9 12h11M9 18h11"/><path d="M4.5 6v.2M4.5 12v.2M4.5 18v.2" stroke-width="3"/>',
  grid: '<rect x="3.5" y="3.5" width="7" height="7" rx="1.5"/><rect x="13.5" y="3.5" width="7" height="7" rx="1.5"/><rect x="3.5" y="13.5" width="7" height="7" rx="1.5"/><rect x="13.5" y="13.5" width="7" height="7" rx="1.5"/>',
  logout: '<path d="M14 4h5v16h-5M10 8l-4 4 4 4M6 12h10"/>',
  edit: '<path d="M4 20h4L19 9l-4-4L4 16z"/><path d="M13.5 6.5l4 4"/>',
  clock: '<circle cx="12" cy="12" r="8.5"/><path d="M12 7.5V12l3 2"/>',
  hourglass: '<path d="M7 3.5h10M7 20.5h10M8 3.5c0 5 8 5 8 8.5s-8 3.5-8 8.5M16 3.5c0 5-8 5-8 8.5"/>',
  print: '<path d="M7 9V3.5h10V9"/><rect x="3.5" y="9" width="17" height="8" rx="1.5"/><path d="M7 14h10v6.5H7z"/>',
  download: '<path d="M12 4v11M7.5 10.5L12 15l4.5-4.5M5 19.5h14"/>',
};
export function icon(name, cls) {
  const span = document.createElement("span");
  span.className = "icon" + (cls ? " " + cls : "");
  span.setAttribute("aria-hidden", "true");
  span.innerHTML = '<svg viewBox="0 0 24 24" fill="none" stroke="currentColor" ' +
    'stroke-width="2" stroke-linecap="round" stroke-linejoin="round">' +
    (ICONS[name] || "") + "</svg>";
  return span;
}
export function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (k === "value") e.value = v;
    else e.setAttribute(k, v === true ? "" : v);
  }
  for (const kid of kids.flat(Infinity)) {
    if (kid === null || kid === undefined || kid === false) continue;
    e.appendChild(kid instanceof Node ? kid : document.createTextNode(String(kid)));
  }
  return e;
}
export const $ = (sel, root) => (root || document).querySelector(sel);
export const $$ = (sel, root) => [...(root || document).querySelectorAll(sel)];
export function line(cls, ic, ...content) {
  return el("div", {class: "line " + cls}, icon(ic), el("span", {}, content));
}
export function field(label, input, hint) {
  return el("label", {class: "field"}, el("span", {}, label), input,
    hint ? el("small", {class: "hint"}, hint) : null);
}
export function problem(err) {
  return el("p", {class: "error"}, icon("alert"), " ",
    err.status === 404 ? t("common.not_found") : t("common.error") + ": " + err.message);
}
