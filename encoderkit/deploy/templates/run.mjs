#!/usr/bin/env node
// Standalone Node.js runner of an encoderkit bundle: onnxruntime-node + @huggingface/tokenizers
// (tokenizer.json loaded from the bundle, offline). The same commands as run.py:
//
//   node run.mjs embed "a sentence" [--pooling mean|cls|max] [--normalize] [--json]
//   node run.mjs fill-mask "Paris is the <mask> of France." [--top-k 5] [--json]
//   node run.mjs classify "a sentence" [--top-k 1] [--json]     (bundles packaged with classify)
//   node run.mjs tokenize "a sentence"
//   node run.mjs --self-test
//
// Install with scripts off: `npm install --ignore-scripts` (onnxruntime-node's postinstall
// downloads CUDA binaries from outside the npm registry; its CPU binaries ship in the package).
// Every file in bundle.json is checked by sha256 before loading; a changed file is refused (exit 2).
import { createHash } from "node:crypto";
import { createReadStream, readFileSync, existsSync, lstatSync, readdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { performance } from "node:perf_hooks";

const HERE = dirname(fileURLToPath(import.meta.url));
const POOLINGS = ["mean", "cls", "max"];

class BundleError extends Error {}

function sha256File(path) {
  return new Promise((resolve, reject) => {
    const h = createHash("sha256");
    createReadStream(path).on("data", (d) => h.update(d)).on("end", () => resolve(h.digest("hex"))).on("error", reject);
  });
}

// What a user adds to run the bundle (npm's node_modules and lock file, a Python venv, caches) and
// the packager's temp-dir marker: not part of the bundle, never walked (run.py's NOT_BUNDLE).
const NOT_BUNDLE = new Set([".venv", "node_modules", "package-lock.json", "__pycache__", ".encoderkit-owner"]);
const BUNDLE_MAX_BYTES = 64 * 1024 * 1024;

function plainRelative(rel) {
  return typeof rel === "string" && rel.length > 0 && !rel.includes("\\") && !rel.includes("\0")
    && !rel.startsWith("/") && rel.split("/").every((p) => p !== "" && p !== "." && p !== "..");
}

// Every regular file under root (relative paths) but bundle.json and NOT_BUNDLE; symlinks and
// FIFOs/devices refused.
function bundleFiles(root) {
  const out = [];
  const stack = [["", root]];
  while (stack.length) {
    const [prefix, dir] = stack.pop();
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const rel = prefix + e.name;
      if (!prefix && (NOT_BUNDLE.has(e.name) || e.name === "bundle.json")) continue;
      if (e.isSymbolicLink()) throw new BundleError(`${rel}: a symbolic link inside the bundle; refusing to follow it`);
      if (e.isDirectory()) stack.push([rel + "/", join(dir, e.name)]);
      else if (e.isFile()) out.push(rel);
      else throw new BundleError(`${rel}: not a regular file (FIFO, device or socket); refusing to read it`);
    }
  }
  return out.sort();
}

