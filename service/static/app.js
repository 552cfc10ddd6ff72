// xmixup playground: a dependency-free page over the service's own HTTP API.
// Everything user- or server-provided is inserted with textContent, never as HTML.
"use strict";

(function () {
  const SAMPLES = window.XMIXUP_SAMPLES || { classify: [], tag: [], qa: [] };
  const $ = (id) => document.getElementById(id);
  const state = { task: "classify", models: [], lastRequest: null, busy: false };
  const KEY_STORE = "xmixup.apiKey";

  // ---------------------------------------------------------------------------------------
  // small helpers
  // ---------------------------------------------------------------------------------------
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null) continue;
      if (k === "class") node.className = v;
      else if (k === "style") node.setAttribute("style", v);
      else if (k.startsWith("data-") || k === "title" || k === "dir" || k === "role") node.setAttribute(k, v);
      else node[k] = v;
    }
    for (const c of children) {
      if (c === null || c === undefined) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }

  function url(path) {
    // Relative to the page, so the playground also works behind a path prefix.
    return new URL(path, document.baseURI).toString();
  }

  function headers(json) {
    const h = {};
    if (json) h["Content-Type"] = "application/json";
    const key = $("apikey").value.trim();
    if (key) h["Authorization"] = "Bearer " + key;
    return h;
  }

  function pct(x) {
    const v = 100 * x;
    return (Math.abs(v - Math.round(v)) < 0.05 ? Math.round(v).toFixed(0) : v.toFixed(1)) + "%";
  }

  // Stable colour per label (tags, entity types): hue from a string hash.
  function hue(label) {
    let h = 0;
    for (const ch of String(label)) h = (h * 31 + ch.codePointAt(0)) >>> 0;
    return h % 360;
  }

  // Server offsets count Unicode code points (Python str indices); JS strings count UTF-16
  // units. Slice by code points so emoji and rare CJK characters highlight correctly.
  function highlight(text, spans, makeMark) {
    const chars = Array.from(text);
    const frag = document.createDocumentFragment();
    const sorted = spans.slice().sort((a, b) => a.start - b.start || b.end - a.end);
    let pos = 0;
    for (const span of sorted) {
      const start = Math.max(span.start, pos);
      const end = Math.min(span.end, chars.length);
      if (end <= start) continue; // overlapping or out of range: skip, never garble the text
      if (start > pos) frag.append(chars.slice(pos, start).join(""));
      frag.append(makeMark(span, chars.slice(start, end).join("")));
      pos = end;
    }
    if (pos < chars.length) frag.append(chars.slice(pos).join(""));
    return frag;
  }

  // ---------------------------------------------------------------------------------------
  // server status, models
  // ---------------------------------------------------------------------------------------
  async function checkReady() {
    const pill = $("status");
    try {
      const r = await fetch(url("readyz"), { headers: headers(false) });
      pill.textContent = r.ok ? "ready" : "not ready (" + r.status + ")";
      pill.className = "pill " + (r.ok ? "pill-ok" : "pill-bad");
    } catch (e) {
      pill.textContent = "server unreachable";
      pill.className = "pill pill-bad";
    }
  }

  async function loadModels() {
    const info = $("model-info");
    try {
      const r = await fetch(url("v1/models"), { headers: headers(false) });
      if (r.status === 401) {
        state.models = [];
        needKey(true);
        info.textContent = "This server needs an API key: enter it above to list its models.";
        renderModelPicker();
        return;
      }
      if (r.status === 503) {
        // Still loading or warming up: try again shortly.
        info.textContent = "The server is starting; models will appear in a moment…";
        setTimeout(() => { loadModels(); checkReady(); }, 1000);
        return;
      }
      const body = await r.json();
      state.models = Array.isArray(body.data) ? body.data : [];
    } catch (e) {
      state.models = [];
      info.textContent = "Could not list models (GET /v1/models): " + e.message;
    }
    renderModelPicker();
  }

  function modelsForTask() {
    return state.models.filter((m) => m.task === state.task);
  }

  function currentModel() {
    const name = $("model").value;
    return modelsForTask().find((m) => m.name === name) || null;
  }

  function renderModelPicker() {
    const select = $("model");
    const models = modelsForTask();
    select.replaceChildren();
    for (const m of models) {
      select.append(el("option", { value: m.name }, m.name + (m.default ? " (default)" : "")));
    }
    const def = models.find((m) => m.default);
    if (def) select.value = def.name;
    select.disabled = models.length === 0;
    if (models.length === 0 && state.models.length > 0) {
      select.append(el("option", { value: "" }, "no " + state.task + " model loaded"));
    }
    renderModelInfo();
  }

  function renderModelInfo() {
    const info = $("model-info");
    const m = currentModel();
    if (!m) {
      if (state.models.length > 0) info.textContent = "The server has no model for this task.";
      return;
    }
    const man = m.manifest || {};
    const parts = [];
    if (man.method) parts.push("method " + man.method);
    if (man.mixup_layer !== undefined) parts.push("mixup layer " + man.mixup_layer);
    if (man.lambda0 !== undefined) parts.push("λ0 " + man.lambda0);
    if (m.provider) parts.push(m.provider.replace("ExecutionProvider", ""));
    if (m.labels && m.labels.length) {
      const shown = m.labels.slice(0, 8).join(", ");
      parts.push(m.labels.length + " labels: " + shown + (m.labels.length > 8 ? ", …" : ""));
    }
    if (m.ready === false) parts.push("NOT READY");
    info.textContent = parts.join(" · ");
    renderModelCard(m);
  }

  // The card is Markdown from GET /v1/models/{name}/card (model routes may need the key, so it
  // is fetched, not linked); shown as text, loaded when first opened.
  function renderModelCard(m) {
    const box = $("model-card");
    const text = $("model-card-text");
    box.hidden = !m || !m.card;
    box.open = false;
    box.dataset.url = m && m.card ? m.card : "";
    text.textContent = "";
  }

  async function loadModelCard() {
    const box = $("model-card");
    const text = $("model-card-text");
    if (!box.open || !box.dataset.url || text.textContent) return;
    text.textContent = "loading…";
    try {
      const r = await fetch(url(box.dataset.url.replace(/^\//, "")), { headers: headers(false) });
      text.textContent = r.ok ? await r.text() : "Could not load the model card (" + r.status + ")";
    } catch (e) {
      text.textContent = "Could not load the model card: " + e.message;
    }
  }

  function needKey(on) {
    $("apikey-box").classList.toggle("attention", on);
  }

  // ---------------------------------------------------------------------------------------
  // tabs and samples
  // ---------------------------------------------------------------------------------------
  function setTask(task) {
    state.task = task;
    for (const b of document.querySelectorAll(".tabs button")) {
      b.setAttribute("aria-selected", String(b.dataset.task === task));
    }
    for (const f of document.querySelectorAll("[data-for]")) {
      f.hidden = !f.dataset.for.split(" ").includes(task);
    }
    const select = $("sample");
    select.replaceChildren(el("option", { value: "" }, "— your own text —"));
    (SAMPLES[task] || []).forEach((s, i) => {
      const first = s.target || s.question;
      const short = first.length > 48 ? first.slice(0, 46) + "…" : first;
      select.append(el("option", { value: String(i) }, s.name + ": " + short));
    });
    select.value = SAMPLES[task] && SAMPLES[task].length ? "0" : "";
    applySample();
    renderModelPicker();
    clearOutput();
  }

  function applySample() {
    const s = (SAMPLES[state.task] || [])[Number($("sample").value)];
    const gold = $("gold");
    if ($("sample").value === "" || !s) {
      gold.textContent = "";
      return;
    }
    if (state.task === "qa") {
      for (const k of ["question", "context", "source_question", "source_context"]) $(k).value = s[k] || "";
    } else {
      $("target").value = s.target || "";
      $("source").value = s.source || "";
      $("presplit").checked = Boolean(s.presplit);
    }
    gold.textContent = s.gold ? "reference: " + s.gold : "";
  }

  function markCustom() {
    $("sample").value = "";
    $("gold").textContent = "";
  }

  // ---------------------------------------------------------------------------------------
  // requests
  // ---------------------------------------------------------------------------------------
  function buildRequest() {
    const body = { inputs: [] };
    const val = (id) => $(id).value.trim();
    if (state.task === "qa") {
      const item = { question: val("question"), context: $("context").value };
      if (val("source_question") || val("source_context")) {
        item.source_question = val("source_question");
        item.source_context = $("source_context").value;
      }
      body.inputs.push(item);
      const k = Number($("top_k").value);
      if (Number.isFinite(k) && k >= 1) body.top_k = Math.floor(k);
    } else if (state.task === "tag" && $("presplit").checked) {
      const split = (s) => s.split(/\s+/).filter(Boolean);
      const item = { target: split($("target").value) };
      if (val("source")) item.source = split($("source").value);
      body.inputs.push(item);
    } else {
      const item = { target: $("target").value };
      if (val("source")) item.source = $("source").value;
      body.inputs.push(item);
    }
    const model = $("model").value;
    if (model) body.model = model;
    return { path: state.task, body };
  }

  async function run() {
    if (state.busy) return;
    const req = buildRequest();
    state.lastRequest = req;
    state.busy = true;
    $("run").disabled = true;
    $("run").classList.add("busy");
    const t0 = performance.now();
    let response;
    let text;
    try {
      response = await fetch(url(req.path), {
        method: "POST",
        headers: headers(true),
        body: JSON.stringify(req.body),
      });
      text = await response.text();
    } catch (e) {
      showError({ title: "Could not reach the server", detail: e.message }, null);
      return;
    } finally {
      state.busy = false;
      $("run").disabled = false;
      $("run").classList.remove("busy");
    }
    const rtt = performance.now() - t0;
    let body = null;
    try {
      body = JSON.parse(text);
    } catch (e) {
      body = null;
    }
    if (!response.ok) {
      if (response.status === 401) needKey(true);
      showError(body && typeof body === "object" ? body : { detail: text }, response);
      return;
    }
    needKey(false);
    if (!body || !Array.isArray(body.results) || !body.results.length) {
      showError({ title: "Unexpected response", detail: text.slice(0, 500) }, response);
      return;
    }
    showResult(req, body, response, rtt);
  }

  function curlCommand(req) {
    const q = (s) => "'" + s.replace(/'/g, "'\\''") + "'";
    const parts = ["curl -s " + q(url(req.path))];
    parts.push("-H 'Content-Type: application/json'");
    if ($("apikey").value.trim()) parts.push("-H 'Authorization: Bearer $XMIXUP_API_KEY'");
    parts.push("-d " + q(JSON.stringify(req.body)));
    return parts.join(" \\\n  ");
  }

  async function copyCurl() {
    const cmd = curlCommand(buildRequest());
    const button = $("copy-curl");
    try {
      await navigator.clipboard.writeText(cmd);
      button.textContent = "Copied";
    } catch (e) {
      window.prompt("Copy the request:", cmd);
    }
    setTimeout(() => (button.textContent = "Copy as curl"), 1500);
  }

  // ---------------------------------------------------------------------------------------
  // rendering
  // ---------------------------------------------------------------------------------------
  function clearOutput() {
    $("placeholder").hidden = false;
    $("error").hidden = true;
    $("result").hidden = true;
  }

  function showError(problem, response) {
    $("placeholder").hidden = true;
    $("result").hidden = true;
    const box = $("error");
    box.replaceChildren();
    const status = problem.status || (response ? response.status : "");
    const title = problem.title || (response ? response.statusText : "") || "Error";
    box.append(el("div", { class: "problem-title" }, (status ? status + " · " : "") + title));
    if (problem.detail) box.append(el("p", { class: "problem-detail" }, problem.detail));
    if (Array.isArray(problem.errors) && problem.errors.length) {
      const list = el("ul", { class: "problem-errors" });
      for (const e of problem.errors) {
        list.append(el("li", {}, el("code", {}, e.loc || "?"), " ", e.msg || ""));
      }
      box.append(list);
    }
    const hints = {
      401: "This server needs an API key: enter it in the API key field at the top.",
      404: "Unknown model or route: pick a model from the list (GET /v1/models).",
      413: "The request is too large for this server's limits (XMIXUP_MAX_* settings).",
      429: "The server's queue is full; retry in a moment.",
      503: "The server is starting or draining; retry in a moment.",
      504: "The request ran past the server's deadline.",
    };
    const s = Number(status);
    if (hints[s]) box.append(el("p", { class: "problem-hint" }, hints[s]));
    const retry = response && response.headers.get("Retry-After");
    if (retry) box.append(el("p", { class: "muted small" }, "Retry-After: " + retry + " s"));
    if (problem.request_id) box.append(el("p", { class: "muted small" }, "request id " + problem.request_id));
    box.hidden = false;
  }

  function showResult(req, body, response, rtt) {
    const res = body.results[0];
    const out = $("result-body");
    out.replaceChildren();
    if (req.path === "classify") out.append(renderClassify(res));
    else if (req.path === "tag") out.append(renderTag(req, res));
    else out.append(renderQA(req, res));
    if (res.truncated) {
      out.append(el("p", { class: "warn small" }, "The input was longer than the model's max length and was truncated."));
    }
    renderLambda(res, body.model);
    $("source-used").textContent = res.source_used ? "yes" : "no";
    $("source-used").className = res.source_used ? "yes" : "no";
    $("served-model").textContent = body.model;
    $("rtt").textContent = rtt.toFixed(0) + " ms";
    renderTimings(response);
    $("raw").textContent = JSON.stringify(body, null, 2);
    $("placeholder").hidden = true;
    $("error").hidden = true;
    $("result").hidden = false;
  }

  function renderClassify(res) {
    const wrap = el("div", { class: "classify", id: "classify-result" });
    const top = res.scores && res.scores[res.label];
    wrap.append(
      el("div", { class: "verdict" },
        el("span", { class: "muted small" }, "label"),
        el("span", { class: "label-big", id: "label", "data-label": res.label }, res.label),
        top !== undefined ? el("span", { class: "muted" }, pct(top)) : null)
    );
    const bars = el("div", { class: "bars" });
    const entries = Object.entries(res.scores || {}).sort((a, b) => b[1] - a[1]);
    for (const [label, p] of entries) {
      bars.append(
        el("div", { class: "bar-row" + (label === res.label ? " winner" : ""), "data-label": label, "data-score": String(p) },
          el("span", { class: "bar-label", title: label }, label),
          el("span", { class: "bar-track" }, el("span", { class: "bar-fill", style: "width:" + (100 * p).toFixed(2) + "%" })),
          el("span", { class: "bar-value" }, pct(p)))
      );
    }
    wrap.append(bars);
    return wrap;
  }

  function renderTag(req, res) {
    const wrap = el("div", { class: "tagging", id: "tag-result" });
    const target = req.body.inputs[0].target;
    // For pre-split input the offsets index the tokens joined by single spaces.
    const text = Array.isArray(target) ? target.join(" ") : target;
    const entities = res.entities || [];
    if (entities.length) {
      wrap.append(el("h3", {}, "Entities"));
      const p = el("p", { class: "hl-text", dir: "auto", id: "entity-text" });
      p.append(
        highlight(text, entities, (e, s) => {
          const h = hue(e.label);
          return el("mark", {
            class: "entity", "data-label": e.label, "data-start": String(e.start), "data-end": String(e.end),
            title: e.label + " · " + pct(e.score), style: "--h:" + h,
          }, s, el("span", { class: "badge" }, e.label));
        })
      );
      wrap.append(p);
    }
    wrap.append(el("h3", {}, "Tags"));
    const line = el("div", { class: "tokens", dir: "auto", id: "token-line" });
    for (const t of res.tokens || []) {
      const tag = t.tag === null || t.tag === undefined ? "—" : t.tag;
      line.append(
        el("span", {
          class: "token", "data-tag": tag, "data-start": String(t.start), "data-end": String(t.end),
          title: t.score === null || t.score === undefined ? "cut off by truncation" : tag + " · " + pct(t.score),
          style: "--h:" + hue(tag.replace(/^[BI]-/, "")),
        }, el("span", { class: "tok-text" }, t.text), el("span", { class: "tok-tag" }, tag))
      );
    }
    wrap.append(line);
    if (!entities.length && (res.tokens || []).some((t) => /^[BI]-/.test(t.tag || ""))) {
      wrap.append(el("p", { class: "muted small" }, "No entity spans in this text."));
    }
    return wrap;
  }

  function renderQA(req, res) {
    const wrap = el("div", { class: "qa", id: "qa-result" });
    const answers = res.answers || [];
    const best = answers[0];
    if (!best) {
      wrap.append(el("p", { class: "muted" }, "No answer found in the context."));
      return wrap;
    }
    wrap.append(
      el("div", { class: "verdict" },
        el("span", { class: "muted small" }, "answer"),
        el("span", { class: "label-big", id: "answer", dir: "auto" }, best.text),
        el("span", { class: "muted" }, pct(best.score)))
    );
    const context = req.body.inputs[0].context;
    const p = el("p", { class: "hl-text", dir: "auto", id: "answer-context" });
    p.append(
      highlight(context, [best], (a, s) =>
        el("mark", { class: "answer", "data-start": String(a.start), "data-end": String(a.end) }, s))
    );
    wrap.append(p);
    if (answers.length > 1) {
      const list = el("ol", { class: "alternatives" });
      for (const a of answers) {
        list.append(el("li", {}, el("span", { dir: "auto" }, a.text), el("span", { class: "muted" }, " " + pct(a.score))));
      }
      wrap.append(el("h3", {}, "Top answers"), list);
    }
    return wrap;
  }

  function renderLambda(res, modelName) {
    const model = state.models.find((m) => m.name === modelName);
    const lambda0 = model && model.manifest && typeof model.manifest.lambda0 === "number" ? model.manifest.lambda0 : null;
    const lam = Number(res.mixup_ratio) || 0;
    const box = $("lambda");
    box.dataset.lambda = String(lam);
    $("lambda-pct").textContent = pct(lam) + "  (λ = " + lam.toFixed(3) + ")";
    $("lambda-fill").style.width = Math.min(100, 100 * lam).toFixed(2) + "%";
    const cap = $("lambda-cap");
    cap.hidden = lambda0 === null;
    if (lambda0 !== null) cap.style.left = (100 * lambda0).toFixed(2) + "%";
    let note;
    if (!res.source_used) {
      note = "No translation was used: the model read your text against itself, so λ only reflects how it mixes a text with itself. Add the English translation to see cross-lingual mixing.";
      box.classList.add("dim");
    } else {
      box.classList.remove("dim");
      const share = pct(lam);
      const ceiling = lambda0 !== null ? " (this model's ceiling λ0 is " + pct(lambda0) + ")" : "";
      // Measured on every task: λ barely moves between a clean and a badly degraded
      // translation, so it must not be read as the translation's quality (translation_trust is).
      note = share + " of the representation at the mixup layer came from the English translation" + ceiling + ". λ hardly changes with the translation's quality; see the trust line below for that.";
    }
    $("lambda-note").textContent = note;
    renderTrust(res);
  }

  // translation_trust: P(the translation is faithful), from the model's trust head; null
  // without a translation or for models without the head.
  function renderTrust(res) {
    const t = res.translation_trust;
    const has = typeof t === "number";
    $("trust").dataset.trust = has ? String(t) : "";
    $("trust-value").textContent = has ? pct(t) : "n/a";
    let note;
    if (!has) note = res.source_used ? "(this model has no trust head)" : "(no translation given)";
    else if (t >= 0.5) note = "— the translation looks faithful (calibrated on the training data's noise model; not a quality score for your text).";
    else note = "— the translation looks degraded or unrelated (calibrated on the training data's noise model; not a quality score for your text).";
    $("trust-note").textContent = note;
  }

  function renderTimings(response) {
    const dl = $("timings");
    dl.replaceChildren();
    const add = (k, v) => dl.append(el("div", {}, el("dt", {}, k), el("dd", {}, v)));
    const st = response.headers.get("Server-Timing");
    if (st) {
      for (const part of st.split(",")) {
        const name = part.split(";")[0].trim();
        const dur = /dur=([\d.]+)/.exec(part);
        const desc = /desc="?([^";]+)"?/.exec(part);
        if (name) add(desc ? desc[1] : name, dur ? Number(dur[1]).toFixed(1) + " ms" : "—");
      }
    }
    // The service's x-<stage>-time headers are milliseconds (tokenization, queue, inference,
    // total), in pipeline order; other timing-like headers are shown as they come.
    const order = ["tokenization", "queue", "inference", "total"];
    const found = [];
    response.headers.forEach((value, name) => {
      const n = name.toLowerCase();
      const m = /^x-(.+)-time$/.exec(n);
      if (m && Number.isFinite(Number(value))) found.push([m[1], Number(value).toFixed(1) + " ms"]);
      else if (n !== "server-timing" && /(timing|latency|duration|elapsed)/.test(n)) found.push([n, value]);
    });
    const rank = (k) => (order.includes(k) ? order.indexOf(k) : order.length);
    found.sort((a, b) => rank(a[0]) - rank(b[0]));
    for (const [k, v] of found) add(k, v);
    const rid = response.headers.get("x-request-id");
    if (rid) add("request id", rid.length > 12 ? rid.slice(0, 12) + "…" : rid);
    dl.hidden = dl.childElementCount === 0;
  }

  // ---------------------------------------------------------------------------------------
  // wiring
  // ---------------------------------------------------------------------------------------
  function init() {
    for (const b of document.querySelectorAll(".tabs button")) {
      b.addEventListener("click", () => setTask(b.dataset.task));
    }
    $("sample").addEventListener("change", () => {
      applySample();
      clearOutput();
    });
    for (const id of ["target", "source", "question", "context", "source_question", "source_context"]) {
      $(id).addEventListener("input", markCustom);
    }
    $("model").addEventListener("change", renderModelInfo);
    $("model-card").addEventListener("toggle", loadModelCard);
    $("run").addEventListener("click", run);
    $("copy-curl").addEventListener("click", copyCurl);
    document.addEventListener("keydown", (e) => {
      if ((e.ctrlKey || e.metaKey) && e.key === "Enter") run();
    });
    const key = $("apikey");
    try {
      key.value = sessionStorage.getItem(KEY_STORE) || "";
    } catch (e) { /* storage disabled */ }
    let lastKey = key.value;
    const keyChanged = (e) => {
      if (e) e.preventDefault();
      if (key.value === lastKey) return;
      lastKey = key.value;
      try {
        sessionStorage.setItem(KEY_STORE, key.value.trim());
      } catch (err) { /* storage disabled */ }
      needKey(false);
      loadModels();
      checkReady();
    };
    key.addEventListener("change", keyChanged);
    $("apikey-box").addEventListener("submit", keyChanged);
    const initial = (location.hash || "").replace("#", "");
    setTask(["classify", "tag", "qa"].includes(initial) ? initial : "classify");
    checkReady();
    loadModels();
  }

  init();
})();
