/* Smart City Balikpapan dashboard: one page, no build step, no outside resources.
 *
 * Routes (the part after #):  /  units   /unit/<id>  a unit   /unit/<id>/schedule  its
 * schedule editor   /reports  monthly reports   /audit  the audit log (admins).
 * The bearer token lives in sessionStorage (this tab only); the language in
 * localStorage. Every time is shown in WITA (Asia/Makassar), whatever the browser's zone.
 * All text from the server goes into text nodes (never innerHTML). */
"use strict";

(function () {
  const TZ = "Asia/Makassar";
  const FINAL = ["done", "failed", "rejected", "expired", "error"];
  const WEEKDAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
  const S = {
    token: sessionStorage.getItem("sc.token"),
    me: null,
    lang: localStorage.getItem("sc.lang") === "en" ? "en" : "id",
    timers: [],
    period: "day",
    view: 0,
  };

  // ------------------------------------------------------------------ words, time
  function t(key, vars) {
    const dict = window.I18N || {};
    let s = (dict[S.lang] && dict[S.lang][key]) || (dict.id && dict.id[key]) || key;
    for (const [k, v] of Object.entries(vars || {})) s = s.split("{" + k + "}").join(v);
    return s;
  }
  function known(prefix, code) {
    const s = t(prefix + code);
    return s === prefix + code ? code : s;
  }
  const reasonText = (code) => known("reason.", code);
  const alarmText = (code) => known("alarm.", code);
  const locale = () => (S.lang === "id" ? "id-ID" : "en-GB");
  function fmt(value, opts) {
    return new Intl.DateTimeFormat(locale(), {timeZone: TZ, hour12: false, ...opts})
      .format(typeof value === "number" ? new Date(value) : new Date(value));
  }
  function wita(value) {
    const d = typeof value === "number" ? value : Date.parse(value);
    const sameDay = fmt(d, {dateStyle: "short"}) === fmt(Date.now(), {dateStyle: "short"});
    const opts = sameDay ? {hour: "2-digit", minute: "2-digit"}
      : {weekday: "short", day: "numeric", month: "short", hour: "2-digit", minute: "2-digit"};
    return fmt(d, opts) + " WITA";
  }
  function ago(value) {
    const s = (Date.parse(value) - Date.now()) / 1000;
    const rtf = new Intl.RelativeTimeFormat(locale(), {numeric: "auto"});
    const a = Math.abs(s);
    if (a < 60) return rtf.format(Math.round(s), "second");
    if (a < 3600) return rtf.format(Math.round(s / 60), "minute");
    if (a < 86400) return rtf.format(Math.round(s / 3600), "hour");
    return rtf.format(Math.round(s / 86400), "day");
  }
  function num(v, digits) {
    return new Intl.NumberFormat(locale(), {maximumFractionDigits: digits ?? 1}).format(v);
  }

  // ------------------------------------------------------------------ DOM
  const ICONS = {
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
  function icon(name, cls) {
    const span = document.createElement("span");
    span.className = "icon" + (cls ? " " + cls : "");
    span.setAttribute("aria-hidden", "true");
    span.innerHTML = '<svg viewBox="0 0 24 24" fill="none" stroke="currentColor" ' +
      'stroke-width="2" stroke-linecap="round" stroke-linejoin="round">' +
      (ICONS[name] || "") + "</svg>";
    return span;
  }
  function el(tag, attrs, ...kids) {
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
  const $ = (sel, root) => (root || document).querySelector(sel);
  const $$ = (sel, root) => [...(root || document).querySelectorAll(sel)];

  // ------------------------------------------------------------------ API
  class HttpError extends Error {
    constructor(status, detail) {
      super(typeof detail === "string" ? detail : JSON.stringify(detail));
      this.status = status;
      this.detail = detail;
    }
  }
  async function api(path, opts) {
    opts = opts || {};
    const headers = {Authorization: "Bearer " + S.token, "Accept-Language": S.lang,
      ...(opts.headers || {})};
    if (opts.json !== undefined) headers["Content-Type"] = "application/json";
    const r = await fetch("/api/v1" + path, {method: opts.method || "GET", headers,
      body: opts.json !== undefined ? JSON.stringify(opts.json) : undefined});
    if (r.status === 401 && !opts.quiet401) {
      signOut();
      throw new HttpError(401, "unauthorized");
    }
    if (!r.ok) {
      let detail = r.statusText;
      try { detail = (await r.json()).detail; } catch (e) { /* not JSON */ }
      throw new HttpError(r.status, detail);
    }
    return opts.raw ? r : r.json();
  }

  // ------------------------------------------------------------------ shell
  function clearTimers() {
    S.timers.forEach((id) => clearInterval(id));
    S.timers = [];
    S.view += 1;
  }
  function every(ms, fn) { S.timers.push(setInterval(fn, ms)); }

  function signOut() {
    sessionStorage.removeItem("sc.token");
    S.token = null;
    S.me = null;
    location.hash = "#/";
    render();
  }
  function setLang(lang) {
    S.lang = lang;
    localStorage.setItem("sc.lang", lang);
    render();
  }
  function langSwitch() {
    return el("div", {class: "lang", role: "group", "aria-label": t("lang.switch")},
      ["id", "en"].map((l) => el("button", {type: "button", "data-lang": l,
        class: S.lang === l ? "on" : "", "aria-pressed": S.lang === l ? "true" : "false",
        onclick: () => setLang(l)}, l.toUpperCase())));
  }
  function shell(active, main) {
    const me = S.me;
    const links = [["units", "#/", "grid"], ["reports", "#/reports", "report"]];
    if (me.role === "admin") links.push(["audit", "#/audit", "list"]);
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
          el("span", {}, t("nav." + key))))),
      el("main", {id: "main"}, main));
  }
  function mount(node) {
    const app = $("#app");
    app.textContent = "";
    app.appendChild(node);
    document.documentElement.lang = S.lang;
  }
  function problem(err) {
    return el("p", {class: "error"}, icon("alert"), " ",
      err.status === 404 ? t("common.not_found") : t("common.error") + ": " + err.message);
  }

  // ------------------------------------------------------------------ login
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

  // ------------------------------------------------------------------ units
  const STATE_ICON = {running: "play", online: "wifi", offline: "offline", alarm: "alert"};
  const STATE_ORDER = {alarm: 0, running: 1, online: 2, offline: 3};
  function line(cls, ic, ...content) {
    return el("div", {class: "line " + cls}, icon(ic), el("span", {}, content));
  }
  function statePill(state, big) {
    return el("span", {class: `pill s-${state}${big ? " big" : ""}`, "data-state": state},
      icon(STATE_ICON[state]), t("state." + state));
  }
  function runningLine(u) {
    if (!u.online) return line("muted", "offline", t("unit.unknown_offline"));
    if (u.running.length) {
      return line("run", "play",
        el("b", {}, t("unit.running"), ": "),
        u.running.map((r, i) => [i ? ", " : "", r.zone, " ",
          el("span", {class: "muted"}, t("unit.since"), " ", wita(r.since))]));
    }
    if (u.outputs_on.length) {
      return line("run", "play",
        el("b", {}, u.kind === "fish_feeder" ? t("unit.feeding") : t("unit.running"), ": "),
        u.outputs_on.join(", "));
    }
    return line("muted", "clock", t("unit.idle"));
  }
  function nextLine(u) {
    const n = u.next;
    let text;
    if (n.known) {
      text = [el("b", {}, wita(n.at)), " · ", n.program || n.pond || "", n.dose_g ? ` (${num(n.dose_g, 0)} g)` : ""];
    } else {
      text = el("span", {class: "muted"}, n.reason === "local_schedule" ? t("unit.next.local") : t("unit.next.none"));
    }
    const out = line("", "calendar", t("unit.next"), ": ", text);
    out.dataset.testid = "next";
    return out;
  }
  function badges(u) {
    const out = [];
    if (u.paused) out.push(el("span", {class: "tag amber"}, icon("pause"), t("unit.paused")));
    if (u.rain) out.push(el("span", {class: "tag blue"}, icon("rain"), t("unit.rain")));
    if (u.rain_delay_h > 0) {
      out.push(el("span", {class: "tag blue"}, icon("rain"), t("unit.rain_delay"), " ",
        num(u.rain_delay_h, 1), " h"));
    }
    return out.length ? el("div", {class: "tags"}, out) : null;
  }
  function todayLine(u) {
    if (u.today.water_l !== undefined) {
      return line("muted", "drop", t("unit.today_water"), ": ",
        el("b", {}, num(u.today.water_l, 0), " L"));
    }
    if (u.today.feed_g !== undefined) {
      return line("muted", "feed", t("unit.today_feed"), ": ",
        el("b", {}, num(u.today.feed_g / 1000, 2), " kg"));
    }
    return null;
  }
  function unitCard(u) {
    return el("a", {class: `card unit s-${u.state}`, href: "#/unit/" + encodeURIComponent(u.device_id),
      "data-device": u.device_id, "data-state": u.state},
    el("div", {class: "card-top"},
      el("span", {class: "kind"}, icon(u.icon)),
      el("div", {class: "title"}, el("div", {class: "name"}, u.name),
        el("div", {class: "sub"}, t("kind." + u.kind), " · ", u.device_id)),
      statePill(u.state)),
    runningLine(u),
    nextLine(u),
    u.alarms.length ? line("alarm", "alert",
      u.alarms.map((a) => alarmText(a.code) + (a.subject ? ` (${a.subject})` : "")).join(", ")) : null,
    badges(u),
    u.online ? todayLine(u) : line("muted", "clock", t("unit.last_seen"), ": ",
      u.last_seen ? ago(u.last_seen) : t("unit.never")));
  }
  function summary(units) {
    const counts = {running: 0, online: 0, offline: 0, alarm: 0};
    units.forEach((u) => { counts[u.state] += 1; });
    return el("div", {class: "summary"}, Object.entries(counts).map(([state, n]) =>
      el("div", {class: `count s-${state}`, "data-count": state}, icon(STATE_ICON[state]),
        el("b", {}, n), el("span", {}, t("units.count." + state)))));
  }
  async function renderUnits() {
    const box = el("div", {class: "units"}, el("p", {class: "muted"}, t("common.loading")));
    mount(shell("units", box));
    const view = S.view;
    async function load() {
      let data;
      try { data = await api("/dashboard/units"); } catch (err) {
        if (view === S.view) { box.textContent = ""; box.appendChild(problem(err)); }
        return;
      }
      if (view !== S.view) return;
      box.textContent = "";
      box.appendChild(el("h1", {}, t("units.title")));
      if (!data.units.length) { box.appendChild(el("p", {class: "muted"}, t("units.none"))); return; }
      box.appendChild(summary(data.units));
      const opds = [...new Set(data.units.map((u) => u.opd))];
      for (const opd of opds) {
        if (opds.length > 1) box.appendChild(el("h2", {class: "opd"}, opd.toUpperCase()));
        box.appendChild(el("div", {class: "grid", "data-opd": opd},
          data.units.filter((u) => u.opd === opd)
            .sort((a, b) => STATE_ORDER[a.state] - STATE_ORDER[b.state] || a.name.localeCompare(b.name))
            .map(unitCard)));
      }
    }
    await load();
    every(5000, load);
  }

  // ------------------------------------------------------------------ dialog
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

  // ------------------------------------------------------------------ commands
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
  function watchCommand(list, cmd, changed) {
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
  async function command(unit, list, action, target) {
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

  // ------------------------------------------------------------------ a unit
  function controls(u, list) {
    const can = S.me.role !== "viewer";
    const box = el("section", {class: "card controls"}, el("h2", {}, t("unit.controls")));
    if (!can) { box.appendChild(el("p", {class: "muted"}, t("unit.readonly"))); return box; }
    const r = u.readings || {};
    if (u.kind === "irrigation") {
      box.appendChild(el("h3", {}, t("unit.zones")));
      if (!u.zones || !u.zones.length) box.appendChild(el("p", {class: "muted"}, t("unit.no_zones")));
      box.appendChild(el("ul", {class: "targets"}, (u.zones || []).map((z) => {
        const running = u.running.some((x) => x.zone === z);
        const m = r["moisture_pct." + z];
        return el("li", {class: running ? "on" : ""},
          el("span", {class: "target-name"}, icon(running ? "play" : "drop"), z),
          el("span", {class: "target-info muted"}, [
            m !== undefined ? `${t("unit.moisture")} ${num(m, 0)}%` : "",
            r["water_l_today." + z] !== undefined ? `${num(r["water_l_today." + z], 0)} L` : "",
          ].filter(Boolean).join(" · ")),
          el("button", {type: "button", class: "btn go", "data-action": "run_zone", "data-zone": z,
            onclick: () => command(u, list, "run_zone", z)}, icon("play"), t("action.run_zone")));
      })));
    } else {
      box.appendChild(el("h3", {}, t("unit.feeders")));
      box.appendChild(el("ul", {class: "targets"}, (u.feeders || []).map((f) =>
        el("li", {},
          el("span", {class: "target-name"}, icon("fish"), f),
          el("span", {class: "target-info muted"}, [
            r["feed_g_today." + f] !== undefined ? `${num(r["feed_g_today." + f] / 1000, 2)} kg` : "",
            r["hopper_pct." + f] !== undefined ? `${num(r["hopper_pct." + f], 0)}%` : "",
          ].filter(Boolean).join(" · ")),
          el("button", {type: "button", class: "btn go", "data-action": "feed_now", "data-feeder": f,
            onclick: () => command(u, list, "feed_now", f)}, icon("feed"), t("action.feed_now"))))));
    }
    const actions = [["stop_all", "stop", "danger"], ["skip_next", "skip", ""], ["pause", "pause", ""]];
    if (u.kind === "irrigation") actions.push(["rain_delay", "rain", ""]);
    actions.push(["resume", "resume", ""]);
    box.appendChild(el("div", {class: "actions"}, actions.map(([a, ic, cls]) =>
      el("button", {type: "button", class: "btn big " + cls, "data-action": a,
        onclick: () => command(u, list, a)}, icon(ic), t("action." + a)))));
    return box;
  }
  function scheduleCard(u) {
    const c = u.config;
    return el("section", {class: "card schedule-card"},
      el("h2", {}, t("unit.schedule")),
      el("div", {class: "line"}, el("span", {class: `tag cfg-${c.state}`, "data-config": c.state},
        icon(c.state === "in_sync" ? "check" : c.state === "rejected" ? "cross" : c.state === "pending" ? "hourglass" : "clock"),
        t("config." + c.state)),
      c.desired ? el("span", {class: "muted"}, ` v${c.desired}` + (c.reported !== c.desired && c.reported ? ` (unit: v${c.reported})` : "")) : null),
      nextLine(u),
      S.me.role !== "viewer" ? el("a", {class: "btn", href: `#/unit/${encodeURIComponent(u.device_id)}/schedule`,
        "data-testid": "edit-schedule"}, icon("edit"), t("unit.schedule.edit")) : null);
  }
  function chartsCard(u) {
    const box = el("div", {class: "charts"});
    const seg = el("div", {class: "seg", role: "group"}, ["day", "week", "month"].map((p) =>
      el("button", {type: "button", "data-period": p, class: S.period === p ? "on" : "",
        onclick: () => { S.period = p; seg.querySelectorAll("button").forEach((b) =>
          b.classList.toggle("on", b.dataset.period === p)); load(); }}, t("period." + p))));
    const view = S.view;
    async function load() {
      let data;
      try {
        data = await api(`/dashboard/units/${encodeURIComponent(u.device_id)}/charts?period=${S.period}`);
      } catch (err) { box.textContent = ""; box.appendChild(problem(err)); return; }
      if (view !== S.view || data.period !== S.period) return;
      box.textContent = "";
      box.dataset.period = data.period;
      const label = data.period === "day" ? (ts) => fmt(ts, {hour: "2-digit", minute: "2-digit"})
        : (ts) => fmt(ts, {day: "numeric", month: "short"});
      const tip = (ts) => fmt(ts, {day: "numeric", month: "short", hour: "2-digit", minute: "2-digit"}) + " WITA";
      for (const c of data.charts) {
        const holder = el("div", {class: "chart-box", "data-chart": c.key});
        box.appendChild(el("figure", {class: "chart"},
          el("figcaption", {}, t("chart." + c.key), el("span", {class: "muted"}, " (" + c.unit + ")")), holder));
        const common = {unit: c.unit, since: data.since, until: data.until, label, tip,
          emptyText: t("chart.empty"), bucketS: data.bucket_s};
        if (c.kind === "line") window.Charts.line(holder, {...common, series: c.series});
        else window.Charts.bar(holder, {...common, points: c.points, per: data.bars_per});
      }
    }
    load();
    S.timers.push(setInterval(load, 60000));
    return el("section", {class: "card charts-card"},
      el("div", {class: "card-head"}, el("h2", {}, t("unit.charts")), seg), box);
  }
  function header(u) {
    return el("section", {class: `card unit-head s-${u.state}`, "data-state": u.state},
      el("div", {class: "card-top"},
        el("span", {class: "kind big"}, icon(u.icon)),
        el("div", {class: "title"}, el("h1", {}, u.name),
          el("div", {class: "sub"}, t("kind." + u.kind), " · ", u.opd.toUpperCase(), " · ", u.device_id)),
        statePill(u.state, true)),
      runningLine(u), badges(u),
      u.online ? todayLine(u) : line("muted", "clock", t("unit.last_seen"), ": ",
        u.last_seen ? ago(u.last_seen) + " (" + wita(u.last_seen) + ")" : t("unit.never")),
      u.alarms.length ? el("div", {class: "alarms", role: "alert"},
        el("b", {}, icon("alert"), t("unit.alarms")),
        el("ul", {}, u.alarms.map((a) => el("li", {"data-alarm": a.code},
          el("b", {}, alarmText(a.code)), a.subject ? ` · ${a.subject}` : "", " · ",
          el("span", {class: "muted"}, wita(a.ts)))))) : null);
  }
  async function renderUnit(id) {
    const main = el("div", {class: "unit-page"}, el("p", {class: "muted"}, t("common.loading")));
    mount(shell("units", main));
    const view = S.view;
    let u, commands;
    try {
      [u, commands] = await Promise.all([
        api(`/dashboard/units/${encodeURIComponent(id)}`),
        api(`/devices/${encodeURIComponent(id)}/commands?limit=6`)]);
    } catch (err) { main.textContent = ""; main.appendChild(problem(err)); return; }
    if (view !== S.view) return;
    const list = el("ul", {class: "cmds", "data-testid": "commands"});
    const cmdCard = el("section", {class: "card"}, el("h2", {}, t("unit.commands")),
      commands.length ? null : el("p", {class: "muted empty"}, t("unit.commands.none")), list);
    commands.slice().reverse().forEach((c) => watchCommand(list, c, () => list.refresh()));
    let head = header(u), sched = scheduleCard(u), ctl = controls(u, list);
    main.textContent = "";
    main.appendChild(el("a", {class: "back", href: "#/"}, icon("back"), t("unit.back")));
    main.appendChild(head);
    main.appendChild(el("div", {class: "cols"},
      el("div", {class: "col"}, ctl, cmdCard, sched),
      el("div", {class: "col wide"}, chartsCard(u))));
    async function refresh() {
      try { u = await api(`/dashboard/units/${encodeURIComponent(id)}`); } catch (err) { return; }
      if (view !== S.view) return;
      const h2 = header(u), s2 = scheduleCard(u);
      head.replaceWith(h2); sched.replaceWith(s2);
      head = h2; sched = s2;
      if (!document.querySelector("dialog[open]")) {
        const c2 = controls(u, list);
        ctl.replaceWith(c2);
        ctl = c2;
      }
    }
    // A command that moves on refreshes the unit at once (and once more when the unit's
    // events and status have had time to arrive).
    list.refresh = () => { refresh(); setTimeout(() => view === S.view && refresh(), 1500); };
    every(5000, refresh);
  }

  // ------------------------------------------------------------------ schedule editor
  function splitList(text) {
    return text.split(/[,\s;]+/).map((s) => s.trim()).filter(Boolean);
  }
  function field(label, input, hint) {
    return el("label", {class: "field"}, el("span", {}, label), input,
      hint ? el("small", {class: "hint"}, hint) : null);
  }
  function irrigationForm(body, zones) {
    const pct = el("input", {type: "number", name: "watering_pct", min: 0, max: 250, step: 1,
      value: body.watering_pct ?? 100});
    const delay = el("input", {type: "number", name: "rain_delay_h", min: 0, max: 168, step: 0.5,
      value: body.rain_delay_h ?? 24});
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
      const n = el("input", {type: "number", name: "interval_days", min: 1, max: 31, step: 1,
        value: p.interval_days || 2});
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
        minutes[z] = el("input", {type: "number", min: 0, max: 720, step: 1, "data-zone": z,
          value: cur ? cur.duration_min : "", "aria-label": z});
        return el("label", {}, el("span", {}, z), minutes[z], el("small", {}, "min"));
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
          zones: [...zones.filter((z) => minutes[z].value !== "" && Number(minutes[z].value) > 0)
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
      el("div", {class: "row"}, field(t("sched.watering_pct"), pct), field(t("sched.rain_delay_h"), delay)),
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
    return {form, read, locate};
  }
  function fishForm(body, ponds) {
    const cards = ponds.map((pond) => {
      const cur = (body.ponds || {})[pond];
      const plan = (cur && cur.plan) || {times: ["07:00", "16:00"], doses_g: [500, 500]};
      const local = el("input", {type: "checkbox", name: "use_local"});
      local.checked = !(cur && cur.plan);
      const times = el("input", {type: "text", name: "times", value: (plan.times || []).join(", ")});
      const mode = el("select", {name: "mode"}, ["doses", "biomass"].map((m) =>
        el("option", {value: m}, t("sched.mode." + m))));
      mode.value = plan.doses_g ? "doses" : "biomass";
      const doses = el("input", {type: "text", name: "doses_g", value: (plan.doses_g || []).join(", ")});
      const count = el("input", {type: "number", name: "fish_count", min: 1, step: 1, value: plan.fish_count || ""});
      const weight = el("input", {type: "number", name: "avg_weight_g", min: 0.1, step: 0.1, value: plan.avg_weight_g || ""});
      const rate = el("input", {type: "number", name: "feeding_rate_pct", min: 0.1, max: 30, step: 0.1,
        value: plan.feeding_rate_pct || ""});
      const detail = el("div", {class: "pond-plan"});
      function show() {
        detail.textContent = "";
        if (local.checked) return;
        detail.appendChild(field(t("sched.times"), times, t("sched.times.hint")));
        detail.appendChild(field(t("sched.mode"), mode));
        if (mode.value === "doses") detail.appendChild(field(t("sched.doses_g"), doses));
        else {
          detail.appendChild(el("div", {class: "row"}, field(t("sched.fish_count"), count),
            field(t("sched.avg_weight_g"), weight)));
          detail.appendChild(field(t("sched.feeding_rate_pct"), rate));
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
    return {form: el("div", {class: "sched-form"}, cards.map((c) => c.card)), read, locate};
  }
  async function renderSchedule(id) {
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
    let editor = u.kind === "irrigation" ? irrigationForm(base, u.zones || []) : fishForm(base, u.ponds || []);
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
    function showProblems(list) {
      out.textContent = "";
      $$(".field-error", formHolder).forEach((e) => e.remove());
      out.appendChild(el("div", {class: "problems", role: "alert", "data-testid": "problems"},
        el("b", {}, icon("alert"), t("sched.invalid")),
        el("ul", {}, list.map(([f, r]) => el("li", {}, el("code", {}, f), " ", r)))));
      if (jsonBox.open) return;
      list.forEach(([f, r]) => {
        const at = editor.locate(f);
        if (!at) return;
        const box = at.closest(".field, label") || at;
        box.appendChild(el("small", {class: "field-error", "data-testid": "field-error",
          "data-field": f}, r));
      });
    }
    const bodyProblems = (detail) => (Array.isArray(detail) ? detail : []).map((d) =>
      [d.loc.slice(2).join("."), d.msg]);
    async function validate() {
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

  // ------------------------------------------------------------------ reports
  function currentMonth() {
    const parts = new Intl.DateTimeFormat("en-CA", {timeZone: TZ, year: "numeric", month: "2-digit"})
      .formatToParts(new Date());
    return parts.find((p) => p.type === "year").value + "-" + parts.find((p) => p.type === "month").value;
  }
  const day = (v) => fmt(typeof v === "number" ? v : Date.parse(v), {day: "numeric", month: "long", year: "numeric"});
  function tile(metric, value, unit, label, cls) {
    return el("div", {class: "tile " + (cls || ""), "data-metric": metric, "data-value": String(value ?? "")},
      el("b", {}, value === null || value === undefined ? "—" : num(value, value >= 100 ? 0 : 1),
        unit ? el("small", {}, " " + unit) : null),
      el("span", {}, label));
  }
  function reasons(title, map) {
    const entries = Object.entries(map || {});
    return el("div", {class: "reasons"}, el("h4", {}, title), entries.length ?
      el("ul", {}, entries.map(([code, n]) => el("li", {"data-reason": code}, reasonText(code), el("b", {}, n))))
      : el("p", {class: "muted"}, t("rep.none")));
  }
  function table(head, rows, attrs) {
    return el("div", {class: "table-wrap"}, el("table", attrs || {},
      el("thead", {}, el("tr", {}, head.map((h) => el("th", {}, h)))),
      el("tbody", {}, rows.map((r) => el("tr", {}, r.map((c) => el("td", {}, c)))))));
  }
  function reportView(r) {
    const parts = [];
    parts.push(el("header", {class: "rep-head"},
      el("h1", {"data-testid": "report-title"}, r.title),
      el("p", {}, t("rep.to"), ": ", r.addressed_to.join("; ")),
      el("p", {}, t("rep.pillars"), ": ", r.pillars.map((p) => el("span", {class: "tag pillar"}, p))),
      el("p", {class: "muted"}, t("rep.period"), ": ", day(r.period.start), " – ", day(Date.parse(r.period.end) - 1),
        r.period.partial ? [" · ", el("b", {class: "amber-text"}, t("rep.partial"), " ", wita(r.period.until))] : "")));
    const tiles = [];
    if (r.watering) {
      const w = r.watering.totals;
      tiles.push(tile("water_l", w.water_l, "L", t("rep.water"), "green"),
        tile("runs_done", w.done, "", t("rep.runs_done"), "green"),
        tile("runs_stopped", w.stopped, "", t("rep.runs_stopped")),
        tile("runs_skipped", w.skipped, "", t("rep.runs_skipped")),
        tile("runs_failed", w.failed, "", t("rep.runs_failed"), w.failed ? "red" : ""));
    }
    if (r.fisheries) {
      const f = r.fisheries.totals;
      tiles.push(tile("feed_kg", f.feed_kg, "kg", t("rep.feed"), "green"),
        tile("feedings", f.feedings, "", t("rep.feedings"), "green"),
        tile("postponed", f.postponed, "", t("rep.postponed"), f.postponed ? "amber" : ""),
        tile("feed_skipped", f.skipped, "", t("rep.skipped")));
    }
    tiles.push(tile("uptime_pct", r.uptime.average_pct, "%", t("rep.uptime_avg")),
      tile("alarms", r.alarms.total, "", t("rep.alarms_total"), r.alarms.total ? "red" : ""));
    parts.push(el("div", {class: "tiles"}, tiles));
    if (r.watering) {
      const w = r.watering;
      const rows = [];
      w.sites.forEach((s) => {
        rows.push([el("b", {}, s.site), "", el("b", {}, num(s.water_l, 0)), num(s.water_min, 0), s.done, s.stopped, s.skipped, s.failed]);
        s.zones.forEach((z) => rows.push(["", z.zone, num(z.water_l, 0), num(z.water_min, 0), z.done, z.stopped, z.skipped, z.failed]));
      });
      parts.push(el("section", {class: "rep-section", "data-section": "watering"},
        el("h2", {}, icon("drop"), t("rep.watering"), " ", el("span", {class: "tag pillar"}, w.pillar)),
        el("p", {class: "muted"}, w.programme),
        table([t("rep.site"), t("rep.zone"), t("rep.water") + " (L)", t("rep.water_time") + " (min)",
          t("rep.runs_done"), t("rep.runs_stopped"), t("rep.runs_skipped"), t("rep.runs_failed")], rows),
        el("div", {class: "reason-cols"}, reasons(t("rep.reasons_stopped"), w.stopped_reasons),
          reasons(t("rep.reasons_skipped"), w.skipped_reasons), reasons(t("rep.reasons_failed"), w.failed_reasons))));
    }
    if (r.fisheries) {
      const f = r.fisheries;
      const rows = [], fcr = [];
      f.sites.forEach((s) => s.ponds.forEach((p) => {
        rows.push([s.site, p.pond, p.species || "—", num(p.feed_g / 1000, 2), p.feedings, p.postponed, p.skipped]);
        const c = p.conversion;
        const kg = (v) => (v === null ? "—" : num(v, 1) + " kg");
        fcr.push([p.pond, num(c.feed_kg, 1) + " kg",
          c.fish_count_start !== null ? `${kg(c.biomass_kg_start)} (${num(c.fish_count_start, 0)} × ${num(c.avg_weight_g_start, 0)} g)` : "—",
          c.fish_count_end !== null ? `${kg(c.biomass_kg_end)} (${num(c.fish_count_end, 0)} × ${num(c.avg_weight_g_end, 0)} g)` : "—",
          kg(c.biomass_gain_kg), el("b", {"data-fcr": p.pond}, c.fcr === null ? "—" : num(c.fcr, 2))]);
      }));
      parts.push(el("section", {class: "rep-section", "data-section": "fisheries"},
        el("h2", {}, icon("fish"), t("rep.fisheries"), " ", el("span", {class: "tag pillar"}, f.pillar)),
        el("p", {class: "muted"}, f.programme),
        table([t("rep.site"), t("rep.pond"), t("rep.species"), t("rep.feed") + " (kg)", t("rep.feedings"),
          t("rep.postponed"), t("rep.skipped")], rows),
        el("h3", {}, t("rep.fcr_inputs")),
        table([t("rep.pond"), t("rep.feed"), t("rep.biomass_start"), t("rep.biomass_end"), t("rep.gain"), t("rep.fcr")], fcr),
        el("div", {class: "reason-cols"}, reasons(t("rep.postponed"), f.postponed_reasons),
          reasons(t("rep.skipped"), f.skipped_reasons))));
    }
    parts.push(el("section", {class: "rep-section", "data-section": "uptime"},
      el("h2", {}, icon("wifi"), t("rep.uptime")),
      table([t("rep.site"), t("rep.uptime"), t("rep.online_h"), t("rep.covered_h"), t("rep.outages")],
        r.uptime.units.map((u) => [u.site, u.uptime_pct === null ? t("rep.unknown") : num(u.uptime_pct, 1) + " %",
          num(u.online_h, u.online_h < 1 ? 2 : 1), num(u.covered_h, u.covered_h < 1 ? 2 : 1), u.outages]))));
    parts.push(el("section", {class: "rep-section", "data-section": "alarms"},
      el("h2", {}, icon("alert"), t("rep.alarms")),
      r.alarms.total ? table([t("rep.site"), t("rep.code"), t("rep.count")],
        r.alarms.units.flatMap((u) => Object.entries(u.by_code).map(([code, n]) => [u.site, alarmText(code), n])))
        : el("p", {class: "muted"}, t("rep.none"))));
    return el("article", {class: "report card", "data-opd": r.opd, "data-month": r.month}, parts);
  }
  async function download(opd, month, format) {
    const r = await api(`/reports/monthly?opd=${encodeURIComponent(opd)}&month=${month}&format=${format}&lang=${S.lang}`, {raw: true});
    const blob = await r.blob();
    const a = el("a", {href: URL.createObjectURL(blob), download: `laporan-smartcity-${opd}-${month}.${format}`});
    document.body.appendChild(a);
    a.click();
    setTimeout(() => { URL.revokeObjectURL(a.href); a.remove(); }, 1000);
  }
  async function renderReports(params) {
    const main = el("div", {class: "reports-page"}, el("p", {class: "muted"}, t("common.loading")));
    mount(shell("reports", main));
    const view = S.view;
    let opds;
    try { opds = await api("/opds"); } catch (err) { main.textContent = ""; main.appendChild(problem(err)); return; }
    if (view !== S.view) return;
    const opd = params.get("opd") || (S.me.opd || (opds[0] && opds[0].code) || "");
    const month = params.get("month") || currentMonth();
    const opdSel = el("select", {name: "opd"}, opds.map((o) => el("option", {value: o.code},
      o.code.toUpperCase() + (o.name ? " — " + o.name : ""))));
    opdSel.value = opd;
    const monthIn = el("input", {type: "month", name: "month", value: month, max: currentMonth()});
    const go = () => { location.hash = `#/reports?opd=${encodeURIComponent(opdSel.value)}&month=${monthIn.value}`; };
    const out = el("div", {class: "report-out"});
    main.textContent = "";
    main.appendChild(el("section", {class: "card no-print report-controls"},
      el("h1", {}, icon("report"), t("rep.title")),
      el("div", {class: "row"}, field(t("rep.opd"), opdSel), field(t("rep.month"), monthIn),
        el("button", {type: "button", class: "btn primary", "data-testid": "show-report", onclick: go}, t("rep.show"))),
      el("div", {class: "actions"},
        el("button", {type: "button", class: "btn", onclick: () => download(opd, month, "csv")}, icon("download"), t("rep.csv")),
        el("button", {type: "button", class: "btn", onclick: () => download(opd, month, "json")}, icon("download"), t("rep.json")),
        el("button", {type: "button", class: "btn", onclick: () => window.print()}, icon("print"), t("rep.print")))));
    main.appendChild(out);
    if (!opd) return;
    try {
      const r = await api(`/reports/monthly?opd=${encodeURIComponent(opd)}&month=${month}&lang=${S.lang}`);
      if (view !== S.view) return;
      out.appendChild(reportView(r));
    } catch (err) { out.appendChild(problem(err)); }
  }

  // ------------------------------------------------------------------ audit
  function compact(v) {
    if (v === null || v === undefined) return "—";
    const s = JSON.stringify(v);
    return s.length > 160 ? s.slice(0, 157) + "…" : s;
  }
  async function renderAudit() {
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
        el("td", {}, wita(a.ts)), el("td", {}, a.actor), el("td", {}, el("b", {}, a.action)),
        el("td", {}, a.target), el("td", {class: "change"}, compact(a.before), " → ", compact(a.after)))));
      if (rows.length) before = rows[rows.length - 1].id;
      more.hidden = rows.length < 50;
    }
    more.addEventListener("click", page);
    await page();
  }

  // ------------------------------------------------------------------ routing
  async function render() {
    clearTimers();
    document.documentElement.lang = S.lang;
    if (!S.token) return renderLogin();
    if (!S.me) {
      try { S.me = await api("/users/me"); } catch (err) { if (!S.me) return renderLogin(); }
    }
    const hash = location.hash.replace(/^#/, "") || "/";
    const [path, query] = hash.split("?");
    const params = new URLSearchParams(query || "");
    let m;
    if ((m = path.match(/^\/unit\/([^/]+)\/schedule$/))) return renderSchedule(decodeURIComponent(m[1]));
    if ((m = path.match(/^\/unit\/([^/]+)$/))) return renderUnit(decodeURIComponent(m[1]));
    if (path === "/reports") return renderReports(params);
    if (path === "/audit" && S.me.role === "admin") return renderAudit();
    return renderUnits();
  }
  window.addEventListener("hashchange", render);
  document.addEventListener("DOMContentLoaded", render);
})();
