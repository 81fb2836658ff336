// backupd web console: the pages. Loaded before console.js, which fills in
// the helpers (el, api, ...) these call when a page is shown.
"use strict";

window.BackupdConsole = { pages: {}, nav: { backup: "backups", database: "databases" } };

(function () {
  const C = window.BackupdConsole;
  const P = C.pages;
  const enc = encodeURIComponent;

  function qs(params) {
    const q = Object.entries(params).filter(([, v]) => v !== "" && v !== undefined && v !== null)
      .map(([k, v]) => enc(k) + "=" + enc(String(v))).join("&");
    return q ? "?" + q : "";
  }

  function dbName(dbs, tenant, id) {
    const d = dbs.find((x) => x.id === id && x.tenant === tenant);
    return d ? d.name : id;
  }

  function trend(sizes) {
    const ns = "http://www.w3.org/2000/svg";
    const w = 8, gap = 3, h = 32;
    const svg = document.createElementNS(ns, "svg");
    svg.setAttribute("class", "trend");
    svg.setAttribute("width", String(Math.max(1, sizes.length) * (w + gap)));
    svg.setAttribute("height", String(h));
    svg.setAttribute("role", "img");
    const max = Math.max(1, ...sizes);
    sizes.forEach((s, i) => {
      const r = document.createElementNS(ns, "rect");
      const bh = Math.max(1, Math.round((s / max) * h));
      r.setAttribute("x", String(i * (w + gap)));
      r.setAttribute("y", String(h - bh));
      r.setAttribute("width", String(w));
      r.setAttribute("height", String(bh));
      const t = document.createElementNS(ns, "title");
      t.textContent = C.human(s);
      r.append(t);
      svg.append(r);
    });
    return svg;
  }

  function pitr(view) {
    const ranges = view && view.pitr_window && view.pitr_window.ranges;
    if (!ranges || !ranges.length) return undefined;
    const last = ranges[ranges.length - 1];
    return C.when(ranges[0].from_time) + " → " + (last.to_time ? C.when(last.to_time) : "now");
  }

  async function backupNow(id) {
    const r = await C.api("POST", "/backups", { source_id: id });
    C.go("#/jobs/" + enc(r.job_id));
  }

  P.overview = async function (root) {
    const { el, api } = C;
    const [status, dbs] = await Promise.all([api("GET", "/status"), api("GET", "/databases")]);
    root.append(el("h1", {}, "Overview"),
      el("p", { className: status.healthy ? "muted" : "error" },
        status.healthy ? "Every database is healthy." : "Some databases need attention.",
        " Time zone: " + status.time_zone + "."));
    const next = new Map((status.jobs || []).map((j) => [j.id, j]));
    const wal = new Map((status.wal_archiving || []).map((w) => [w.tenant + "/" + w.source_id, w]));
    const grid = el("div", { className: "grid" });
    if (!status.sources.length) grid.append(el("p", { className: "empty" }, "No databases yet."));
    for (const s of status.sources) {
      const registered = dbs.find((d) => d.id === s.source_id && d.tenant === s.tenant);
      const job = registered ? next.get(s.source_id) : undefined;
      const card = el("div", { className: "card source " + s.status, "data-source": s.source_id },
        el("h3", {}, dbName(dbs, s.tenant, s.source_id)),
        C.badge(s.status),
        C.kv([
          ["id", s.source_id],
          ["tenant", s.tenant],
          ["last success", s.last_success ? C.when(s.last_success) + " (" + C.ago(s.last_success) + ")" : "never"],
          ["next run", job ? (job.next_run ? C.when(job.next_run) : "not scheduled") : undefined],
          ["last error", s.last_error || undefined],
          ["last verified", "last_verified_at" in s ? (s.last_verified_at ? C.when(s.last_verified_at) : "never") : undefined],
          ["PITR window", pitr(wal.get(s.tenant + "/" + s.source_id))],
        ]));
      const sizes = el("div", { className: "sizes" });
      card.append(sizes);
      if (registered && C.isAdmin()) {
        card.append(C.action("Back up now", { className: "primary backup-now", "data-source": s.source_id },
          () => backupNow(s.source_id)));
      }
      grid.append(card);
      api("GET", "/backups" + qs({ source_id: s.source_id, tenant: C.whoami().tenant ? undefined : s.tenant, limit: 12 }))
        .then((page) => {
          const list = page.items.map((b) => b.size_bytes).reverse();
          if (list.length) {
            sizes.append(el("span", { className: "muted" },
              "size trend (last " + list.length + "): latest " + C.human(list[list.length - 1])), trend(list));
          }
        }).catch(C.showError);
    }
    root.append(grid);
  };

  const filters = { database_id: "", kind: "", type: "", offset: 0, limit: 20, sort: "newest" };

  P.backups = async function (root) {
    const { el, api } = C;
    const dbs = await api("GET", "/databases");
    const select = (name, options) => {
      const s = el("select", { id: "filter-" + name, name },
        options.map(([v, label]) => el("option", { value: v }, label)));
      s.value = String(filters[name]);
      s.addEventListener("change", () => { filters[name] = s.value; filters.offset = 0; load(); });
      return el("div", {}, el("label", { for: "filter-" + name }, name.replace("_id", "")), s);
    };
    const list = el("div", { id: "backup-list" });
    root.append(el("h1", {}, "Backups"),
      el("form", { className: "inline", onsubmit: (e) => e.preventDefault() },
        select("database_id", [["", "all databases"], ...dbs.map((d) => [d.id, d.name + " (" + d.id + ")"])]),
        select("kind", [["", "any kind"], ["manual", "manual"], ["scheduled", "scheduled"]]),
        select("type", [["", "any type"], ["full", "full"], ["incremental", "incremental"]]),
        select("sort", [["newest", "newest first"], ["oldest", "oldest first"], ["largest", "largest first"], ["smallest", "smallest first"]])),
      list);
    async function load() {
      const page = await api("GET", "/backups" + qs({
        database_id: filters.database_id, kind: filters.kind, type: filters.type,
        offset: filters.offset, limit: filters.limit,
      }));
      const items = page.items.slice();
      const by = { newest: (a, b) => b.started_at.localeCompare(a.started_at),
        oldest: (a, b) => a.started_at.localeCompare(b.started_at),
        largest: (a, b) => b.size_bytes - a.size_bytes, smallest: (a, b) => a.size_bytes - b.size_bytes };
      items.sort(by[filters.sort] || by.newest);
      const rows = items.map((b) => el("tr", { "data-backup": b.id },
        el("td", { className: "mono" }, el("a", { href: "#/backup/" + enc(b.id) }, b.id)),
        el("td", {}, dbName(dbs, b.tenant, b.source_id)),
        el("td", {}, b.kind + " · " + b.type),
        el("td", {}, C.when(b.started_at)),
        el("td", {}, C.human(b.size_bytes)),
        el("td", {}, b.encryption ? "age" : "-")));
      const from = page.total ? filters.offset + 1 : 0;
      list.replaceChildren(
        C.table(["id", "database", "kind · type", "started", "size", "encrypted"], rows, "No backups match."),
        el("div", { className: "pager" },
          el("button", { type: "button", id: "prev", disabled: filters.offset === 0,
            onclick: () => { filters.offset = Math.max(0, filters.offset - filters.limit); load().catch(C.showError); } }, "← newer"),
          el("span", {}, from + "–" + (filters.offset + page.items.length) + " of " + page.total),
          el("button", { type: "button", id: "next", disabled: page.next_offset === null || page.next_offset === undefined,
            onclick: () => { filters.offset = page.next_offset; load().catch(C.showError); } }, "older →"),
          el("span", { className: "hint" }, "sorting applies to this page")));
    }
    await load();
  };

  P.backup = async function (root, args) {
    const { el, api } = C;
    const id = args[0] || "";
    const b = await api("GET", "/backups/" + enc(id));
    const ver = b.versions || {};
    root.append(el("h1", {}, "Backup ", el("span", { className: "mono", id: "backup-id" }, b.id)),
      el("div", { className: "grid" },
        el("div", { className: "card" }, el("h3", {}, "What"), C.kv([
          ["database", b.source_id], ["tenant", b.tenant], ["engine", b.engine],
          ["database name", b.database], ["kind", b.kind], ["type", b.type], ["format", b.format],
          ["started", C.when(b.started_at)], ["finished", C.when(b.finished_at)],
          ["created by", b.created_by || null], ["parent", b.parent || undefined]])),
        el("div", { className: "card" }, el("h3", {}, "Integrity"), C.kv([
          ["artifact", b.artifact], ["stored size", C.human(b.stored.size)],
          ["stored sha256", el("span", { className: "mono", id: "sha256" }, b.stored.sha256)],
          ["stored md5", b.stored.md5 || undefined], ["raw size", C.human(b.raw.size)],
          ["raw sha256", el("span", { className: "mono" }, b.raw.sha256)]])),
        el("div", { className: "card" }, el("h3", {}, "Versions and encoding"), C.kv([
          ["dump tool", ver.tool || null], ["server", ver.server || null],
          ["compression", b.compression.algorithm + (b.compression.level !== null && b.compression.level !== undefined ? ":" + b.compression.level : "")],
          ["encryption", b.encryption ? b.encryption.scheme : "none"],
          ["recipients", b.encryption ? el("ul", {}, b.encryption.recipients.map((r) => el("li", { className: "mono" }, r))) : undefined]])),
        b.dedup ? el("div", { className: "card" }, el("h3", {}, "Deduplication"), C.kv([
          ["chunker", b.dedup.chunker], ["chunks", b.dedup.chunks], ["new chunks", b.dedup.new_chunks],
          ["new raw bytes", C.human(b.dedup.new_raw_bytes)], ["stored bytes", C.human(b.dedup.stored_bytes)],
          ["packs", b.dedup.packs], ["logical size", C.human(b.dedup.logical_size)]])) : null,
        Object.keys(b.labels || {}).length || Object.keys(b.details || {}).length
          ? el("div", { className: "card" }, el("h3", {}, "Labels and details"),
            C.kv([...Object.entries(b.labels || {}), ...Object.entries(b.details || {})])) : null));
    const actions = el("div", { className: "actions" }, el("h2", {}, "Actions"),
      C.action("Download", { className: "download" }, () => C.download("/backups/" + enc(b.id) + "/download", b.filename)));
    if (C.isAdmin()) {
      const target = el("input", { id: "restore-target", placeholder: "new database name", autocomplete: "off" });
      const confirm = el("input", { id: "delete-confirm", placeholder: "type the backup id", autocomplete: "off" });
      const del = C.action("Delete", { className: "danger delete", disabled: true }, async () => {
        await api("DELETE", "/backups/" + enc(b.id));
        C.go("#/backups");
      });
      confirm.addEventListener("input", () => { del.disabled = confirm.value !== b.id; });
      actions.append(
        el("fieldset", {}, el("legend", {}, "Restore into a new database"),
          el("div", { className: "row" }, el("div", {}, el("label", { for: "restore-target" }, "target database"), target),
            C.action("Restore", { className: "primary restore" }, async () => {
              const name = target.value.trim();
              if (!name) throw new Error("type the name of the new database");
              const r = await api("POST", "/backups/" + enc(b.id) + "/restore", { target_database: name, clean: false });
              C.go("#/jobs/" + enc(r.job_id));
            })),
          el("p", { className: "hint" }, "Restores never overwrite: the target must be a new database.")),
        el("fieldset", {}, el("legend", {}, "Delete this backup"),
          el("div", { className: "row" }, confirm, del),
          el("p", { className: "hint" }, "Type the backup id to confirm.")));
    }
    root.append(actions);
  };

  P.jobs = async function (root, args) {
    const { el, api } = C;
    const focus = args[0] || "";
    const body = el("div", { id: "job-list" });
    root.append(el("h1", {}, "Jobs"), body);
    async function load() {
      const data = await api("GET", "/jobs");
      const rows = data.jobs.map((j) => {
        const p = j.progress || {};
        const res = j.result || {};
        const outcome = j.error ? el("span", { className: "error" }, j.error)
          : j.kind === "backup" && res.id ? el("a", { href: "#/backup/" + enc(res.id) }, res.id)
            : res.database ? "into " + res.database : "";
        return el("tr", { "data-job": j.id, "data-status": j.status, className: j.status + (j.id === focus ? " focus" : "") },
          el("td", { className: "mono" }, j.id), el("td", {}, j.kind), el("td", {}, C.badge(j.status)),
          el("td", {}, C.when(j.started_at)), el("td", {}, C.duration(p.elapsed_ms || 0)),
          el("td", { className: "bytes-read" }, C.human(p.bytes_read)), el("td", {}, C.human(p.bytes_stored)),
          el("td", {}, C.human(p.rate_bytes_per_sec) + "/s"), el("td", {}, outcome));
      });
      body.replaceChildren(C.table(["id", "kind", "status", "started", "elapsed", "read", "stored", "rate", "outcome"],
        rows, "No jobs since the daemon started."));
      if (data.jobs.some((j) => j.status === "running")) C.poll(() => load().catch(C.showError), 1000);
    }
    await load();
  };

  P.packages = async function (root) {
    const { el, api } = C;
    const list = await api("GET", "/packages");
    root.append(el("h1", {}, "Packages"));
    if (C.isAdmin()) {
      root.append(C.action("Build packages now", { className: "primary build-packages" }, async () => {
        const r = await api("POST", "/packages");
        C.go("#/jobs/" + enc(r.job_id));
      }));
    }
    const rows = list.map((p) => el("tr", { "data-package": p.id },
      el("td", { className: "mono" }, p.id), el("td", {}, p.tenant), el("td", {}, p.kind), el("td", {}, String(p.format)),
      el("td", {}, C.when(p.created_at)), el("td", {}, C.human(p.size)), el("td", {}, String((p.entries || []).length)),
      el("td", {}, C.action("Download", { className: "download" }, () => C.download("/packages/" + enc(p.id) + "/download", p.id)))));
    root.append(C.table(["id", "tenant", "kind", "format", "created", "size", "entries", ""], rows, "No packages yet."));
    if (C.isAdmin() && list.length) {
      const confirm = el("input", { id: "package-delete", placeholder: "type a package id", autocomplete: "off" });
      root.append(el("fieldset", {}, el("legend", {}, "Delete a package"), el("div", { className: "row" }, confirm,
        C.action("Delete", { className: "danger delete" }, async () => {
          const id = confirm.value.trim();
          if (!list.some((p) => p.id === id)) throw new Error("type the id of a listed package");
          await api("DELETE", "/packages/" + enc(id));
          C.go("#/packages");
        }))));
    }
  };

  P.drills = async function (root) {
    const { el, api } = C;
    root.append(el("h1", {}, "Restore drills"));
    const dbs = await api("GET", "/databases");
    if (C.isAdmin() && dbs.length) {
      const pick = el("select", { id: "drill-database" }, dbs.map((d) => el("option", { value: d.id }, d.name + " (" + d.id + ")")));
      root.append(el("div", { className: "row" }, pick, C.action("Drill now", { className: "primary drill-now" }, async () => {
        const r = await api("POST", "/databases/" + enc(pick.value) + "/drill");
        C.go("#/jobs/" + enc(r.job_id));
      })));
    }
    let drills = [];
    try {
      drills = (await api("GET", "/drills")).drills || [];
    } catch (e) {
      if (e.status !== 404) throw e;
    }
    const rows = drills.map((d) => el("tr", { className: d.status },
      el("td", { className: "mono" }, el("a", { href: "#/backup/" + enc(d.backup_id) }, d.backup_id)),
      el("td", {}, dbName(dbs, d.tenant, d.database)), el("td", {}, C.badge(d.status)), el("td", {}, C.when(d.verified_at)),
      el("td", {}, C.duration(d.duration_ms)),
      el("td", {}, (d.tables || []).length ? (d.tables || []).filter((t) => t.matches).length + " of " + d.tables.length + " match" : "not compared"),
      el("td", {}, d.error || d.note || "")));
    root.append(C.table(["backup", "database", "status", "verified", "duration", "tables", "error / note"], rows, "no drill results yet"));
  };

  P.databases = async function (root) {
    const { el, api } = C;
    const dbs = await api("GET", "/databases");
    root.append(el("h1", {}, "Databases"));
    if (C.isAdmin()) root.append(el("p", {}, el("a", { href: "#/database/new", id: "add-database" }, "Add a database")));
    const rows = dbs.map((d) => {
      const actions = el("td", {});
      if (C.isAdmin()) {
        actions.append(el("a", { href: "#/database/" + enc(d.id), className: "edit" }, "edit"), " ");
        const confirm = el("input", { placeholder: "type " + d.id + " to remove", className: "remove-confirm", autocomplete: "off" });
        const remove = C.action("Remove", { className: "danger remove", disabled: true }, async () => {
          await api("DELETE", "/databases/" + enc(d.id));
          C.go("#/databases");
        });
        confirm.addEventListener("input", () => { remove.disabled = confirm.value !== d.id; });
        actions.append(confirm, remove);
      }
      return el("tr", { "data-database": d.id },
        el("td", { className: "db-name" }, d.name), el("td", { className: "mono" }, d.id), el("td", {}, d.engine),
        el("td", {}, d.host ? d.host + ":" + d.port : "-"), el("td", {}, d.database_name),
        el("td", {}, typeof d.schedule === "string" ? d.schedule : JSON.stringify(d.schedule)), el("td", {}, d.tenant),
        el("td", {}, d.has_password ? "set" : "none"), actions);
    });
    root.append(C.table(["name", "id", "engine", "server", "database", "schedule", "tenant", "password", ""], rows,
      "No databases registered."));
  };

  // Add (#/database/new) or edit (#/database/<id>); the password is write-only.
  P.database = async function (root, args) {
    const { el, api } = C;
    if (!C.isAdmin()) { C.go("#/databases"); return; }
    const isNew = !args[0] || args[0] === "new";
    const d = isNew ? { engine: "postgres", host: "127.0.0.1", port: 5432 } : await api("GET", "/databases/" + enc(args[0]));
    const fields = [["id", "text"], ["name", "text"], ["engine", "select"], ["host", "text"], ["port", "number"],
      ["database_name", "text"], ["username", "text"], ["password", "password"], ["schedule", "text"],
      ["keep_last", "number"], ["stale_after", "text"]];
    if (isNew && !C.whoami().tenant) fields.push(["tenant", "text"]);
    const inputs = {};
    const form = el("form", { id: "database-form", autocomplete: "off" });
    for (const [name, type] of fields) {
      if (name === "id" && !isNew) continue;
      const value = name === "password" ? "" : d[name] === undefined || d[name] === null ? ""
        : typeof d[name] === "object" ? JSON.stringify(d[name]) : String(d[name]);
      const input = type === "select"
        ? el("select", { id: "db-" + name }, ["postgres", "mysql", "mariadb", "mongodb"].map((e) => el("option", { value: e }, e)))
        : el("input", { id: "db-" + name, type, autocomplete: type === "password" ? "new-password" : "off",
          placeholder: name === "password" && !isNew ? (d.has_password ? "unchanged (set)" : "none set") : "" });
      input.value = value;
      inputs[name] = { input, value };
      form.append(el("label", { for: "db-" + name }, name.replace("_", " ")), input);
    }
    form.append(el("p", {}, el("button", { type: "submit", className: "primary", id: "save-database" }, isNew ? "Add" : "Save")));
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      C.flash("");
      const body = {};
      for (const [name, { input, value }] of Object.entries(inputs)) {
        const v = input.value.trim();
        if (v === "" || (!isNew && v === value)) continue;
        body[name] = name === "port" || name === "keep_last" ? Number(v) : v;
      }
      try {
        if (isNew) await api("POST", "/databases", body);
        else await api("PATCH", "/databases/" + enc(d.id), body);
        inputs.password.input.value = "";
        C.go("#/databases");
      } catch (e) { C.showError(e); }
    });
    root.append(el("h1", {}, isNew ? "Add a database" : "Edit " + d.name), form);
  };
})();
