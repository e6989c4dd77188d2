// The bucketgate console: one page over /api/v1, refreshed every second.
// Every value reaches the page through textContent, never as HTML.
"use strict";

const state = { me: null, view: "dashboard", timer: null, busy: false };

const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v;
    else if (k.startsWith("data-")) node.setAttribute(k, v);
    else node[k] = v;
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

// Sizes, rates and times as people read them.
function size(bytes) {
  if (bytes === null || bytes === undefined) return "—";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = bytes, i = 0;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return (i === 0 ? v : v.toFixed(v < 10 ? 1 : 0)) + " " + units[i];
}
const rate = (perSecond) => size(perSecond) + "/s";
function ago(time) {
  const s = Math.max(0, (Date.now() - new Date(time).getTime()) / 1000);
  if (s < 5) return "just now";
  if (s < 60) return Math.floor(s) + " s ago";
  if (s < 3600) return Math.floor(s / 60) + " min ago";
  if (s < 86400) return Math.floor(s / 3600) + " h ago";
  return Math.floor(s / 86400) + " d ago";
}
function duration(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  if (seconds < 60) return seconds.toFixed(seconds < 10 ? 1 : 0) + " s";
  if (seconds < 3600) return Math.round(seconds / 60) + " min";
  return (seconds / 3600).toFixed(1) + " h";
}

