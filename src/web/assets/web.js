// The web client: the file view over /api and resumable uploads over
// /tus/. Every name is set as text (textContent), never as HTML.
"use strict";

const CHUNK = 8 * 1024 * 1024; // one PATCH: progress is shown within it
const RETRIES = 8; // per upload, after a cut connection or a 5xx

const $ = (id) => document.getElementById(id);
let me = null; // {user, csrf, permissions}
let cwd = "/";
let entries = [];
let sort = { key: "name", down: false };

function can(p) {
  return me && me.permissions.includes(p);
}

function join(dir, name) {
  return (dir === "/" ? "" : dir) + "/" + name;
}

function say(text) {
  $("status").textContent = text;
}

async function api(path, body) {
  const init = body === undefined ? {} : {
    method: "POST",
    headers: { "content-type": "application/json", "x-csrf-token": me ? me.csrf : "" },
    body: JSON.stringify(body),
  };
  const r = await fetch("/api/" + path, init);
  const answer = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(answer.error || r.statusText);
  return answer;
}

// --- login ---

async function start() {
  const r = await fetch("/api/me");
  if (r.ok) {
    me = await r.json();
    showFiles();
  } else {
    $("login").hidden = false;
    $("files").hidden = true;
    $("user").focus();
  }
}

$("login-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  $("login-error").textContent = "";
  $("login-button").disabled = true;
  try {
    me = await api("login", { user: $("user").value, password: $("password").value, code: $("code").value });
    $("password").value = "";
    $("code").value = "";
    showFiles();
  } catch (err) {
    $("login-error").textContent = err.message;
  } finally {
    $("login-button").disabled = false;
  }
});

$("logout").addEventListener("click", async () => {
  await api("logout", {}).catch(() => {});
  me = null;
  location.hash = "";
  location.reload();
});

// --- share links ---

let sharing = null; // the entry the dialog is for

function share(e) {
  sharing = e;
  $("share-name").textContent = e.name;
  $("share-upload-choice").hidden = !e.dir || e.read_only;
  $("share-form").querySelector("input[value=download]").checked = true;
  $("share-password").value = "";
  $("share-uses").value = "";
  $("share-made").hidden = true;
  $("share-error").textContent = "";
  $("share-create").hidden = false;
  $("share-dialog").showModal();
}

$("share-create").addEventListener("click", async () => {
  const kind = $("share-form").querySelector("input[name=kind]:checked").value;
  const body = { path: join(cwd, sharing.name), kind, expires: $("share-expires").value };
  if ($("share-password").value) body.password = $("share-password").value;
  if ($("share-uses").value) body.max_uses = Number($("share-uses").value);
  try {
    const made = await api("shares", body);
    $("share-url").value = made.url;
    $("share-made").hidden = false;
    $("share-create").hidden = true;
    $("share-url").select();
    links();
  } catch (err) {
    $("share-error").textContent = err.message;
  }
});

$("share-close").addEventListener("click", () => $("share-dialog").close());

async function links() {
  const answer = await api("shares").catch(() => ({ shares: [] }));
  const body = $("links-table").querySelector("tbody");
  body.replaceChildren();
  const live = answer.shares.filter((s) => !s.revoked && new Date(s.expires) > new Date());
  $("links").hidden = live.length === 0;
  for (const s of live) {
    const tr = document.createElement("tr");
    tr.dataset.link = s.id;
    for (const text of [s.path, s.kind, new Date(s.expires).toLocaleString(),
      s.max_uses ? s.uses + " of " + s.max_uses : String(s.uses)]) {
      const td = document.createElement("td");
      td.textContent = text;
      tr.append(td);
    }
    const td = document.createElement("td");
    td.append(button("Revoke", async () => {
      await fetch("/api/shares/" + encodeURIComponent(s.id), {
        method: "DELETE", headers: { "x-csrf-token": me.csrf },
      });
      links();
    }));
    tr.append(td);
    body.append(tr);
  }
}

function showFiles() {
  $("login").hidden = true;
  $("files").hidden = false;
  $("who").textContent = me.user;
  $("upload-label").hidden = !can("upload");
  $("drop").hidden = !can("upload");
  $("new-folder").hidden = !can("mkdir");
  $("zip").hidden = !can("download");
  if (can("share")) links();
  open(decodeURIComponent(location.hash.slice(1)) || "/");
}

// --- the listing ---

window.addEventListener("hashchange", () => {
  if (me) open(decodeURIComponent(location.hash.slice(1)) || "/");
});

