"use strict";
// gouache web page: the job API with the optional API key (kept for this tab only).
const $ = (id) => document.getElementById(id);
let key = sessionStorage.getItem("gouache-key") || "";
let current = null;

function headers(extra) {
  const h = Object.assign({}, extra || {});
  if (key) h["Authorization"] = "Bearer " + key;
  return h;
}

async function api(path, options) {
  const opts = Object.assign({}, options || {});
  opts.headers = headers(opts.headers);
  const r = await fetch(path, opts);
  if (r.status === 401) {
    $("keyform").hidden = false;
    $("status").textContent = "this server needs an API key";
    throw new Error("API key required");
  }
  if (!r.ok) {
    let msg = r.status + " " + r.statusText;
    try { const body = await r.json(); msg = (body.error && body.error.message) || body.detail || msg; } catch (e) {}
    throw new Error(msg);
  }
  return r;
}

function option(select, value, label) {
  const o = document.createElement("option");
  o.value = value; o.textContent = label || value;
  select.appendChild(o);
}

async function loadServer() {
  const info = await (await api("/v1/server")).json();
  $("status").textContent = "gouache " + info.version + " · " + info.models.length + " model(s)";
  $("model").innerHTML = "";
  for (const m of info.models) option($("model"), m);
  if (info.default_model) $("model").value = info.default_model;
  $("sampler").innerHTML = "";
  option($("sampler"), "", "model default");
  for (const s of info.samplers) option($("sampler"), s);
}

function showError(text) {
  $("error").textContent = text || "";
  $("error").hidden = !text;
}

function intOrNull(id) {
  const v = $(id).value.trim();
  return v === "" ? null : parseInt(v, 10);
}

async function generate(ev) {
  ev.preventDefault();
  showError("");
  const body = { kind: "generate", prompt: $("prompt").value, negative_prompt: $("negative").value,
                 model: $("model").value || null, seed: intOrNull("seed") ?? -1 };
  for (const k of ["width", "height", "steps"]) { const v = intOrNull(k); if (v !== null) body[k] = v; }
  if ($("sampler").value) body.sampler = $("sampler").value;
  try {
    const r = await api("/v1/jobs", { method: "POST", headers: { "Content-Type": "application/json" },
                                      body: JSON.stringify(body) });
    const job = await r.json();
    current = job.id;
    $("generate").disabled = true;
    $("cancel").disabled = false;
    $("bar").value = 0;
    $("progresstext").textContent = "queued";
    await follow(job.id);
  } catch (e) {
    showError(e.message);
  } finally {
    current = null;
    $("generate").disabled = false;
    $("cancel").disabled = true;
  }
}

// Server-Sent Events read with fetch, so the Authorization header can be sent.
async function follow(id) {
  const r = await api("/v1/jobs/" + id + "/events");
  const reader = r.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut); buffer = buffer.slice(cut + 2);
      let name = "message", data = "";
      for (const line of block.split("\n")) {
        if (line.startsWith("event: ")) name = line.slice(7);
        else if (line.startsWith("data: ")) data += line.slice(6);
      }
      if (!data) continue;
      if (onEvent(name, JSON.parse(data))) { reader.cancel(); return; }
    }
  }
}

function onEvent(name, data) {
  if (name === "state" || name === "progress") {
    $("bar").value = data.progress || 0;
    const eta = data.eta_seconds != null ? " · " + data.eta_seconds.toFixed(1) + " s left" : "";
    $("progresstext").textContent = data.phase + (data.total ? " · step " + data.step + "/" + data.total : "") + eta;
  } else if (name === "preview") {
    $("preview").src = data.image; $("preview").hidden = false;
  } else if (name === "done" || name === "failed" || name === "cancelled") {
    $("bar").value = name === "done" ? 1 : $("bar").value;
    $("progresstext").textContent = name;
    if (data.error) showError(data.error.message);
    loadGallery(name === "done" ? current : null);
    return true;
  }
  return false;
}

async function cancel() {
  if (current) await api("/v1/jobs/" + current + "/cancel", { method: "POST" }).catch((e) => showError(e.message));
}

const shown = new Map();
// finished: the job whose first image replaces the step preview (the one just generated)
async function loadGallery(finished = null) {
  const list = await (await api("/v1/jobs?state=done")).json();
  const gallery = $("gallery");
  for (const job of list.jobs.slice().reverse()) {
    for (const res of job.results) {
      const id = job.id + "/" + res.index;
      if (shown.has(id) || !res.media_type.startsWith("image/")) continue;
      const fig = document.createElement("figure");
      const img = document.createElement("img");
      img.alt = job.parameters.prompt || "result";
      const cap = document.createElement("figcaption");
      cap.textContent = res.infotext || JSON.stringify(res.parameters);
      fig.appendChild(img); fig.appendChild(cap);
      gallery.insertBefore(fig, gallery.firstChild);
      shown.set(id, fig);
      api(res.url).then((r) => r.blob()).then((b) => {
        img.src = URL.createObjectURL(b);
        if (job.id === finished && res.index === 0) { $("preview").src = img.src; $("preview").hidden = false; }
      })
                  .catch((e) => { cap.textContent = e.message; });
    }
  }
}

$("genform").addEventListener("submit", generate);
$("cancel").addEventListener("click", cancel);
$("keyform").addEventListener("submit", (ev) => {
  ev.preventDefault();
  key = $("apikey").value; sessionStorage.setItem("gouache-key", key);
  $("keyform").hidden = true;
  start();
});

function start() {
  loadServer().then(loadGallery).catch((e) => showError(e.message));
}
start();