async function api(method, path, body) {
  const headers = {};
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && state.me && state.me.csrf) headers["X-CSRF-Token"] = state.me.csrf;
  const response = await fetch("/api/v1/" + path, {
    method, headers, credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = await response.json().catch(() => ({}));
  if (response.status === 401 && path !== "login") { showLogin(); throw new Error("logged out"); }
  if (!response.ok) throw new Error(data.error || response.statusText);
  return data;
}

function notice(text, bad) {
  const n = $("notice");
  n.textContent = text;
  n.className = bad ? "error" : "";
}

function table(headers, rows, empty) {
  if (rows.length === 0) return el("p", { class: "muted" }, empty);
  return el("div", { class: "table" },
    el("table", {},
      el("thead", {}, el("tr", {}, ...headers.map((h) => el("th", {}, h)))),
      el("tbody", {}, ...rows)));
}

function act(button, label, run) {
  button.addEventListener("click", async () => {
    button.disabled = true;
    try { notice(await run()); } catch (e) { notice(label + ": " + e.message, true); }
    finally { button.disabled = false; refresh(); }
  });
  return button;
}

function transferCell(t) {
  const progress = t.total ? el("progress", { max: t.total, value: t.bytes }) : null;
  return el("div", { "data-transfer": t.path },
    t.direction === "upload" ? "↑ " : "↓ ", el("span", { class: "path" }, t.path), " ",
    progress, " ",
    el("span", { class: "bytes" }, size(t.bytes) + (t.total ? " of " + size(t.total) : "")),
    " · ", el("span", { class: "rate" }, rate(t.rate)));
}

const views = {
  async dashboard() {
    const [s, r, o] = await Promise.all([api("GET", "sessions"), api("GET", "remotes"), api("GET", "operations?limit=200")]);
    const transfers = s.sessions.flatMap((x) => x.transfers);
    const up = transfers.filter((t) => t.direction === "upload").reduce((a, t) => a + t.rate, 0);
    const down = transfers.filter((t) => t.direction === "download").reduce((a, t) => a + t.rate, 0);
    const recent = o.operations.filter((op) => Date.now() - new Date(op.time).getTime() < 300000);
    const errors = recent.filter((op) => op.result === "error").length;
    const card = (value, label, cls) => el("div", { class: "card" }, el("div", { class: "value " + (cls || "") }, value), el("div", { class: "label" }, label));
    return [
      el("div", { class: "cards" },
        card(s.sessions.length, "sessions"),
        card(transfers.length, "transfers in flight"),
        card(rate(up), "uploading"),
        card(rate(down), "downloading"),
        card(recent.length, "operations, last 5 min"),
        card(errors, "errors, last 5 min", errors ? "bad" : "")),
      el("h2", {}, "Remotes"),
      remotesTable(r.remotes),
      el("h2", {}, "Transfers in flight"),
      table(["User", "Transfer"], s.sessions.flatMap((x) => x.transfers.map((t) =>
        el("tr", {}, el("td", {}, x.user), el("td", { class: "wrap" }, transferCell(t))))), "Nothing is moving."),
    ];
  },

  async sessions() {
    const s = await api("GET", "sessions");
    const writer = state.me.role === "admin";
    const fleet = s.sessions.some((x) => x.node);
    const head = ["User", "Protocol", "Client", "Since", "In", "Out", "Transfers", ""];
    if (fleet) head.splice(3, 0, "Node");
    return [...(s.incomplete ? [el("p", { class: "bad" }, s.incomplete)] : []),
      table(head,
      s.sessions.map((x) => el("tr", { "data-session": x.id, "data-user": x.user },
        el("td", {}, x.user), el("td", {}, x.protocol), el("td", {}, x.peer),
        fleet ? el("td", {}, x.node) : null,
        el("td", { title: x.since }, ago(x.since)),
        el("td", {}, size(x.bytes_in)), el("td", {}, size(x.bytes_out)),
        el("td", { class: "wrap" }, ...x.transfers.map(transferCell)),
        el("td", {}, writer ? act(el("button", { class: "danger end", type: "button" }, "End session"), "End session", async () => {
          if (!window.confirm("End " + x.user + "'s session? Unfinished uploads are aborted.")) return "";
          await api("DELETE", "sessions/" + x.id + (x.node ? "?node=" + encodeURIComponent(x.node) : ""));
          return "Ended " + x.user + "'s session.";
        }) : null))), "Nobody is logged in.")];
  },

  async transfers() {
    const user = state.filterUser || "", path = state.filterPath || "";
    const q = new URLSearchParams({ limit: "200" });
    if (user) q.set("user", user);
    if (path) q.set("path", path);
    const o = await api("GET", "operations?" + q);
    const filter = (id, placeholder, key) => {
      const input = el("input", { id, placeholder, value: state[key] || "" });
      input.addEventListener("change", () => { state[key] = input.value.trim(); refresh(); });
      return input;
    };
    return [
      el("div", { class: "filters" }, filter("filter-user", "user", "filterUser"), filter("filter-path", "path contains", "filterPath")),
      table(["When", "User", "Operation", "Path", "Bytes", "Took", "Result"],
        o.operations.map((op) => el("tr", {},
          el("td", { title: op.time }, ago(op.time)), el("td", {}, op.user + " (" + op.protocol + ")"),
          el("td", {}, op.op), el("td", { class: "wrap" }, op.path + (op.to ? " → " + op.to : "")),
          el("td", {}, op.bytes === undefined ? "" : size(op.bytes)), el("td", {}, op.ms + " ms"),
          el("td", { class: op.result === "ok" ? "ok" : "bad" }, op.result === "ok" ? "ok" : op.error || "error"))),
        "No file operations yet."),
    ];
  },

  async syncs() {
    const s = await api("GET", "syncs");
    const writer = state.me.role === "admin";
    return s.syncs.length === 0 ? [el("p", { class: "muted" }, "No sync jobs are configured.")] : s.syncs.map((job) => {
      const last = job.reports[0];
      const running = job.running;
      const buttons = writer ? [
        act(el("button", { class: "run", type: "button", disabled: !!running }, "Run now"), "Run now", async () => {
          await api("POST", "syncs/" + encodeURIComponent(job.name) + "/run", {});
          return "Started " + job.name + ".";
        }), " ",
        act(el("button", { class: "quiet dry-run", type: "button" }, "Dry run"), "Dry run", async () => {
          const plan = await api("POST", "syncs/" + encodeURIComponent(job.name) + "/run", { dry_run: true });
          state.dryRun = { job: job.name, plan: plan.dry_run };
          return "Planned " + job.name + ": " + plan.dry_run.actions.length + " action(s).";
        }),
      ] : [];
      const plan = state.dryRun && state.dryRun.job === job.name ? el("details", { open: true },
        el("summary", {}, "Dry run: " + state.dryRun.plan.actions.length + " action(s)"),
        el("pre", {}, state.dryRun.plan.actions.concat(state.dryRun.plan.skipped.map((x) => "skip " + x)).join("\n") || "nothing to do")) : null;
      return el("div", { class: "card", "data-job": job.name },
        el("h2", {}, job.name),
        el("p", {}, job.direction + ": " + job.local + ({ push: " → ", pull: " ← " }[job.direction] || " ⇄ ") + job.remote + " · " +
          (job.interval_seconds ? "every " + duration(job.interval_seconds) : "on demand") + " · after copy: " + job.after_copy),
        running ? el("p", { class: "running" }, "Running since " + ago(running.started) + " (" + running.by + "): " +
          running.done + " of " + running.actions + " action(s), " + size(running.copied_bytes) + " of " + size(running.bytes)) : null,
        ...buttons, plan,
        el("h2", {}, "Last runs"),
        table(["Started", "Outcome", "Copied", "Deleted", "Took", "Details"], job.reports.map((rep) => el("tr", { class: "report" },
          el("td", { title: rep.started }, ago(rep.started)),
          el("td", { class: "outcome " + (rep.outcome.kind === "done" ? "ok" : "bad") }, rep.outcome.kind + (rep.outcome.reason ? ": " + rep.outcome.reason : "")),
          el("td", {}, rep.copied + " (" + size(rep.copied_bytes) + ")"), el("td", {}, rep.deleted),
          el("td", {}, duration(rep.seconds)),
          el("td", { class: "wrap" }, rep.errors.length || rep.skipped.length ? el("details", {}, el("summary", {}, rep.errors.length + " error(s), " + rep.skipped.length + " skipped"),
            el("pre", {}, rep.errors.concat(rep.skipped).join("\n"))) : ""))), last ? "" : "Never run."));
    });
  },

  async bans() {
    const b = await api("GET", "bans");
    const writer = state.me.role === "admin";
    return [table(["Source", "Banned for", ""], b.bans.map((x) => el("tr", { "data-ban": x.source },
      el("td", {}, x.source), el("td", {}, duration(x.seconds_left) + " more"),
      el("td", {}, writer ? act(el("button", { class: "lift", type: "button" }, "Lift"), "Lift", async () => {
        await api("DELETE", "bans/" + encodeURIComponent(x.source));
        return "Lifted the ban of " + x.source + ".";
      }) : null))), "No source is banned.")];
  },

  async shares() {
    let s;
    try { s = await api("GET", "shares"); } catch (e) { return [el("p", { class: "muted" }, e.message)]; }
    const writer = state.me.role === "admin";
    const rows = s.shares.map((x) => el("tr", { "data-share": x.id },
      el("td", {}, x.user), el("td", { class: "wrap" }, x.path), el("td", {}, x.kind),
      el("td", {}, x.creator), el("td", {}, new Date(x.expires).toLocaleString()),
      el("td", {}, x.max_uses ? x.uses + " of " + x.max_uses : String(x.uses)),
      el("td", {}, x.revoked ? "revoked" : writer ? act(el("button", { class: "revoke", type: "button" }, "Revoke"), "Revoke", async () => {
        await api("DELETE", "shares/" + encodeURIComponent(x.id));
        return "Revoked the link to " + x.path + ".";
      }) : null)));
    return [writer ? shareForm() : "", table(["User", "Path", "Kind", "Made by", "Expires", "Uses", ""], rows, "No share links.")];
  },

  async remotes() {
    const r = await api("GET", "remotes");
    return [remotesTable(r.remotes), ...r.remotes.map((x) => el("div", {},
      el("h2", {}, x.name + " requests"),
      table(["Operation", "Requests", "Errors", "Mean"], Object.entries(x.calls).map(([op, c]) => el("tr", {},
        el("td", {}, op), el("td", {}, c.requests), el("td", { class: c.errors ? "bad" : "" }, c.errors),
        el("td", {}, (c.mean_seconds * 1000).toFixed(1) + " ms"))), "No requests counted (only S3 remotes count theirs).")))];
  },

  async users() {
    const [u, usage] = await Promise.all([api("GET", "users"), api("GET", "usage")]);
    const writer = state.me.role === "admin";
    return [
      el("p", {}, "Identity sources, in order: " + u.sources.join(", ") + ". ",
        writer ? act(el("button", { class: "quiet reload", type: "button" }, "Reload from the config file"), "Reload", async () => (await api("POST", "users/reload")).reloaded) : null),
      table(["Name", "Home", "Permissions", "Sessions", "Login", "Mounts", "Limits"], u.users.map((x) => el("tr", { "data-user": x.name },
        el("td", {}, x.name), el("td", {}, x.home), el("td", { class: "wrap" }, x.permissions.join(" ")),
        el("td", {}, "at most " + x.max_sessions), el("td", {}, [x.password ? "password" : "", x.keys ? x.keys + " key(s)" : ""].filter(Boolean).join(", ")),
        el("td", { class: "wrap" }, x.mounts.map((m) => m.path + " → " + m.target + (m.read_only ? " (read-only)" : "") + (quotaText(m) ? " (" + quotaText(m) + ")" : "")).join("; ")),
        el("td", { class: "wrap limits" }, limitsText(x.limits)))), "The users file has no users."),
      el("h2", {}, "Quota usage"),
      table(["Target", "Used", "Quota", "Files", "Listed"], usage.usage.map((t) => el("tr", { "data-target": t.target },
        el("td", {}, t.target),
        el("td", { class: t.quota_bytes !== null && t.used_bytes >= t.quota_bytes ? "bad" : "" }, t.used_bytes === null ? "listing…" : size(t.used_bytes)),
        el("td", {}, t.quota_bytes === null ? "—" : size(t.quota_bytes) + (t.used_bytes === null ? "" : " (" + Math.round(100 * t.used_bytes / Math.max(1, t.quota_bytes)) + "%)")),
        el("td", {}, (t.used_files === null ? "?" : t.used_files) + (t.quota_files === null ? "" : " of " + t.quota_files)),
        el("td", {}, t.scanned ? ago(t.scanned) : "—"))), "No user has a quota."),
    ];
  },
};

// The form that makes a link: made once, so the refresh keeps what is typed.
let madeShareForm = null;
function shareForm() {
  if (madeShareForm) return madeShareForm;
  const field = (label, input) => el("label", {}, label + " ", input);
  const user = el("input", { id: "share-user", required: true });
  const path = el("input", { id: "share-path", required: true, value: "/" });
  const kind = el("select", { id: "share-kind" }, el("option", { value: "download" }, "download"), el("option", { value: "upload" }, "upload (drop box)"));
  const expires = el("input", { id: "share-expires", value: "7d" });
  const password = el("input", { id: "share-password", type: "password", autocomplete: "new-password" });
  const uses = el("input", { id: "share-uses", type: "number", min: 1 });
  const made = el("input", { id: "share-url", readOnly: true, placeholder: "the link appears here" });
  const form = el("form", { id: "share-form", class: "inline" },
    field("User", user), field("Path", path), field("Kind", kind), field("Expires in", expires),
    field("Password", password), field("Most uses", uses),
    el("button", { type: "submit" }, "Make link"), made);
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const body = { user: user.value, path: path.value, kind: kind.value, expires: expires.value };
    if (password.value) body.password = password.value;
    if (uses.value) body.max_uses = Number(uses.value);
    try {
      const link = await api("POST", "shares", body);
      made.value = link.url;
      notice("Made a link to " + link.path + " of " + link.user + ".");
      refresh();
    } catch (err) { notice("Make link: " + err.message, true); }
  });
  madeShareForm = form;
  return form;
}

