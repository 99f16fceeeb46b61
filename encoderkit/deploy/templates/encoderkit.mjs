// encoderkit.mjs: run an encoderkit web bundle in the browser (onnxruntime-web, wasm execution
// provider; @huggingface/tokenizers reading the bundle's tokenizer.json). Nothing is fetched from
// outside the bundle's folder.
//
//   import * as ek from "./encoderkit.mjs";
//   await ek.load(baseUrl);                 // the bundle folder's URL (default: this module's)
//   await ek.embed(["a text", "another"]);  // as `encoderkit embed --json`: one vector per text
//   await ek.fillMask("Paris is the <mask> of France.", 5)  // as `encoderkit fill-mask --json`
//   await ek.classify(["a text"], 1);       // as `encoderkit classify --json`
//   await ek.selfTest();                    // {passed, lines, failure} on the probes in bundle.json
//
// load() fetches every file bundle.json lists and checks its size and sha256 (SubtleCrypto) before
// any session exists; a changed file rejects with an EncoderkitError naming it. The JS and wasm it
// then runs are those verified bytes (blob URLs, env.wasm.wasmBinary), not a second fetch. Bad
// input (not a string, empty, lone surrogates, too long without truncate) rejects with an
// EncoderkitError of one line, as `encoderkit ... ` prints `error: ...`.

const POLICY_MAX_TOKENS = 1024; // tokens per batch (texts sorted by length), as run.py

export class EncoderkitError extends Error {
  constructor(message) {
    super(message);
    this.name = "EncoderkitError";
  }
}

const hex = (buf) => Array.from(new Uint8Array(buf), (b) => b.toString(16).padStart(2, "0")).join("");

async function fetchBytes(url, rel) {
  let res;
  try {
    res = await fetch(url, { cache: "no-cache" });
  } catch (e) {
    throw new EncoderkitError(`${rel}: cannot be fetched (${e.message}); serve the bundle over http(s)`);
  }
  if (!res.ok) throw new EncoderkitError(`${rel}: listed in bundle.json but missing (HTTP ${res.status})`);
  return new Uint8Array(await res.arrayBuffer());
}

async function verified(base, rel, meta) {
  const bytes = await fetchBytes(new URL(rel, base), rel);
  if (bytes.byteLength !== meta.bytes || hex(await crypto.subtle.digest("SHA-256", bytes)) !== meta.sha256) {
    throw new EncoderkitError(`${rel}: sha256 differs from bundle.json (corrupted or edited); refusing to load it`);
  }
  return bytes;
}

const blobUrl = (bytes, type) => URL.createObjectURL(new Blob([bytes], { type }));

// One onnxruntime-web instance per page (its wasm heap and thread pool are global); keyed by the
// sha256 of the files, so bundles built with the same runtime share it.
let ortInstance = null;

async function importOrt(bytes, info, numThreads) {
  const key = [info.web.vendor.ort, info.web.vendor.ort_glue, info.web.vendor.ort_wasm]
    .map((rel) => info.files[rel].sha256).join(":");
  if (ortInstance && ortInstance.key === key) return ortInstance;
  const ort = await import(blobUrl(bytes[info.web.vendor.ort], "text/javascript"));
  ort.env.wasm.wasmPaths = { mjs: blobUrl(bytes[info.web.vendor.ort_glue], "text/javascript") };
  ort.env.wasm.wasmBinary = bytes[info.web.vendor.ort_wasm];
  ort.env.wasm.numThreads = numThreads;
  ort.env.wasm.proxy = false;
  ort.env.logLevel = "error";
  ortInstance = { key, ort, numThreads };
  return ortInstance;
}

// Lone surrogates cannot be encoded as UTF-8 (Python's tokenizers refuse them): they come from
// undecodable input, never from text.
const LONE_SURROGATE = /\p{Surrogate}/u;

function checkTexts(texts) {
  if (typeof texts === "string") texts = [texts];
  if (!Array.isArray(texts)) throw new EncoderkitError(`texts must be a string or an array of strings, not ${typeof texts}`);
  if (!texts.length) throw new EncoderkitError("no texts given");
  texts.forEach((t, i) => {
    if (typeof t !== "string") throw new EncoderkitError(`texts[${i}] is ${t === null ? "null" : typeof t}, expected a string`);
    if (!t.trim()) throw new EncoderkitError(`texts[${i}] is empty`);
    if (LONE_SURROGATE.test(t)) {
      throw new EncoderkitError(`texts[${i}] is not valid Unicode (lone surrogates: undecodable bytes?); pass UTF-8 text`);
    }
  });
  return texts;
}

