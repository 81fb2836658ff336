// backupd web console: sign-in, the API client, hash routing and the
// helpers the pages (pages.js) build with. Every server value reaches the
// page through textContent or an attribute, never as markup.
"use strict";

(function () {
  const KEY = "backupd.token";
  const C = window.BackupdConsole;
  const state = { whoami: null, timer: null };

  function token() { return sessionStorage.getItem(KEY); }

  // An element: el("td", {className: "x", onclick: f}, "text", child...).
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else if (k === "className") node.className = v;
      else if (k === "text") node.textContent = String(v);
      else if (k === "value") node.value = v;
      else node.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children.flat()) {
      if (c === undefined || c === null || c === false) continue;
      node.append(typeof c === "string" || typeof c === "number" ? String(c) : c);
    }
    return node;
  }

  class ApiError extends Error {
    constructor(status, code, message) { super(message); this.status = status; this.code = code; }
  }

  // Calls the API with the bearer token; a 401 signs out.
  async function api(method, path, body) {
    const headers = { "Authorization": "Bearer " + token(), "Accept": "application/json" };
    const init = { method, headers, cache: "no-store", credentials: "omit", referrerPolicy: "no-referrer" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const r = await fetch("/api/v1" + path, init);
    let v = null;
    try { v = await r.json(); } catch (_) { v = null; }
    if (r.status === 401) {
      signOut("Your token was refused (401): sign in again.");
      throw new ApiError(401, "unauthorized", "signed out");
    }
    if (!r.ok || !v || v.success === false) {
      const e = (v && v.error) || {};
      throw new ApiError(r.status, e.code || "http_" + r.status, e.message || ("HTTP " + r.status));
    }
    return v.data;
  }

  // Downloads through fetch (the token stays in a header) into a file.
  async function download(path, fallbackName) {
    const r = await fetch("/api/v1" + path, {
      headers: { "Authorization": "Bearer " + token() }, credentials: "omit", cache: "no-store",
    });
    if (r.status === 401) { signOut("Your token was refused (401): sign in again."); return; }
    if (!r.ok) {
      let m = "HTTP " + r.status;
      try { m = (await r.json()).error.message; } catch (_) { /* not JSON */ }
      throw new ApiError(r.status, "download", m);
    }
    const cd = r.headers.get("Content-Disposition") || "";
    const m = /filename="([^"]+)"/.exec(cd);
    const url = URL.createObjectURL(await r.blob());
    const a = el("a", { href: url, download: m ? m[1] : fallbackName });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  }

  function isAdmin() { return !!state.whoami && state.whoami.role === "admin"; }

  function flash(message) {
    const f = document.getElementById("flash");
    f.textContent = message || "";
    f.hidden = !message;
  }

  function showError(e) {
    if (e && e.status === 401) return;
    flash(e && e.message ? e.message : String(e));
  }

  // A button that runs `action`, shows its error, and is disabled meanwhile.
  function action(label, attrs, run) {
    const b = el("button", Object.assign({ type: "button" }, attrs), label);
    b.addEventListener("click", async () => {
      flash("");
      b.disabled = true;
      try { await run(b); } catch (e) { showError(e); } finally { b.disabled = false; }
    });
    return b;
  }

  function human(bytes) {
    if (bytes === null || bytes === undefined) return "-";
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let n = Number(bytes), i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return (i === 0 ? String(n) : n.toFixed(1)) + " " + units[i];
  }

  function when(t) {
    if (!t) return "-";
    const d = new Date(t);
    if (isNaN(d)) return String(t);
    return d.toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
  }

  function ago(t) {
    if (!t) return "never";
    const s = Math.round((Date.now() - new Date(t).getTime()) / 1000);
    const f = (n, u) => n + " " + u + (n === 1 ? "" : "s");
    const abs = Math.abs(s);
    const text = abs < 90 ? f(abs, "second") : abs < 5400 ? f(Math.round(abs / 60), "minute")
      : abs < 172800 ? f(Math.round(abs / 3600), "hour") : f(Math.round(abs / 86400), "day");
    return s >= 0 ? text + " ago" : "in " + text;
  }

  function duration(ms) {
    const s = Math.floor(Number(ms) / 1000);
    if (s < 60) return s + " s";
    if (s < 3600) return Math.floor(s / 60) + " min " + (s % 60) + " s";
    return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
  }

  function badge(status) { return el("span", { className: "badge " + String(status) }, String(status)); }

  function kv(pairs) {
    const dl = el("dl", { className: "kv" });
    for (const [k, v] of pairs) {
      if (v === undefined) continue;
      dl.append(el("dt", {}, k), el("dd", {}, v === null ? "-" : v));
    }
    return dl;
  }

  function table(headers, rows, empty) {
    if (!rows.length) return el("p", { className: "empty" }, empty || "nothing yet");
    return el("table", {},
      el("thead", {}, el("tr", {}, headers.map((h) => el("th", {}, h)))),
      el("tbody", {}, rows));
  }

  function stopTimer() {
    if (state.timer) { clearTimeout(state.timer); state.timer = null; }
  }

  function poll(fn, ms) {
    stopTimer();
    state.timer = setTimeout(fn, ms);
  }

  function signOut(message) {
    stopTimer();
    sessionStorage.removeItem(KEY);
    state.whoami = null;
    document.getElementById("top").hidden = true;
    document.getElementById("view").hidden = true;
    document.getElementById("page").replaceChildren();
    document.getElementById("signin-view").hidden = false;
    document.getElementById("signin-error").textContent = message || "";
    document.getElementById("token").value = "";
  }

  async function signedIn() {
    try {
      state.whoami = await api("GET", "/whoami");
    } catch (e) {
      if (e.status !== 401) signOut(e.message);
      return;
    }
    const who = state.whoami;
    document.getElementById("who").textContent =
      who.role + (who.tenant ? " · tenant " + who.tenant : " · all tenants");
    document.getElementById("signin-view").hidden = true;
    document.getElementById("top").hidden = false;
    document.getElementById("view").hidden = false;
    route();
  }

  async function route() {
    if (!state.whoami) return;
    stopTimer();
    flash("");
    const parts = (location.hash.replace(/^#\/?/, "") || "overview").split("/").map(decodeURIComponent);
    const name = parts[0];
    const page = C.pages[name] ? name : "overview";
    for (const a of document.querySelectorAll("#nav a")) {
      a.classList.toggle("active", a.dataset.page === (C.nav[page] || page));
    }
    const root = document.getElementById("page");
    const holder = el("div", { id: "page-" + page });
    root.replaceChildren(holder);
    try {
      await C.pages[page](holder, parts.slice(1));
    } catch (e) {
      showError(e);
    }
  }

  function go(hash) {
    if (location.hash === hash) route(); else location.hash = hash;
  }

  Object.assign(C, {
    el, api, download, isAdmin, flash, showError, action, human, when, ago, duration,
    badge, kv, table, poll, go, whoami: () => state.whoami,
  });

  document.addEventListener("DOMContentLoaded", () => {
    document.getElementById("signin").addEventListener("submit", (ev) => {
      ev.preventDefault();
      const input = document.getElementById("token");
      const t = input.value.trim();
      input.value = "";
      if (!t) return;
      sessionStorage.setItem(KEY, t);
      signedIn();
    });
    document.getElementById("signout").addEventListener("click", () => signOut(""));
    window.addEventListener("hashchange", route);
    if (token()) signedIn(); else signOut("");
  });
})();