async function open(dir) {
  cwd = dir;
  crumbs();
  $("zip").href = "/api/zip?path=" + encodeURIComponent(dir);
  say("Loading…");
  try {
    const answer = await api("list?path=" + encodeURIComponent(dir));
    entries = answer.entries;
    say(answer.error ? "The listing is incomplete: " + answer.error : "");
  } catch (err) {
    entries = [];
    say(err.message);
  }
  render();
}

function crumbs() {
  const nav = $("crumbs");
  nav.replaceChildren();
  const parts = cwd.split("/").filter(Boolean);
  const link = (label, path) => {
    const a = document.createElement("a");
    a.textContent = label;
    a.href = "#" + encodeURIComponent(path);
    nav.append(a);
  };
  link("Home", "/");
  let path = "";
  for (const part of parts) {
    path += "/" + part;
    nav.append(document.createTextNode(" / "));
    link(part, path);
  }
}

function size(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return (i === 0 ? n : n.toFixed(1)) + " " + units[i];
}

document.querySelectorAll("th button[data-sort]").forEach((b) =>
  b.addEventListener("click", () => {
    const key = b.dataset.sort;
    sort = { key, down: sort.key === key ? !sort.down : false };
    render();
  }),
);

function render() {
  const body = document.querySelector("#listing tbody");
  body.replaceChildren();
  const sorted = [...entries].sort((a, b) => {
    if (a.dir !== b.dir) return a.dir ? -1 : 1;
    const x = a[sort.key], y = b[sort.key];
    const c = typeof x === "number" ? x - y : String(x).localeCompare(String(y));
    return sort.down ? -c : c;
  });
  document.querySelectorAll("th button[data-sort]").forEach((b) =>
    b.parentElement.setAttribute("aria-sort",
      b.dataset.sort === sort.key ? (sort.down ? "descending" : "ascending") : "none"));
  for (const e of sorted) body.append(row(e));
  if (sorted.length === 0) {
    const tr = document.createElement("tr");
    const td = document.createElement("td");
    td.colSpan = 4;
    td.textContent = "This folder is empty.";
    tr.append(td);
    body.append(tr);
  }
}

function row(e) {
  const path = join(cwd, e.name);
  const tr = document.createElement("tr");
  tr.dataset.name = e.name;
  const name = document.createElement("td");
  const a = document.createElement("a");
  a.textContent = e.dir ? e.name + "/" : e.name;
  if (e.dir) {
    a.href = "#" + encodeURIComponent(path);
  } else if (can("download")) {
    a.href = "/api/download?path=" + encodeURIComponent(path);
    a.setAttribute("download", e.name);
  }
  name.append(a);
  const sz = document.createElement("td");
  sz.className = "size";
  sz.textContent = e.dir ? "" : size(e.size);
  const when = document.createElement("td");
  when.className = "when";
  when.textContent = new Date(e.modified).toLocaleString();
  const actions = document.createElement("td");
  actions.className = "actions";
  // A read-only mount's entries cannot change, whatever the user may do.
  if (can("share")) actions.append(button("Share", () => share(e)));
  if (!e.read_only && can("rename")) actions.append(button("Rename", () => rename(e.name)));
  if (!e.read_only && can(e.dir ? "rmdir" : "delete")) actions.append(button("Delete", () => remove(e.name)));
  tr.append(name, sz, when, actions);
  return tr;
}

function button(label, act) {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = label;
  b.addEventListener("click", act);
  return b;
}

async function act(what, work) {
  try {
    await work();
    say(what);
  } catch (err) {
    say(err.message);
  }
  await open(cwd);
  say($("status").textContent);
}

function rename(name) {
  const to = prompt("New name for " + name, name);
  if (!to || to === name) return;
  act("Renamed " + name + " to " + to, () =>
    api("rename", { from: join(cwd, name), to: join(cwd, to) }));
}

function remove(name) {
  if (!confirm("Delete " + name + "?")) return;
  act("Deleted " + name, () => api("delete", { path: join(cwd, name) }));
}

$("new-folder").addEventListener("click", () => {
  const name = prompt("Name of the new folder");
  if (name) act("Created " + name, () => api("mkdir", { path: join(cwd, name) }));
});

// --- uploads (tus 1.0) ---

$("upload").addEventListener("change", (e) => {
  uploadAll([...e.target.files]);
  e.target.value = "";
});

const drop = $("drop");
for (const ev of ["dragenter", "dragover"]) {
  document.addEventListener(ev, (e) => {
    if (!can("upload")) return;
    e.preventDefault();
    drop.classList.add("over");
  });
}
document.addEventListener("dragleave", () => drop.classList.remove("over"));
document.addEventListener("drop", (e) => {
  e.preventDefault();
  drop.classList.remove("over");
  if (can("upload") && e.dataTransfer) uploadAll([...e.dataTransfer.files]);
});