// The same input policy as encoderkit and run.py: specials added; over-long texts refused unless
// truncation is asked for, which keeps the specials and cuts the text's tokens at the end (what
// the `tokenizers` library's truncation does for one sequence).
class TextTokenizer {
  constructor(tok, maxLength, json) {
    this.tok = tok;
    this.maxLength = maxLength;
    this.sigma = lowercases(json.normalizer);
  }

  encodeOne(text, truncate, i) {
    // JS toLowerCase applies Unicode's Final_Sigma rule (a word-final Σ becomes ς); Python's
    // tokenizers lowercases each character alone (always σ). Measured: "ΣΊΣΥΦΟΣ" gave other ids
    // on an uncased WordPiece. Lowercasing Σ first gives both libraries the same σ.
    if (this.sigma) text = text.replaceAll("\u03a3", "\u03c3");
    const ids = this.tok.encode(text, { add_special_tokens: true }).ids;
    if (ids.length <= this.maxLength) return ids;
    if (!truncate) {
      throw new EncoderkitError(`texts[${i}] has ${ids.length} tokens, more than the bundle's ${this.maxLength}; shorten it or pass truncate`);
    }
    const plain = this.tok.encode(text, { add_special_tokens: false }).ids;
    const extra = ids.length - plain.length;
    let p = 0; // where the plain tokens start inside the full encoding
    while (p <= extra && !plain.every((t, j) => ids[p + j] === t)) p++;
    return [...ids.slice(0, p), ...plain.slice(0, this.maxLength - extra), ...ids.slice(p + plain.length)];
  }

  encode(texts, truncate = false) {
    return checkTexts(texts).map((t, i) => {
      try {
        return this.encodeOne(t, truncate, i).map(Number);
      } catch (e) {
        if (e instanceof EncoderkitError) throw e;
        throw new EncoderkitError(`texts[${i}] cannot be tokenized (${e.message})`);
      }
    });
  }

  decode(ids, skipSpecial = true) {
    return this.tok.decode(ids.map(Number), { skip_special_tokens: skipSpecial, clean_up_tokenization_spaces: false });
  }
}

// Whether a tokenizer.json normalizer lowercases (BertNormalizer lowercase, Lowercase, in a Sequence).
function lowercases(n) {
  if (!n) return false;
  if (n.type === "Sequence") return (n.normalizers || []).some(lowercases);
  return n.type === "Lowercase" || (n.type === "BertNormalizer" && n.lowercase !== false);
}

function checkTopK(topK, what = "topK") {
  if (topK !== null && !(Number.isInteger(topK) && topK >= 1)) {
    throw new EncoderkitError(`${what} must be a positive integer, got ${JSON.stringify(topK)}`);
  }
}

export class Model {
  // Use load(): it checks the files first.
  constructor(base, info, ort, tokenizer, sessions, facts) {
    Object.assign(this, { base, info, ort, tokenizer, facts }, sessions);
    this.queue = Promise.resolve(); // one session.run at a time: onnxruntime-web runs one inference per session
  }