function quotaText(q) {
  const parts = [q.quota_bytes !== null ? size(q.quota_bytes) : "", q.quota_files !== null ? q.quota_files + " files" : ""].filter(Boolean);
  return parts.length ? "quota " + parts.join(", ") : "";
}

function limitsText(l) {
  return [quotaText(l), l.max_file_size !== null ? "files ≤ " + size(l.max_file_size) : "",
    l.bandwidth_up !== null ? "up " + rate(l.bandwidth_up) : "", l.bandwidth_down !== null ? "down " + rate(l.bandwidth_down) : "",
    l.filters ? l.filters + " filter(s)" : ""].filter(Boolean).join(" · ") || "none";
}

function remotesTable(remotes) {
  return table(["Remote", "Store", "Health", "Probe"], remotes.map((x) => el("tr", { "data-remote": x.name },
    el("td", {}, x.name), el("td", { class: "wrap" }, x.store),
    el("td", { class: x.health && x.health.ok ? "ok" : "bad" }, x.health && x.health.ok ? "healthy" : (x.health && (x.health.credentials || x.health.error)) || "unknown"),
    el("td", {}, x.health && x.health.probe_ms !== undefined ? x.health.probe_ms + " ms" : "—"))), "No remotes.");
}

const titles = { dashboard: "Dashboard", sessions: "Sessions", transfers: "Transfers and file operations", syncs: "Sync jobs", bans: "Bans", shares: "Share links", remotes: "Remotes", users: "Users" };