const AT_ONCE = 4; // files uploading at once: the rest wait their turn

async function uploadAll(files) {
  const dir = cwd;
  const queue = [...files];
  const worker = async () => {
    for (let f = queue.shift(); f; f = queue.shift()) await upload(f, dir);
  };
  await Promise.all(Array.from({ length: Math.min(AT_ONCE, queue.length) }, worker));
  if (cwd === dir) await open(dir);
}

function b64(text) {
  return btoa(String.fromCharCode(...new TextEncoder().encode(text)));
}

function tusHeaders(extra) {
  return Object.assign({ "tus-resumable": "1.0.0", "x-csrf-token": me.csrf }, extra);
}

async function upload(file, dir) {
  const li = document.createElement("li");
  li.dataset.file = file.name;
  const label = document.createElement("span");
  label.textContent = file.name;
  const bar = document.createElement("progress");
  bar.max = file.size || 1;
  bar.value = 0;
  const note = document.createElement("span");
  note.className = "note";
  li.append(label, bar, note);
  $("progress").append(li);
  const key = remembered(file, dir);
  try {
    // The same file picked again (after a reload, a new login, a gateway
    // restart) goes on where the gateway holds its upload.
    let url = localStorage.getItem(key);
    let offset = url ? await where(url).catch(() => null) : null;
    if (offset === null) {
      const created = await fetch("/tus/", {
        method: "POST",
        headers: tusHeaders({
          "upload-length": String(file.size),
          "upload-metadata": "filename " + b64(file.name) + ",folder " + b64(dir),
        }),
      });
      if (created.status !== 201) throw new Error((await created.json().catch(() => ({}))).error || created.statusText);
      url = created.headers.get("location");
      offset = 0;
      localStorage.setItem(key, url);
    }
    let failures = 0;
    while (offset < file.size) {
      try {
        offset = await patch(url, file, offset, (n) => (bar.value = n));
        failures = 0;
      } catch (err) {
        if (err.final || ++failures > RETRIES) throw err;
        note.textContent = "connection lost; resuming…";
        await new Promise((r) => setTimeout(r, Math.min(500 * 2 ** failures, 8000)));
        offset = await where(url);
        note.textContent = "";
      }
    }
    localStorage.removeItem(key);
    bar.value = bar.max;
    li.classList.add("done");
    note.textContent = "done";
  } catch (err) {
    if (err.final && !err.resumable) localStorage.removeItem(key);
    li.classList.add("failed");
    note.textContent = err.message;
  }
}

// Where a file's unfinished upload is remembered: by its user, folder,
// name, size and time, as tus clients recognise a file picked again.
function remembered(file, dir) {
  return "bg-tus:" + JSON.stringify([me.user, dir, file.name, file.size, file.lastModified]);
}

// Where the gateway holds the upload: the next PATCH starts there.
async function where(url) {
  const r = await fetch(url, { method: "HEAD", headers: tusHeaders({}) });
  if (r.status === 401) throw sessionEnded();
  if (!r.ok) {
    const err = new Error("the upload is gone (" + r.status + "); start it again");
    err.final = true;
    throw err;
  }
  return Number(r.headers.get("upload-offset"));
}

// The session ended (logged out, expired, the gateway restarted): the
// upload stays where it is, for the same file picked after a new login.
function sessionEnded() {
  const err = new Error("your session ended: log in again and pick the file again to resume it");
  err.final = true;
  err.resumable = true;
  return err;
}

// One PATCH of up to CHUNK bytes from `offset`, with its progress.
function patch(url, file, offset, progress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("PATCH", url);
    const headers = tusHeaders({
      "upload-offset": String(offset),
      "content-type": "application/offset+octet-stream",
    });
    for (const [k, v] of Object.entries(headers)) xhr.setRequestHeader(k, v);
    xhr.upload.onprogress = (e) => progress(offset + e.loaded);
    xhr.onload = () => {
      if (xhr.status === 204) return resolve(Number(xhr.getResponseHeader("upload-offset")));
      if (xhr.status === 401) return reject(sessionEnded());
      let message = xhr.statusText;
      try {
        message = JSON.parse(xhr.responseText).error || message;
      } catch (_) { /* not JSON */ }
      const err = new Error(message);
      err.final = xhr.status < 500 && xhr.status !== 409 && xhr.status !== 423;
      reject(err);
    };
    xhr.onerror = () => reject(new Error("connection lost"));
    xhr.send(file.slice(offset, Math.min(offset + CHUNK, file.size)));
  });
}

start();