  serial(fn) {
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => {});
    return run;
  }

  // Texts sorted by length into padded batches of at most POLICY_MAX_TOKENS tokens.
  *batches(ids) {
    const order = ids.map((_, i) => i).sort((a, b) => ids[a].length - ids[b].length || a - b);
    const budget = this.info.web.max_tokens_per_batch || POLICY_MAX_TOKENS;
    let batch = [];
    for (const i of order) {
      if (batch.length && (batch.length + 1) * ids[i].length > budget) {
        yield batch;
        batch = [];
      }
      batch.push(i);
    }
    if (batch.length) yield batch;
  }

  feeds(seqs) {
    const T = this.ort.Tensor;
    const n = Math.max(...seqs.map((x) => x.length));
    const inputIds = new BigInt64Array(seqs.length * n).fill(BigInt(this.info.pad_token_id));
    const mask = new BigInt64Array(seqs.length * n);
    seqs.forEach((x, i) => x.forEach((t, j) => {
      inputIds[i * n + j] = BigInt(t);
      mask[i * n + j] = 1n;
    }));
    const feeds = { input_ids: new T("int64", inputIds, [seqs.length, n]),
                    attention_mask: new T("int64", mask, [seqs.length, n]) };
    if (this.encoder.inputNames.includes("token_type_ids")) { // BERT-family graphs; single texts: all 0
      feeds.token_type_ids = new T("int64", new BigInt64Array(seqs.length * n), [seqs.length, n]);
    }
    return { feeds, n };
  }

  async encode(seqs, output) {
    const { feeds, n } = this.feeds(seqs);
    const out = await this.encoder.run(feeds, [output]);
    for (const t of Object.values(feeds)) t.dispose?.();
    return { data: out[output].data, n };
  }

  async tokenize(texts, { truncate = false } = {}) {
    return this.tokenizer.encode(texts, truncate);
  }

  // One embedding per text: the graph's sentence_embedding (pooling and normalisation in the graph).
  async embed(texts, { truncate = false } = {}) {
    const ids = this.tokenizer.encode(texts, truncate);
    return this.serial(async () => {
      const H = this.info.model.hidden_size;
      const out = new Array(ids.length);
      for (const batch of this.batches(ids)) {
        const { data } = await this.encode(batch.map((i) => ids[i]), "sentence_embedding");
        batch.forEach((i, r) => { out[i] = Array.from(data.subarray(r * H, (r + 1) * H)); });
      }
      return out;
    });
  }

  // Per text, per mask, the topK {token, token_str, score, sequence}: the MLM head runs on the
  // hidden rows of the mask positions only.
  async fillMask(texts, topK = 5, { truncate = false } = {}) {
    if (!this.head) throw new EncoderkitError("this bundle has no masked-LM head (package it with --tasks fill-mask from a *ForMaskedLM model)");
    checkTopK(topK);
    const maskId = this.info.mask_token_id, pad = this.info.pad_token_id;
    const ids = this.tokenizer.encode(texts, truncate);
    ids.forEach((seq, i) => {
      if (!seq.includes(maskId)) {
        throw new EncoderkitError(`texts[${i}]: the mask token ${this.info.mask_token} is missing; write ${this.info.mask_token} where a word should be predicted`);
      }
    });
    return this.serial(async () => {
      const results = ids.map(() => []);
      for (const batch of this.batches(ids)) {
        for (const { text, pos, probs } of await this.maskProbs(batch.map((i) => ids[i]))) {
          const i = batch[text], seq = ids[i];
          const single = seq.filter((t) => t === maskId).length === 1;
          const k = Math.min(topK, probs.length);
          results[i].push(topIndices(probs, k).map((j) => {
            const filled = seq.map((t, q) => (q === pos ? j : t)).filter((t) => t !== pad);
            return { token: j, token_str: this.tokenizer.decode([j], false), score: probs[j],
                     sequence: this.tokenizer.decode(filled, single) };
          }));
        }
      }
      return results;
    });
  }

  // [{text, pos, probs}] for every mask of the padded batch `seqs`, in order of appearance.
  async maskProbs(seqs) {
    const H = this.info.model.hidden_size, maskId = this.info.mask_token_id;
    const { data, n } = await this.encode(seqs, "last_hidden_state");
    const where = [];
    seqs.forEach((seq, b) => seq.forEach((t, pos) => { if (t === maskId) where.push({ text: b, pos }); }));
    const rows = new Float32Array(where.length * H);
    where.forEach(({ text, pos }, r) => rows.set(data.subarray((text * n + pos) * H, (text * n + pos + 1) * H), r * H));
    const hidden = new this.ort.Tensor("float32", rows, [where.length, H]);
    const logits = (await this.head.run({ hidden })).logits.data;
    const V = logits.length / where.length;
    return where.map((w, r) => ({ ...w, probs: softmax32(logits.subarray(r * V, (r + 1) * V)) }));
  }

  // Scores of every label per text (softmax over the labels; sigmoid for one label): the
  // classification head on each text's first ([CLS] / <s>) hidden row.
  async classScores(texts, { truncate = false } = {}) {
    if (!this.classifier) throw new EncoderkitError("this bundle has no classification head (package a model fine-tuned for classification with --tasks classify)");
    const ids = this.tokenizer.encode(texts, truncate);
    return this.serial(async () => {
      const H = this.info.model.hidden_size;
      const out = new Array(ids.length);
      for (const batch of this.batches(ids)) {
        const { data, n } = await this.encode(batch.map((i) => ids[i]), "last_hidden_state");
        const rows = new Float32Array(batch.length * H);
        batch.forEach((_, r) => rows.set(data.subarray(r * n * H, (r * n + 1) * H), r * H));
        const logits = (await this.classifier.run({ hidden: new this.ort.Tensor("float32", rows, [batch.length, H]) })).logits.data;
        const L = logits.length / batch.length;
        batch.forEach((i, r) => { out[i] = scores(Array.from(logits.subarray(r * L, (r + 1) * L))); });
      }
      return out;
    });
  }

  // As `encoderkit classify --json` (transformers' text-classification pipeline): per text the
  // topK {label, score}, best first; topK null: every label.
  async classify(texts, topK = 1, { truncate = false } = {}) {
    checkTopK(topK);
    const labels = this.info.model.labels;
    return (await this.classScores(texts, { truncate })).map((row) =>
      labels.map((_, j) => j).sort((a, b) => row[b] - row[a] || a - b).slice(0, topK ?? labels.length)
        .map((j) => ({ label: labels[j], score: row[j] })));
  }

  // The bundle's probes (torch reference outputs stored at package time) against this page.
  async selfTest() {
    const t0 = performance.now();
    const lines = [];
    try {
      lines.push(...await this.runProbes());
    } catch (e) {
      return { passed: false, lines, failure: e.message, seconds: (performance.now() - t0) / 1000 };
    }
    return { passed: true, lines, failure: null, seconds: (performance.now() - t0) / 1000 };
  }

  async runProbes() {
    const probes = this.info.probes, tol = probes.tolerance, lines = [];
    const all = [...probes.embed, ...(probes.fill_mask || [])];
    for (const p of all) {
      const [got] = this.tokenizer.encode([p.text], p.truncate);
      if (got.length !== p.ids.length || got.some((t, j) => t !== p.ids[j])) {
        throw new Error(`token ids differ from encoderkit's for ${JSON.stringify(p.text.slice(0, 40))}: ${got.slice(0, 12)} vs ${p.ids.slice(0, 12)}`);
      }
    }
    lines.push(`token ids: identical on ${all.length} probes`);
    let worst = 0, cos = 1;
    for (const p of probes.embed) {
      const [e] = await this.embed([p.text], { truncate: p.truncate });
      let dot = 0, ne = 0, nr = 0;
      e.forEach((v, k) => {
        worst = Math.max(worst, Math.abs(v - p.embedding[k]));
        dot += v * p.embedding[k]; ne += v * v; nr += p.embedding[k] ** 2;
      });
      cos = Math.min(cos, dot / Math.max(Math.sqrt(ne * nr), 1e-12));
    }
    if (tol.kind === "atol") {
      if (!(worst <= tol.atol)) throw new Error(`embed: max |diff| ${worst.toExponential(3)} > ${tol.atol} against the ${probes.reference} reference`);
      lines.push(`embed: ${probes.embed.length} probes, max |diff| ${worst.toExponential(2)} <= ${tol.atol} vs ${probes.reference}`);
    } else {
      if (!(cos >= tol.cosine)) throw new Error(`embed: min cosine ${cos.toFixed(4)} < ${tol.cosine} against the ${probes.reference} reference`);
      lines.push(`embed: ${probes.embed.length} probes, min cosine ${cos.toFixed(4)} >= ${tol.cosine} vs ${probes.reference}`);
    }
    if ((probes.fill_mask || []).length) {
      let w = 0, agree = 0, n = 0;
      for (const p of probes.fill_mask) {
        const masks = await this.serial(() => this.maskProbs([p.ids]));
        masks.forEach(({ probs }, r) => {
          const top = p.top[r];
          top.forEach((t) => { w = Math.max(w, Math.abs(probs[t.token] - t.score)); });
          agree += topIndices(probs, 1)[0] === top[0].token ? 1 : 0;
          n += 1;
        });
      }
      if (tol.kind === "atol") {
        if (!(w <= tol.atol)) throw new Error(`fill-mask: max |score diff| ${w.toExponential(3)} > ${tol.atol}`);
        lines.push(`fill-mask: ${n} masks, max |score diff| of the reference top-5 ${w.toExponential(2)} <= ${tol.atol}`);
      } else {
        if (!(agree / n >= tol.top1)) throw new Error(`fill-mask: top-1 agreement ${(agree / n).toFixed(3)} < ${tol.top1}`);
        lines.push(`fill-mask: ${n} masks, top-1 agreement ${(agree / n).toFixed(3)} >= ${tol.top1}`);
      }
    }
    if ((probes.classify || []).length) {
      let w = 0, agree = 0;
      for (const p of probes.classify) {
        const [got] = await this.classScores([p.text], { truncate: p.truncate });
        got.forEach((v, j) => { w = Math.max(w, Math.abs(v - p.scores[j])); });
        agree += topIndices(got, 1)[0] === topIndices(p.scores, 1)[0] ? 1 : 0;
      }
      const n = probes.classify.length;
      if (tol.kind === "atol") {
        if (!(w <= tol.atol)) throw new Error(`classify: max |score diff| ${w.toExponential(3)} > ${tol.atol}`);
        lines.push(`classify: ${n} probes, max |score diff| ${w.toExponential(2)} <= ${tol.atol}`);
      } else {
        if (!(agree / n >= tol.top1)) throw new Error(`classify: label agreement ${(agree / n).toFixed(3)} < ${tol.top1}`);
        lines.push(`classify: ${n} probes, label agreement ${(agree / n).toFixed(3)} >= ${tol.top1} (max |score diff| ${w.toExponential(2)})`);
      }
    }
    return lines;
  }

  async release() {
    for (const s of [this.encoder, this.head, this.classifier]) if (s) await s.release();
  }
}

