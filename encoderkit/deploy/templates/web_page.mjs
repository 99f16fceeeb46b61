// The bundle's page: load (files checked), self-test, then embed / fill-mask / classify on the
// lines typed. State for scripts and tests: <html data-ready="1|error">, data-selftest, and
// window.encoderkit (the module) / window.EK ({model, error, last}).
import * as ek from "./encoderkit.mjs";

const $ = (id) => document.getElementById(id);
const EK = { model: null, error: null, last: null };
window.encoderkit = ek;
window.EK = EK;

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined) e.textContent = text;
  if (cls) e.className = cls;
  return e;
}

function table(head, rows, cls) {
  const t = el("table", undefined, cls);
  const tr = el("tr");
  head.forEach((h) => tr.append(el("th", h)));
  t.append(tr);
  for (const row of rows) {
    const r = el("tr");
    row.forEach((c) => r.append(c instanceof Node ? c : el("td", String(c), typeof c === "number" ? "num" : "text")));
    t.append(r);
  }
  return t;
}

const fmt = (x, d = 4) => Number(x).toFixed(d);
const ms = (s) => (s < 1 ? `${(s * 1e3).toFixed(1)} ms` : `${s.toFixed(2)} s`);

function status(text, cls = "") {
  $("status").textContent = text;
  $("status").className = cls;
}

function showFacts(m) {
  const f = m.facts;
  const rows = [
    ["model", `${f.name} (${f.arch}, ${f.layers} layers, hidden ${f.hidden_size})`],
    ["source", f.source],
    ["weights", f.quantize === "none" ? "fp32" : f.quantize],
    ["tasks", f.tasks.join(", ")],
    ["pooling (in the graph)", `${f.pooling.default}${f.pooling.normalize ? ", L2-normalised" : ""}`],
    ["max length", `${f.max_length} tokens`],
    ["bundle", `${(f.bundle_bytes / 1e6).toFixed(1)} MB` + (f.model_bytes ? ` (graphs ${(f.model_bytes / 1e6).toFixed(1)} MB)` : "")],
    ["runtime", Object.entries(f.runtime).map(([k, v]) => `${k} ${v}`).join(", ")],
    ["wasm threads", `${f.threads.used} (asked ${f.threads.requested}; cross-origin isolated: ${f.threads.cross_origin_isolated ? "yes" : "no"})`],
    ["ready in", `${ms(f.load_seconds)} (files checked in ${ms(f.verify_seconds)})`],
  ];
  if (f.labels.length) rows.splice(4, 0, ["labels", f.labels.join(", ")]);
  $("facts").replaceChildren(...rows.map(([k, v]) => {
    const tr = el("tr");
    tr.append(el("th", k), el("td", v, "text"));
    return tr;
  }));
}

function cosine(a, b) {
  let d = 0, na = 0, nb = 0;
  for (let k = 0; k < a.length; k++) { d += a[k] * b[k]; na += a[k] * a[k]; nb += b[k] * b[k]; }
  return d / Math.max(Math.sqrt(na * nb), 1e-12);
}

function showEmbed(texts, emb) {
  const head = ["", ...texts.map((_, i) => `#${i + 1}`)];
  const rows = texts.map((t, i) => {
    const label = el("td", `#${i + 1} ${t}`, "text");
    return [label, ...emb.map((e) => {
      const c = cosine(emb[i], e);
      const td = el("td", fmt(c, 3), "num");
      td.style.background = `rgba(47, 91, 211, ${Math.max(0, Math.min(1, c)) * 0.55})`;
      return td;
    })];
  });
  const norms = emb.map((e) => Math.sqrt(e.reduce((s, v) => s + v * v, 0)));
  return [el("p", `Cosine similarity between the embeddings (dim ${emb[0].length}; norms ${norms.map((n) => fmt(n, 3)).join(", ")})`),
          table(head, rows, "matrix")];
}

function showFillMask(texts, res) {
  const rows = [];
  res.forEach((perMask, i) => perMask.forEach((preds, m) => preds.forEach((p, r) => {
    rows.push([r === 0 ? `#${i + 1}${perMask.length > 1 ? ` mask ${m + 1}` : ""}` : "", r + 1, JSON.stringify(p.token_str), fmt(p.score), p.sequence]);
  })));
  return [table(["text", "rank", "token", "score", "sequence"], rows.map((r) => r.map((c, k) => (k === 3 ? el("td", c, "num") : c))))];
}