// A banner while this node of a fleet cannot reach the cluster's database.
async function clusterHealth() {
  const h = await fetch("/healthz").then((r) => r.json()).catch(() => ({}));
  if (!h.cluster || h.cluster.state === "up") return [];
  return [el("p", { class: "bad", id: "cluster-degraded" },
    "Cluster " + h.cluster.state + ": node " + h.cluster.node + " cannot reach the cluster's database and serves on its own state; bans, session limits and the other nodes' sessions are this node's view until it is back, and events wait in its spool.")];
}

async function refresh() {
  if (!state.me || state.busy) return;
  state.busy = true;
  try {
    const [parts, health] = await Promise.all([views[state.view](), clusterHealth()]);
    // Keep a filter's focus and value while typing.
    const focused = document.activeElement && document.activeElement.id;
    $("content").replaceChildren(...health, ...parts);
    if (focused && $(focused)) $(focused).focus();
  } catch (e) {
    if (e.message !== "logged out") notice(e.message, true);
  } finally {
    state.busy = false;
  }
}

function route() {
  const view = location.hash.slice(1);
  state.view = views[view] ? view : "dashboard";
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", a.getAttribute("href") === "#" + state.view);
  $("title").textContent = titles[state.view];
  notice("");
  refresh();
}

function showLogin() {
  state.me = null;
  clearInterval(state.timer);
  $("login").hidden = false;
  $("view").hidden = true;
  $("nav").hidden = true;
  $("who").hidden = true;
}

function showConsole(me) {
  state.me = me;
  $("login").hidden = true;
  $("view").hidden = false;
  $("nav").hidden = false;
  $("who").hidden = false;
  $("who-name").textContent = me.name + (me.role === "read-only" ? " (read-only)" : "");
  clearInterval(state.timer);
  state.timer = setInterval(refresh, 1000);
  route();
}

$("login").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("login-error").textContent = "";
  try {
    showConsole(await api("POST", "login", { name: $("name").value, password: $("password").value }));
    $("password").value = "";
  } catch (e) {
    $("login-error").textContent = e.message;
  }
});

$("logout").addEventListener("click", async () => {
  try { await api("POST", "logout"); } catch (_) { /* gone already */ }
  showLogin();
});

window.addEventListener("hashchange", route);

api("GET", "me").then(showConsole, showLogin);