// Softmax in float64, rounded to float32 as run.py's numpy float32 softmax gives.
function softmax32(logits) {
  let mx = -Infinity;
  for (const v of logits) mx = Math.max(mx, v);
  const e = Array.from(logits, (v) => Math.exp(v - mx));
  let s = 0;
  for (const v of e) s += v;
  return e.map((v) => Math.fround(v / s));
}

// transformers' text-classification scores: softmax over the labels, sigmoid for one label.
function scores(logits) {
  if (logits.length === 1) return [1 / (1 + Math.exp(-logits[0]))];
  const mx = Math.max(...logits);
  const e = logits.map((v) => Math.exp(v - mx));
  const s = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / s);
}

// Indices of the k largest values, best first (ties: lower index first); O(n k), k small.
function topIndices(values, k) {
  const top = [];
  for (let j = 0; j < values.length; j++) {
    const v = values[j];
    if (top.length === k && v <= values[top[k - 1]]) continue;
    let at = top.length;
    while (at > 0 && values[top[at - 1]] < v) at--;
    top.splice(at, 0, j);
    if (top.length > k) top.pop();
  }
  return top;
}

/**
 * Load a web bundle: bundle.json, every file checked by sha256, then the tokenizer and sessions.
 * @param {string|URL} baseUrl the bundle folder (default: the folder of this module)
 * @param {{threads?: number, onProgress?: (msg: string) => void}} options threads: wasm threads
 *   (default: the bundle's, else the browser's cores up to 4; 1 where the page is not
 *   cross-origin isolated, since threads need SharedArrayBuffer)
 * @returns {Promise<Model>} also the model the module-level functions use
 */