function showClassify(texts, res) {
  const rows = [];
  res.forEach((preds, i) => preds.forEach((p, r) => rows.push([r === 0 ? `#${i + 1} ${texts[i]}` : "", p.label, el("td", fmt(p.score), "num")])));
  return [table(["text", "label", "score"], rows)];
}

async function run() {
  const task = $("task").value;
  const texts = $("texts").value.split("\n").filter((t) => t.trim());
  const topK = Number($("topk").value);
  const truncate = $("truncate").checked;
  $("run").disabled = true;
  const t0 = performance.now();
  try {
    let out;
    if (task === "embed") out = showEmbed(texts, EK.last = await ek.embed(texts, { truncate }));
    else if (task === "fill-mask") out = showFillMask(texts, EK.last = await ek.fillMask(texts, topK, { truncate }));
    else out = showClassify(texts, EK.last = await ek.classify(texts, topK, { truncate }));
    $("timing").textContent = `${task}: ${texts.length} text${texts.length === 1 ? "" : "s"} in ${ms((performance.now() - t0) / 1000)}`;
    $("results").replaceChildren(...out);
    status(`ready: ${EK.model.facts.name}`, "ready");
  } catch (e) {
    $("results").replaceChildren();
    $("timing").textContent = "";
    status(`error: ${e.message}`, "error"); // bad input: one line, the page stays usable
  } finally {
    $("run").disabled = false;
    document.documentElement.dataset.runs = String(Number(document.documentElement.dataset.runs || 0) + 1);
  }
}

const EXAMPLES = {
  embed: ["A man is playing a guitar.", "Someone plays an instrument.", "The stock market fell sharply today.", "東京は日本の首都です。 🍣"],
  classify: ["The striker scored twice in the second half.", "Add the garlic once the onions turn golden.", "Restart your router if the wifi keeps dropping."],
};

async function main() {
  const params = new URLSearchParams(location.search);
  try {
    const threads = params.has("threads") ? Number(params.get("threads")) : undefined;
    EK.model = await ek.load(new URL("./", import.meta.url), { threads, onProgress: (m) => status(m) });
  } catch (e) {
    EK.error = e.message;
    status(`error: ${e.message}`, "error");
    document.documentElement.dataset.ready = "error";
    return;
  }
  const m = EK.model;
  $("title").textContent = `${m.facts.name}: ${m.facts.tasks.join(", ")} in the browser`;
  for (const t of m.facts.tasks) $("task").append(new Option(t, t));
  const mask = m.info.mask_token;
  EXAMPLES["fill-mask"] = [`The capital of France is ${mask}.`, `She poured a cup of ${mask} and sat down.`];
  const example = () => { $("texts").value = (EXAMPLES[$("task").value] || EXAMPLES.embed).join("\n"); };
  $("task").addEventListener("change", () => {
    $("topk").value = $("task").value === "classify" ? Math.min(3, m.facts.labels.length) : 5;
    $("topk-label").style.visibility = $("task").value === "embed" ? "hidden" : "visible";
    example();
  });
  $("task").dispatchEvent(new Event("change"));
  $("run").addEventListener("click", run);
  showFacts(m);
  status(`ready in ${ms(m.facts.load_seconds)}: ${m.facts.name}`, "ready");
  $("run").disabled = false;
  $("selftest-run").addEventListener("click", selfTest);
  $("selftest-run").disabled = false;
  EK.ready_ms = performance.now(); // since navigation start
  document.documentElement.dataset.ready = "1";
  // The page checks itself against the bundle's probes at once when that is quick (small
  // models); a large one would hold the tab for a minute (?selftest=1 forces it, =0 skips it).
  const auto = params.get("selftest") ?? ((m.facts.model_bytes ?? 0) < AUTO_SELFTEST_BYTES ? "1" : "0");
  if (auto !== "0") await selfTest();
}

const AUTO_SELFTEST_BYTES = 300e6;

async function selfTest() {
  $("selftest-run").disabled = true;
  $("selftest").textContent = "running ...";
  const r = await ek.selfTest();
  $("selftest").textContent = r.passed ? `passed in ${ms(r.seconds)}` : `FAILED: ${r.failure}`;
  $("selftest").className = r.passed ? "passed" : "failed";
  $("selftest-lines").replaceChildren(...r.lines.map((ln) => el("li", ln)));
  document.documentElement.dataset.selftest = r.passed ? "passed" : "failed";
  $("selftest-run").disabled = false;
}

main();
