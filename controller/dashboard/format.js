/* Words and numbers in the page's language; every time in WITA (Asia/Makassar),
 * whatever the browser's zone. The words themselves are in i18n.js (window.I18N). */

import {S} from "./state.js";

export const TZ = "Asia/Makassar";

export function t(key, vars) {
  const dict = window.I18N || {};
  let s = (dict[S.lang] && dict[S.lang][key]) || (dict.id && dict.id[key]) || key;
  for (const [k, v] of Object.entries(vars || {})) s = s.split("{" + k + "}").join(v);
  return s;
}
export function known(prefix, code) {
  const s = t(prefix + code);
  return s === prefix + code ? code : s;
}
export const reasonText = (code) => known("reason.", code);
/* A unit's maintenance window ("01:00-05:00", its local time: WITA, the city's units'
 * zone) in words: "01:00-05:00 WITA", "any time" for the whole day; null when none. */
export function windowText(w) {
  if (!w) return null;
  return w === "00:00-24:00" ? t("window.any") : t("window.at", {w});
}
export const alarmText = (code) => known("alarm.", code);
export const locale = () => (S.lang === "id" ? "id-ID" : "en-GB");
export function fmt(value, opts) {
  return new Intl.DateTimeFormat(locale(), {timeZone: TZ, hour12: false, ...opts})
    .format(typeof value === "number" ? new Date(value) : new Date(value));
}
export function wita(value) {
  const d = typeof value === "number" ? value : Date.parse(value);
  const sameDay = fmt(d, {dateStyle: "short"}) === fmt(Date.now(), {dateStyle: "short"});
  // Indonesian short weekdays read as other words ("Min" is Minggu): written in full
  const opts = sameDay ? {hour: "2-digit", minute: "2-digit"}
    : {weekday: S.lang === "id" ? "long" : "short", day: "numeric", month: "short",
      hour: "2-digit", minute: "2-digit"};
  return fmt(d, opts) + " WITA";
}
export function ago(value) {
  const s = (Date.parse(value) - Date.now()) / 1000;
  const rtf = new Intl.RelativeTimeFormat(locale(), {numeric: "auto"});
  const a = Math.abs(s);
  if (a < 60) return rtf.format(Math.round(s), "second");
  if (a < 3600) return rtf.format(Math.round(s / 60), "minute");
  if (a < 86400) return rtf.format(Math.round(s / 3600), "hour");
  return rtf.format(Math.round(s / 86400), "day");
}
export function num(v, digits) {
  return new Intl.NumberFormat(locale(), {maximumFractionDigits: digits ?? 1}).format(v);
}

/* A duration in the page's language: "45 dtk", "12 mnt", "1,5 jam" (id); "45 s",
 * "12 min", "1.5 h" (en). */
export function duration(seconds) {
  const s = Math.max(0, seconds);
  if (s < 60) return num(Math.round(s), 0) + " " + t("u.s");
  if (s < 5400) return num(Math.round(s / 60), 0) + " " + t("u.min");
  return num(s / 3600, 1) + " " + t("u.h");
}
/* Grams, or kilograms from 10 kg up: "2.500 g", "12,5 kg" (id). */
export function grams(g) {
  return Math.abs(g) >= 10000 ? num(g / 1000, 1) + " kg" : num(g, 0) + " g";
}