export async function load(baseUrl = new URL(".", import.meta.url), options = {}) {
  const say = options.onProgress || (() => {});
  const t0 = performance.now();
  let base = new URL(baseUrl, globalThis.location?.href);
  if (!base.pathname.endsWith("/")) base = new URL(base.pathname + "/", base);
  if (base.protocol === "file:") {
    throw new EncoderkitError("the bundle is opened from file://, where onnxruntime-web cannot start; serve it over http (python3 serve.py)");
  }
  if (!globalThis.crypto?.subtle) {
    throw new EncoderkitError("crypto.subtle, which checks the bundle's files, needs a secure context: serve the page over https (or http on localhost / 127.0.0.1)");
  }
  say("reading bundle.json ...");
  let info;
  try {
    info = JSON.parse(new TextDecoder().decode(await fetchBytes(new URL("bundle.json", base), "bundle.json")));
  } catch (e) {
    if (e instanceof EncoderkitError) throw e;
    throw new EncoderkitError(`bundle.json: unreadable (${e.message})`);
  }
  if (info.target !== "web" || !info.web) throw new EncoderkitError(`bundle.json: a ${info.target} bundle, not a web bundle`);
  // Every file is checked before any session exists; the ones the page runs are kept.
  const needed = new Set([...Object.values(info.web.vendor), info.tokenizer,
    ...Object.values(info.graphs).filter(Boolean), ...Object.values(info.web.external_data || {})]);
  const tokDir = info.tokenizer.includes("/") ? info.tokenizer.slice(0, info.tokenizer.lastIndexOf("/") + 1) : "";
  needed.add(tokDir + "tokenizer_config.json");
  const bytes = {};
  let total = 0;
  for (const meta of Object.values(info.files)) total += meta.bytes;
  for (const [rel, meta] of Object.entries(info.files)) {
    say(`checking ${rel} (${(meta.bytes / 1e6).toFixed(1)} MB) ...`);
    const b = await verified(base, rel, meta);
    if (needed.has(rel)) bytes[rel] = b;
  }
  const verifySeconds = (performance.now() - t0) / 1000;
  const isolated = globalThis.crossOriginIsolated === true;
  const requested = options.threads ?? info.web.threads ?? Math.max(1, Math.min(4, navigator.hardwareConcurrency || 1));
  if (!(Number.isInteger(requested) && requested >= 1)) throw new EncoderkitError(`threads must be a positive integer, got ${requested}`);
  const { ort, numThreads } = await importOrt(bytes, info, isolated ? requested : 1);
  const { Tokenizer } = await import(blobUrl(bytes[info.web.vendor.tokenizers], "text/javascript"));
  const json = (rel) => JSON.parse(new TextDecoder().decode(bytes[rel]));
  const cfgRel = tokDir + "tokenizer_config.json";
  const tokJson = json(info.tokenizer);
  const tokenizer = new TextTokenizer(new Tokenizer(tokJson, bytes[cfgRel] ? json(cfgRel) : {}), info.max_length, tokJson);
  const opts = { executionProviders: ["wasm"], graphOptimizationLevel: "all" };
  const session = async (role) => {
    const rel = info.graphs[role];
    if (!rel) return null;
    say(`creating the ${role} session ...`);
    const extra = info.web.external_data?.[role];
    const o = extra ? { ...opts, externalData: [{ path: extra.split("/").pop(), data: bytes[extra] }] } : opts;
    try {
      const s = await ort.InferenceSession.create(bytes[rel], o);
      delete bytes[rel];
      if (extra) delete bytes[extra];
      return s;
    } catch (e) {
      throw new EncoderkitError(`${rel}: onnxruntime-web cannot load it (${String(e.message || e).split("\n")[0].slice(0, 200)})`);
    }
  };
  const sessions = { encoder: await session("encoder"), head: await session("head"), classifier: await session("classifier") };
  const facts = {
    name: info.name, source: info.source, arch: info.model.arch, layers: info.model.num_layers,
    hidden_size: info.model.hidden_size, quantize: info.quantize, tasks: info.tasks, max_length: info.max_length,
    pooling: info.pooling, labels: info.model.labels, bundle_bytes: total,
    model_bytes: info.footprint?.model_bytes ?? null,
    runtime: { "onnxruntime-web": ort.env.versions?.web ?? info.web.packages["onnxruntime-web"],
               "@huggingface/tokenizers": info.web.packages["@huggingface/tokenizers"] },
    threads: { requested, used: numThreads, cross_origin_isolated: isolated },
    verify_seconds: verifySeconds, load_seconds: (performance.now() - t0) / 1000,
  };
  current = new Model(base, info, ort, tokenizer, sessions, facts);
  say(`ready in ${facts.load_seconds.toFixed(2)} s`);
  return current;
}

let current = null;

function model() {
  if (!current) throw new EncoderkitError("no bundle loaded: await load(baseUrl) first");
  return current;
}

// The module-level functions use the model load() returned last.
export const embed = async (texts, options) => model().embed(texts, options);
export const fillMask = async (texts, topK = 5, options) => model().fillMask(texts, topK, options);
export const classify = async (texts, topK = 1, options) => model().classify(texts, topK, options);
export const tokenize = async (texts, options) => model().tokenize(texts, options);
export const selfTest = async () => model().selfTest();
export const facts = () => model().facts;
