/* Tiny SVG charts for the dashboard: a time line chart and a time bar chart.
 *
 *   Charts.line(container, {series: [{name, points: [[iso, value], ...]}], unit,
 *                           since, until, label(t) -> string, tip(t) -> string})
 *   Charts.bar(container, {points: [[iso, value], ...], unit, since, until, per,
 *                          label(t), tip(t)})
 *
 * Times are ISO strings (UTC); `label` and `tip` format them (the page passes WITA
 * formatters), `num(value, digits)` the numbers (the page passes its language's). Values
 * get a <title> so a tap or hover shows the number. A series of one point shows as a
 * dot; no data at all shows emptyText. No library. */
"use strict";

(function () {
  const NS = "http://www.w3.org/2000/svg";
  const COLORS = ["#1769aa", "#e07b00", "#2e9d57", "#8e44ad", "#c0392b", "#16a2b8"];
  const H = 200, PAD = {l: 44, r: 12, t: 24, b: 26};

  function svg(tag, attrs, text) {
    const e = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function niceTicks(lo, hi, n) {
    if (!(hi > lo)) { hi = lo + 1; }
    const raw = (hi - lo) / n;
    const mag = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) || raw;
    const ticks = [];
    for (let v = Math.floor(lo / step) * step; v <= hi + step * 1e-9; v += step) {
      ticks.push(Math.round(v * 1e6) / 1e6);
    }
    return ticks;
  }

  // A number with as many decimals as its size needs, by the page's formatter (o.num:
  // a decimal comma in Indonesian) when it gives one.
  function fmtNum(v, o) {
    const a = Math.abs(v);
    const digits = a >= 100 ? 0 : a >= 10 ? 1 : 2;
    if (o && o.num) return o.num(v, digits);
    return a >= 100 ? v.toFixed(0) : a >= 10 ? v.toFixed(1).replace(/\.0$/, "")
      : v.toFixed(2).replace(/0$/, "").replace(/\.0$/, "");
  }

  function frame(container, o, lo, hi) {
    container.textContent = "";
    const W = Math.max(280, Math.round(container.clientWidth || 600));
    const root = svg("svg", {viewBox: `0 0 ${W} ${H}`, width: "100%", height: H,
      role: "img", class: "chart-svg"});
    const t0 = Date.parse(o.since), t1 = Date.parse(o.until);
    const x = (t) => PAD.l + (W - PAD.l - PAD.r) * (t - t0) / Math.max(1, t1 - t0);
    const ticks = niceTicks(lo, hi, 4);
    const ylo = ticks[0], yhi = ticks[ticks.length - 1];
    const y = (v) => H - PAD.b - (H - PAD.t - PAD.b) * (v - ylo) / Math.max(1e-9, yhi - ylo);
    for (const v of ticks) {
      root.appendChild(svg("line", {x1: PAD.l, x2: W - PAD.r, y1: y(v), y2: y(v),
        class: "grid"}));
      root.appendChild(svg("text", {x: PAD.l - 6, y: y(v) + 4, class: "ylab",
        "text-anchor": "end"}, fmtNum(v, o)));
    }
    root.appendChild(svg("text", {x: PAD.l - 6, y: 11, class: "unit", "text-anchor": "end"}, o.unit || ""));
    // x labels: about one per 110 px
    const n = Math.max(2, Math.floor((W - PAD.l - PAD.r) / 110));
    for (let i = 0; i <= n; i++) {
      const t = t0 + (t1 - t0) * i / n;
      root.appendChild(svg("text", {x: x(t), y: H - 8, class: "xlab",
        "text-anchor": i === 0 ? "start" : i === n ? "end" : "middle"}, o.label(t)));
    }
    container.appendChild(root);
    return {root, x, y, W, ylo};
  }

  function empty(container, text) {
    container.textContent = "";
    const p = document.createElement("p");
    p.className = "chart-empty";
    p.textContent = text;
    container.appendChild(p);
  }

  function line(container, o) {
    const all = o.series.flatMap((s) => s.points.map((p) => p[1]));
    if (!all.length) return empty(container, o.emptyText);
    const f = frame(container, o, Math.min(...all), Math.max(...all));
    const gap = (o.bucketS || 900) * 2.5 * 1000;
    o.series.forEach((s, i) => {
      const color = COLORS[i % COLORS.length];
      let d = "", last = null;
      for (const [ts, v] of s.points) {
        const t = Date.parse(ts);
        d += (last === null || t - last > gap ? "M" : "L") + f.x(t).toFixed(1) + " " +
          f.y(v).toFixed(1) + " ";
        last = t;
      }
      f.root.appendChild(svg("path", {d, fill: "none", stroke: color, "stroke-width": 2.2,
        "stroke-linejoin": "round", "stroke-linecap": "round", class: "series"}));
      for (const [ts, v] of s.points) {
        const c = svg("circle", {cx: f.x(Date.parse(ts)), cy: f.y(v), r: 3.5,
          fill: color, class: "pt"});
        c.appendChild(svg("title", {}, `${s.name}: ${fmtNum(v, o)} ${o.unit} — ${o.tip(Date.parse(ts))}`));
        f.root.appendChild(c);
      }
    });
    if (o.series.length > 1 || (o.series[0] && o.series[0].name)) {
      const legend = document.createElement("div");
      legend.className = "legend";
      o.series.forEach((s, i) => {
        const item = document.createElement("span");
        const dot = document.createElement("i");
        dot.style.background = COLORS[i % COLORS.length];
        item.appendChild(dot);
        item.appendChild(document.createTextNode(s.name));
        legend.appendChild(item);
      });
      container.appendChild(legend);
    }
  }

  function bar(container, o) {
    const values = o.points.map((p) => p[1]);
    if (!values.some((v) => v > 0)) return empty(container, o.emptyText);
    const f = frame(container, o, 0, Math.max(...values));
    const t1 = Date.parse(o.until);
    const step = o.per === "hour" ? 3600e3 : 86400e3;
    o.points.forEach(([ts, v]) => {
      if (!(v > 0)) return;
      const t = Date.parse(ts);
      const a = f.x(Math.max(t, Date.parse(o.since))), b = f.x(Math.min(t + step, t1));
      const w = Math.max(2, (b - a) * 0.78);
      const r = svg("rect", {x: a + (b - a - w) / 2, y: f.y(v), width: w,
        height: Math.max(0, f.y(f.ylo) - f.y(v)), rx: 2, class: "bar"});
      r.appendChild(svg("title", {}, `${o.tip(t)}: ${fmtNum(v, o)} ${o.unit}`));
      f.root.appendChild(r);
    });
  }

  window.Charts = {line, bar};
})();