async function readBundle(root) {
  let bundle;
  const path = join(root, "bundle.json");
  try {
    const st = lstatSync(path);
    if (!st.isFile()) throw new Error("not a regular file");
    if (st.size > BUNDLE_MAX_BYTES) throw new Error(`${st.size} bytes, more than a bundle.json can be`);
    bundle = JSON.parse(readFileSync(path, "utf8"));
  } catch (e) {
    throw new BundleError(`${path}: unreadable (${e.message})`);
  }
  const files = bundle && typeof bundle === "object" ? bundle.files : undefined;
  if (!files || typeof files !== "object" || Array.isArray(files)) {
    throw new BundleError("bundle.json: 'files' is missing or not a mapping of path -> {sha256, bytes}; re-package with `encoderkit package`");
  }
  for (const [rel, meta] of Object.entries(files)) {
    if (!plainRelative(rel) || NOT_BUNDLE.has(rel.split("/")[0])) {
      throw new BundleError(`bundle.json: file ${JSON.stringify(rel)} is not a plain relative path inside the bundle`);
    }
    if (!meta || typeof meta.sha256 !== "string" || !/^[0-9a-f]{64}$/.test(meta.sha256)) {
      throw new BundleError(`bundle.json: file ${JSON.stringify(rel)} has no valid 'sha256'`);
    }
  }
  const graphs = bundle.graphs && typeof bundle.graphs === "object" ? bundle.graphs : {};
  for (const rel of [bundle.tokenizer, graphs.encoder, ...Object.values(graphs).filter((g) => g !== null)]) {
    if (typeof rel !== "string" || !(rel in files)) {
      throw new BundleError(`bundle.json: ${JSON.stringify(rel)} names no file the bundle lists; re-package with \`encoderkit package\``);
    }
  }
  const present = bundleFiles(root);
  const unlisted = present.filter((f) => !(f in files));
  if (unlisted.length) {
    throw new BundleError(`${unlisted[0]}: not listed in bundle.json (added after packaging?); refusing to load a bundle with unlisted files`);
  }
  for (const [rel, meta] of Object.entries(files)) {
    const p = join(root, rel);
    if (!present.includes(rel) || !existsSync(p)) throw new BundleError(`${rel}: listed in bundle.json but missing`);
    if ((await sha256File(p)) !== meta.sha256) {
      throw new BundleError(`${rel}: sha256 differs from bundle.json (corrupted or edited); refusing to load it`);
    }
  }
  return bundle;
}

// The same input policy as encoderkit: specials added; empty or over-long texts refused unless
// truncation is asked for, which keeps the specials and cuts the text's tokens at the end
// (what the `tokenizers` library's truncation does for one sequence).
class TextTokenizer {
  constructor(tok, maxLength, json = {}) {
    this.tok = tok;
    this.maxLength = maxLength;
    this.sigma = lowercases(json.normalizer);
  }
  encodeOne(text, truncate, i) {
    // JS toLowerCase applies Unicode's Final_Sigma rule (a word-final Σ becomes ς); Python's
    // tokenizers lowercases each character alone (always σ): lowercase Σ first, as both agree.
    if (this.sigma) text = text.replaceAll("\u03a3", "\u03c3");
    const ids = this.tok.encode(text, { add_special_tokens: true }).ids;
    if (ids.length <= this.maxLength) return ids;
    if (!truncate) {
      throw new BundleError(`texts[${i}] has ${ids.length} tokens, more than the bundle's ${this.maxLength}; shorten it or pass --truncate`);
    }
    const plain = this.tok.encode(text, { add_special_tokens: false }).ids;
    const extra = ids.length - plain.length;
    let p = 0; // where the plain tokens start inside the full encoding
    while (p <= extra && !plain.every((t, j) => ids[p + j] === t)) p++;
    return [...ids.slice(0, p), ...plain.slice(0, this.maxLength - extra), ...ids.slice(p + plain.length)];
  }
  encode(texts, truncate = false) {
    if (!texts.length) throw new BundleError("no texts given");
    texts.forEach((t, i) => {
      if (!t.trim()) throw new BundleError(`texts[${i}] is empty`);
      if (/\p{Surrogate}/u.test(t)) { // a lone surrogate (undecodable input): UTF-8 cannot carry it
        throw new BundleError(`texts[${i}] is not valid Unicode (lone surrogates: undecodable bytes?); pass UTF-8 text`);
      }
    });
    return texts.map((t, i) => this.encodeOne(t, truncate, i).map(Number));
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

class Bundle {
  static async load(root = HERE, threads = 0) {
    const t0 = performance.now();
    const b = new Bundle();
    b.root = root;
    b.info = await readBundle(root);
    let Tokenizer, ort;
    try {
      ({ Tokenizer } = await import("@huggingface/tokenizers"));
      ort = (await import("onnxruntime-node")).default;
    } catch (e) {
      throw new BundleError(`the runner's packages are not installed (${e.code || e.message}): npm install --ignore-scripts`);
    }
    b.ort = ort;
    const tokDir = dirname(join(root, b.info.tokenizer));
    const cfgPath = join(tokDir, "tokenizer_config.json");
    const tokJson = JSON.parse(readFileSync(join(root, b.info.tokenizer), "utf8"));
    const cfg = existsSync(cfgPath) ? JSON.parse(readFileSync(cfgPath, "utf8")) : {};
    b.tokenizer = new TextTokenizer(new Tokenizer(tokJson, cfg), b.info.max_length, tokJson);
    const opts = { executionProviders: ["cpu"], graphOptimizationLevel: "all" };
    if (threads) opts.intraOpNumThreads = threads;
    b.encoder = await ort.InferenceSession.create(join(root, b.info.graphs.encoder), opts);
    b.head = b.info.graphs.head ? await ort.InferenceSession.create(join(root, b.info.graphs.head), opts) : null;
    b.classifier = b.info.graphs.classifier
      ? await ort.InferenceSession.create(join(root, b.info.graphs.classifier), opts) : null;
    b.loadSeconds = (performance.now() - t0) / 1000;
    return b;
  }

  pad(ids) {
    const n = Math.max(...ids.map((x) => x.length));
    const inputIds = new BigInt64Array(ids.length * n).fill(BigInt(this.info.pad_token_id));
    const mask = new BigInt64Array(ids.length * n);
    ids.forEach((x, i) => x.forEach((t, j) => {
      inputIds[i * n + j] = BigInt(t);
      mask[i * n + j] = 1n;
    }));
    return { inputIds, mask, b: ids.length, n };
  }

  async run(batch) {
    const T = this.ort.Tensor;
    const feeds = {
      input_ids: new T("int64", batch.inputIds, [batch.b, batch.n]),
      attention_mask: new T("int64", batch.mask, [batch.b, batch.n]),
    };
    if (this.encoder.inputNames.includes("token_type_ids")) {  // BERT-family graphs; single texts: all 0
      feeds.token_type_ids = new T("int64", new BigInt64Array(batch.b * batch.n), [batch.b, batch.n]);
    }
    return this.encoder.run(feeds);
  }

  async embed(texts, pooling = null, normalize = null, truncate = false) {
    const pooled = this.info.pooling;
    pooling = pooling ?? pooled.default;
    normalize = normalize ?? pooled.normalize;
    if (!POOLINGS.includes(pooling)) throw new BundleError(`pooling must be one of ${POOLINGS.join(", ")}, got ${pooling}`);
    const inGraph = pooled.in_graph && pooling === pooled.default && normalize === pooled.normalize;
    const H = this.info.model.hidden_size;
    const out = [];
    for (const ids of this.tokenizer.encode(texts, truncate)) { // one text per run: no padding to reason about
      const batch = this.pad([ids]);
      const res = await this.run(batch);
      let e;
      if (inGraph) {
        e = Array.from(res.sentence_embedding.data.slice(0, H));
      } else {
        const h = res.last_hidden_state.data;
        const n = batch.n;
        e = new Array(H).fill(pooling === "max" ? -Infinity : 0);
        const rows = pooling === "cls" ? 1 : n;
        for (let t = 0; t < rows; t++) {
          for (let k = 0; k < H; k++) {
            const v = h[t * H + k];
            e[k] = pooling === "max" ? Math.max(e[k], v) : e[k] + v;
          }
        }
        if (pooling === "mean") e = e.map((v) => Math.fround(v / n));
        e = e.map(Math.fround);
        if (normalize) {
          const norm = Math.max(Math.sqrt(e.reduce((s, v) => s + v * v, 0)), 1e-12);
          e = e.map((v) => Math.fround(v / norm));
        }
      }
      out.push(e);
    }
    return out;
  }

  async maskProbs(ids) {
    const batch = this.pad([ids]);
    const H = this.info.model.hidden_size;
    const h = (await this.run(batch)).last_hidden_state.data;
    const positions = ids.flatMap((t, j) => (t === this.info.mask_token_id ? [j] : []));
    const rows = new Float32Array(positions.length * H);
    positions.forEach((pos, r) => rows.set(h.subarray(pos * H, (pos + 1) * H), r * H));
    const logits = (await this.head.run({ hidden: new this.ort.Tensor("float32", rows, [positions.length, H]) })).logits.data;
    const V = logits.length / positions.length;
    return positions.map((pos, r) => {
      const l = logits.subarray(r * V, (r + 1) * V);
      let mx = -Infinity;
      for (const v of l) mx = Math.max(mx, v);
      const e = Array.from(l, (v) => Math.exp(v - mx));
      const s = e.reduce((a, b) => a + b, 0);
      return { pos, probs: e.map((v) => Math.fround(v / s)) };
    });
  }

  async fillMask(texts, topK = 5, truncate = false) {
    if (!this.head) throw new BundleError("this bundle has no masked-LM head (package it with --tasks fill-mask from a *ForMaskedLM model)");
    if (!(topK >= 1)) throw new BundleError(`top_k must be a positive integer, got ${topK}`);
    const maskId = this.info.mask_token_id, pad = this.info.pad_token_id;
    const all = this.tokenizer.encode(texts, truncate);
    all.forEach((seq, i) => {
      if (!seq.includes(maskId)) throw new BundleError(`texts[${i}]: the mask token ${this.info.mask_token} is missing; write ${this.info.mask_token} where a word should be predicted`);
    });
    const results = [];
    for (const seq of all) {
      const single = seq.filter((t) => t === maskId).length === 1;
      const perMask = [];
      for (const { pos, probs } of await this.maskProbs(seq)) {
        const k = Math.min(topK, probs.length);
        const order = probs.map((p, j) => j).sort((a, b) => probs[b] - probs[a] || a - b).slice(0, k);
        perMask.push(order.map((j) => {
          const filled = seq.map((t, q) => (q === pos ? j : t)).filter((t) => t !== pad);
          return { token: j, token_str: this.tokenizer.decode([j], false), score: probs[j],
                   sequence: this.tokenizer.decode(filled, single) };
        }));
      }
      results.push(perMask);
    }
    return results;
  }

  // Scores of every label per text: softmax over the labels (sigmoid for one label), from the
  // classification head run on each text's first ([CLS] / <s>) hidden row.
  async classScores(texts, truncate = false) {
    if (!this.classifier) throw new BundleError("this bundle has no classification head (package a model fine-tuned for classification with --tasks classify)");
    const H = this.info.model.hidden_size;
    const out = [];
    for (const ids of this.tokenizer.encode(texts, truncate)) {
      const h = (await this.run(this.pad([ids]))).last_hidden_state.data;
      const row = new this.ort.Tensor("float32", Float32Array.from(h.subarray(0, H)), [1, H]);
      const logits = Array.from((await this.classifier.run({ hidden: row })).logits.data);
      if (logits.length === 1) out.push([1 / (1 + Math.exp(-logits[0]))]);
      else {
        const mx = Math.max(...logits);
        const e = logits.map((v) => Math.exp(v - mx));
        const s = e.reduce((a, b) => a + b, 0);
        out.push(e.map((v) => v / s));
      }
    }
    return out;
  }

  async classify(texts, topK = 1, truncate = false) {
    if (topK !== null && !(Number.isInteger(topK) && topK >= 1)) throw new BundleError(`top_k must be a positive integer, got ${topK}`);
    const labels = this.info.model.labels;
    return (await this.classScores(texts, truncate)).map((row) =>
      labels.map((_, j) => j).sort((a, b) => row[b] - row[a] || a - b).slice(0, topK ?? labels.length)
        .map((j) => ({ label: labels[j], score: row[j] })));
  }
}

async function selfTest(b) {
  const probes = b.info.probes, tol = probes.tolerance, lines = [];
  const all = [...probes.embed, ...(probes.fill_mask || [])];
  for (const p of all) {
    const got = b.tokenizer.encode([p.text], p.truncate)[0];
    if (got.length !== p.ids.length || got.some((t, j) => t !== p.ids[j])) {
      throw new Error(`token ids differ from encoderkit's for ${JSON.stringify(p.text.slice(0, 40))}: ${got.slice(0, 12)} vs ${p.ids.slice(0, 12)}`);
    }
  }
  lines.push(`token ids: identical on ${all.length} probes`);
  let worst = 0, cos = 1;
  for (const p of probes.embed) {
    const [e] = await b.embed([p.text], null, null, p.truncate);
    let dot = 0, ne = 0, nr = 0;
    e.forEach((v, k) => {
      worst = Math.max(worst, Math.abs(v - p.embedding[k]));
      dot += v * p.embedding[k]; ne += v * v; nr += p.embedding[k] ** 2;
    });
    cos = Math.min(cos, dot / Math.max(Math.sqrt(ne * nr), 1e-12));
  }
  if (tol.kind === "atol") {
    if (worst > tol.atol) throw new Error(`embed: max |diff| ${worst} > ${tol.atol} against the ${probes.reference} reference`);
    lines.push(`embed: ${probes.embed.length} probes, max |diff| ${worst.toExponential(2)} <= ${tol.atol} vs ${probes.reference}`);
  } else {
    if (cos < tol.cosine) throw new Error(`embed: min cosine ${cos} < ${tol.cosine}`);
    lines.push(`embed: ${probes.embed.length} probes, min cosine ${cos.toFixed(4)} >= ${tol.cosine} vs ${probes.reference}`);
  }
  if ((probes.fill_mask || []).length) {
    let w = 0, agree = 0, n = 0;
    for (const p of probes.fill_mask) {
      const masks = await b.maskProbs(p.ids);
      masks.forEach(({ probs }, r) => {
        const top = p.top[r];
        top.forEach((t) => { w = Math.max(w, Math.abs(probs[t.token] - t.score)); });
        let best = 0;
        probs.forEach((v, j) => { if (v > probs[best]) best = j; });
        agree += best === top[0].token ? 1 : 0;
        n += 1;
      });
    }
    if (tol.kind === "atol") {
      if (w > tol.atol) throw new Error(`fill-mask: max |score diff| ${w} > ${tol.atol}`);
      lines.push(`fill-mask: ${n} masks, max |score diff| of the reference top-5 ${w.toExponential(2)} <= ${tol.atol}`);
    } else {
      if (agree / n < tol.top1) throw new Error(`fill-mask: top-1 agreement ${agree / n} < ${tol.top1}`);
      lines.push(`fill-mask: ${n} masks, top-1 agreement ${(agree / n).toFixed(3)} >= ${tol.top1}`);
    }
  }
  if ((probes.classify || []).length) {
    let w = 0, agree = 0;
    const argmax = (r) => r.reduce((best, v, j) => (v > r[best] ? j : best), 0);
    for (const p of probes.classify) {
      const [got] = await b.classScores([p.text], p.truncate);
      got.forEach((v, j) => { w = Math.max(w, Math.abs(v - p.scores[j])); });
      agree += argmax(got) === argmax(p.scores) ? 1 : 0;
    }
    const n = probes.classify.length;
    if (tol.kind === "atol") {
      if (w > tol.atol) throw new Error(`classify: max |score diff| ${w} > ${tol.atol}`);
      lines.push(`classify: ${n} probes, max |score diff| ${w.toExponential(2)} <= ${tol.atol}`);
    } else {
      if (agree / n < tol.top1) throw new Error(`classify: label agreement ${agree / n} < ${tol.top1}`);
      lines.push(`classify: ${n} probes, label agreement ${(agree / n).toFixed(3)} >= ${tol.top1} (max |score diff| ${w.toExponential(2)})`);
    }
  }
  return lines;
}

// Peak resident memory in MB. Linux: VmHWM (getrusage's maxRSS would include the memory of the
// process that started us, which Linux carries across exec).
function peakRssMb() {
  try {
    const m = readFileSync("/proc/self/status", "utf8").match(/^VmHWM:\s+(\d+)/m);
    if (m) return Number(m[1]) / 1024;
  } catch {}
  return process.resourceUsage().maxRSS / 1024;
}

// An argument that is not valid UTF-8 (undecodable bytes): Node hands it over with U+FFFD in place
// of those bytes and would run on that other text; the raw bytes (Linux: /proc/self/cmdline) tell.
function nonUtf8Argument() {
  let raw;
  try {
    raw = readFileSync("/proc/self/cmdline");
  } catch {
    return false; // not Linux: nothing to compare with
  }
  const decoder = new TextDecoder("utf-8", { fatal: true });
  let start = 0;
  for (let k = 0; k < raw.length; k++) {
    if (raw[k] !== 0) continue;
    try {
      decoder.decode(raw.subarray(start, k));
    } catch {
      return true;
    }
    start = k + 1;
  }
  return false;
}

async function main(argv) {
  if (nonUtf8Argument()) {
    console.error("error: an argument is not valid UTF-8 (undecodable bytes); pass UTF-8 text");
    return 2;
  }
  let parsed;
  try {
    parsed = parseArgs({
    args: argv, allowPositionals: true,
    options: {
      bundle: { type: "string", default: HERE }, "self-test": { type: "boolean" }, measure: { type: "boolean" },
      threads: { type: "string" }, json: { type: "boolean" }, truncate: { type: "boolean" },
      pooling: { type: "string" }, normalize: { type: "boolean" }, "no-normalize": { type: "boolean" },
      "top-k": { type: "string" },
    },
  });
  } catch (e) { // an unknown option or a missing value: one line, as run.py says it
    console.error(`error: ${e.message}`);
    return 2;
  }
  const { values: a, positionals } = parsed;
  const [command, ...texts] = positionals;
  if (!a["self-test"] && !command) {
    console.error("usage: node run.mjs embed|fill-mask|classify|tokenize TEXT... [--json] | --self-test");
    return 2;
  }
  try {
    const b = await Bundle.load(a.bundle, Number(a.threads || 0));
    if (a["self-test"]) {
      let lines;
      try {
        lines = await selfTest(b);
      } catch (e) {
        if (e instanceof BundleError) throw e;
        console.error(`self-test FAILED: ${e.message}`);
        return 1;
      }
      console.log([...lines, "self-test passed"].join("\n"));
      if (a.measure) { // after the self-test ran: the median of 5 calls on one short text
        const times = [];
        for (let i = 0; i < 5; i++) {
          const t = performance.now();
          await b.embed([b.info.probes.embed[0].text]);
          times.push((performance.now() - t) / 1000);
        }
        times.sort((x, y) => x - y);
        console.log(JSON.stringify({ load_seconds: b.loadSeconds, embed_one_text_seconds: times[2],
                                     peak_rss_mb: peakRssMb() }));
      }
      if (!command) return 0;
    }
    if (command === "tokenize") {
      console.log(JSON.stringify(b.tokenizer.encode(texts, !!a.truncate)));
    } else if (command === "embed") {
      const normalize = a.normalize ? true : a["no-normalize"] ? false : null;
      const emb = await b.embed(texts, a.pooling ?? null, normalize, !!a.truncate);
      if (a.json) console.log(JSON.stringify(emb));
      else emb.forEach((e, i) => {
        const head = e.slice(0, 6).map((x) => (x >= 0 ? "+" : "") + x.toFixed(4)).join(" ");
        console.log(`[${head} ...] dim ${e.length} norm ${Math.sqrt(e.reduce((s, v) => s + v * v, 0)).toFixed(4)}  ${texts[i]}`);
      });
    } else if (command === "fill-mask") {
      const res = await b.fillMask(texts, Number(a["top-k"] ?? 5), !!a.truncate);
      if (a.json) console.log(JSON.stringify(res));
      else res.forEach((perMask, i) => {
        console.log(texts[i]);
        perMask.forEach((preds, m) => {
          if (perMask.length > 1) console.log(`  mask ${m + 1}:`);
          preds.forEach((q) => console.log(`  ${q.score.toFixed(4)}  ${JSON.stringify(q.token_str).padEnd(16)} ${q.sequence}`));
        });
      });
    } else if (command === "classify") {
      const res = await b.classify(texts, Number(a["top-k"] ?? 1), !!a.truncate);
      if (a.json) console.log(JSON.stringify(res));
      else res.forEach((preds, i) => {
        console.log(texts[i]);
        preds.forEach((q) => console.log(`  ${q.score.toFixed(4)}  ${q.label}`));
      });
    } else {
      throw new BundleError(`unknown command ${command}; use embed, fill-mask, classify or tokenize`);
    }
  } catch (e) {
    if (e instanceof BundleError) {
      console.error(`error: ${e.message}`);
      return 2;
    }
    throw e;
  }
  return 0;
}

process.exitCode = await main(process.argv.slice(2));
