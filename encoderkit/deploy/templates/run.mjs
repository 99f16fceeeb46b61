#!/usr/bin/env node
// Standalone Node.js runner of an encoderkit bundle: onnxruntime-node + @huggingface/tokenizers
// (tokenizer.json loaded from the bundle, offline). The same commands as run.py:
//
//   node run.mjs embed "a sentence" [--pooling mean|cls|max] [--normalize] [--json]
//   node run.mjs fill-mask "Paris is the <mask> of France." [--top-k 5] [--json]
//   node run.mjs classify "a sentence" [--top-k 1] [--json]     (bundles packaged with classify)
//   node run.mjs ner "Ada Lovelace met Babbage." [--aggregation none|simple|first|average|max] [--json]
//   node run.mjs qa --question Q... --context C... [--top-k 1] [--max-answer-len 15] [--doc-stride S]
//                   [--max-seq-len N] [--handle-impossible] [--json]   (ner / qa: see "ner and qa" below)
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

// ----------------------------------------------------------------------------- ner and qa
// Named entities and extractive QA with `encoderkit ner|qa`'s semantics and JSON (transformers'
// pipeline("token-classification") with every aggregation, transformers 4.57's
// pipeline("question-answering")): the logic mirrors encoderkit/tasks/ner.py and tasks/qa.py (and
// run.py's copies), each function naming the one it mirrors.
//
// Both need what tokenizers.js 0.2.0 does not give: each token's character offsets and word, and a
// long context cut into overlapping windows. `Aligner` re-runs the tokenizer's own parts (its
// normalizer on each character, its pre-tokenizer, its model on each pre-token) and keeps track of
// where each token came from, for byte-level BPE (RoBERTa) and WordPiece (BERT) tokenizers. Every
// step is checked, and a text whose alignment cannot be proved is refused (one line, exit 2; run.py
// answers it): a normalization that is not character by character (e.g. NFC composing "e" +
// U+0301), special-token text written in the input (e.g. "<mask>"), tokens that differ from the
// tokenizer's own encode(); tokenizers of another kind (SentencePiece/Unigram, add_prefix_space)
// are refused for ner/qa altogether. Offsets count code points, as Python's do.
const AGGREGATIONS = ["none", "simple", "first", "average", "max"];
const QA_MAX_SEQ_LEN = 384; // tasks/qa.py MAX_SEQ_LEN (capped by the bundle's max length)
const TOKEN_GRAPHS = { ner: "token_classification", qa: "question_answering" }; // task -> bundle.json graph role
const BYTE_SPACE = "\u0120"; // "Ġ": the byte-level character of a space

// GPT-2's bytes_to_unicode, reversed: byte-level character -> byte.
const BYTE_OF = (() => {
  const bs = [];
  for (let x = 33; x <= 126; x++) bs.push(x);
  for (let x = 161; x <= 172; x++) bs.push(x);
  for (let x = 174; x <= 255; x++) bs.push(x);
  const cs = bs.slice();
  let n = 0;
  for (let x = 0; x < 256; x++) if (!bs.includes(x)) { bs.push(x); cs.push(256 + n); n += 1; }
  return new Map(bs.map((x, i) => [String.fromCharCode(cs[i]), x]));
})();

function findByteLevel(pre) { // the ByteLevel pre-tokenizer, alone or in a Sequence
  if (!pre) return null;
  if (pre.type === "ByteLevel") return pre;
  if (pre.type === "Sequence") return (pre.pretokenizers || []).map(findByteLevel).find(Boolean) || null;
  return null;
}

function trimOf(post) { // ByteLevel offset trimming done by the post-processor: {trim, prefix}
  if (!post) return { trim: false, prefix: false };
  if (post.type === "RobertaProcessing" || post.type === "ByteLevel") {
    return { trim: post.trim_offsets !== false, prefix: !!post.add_prefix_space };
  }
  if (post.type === "Sequence") {
    const found = (post.processors || []).map(trimOf).find((t) => t.trim);
    return found || { trim: false, prefix: false };
  }
  return { trim: false, prefix: false };
}

const sameIds = (a, b) => a.length === b.length && a.every((x, j) => x === b[j]);

class Aligner {
  constructor(tok, json, sigma) {
    this.tok = tok;
    this.sigma = sigma;
    const model = json.model || {};
    const byteLevel = findByteLevel(json.pre_tokenizer);
    const trim = trimOf(json.post_processor);
    this.byteLevel = model.type === "BPE" && !!byteLevel;
    this.wordPiece = model.type === "WordPiece";
    this.trim = this.byteLevel && trim.trim;
    this.prefix = model.continuing_subword_prefix ?? "##";
    this.unkToken = model.unk_token ?? null;
    this.unsupported = !this.byteLevel && !this.wordPiece ? `a ${model.type} tokenizer; run.mjs aligns byte-level BPE and WordPiece`
      : this.byteLevel && (byteLevel.add_prefix_space || trim.prefix) ? "a byte-level tokenizer with add_prefix_space"
      : tok.remove_space || tok.do_lowercase_and_remove_accent ? "remove_space / do_lowercase_and_remove_accent"
      : null;
    this.added = (json.added_tokens || []).map((t) => t.content).filter(Boolean);
    this.normalizedAdded = tok.normalizer ? this.added.map((c) => tok.normalizer(c)).filter(Boolean) : [];
  }

  prepare(text) { // what TextTokenizer.encodeOne feeds tokenizers.js
    return this.sigma ? text.replaceAll("\u03a3", "\u03c3") : text;
  }

  // The tokens of `text` without special tokens: {ids, tokens, offsets ([start, end) in code points
  // of text), words (pre-token index)}. Throws a BundleError naming `what` where unprovable.
  align(text, what) {
    if (this.unsupported) {
      throw new BundleError(`run.mjs cannot compute character offsets with this bundle's tokenizer (${this.unsupported}); use run.py for ner and qa`);
    }
    const fail = (why) => {
      throw new BundleError(`${what}: run.mjs cannot prove the character offsets of its tokens (${why}); use run.py for this text`);
    };
    const tok = this.tok;
    text = this.prepare(text);
    for (const c of this.added) if (text.includes(c)) fail(`it contains the special token text ${JSON.stringify(c)}`);
    const cps = Array.from(text);
    let norm = cps, origin = cps.map((_, i) => i); // normalized character -> its original character
    if (tok.normalizer) {
      norm = [];
      origin = [];
      cps.forEach((c, i) => { for (const n of Array.from(tok.normalizer(c))) { norm.push(n); origin.push(i); } });
      const whole = tok.normalizer(text);
      if (norm.join("") !== whole) fail("its normalization is not character by character, e.g. a composed accent");
      for (const c of this.normalizedAdded) if (whole.includes(c)) fail(`it contains the special token text ${JSON.stringify(c)}`);
    }
    const normText = norm.join("");
    const pres = tok.pre_tokenizer ? tok.pre_tokenizer(normText, { section_index: 0 }) : [normText];
    const decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }); // ignoreBOM: keep a U+FEFF
    const out = { ids: [], tokens: [], offsets: [], words: [] };
    let cur = 0;
    pres.forEach((pt, w) => {
      let piece;
      if (this.byteLevel) {
        const bytes = Array.from(pt, (ch) => BYTE_OF.get(ch));
        if (bytes.some((x) => x === undefined)) fail("a pre-token is not byte-level text");
        try { piece = Array.from(decoder.decode(Uint8Array.from(bytes))); } catch { fail("a pre-token splits a character"); }
      } else {
        piece = Array.from(pt);
        while (cur < norm.length && /\s/u.test(norm[cur])) cur++; // the whitespace a pre-tokenizer drops
      }
      for (let k = 0; k < piece.length; k++) if (norm[cur + k] !== piece[k]) fail("its pre-tokens do not cover the text in order");
      const start = cur;
      cur += piece.length;
      const toks = tok.model([pt]);
      const spans = this.byteLevel ? this.byteSpans(piece, toks, fail) : this.pieceSpans(piece, toks, fail);
      toks.forEach((t, j) => {
        let s = origin[start + spans[j][0]], e = origin[start + spans[j][1] - 1] + 1;
        if (this.trim) { // the post-processor's trim_offsets (tokenizers' process_offsets): no spaces at the ends
          let lead = 0, trail = 0;
          while (lead < t.length && t[lead] === BYTE_SPACE) lead++;
          while (trail < t.length && t[t.length - 1 - trail] === BYTE_SPACE) trail++;
          if (lead > 0) s = Math.min(s + lead, e);
          if (trail > 0 && e >= trail) e = Math.max(e - trail, s);
        }
        out.tokens.push(t);
        out.offsets.push([s, e]);
        out.words.push(w);
      });
    });
    if (this.byteLevel ? cur !== norm.length : norm.slice(cur).some((c) => !/\s/u.test(c))) fail("its pre-tokens do not cover the text");
    const own = tok.encode(text, { add_special_tokens: false });
    if (own.tokens.length !== out.tokens.length || own.tokens.some((t, j) => t !== out.tokens[j])) {
      fail("its tokens differ from the tokenizer's");
    }
    out.ids = own.ids.map(Number);
    return out;
  }

  byteSpans(piece, toks, fail) { // byte-level tokens -> [start, end) in the pre-token's characters
    const first = []; // first[b]: the character holding byte b
    piece.forEach((c, k) => { for (let n = new TextEncoder().encode(c).length; n > 0; n--) first.push(k); });
    let b = 0;
    const spans = toks.map((t) => {
      if (t.length === 0 || b + t.length > first.length) fail("its tokens do not cover a pre-token");
      const span = [first[b], first[b + t.length - 1] + 1];
      b += t.length;
      return span;
    });
    if (b !== first.length) fail("its tokens do not cover a pre-token");
    return spans;
  }

  pieceSpans(piece, toks, fail) { // WordPiece tokens -> [start, end) in the word's characters
    if (toks.length === 1 && toks[0] === this.unkToken && piece.join("") !== this.unkToken) return [[0, piece.length]];
    let k = 0;
    const spans = toks.map((t, j) => {
      let s = t;
      if (j > 0) {
        if (!s.startsWith(this.prefix)) fail("a word piece without its prefix");
        s = s.slice(this.prefix.length);
      }
      const n = Array.from(s).length;
      if (piece.slice(k, k + n).join("") !== s) fail("a word piece that is not its text");
      k += n;
      return [k - n, k];
    });
    if (k !== piece.length) fail("its word pieces do not cover a word");
    return spans;
  }
}

class TokenTasks {
  static async load(b, threads = 0) {
    const t = new TokenTasks();
    t.b = b;
    t.sessions = {};
    t.threads = threads;
    const tokJson = JSON.parse(readFileSync(join(b.root, b.info.tokenizer), "utf8"));
    t.aligner = new Aligner(b.tokenizer.tok, tokJson, b.tokenizer.sigma);
    const model = tokJson.model || {};
    t.subwordPrefix = model.type === "WordPiece" ? (model.continuing_subword_prefix ?? "##") : null;
    t.unkId = model.unk_token != null ? b.tokenizer.tok.token_to_id(model.unk_token) : undefined;
    t.byteLevelDecoder = (tokJson.decoder || {}).type === "ByteLevel";
    return t;
  }

  async session(task) {
    const rel = (this.b.info.graphs || {})[TOKEN_GRAPHS[task]];
    if (!rel) {
      throw new BundleError(task === "ner"
        ? "this bundle has no token-classification head (package a *ForTokenClassification model with --tasks ner)"
        : "this bundle has no question-answering head (package a *ForQuestionAnswering model with --tasks qa)");
    }
    if (!this.sessions[task]) {
      const opts = { executionProviders: ["cpu"], graphOptimizationLevel: "all" };
      if (this.threads) opts.intraOpNumThreads = this.threads;
      this.sessions[task] = await this.b.ort.InferenceSession.create(join(this.b.root, rel), opts);
    }
    return this.sessions[task];
  }

  // The head's logits of every token of one sequence: [len][out] (the encoder, then the head on
  // each real token's hidden row; BERT pairs with their token types).
  async rowLogits(task, ids, types = null) {
    const head = await this.session(task), T = this.b.ort.Tensor, n = ids.length, H = this.b.info.model.hidden_size;
    const feeds = {
      input_ids: new T("int64", BigInt64Array.from(ids.map(BigInt)), [1, n]),
      attention_mask: new T("int64", new BigInt64Array(n).fill(1n), [1, n]),
    };
    if (this.b.encoder.inputNames.includes("token_type_ids")) {
      feeds.token_type_ids = new T("int64", BigInt64Array.from((types || ids.map(() => 0)).map(BigInt)), [1, n]);
    }
    const hidden = (await this.b.encoder.run(feeds)).last_hidden_state.data;
    const logits = (await head.run({ hidden: new T("float32", Float32Array.from(hidden.subarray(0, n * H)), [n, H]) })).logits.data;
    const width = logits.length / n;
    if (!logits.every(Number.isFinite)) throw new BundleError(`the ${task} head produced non-finite logits (NaN/inf); the bundle's weights are broken`);
    return Array.from({ length: n }, (_, i) => Array.from(logits.subarray(i * width, (i + 1) * width)));
  }

  // ------------------------------------------------------------------------- ner
  // tasks/ner.py ner(): entities of each text, as pipeline("token-classification", aggregation_strategy=...).
  async ner(texts, aggregation = "none", truncate = false) {
    await this.session("ner");
    if (!AGGREGATIONS.includes(aggregation)) throw new BundleError(`aggregation must be one of ${AGGREGATIONS.join(", ")}, got ${JSON.stringify(aggregation)}`);
    const ids = this.b.tokenizer.encode(texts, truncate); // the input policy (empty, too long, ...)
    const labels = this.b.info.model.labels, out = [];
    for (let i = 0; i < texts.length; i++) {
      const enc = this.encodeDetailed(texts[i], ids[i], i);
      const scores = (await this.rowLogits("ner", enc.ids)).map(softmax);
      const pre = this.preEntities(texts[i], enc, scores);
      out.push(this.aggregate(pre, aggregation, labels).filter((e) => e.entity !== "O" && e.entity_group !== "O"));
    }
    return out;
  }

  // TextTokenizer.encode_detailed for one text: ids (with specials, truncated as the policy says),
  // tokens, code-point offsets and the special-token mask.
  encodeDetailed(text, ids, i) {
    const plain = this.aligner.align(text, `texts[${i}]`);
    const full = this.b.tokenizer.tok.encode(this.aligner.prepare(text), { add_special_tokens: true }).ids.map(Number);
    const extra = full.length - plain.ids.length;
    let p = 0;
    while (p <= extra && !sameIds(full.slice(p, p + plain.ids.length), plain.ids)) p++;
    const keep = Math.min(plain.ids.length, ids.length - extra); // truncation keeps the first tokens
    const enc = { ids: [], tokens: [], offsets: [], special: [] };
    const special = (j) => {
      enc.ids.push(full[j]);
      enc.tokens.push(this.b.tokenizer.tok.id_to_token(full[j]));
      enc.offsets.push([0, 0]);
      enc.special.push(1);
    };
    for (let j = 0; j < p; j++) special(j);
    for (let j = 0; j < keep; j++) {
      enc.ids.push(plain.ids[j]);
      enc.tokens.push(plain.tokens[j]);
      enc.offsets.push(plain.offsets[j]);
      enc.special.push(0);
    }
    for (let j = p + plain.ids.length; j < full.length; j++) special(j);
    if (p > extra || !sameIds(enc.ids, ids)) {
      throw new BundleError(`texts[${i}]: run.mjs cannot prove the character offsets of its tokens (its special tokens); use run.py for this text`);
    }
    const specialIds = new Set([...this.b.tokenizer.tok.get_added_tokens_decoder()].filter(([, t]) => t.special).map(([id]) => id));
    specialIds.delete(this.b.info.mask_token_id);
    if (enc.ids.every((t) => specialIds.has(t))) {
      throw new BundleError(`texts[${i}] has no tokens once normalized (only spaces, control or zero-width characters?)`);
    }
    return enc;
  }

  // TextTokenizer.tokens_to_string: the tokenizer's decoder on tokens. A ByteLevel decoder as
  // tokenizers' (Rust) one: a token that is not all byte-level characters (a word decoded before,
  // which the pipeline's grouping decodes again) keeps its own UTF-8 bytes; tokenizers.js would
  // turn its plain characters into NUL bytes.
  tokensToString(tokens) {
    if (this.byteLevelDecoder) {
      const bytes = tokens.flatMap((t) => {
        const own = Array.from(t, (ch) => BYTE_OF.get(ch));
        return own.every((x) => x !== undefined) ? own : Array.from(new TextEncoder().encode(t));
      });
      return new TextDecoder("utf-8", { ignoreBOM: true }).decode(Uint8Array.from(bytes)); // bad bytes -> U+FFFD, as from_utf8_lossy
    }
    const dec = this.b.tokenizer.tok.decoder;
    return dec ? dec(tokens) : tokens.join(" ");
  }

  preEntities(text, enc, scores) { // tasks/ner.py _pre_entities (the pipeline's gather_pre_entities)
    const cps = Array.from(text), pre = [];
    enc.ids.forEach((id, idx) => {
      if (enc.special[idx]) return;
      let token = enc.tokens[idx];
      const [start, end] = enc.offsets[idx];
      const wordRef = cps.slice(start, end).join("");
      let isSubword;
      if (this.subwordPrefix) isSubword = Array.from(token).length !== end - start; // WordPiece: not its text (the "##")
      else isSubword = start > 0 && !cps.slice(start - 1, start + 1).includes(" "); // byte-level BPE: not after a space
      if (this.unkId !== undefined && id === this.unkId) { token = wordRef; isSubword = false; }
      pre.push({ word: token, scores: scores[idx], start, end, index: idx, isSubword });
    });
    return pre;
  }

  aggregate(pre, aggregation, labels) { // tasks/ner.py _aggregate
    if (aggregation === "none" || aggregation === "simple") {
      const entities = pre.map((p) => {
        const j = argmax(p.scores);
        return { entity: labels[j], score: p.scores[j], index: p.index, word: p.word, start: p.start, end: p.end };
      });
      return aggregation === "none" ? entities : this.groupEntities(entities);
    }
    const words = [];
    let group = null;
    for (const p of pre) {
      if (group === null) group = [p];
      else if (p.isSubword) group.push(p);
      else { words.push(this.aggregateWord(group, aggregation, labels)); group = [p]; }
    }
    if (group !== null) words.push(this.aggregateWord(group, aggregation, labels));
    return this.groupEntities(words);
  }

  aggregateWord(pieces, aggregation, labels) { // tasks/ner.py _aggregate_word
    let scores;
    if (aggregation === "first") scores = pieces[0].scores;
    else if (aggregation === "max") {
      scores = pieces.reduce((best, p) => (Math.max(...p.scores) > Math.max(...best.scores) ? p : best)).scores;
    } else scores = pieces[0].scores.map((_, j) => Math.fround(pieces.reduce((s, p) => s + p.scores[j], 0) / pieces.length));
    const j = argmax(scores);
    return { entity: labels[j], score: scores[j], word: this.tokensToString(pieces.map((p) => p.word)),
             start: pieces[0].start, end: pieces[pieces.length - 1].end };
  }

  groupEntities(entities) { // tasks/ner.py _group_entities: adjacent entities of one type, B- starts anew
    const groups = [];
    let current = [];
    for (const e of entities) {
      if (current.length) {
        const [bi, tag] = bio(e.entity), [, lastTag] = bio(current[current.length - 1].entity);
        if (tag === lastTag && bi !== "B") { current.push(e); continue; }
        groups.push(this.group(current));
      }
      current = [e];
    }
    if (current.length) groups.push(this.group(current));
    return groups;
  }

  group(entities) { // tasks/ner.py _group
    const name = entities[0].entity, cut = name.indexOf("-");
    return { entity_group: cut < 0 ? name : name.slice(cut + 1),
             score: entities.reduce((s, e) => s + e.score, 0) / entities.length,
             word: this.tokensToString(entities.map((e) => e.word)),
             start: entities[0].start, end: entities[entities.length - 1].end };
  }

  // ------------------------------------------------------------------------- qa
  // tasks/qa.py qa(): per [question, context], the best answers {score, start, end, answer}.
  async qa(pairs, { topK = 1, maxAnswerLen = 15, docStride = null, maxSeqLen = null, handleImpossible = false } = {}) {
    await this.session("qa");
    if (!(Number.isInteger(topK) && topK >= 1)) throw new BundleError(`top_k must be a positive integer, got ${topK}`);
    const longest = this.b.info.max_length;
    maxSeqLen = maxSeqLen ?? Math.min(longest, QA_MAX_SEQ_LEN);
    docStride = docStride ?? Math.min(Math.floor(maxSeqLen / 2), 128);
    for (const [name, v, lo, hi] of [["max_answer_len", maxAnswerLen, 1, null], ["max_seq_len", maxSeqLen, 8, longest],
                                     ["doc_stride", docStride, 0, maxSeqLen - 1]]) {
      if (!Number.isInteger(v) || v < lo || (hi !== null && v > hi)) {
        throw new BundleError(`${name} must be an integer in ${lo}..${hi ?? "∞"}, got ${Number.isNaN(v) ? "NaN" : v}`);
      }
    }
    if (!pairs.length) throw new BundleError("no question/context pairs given");
    const all = pairs.map(([q, c]) => this.windows(q, c, maxSeqLen, docStride));
    const cls = this.b.info.special_tokens.cls, results = [];
    for (let i = 0; i < pairs.length; i++) {
      const mine = [];
      for (const w of all[i]) mine.push([w, await this.rowLogits("qa", w.ids, w.types)]);
      results.push(qaAnswers(mine, pairs[i][1], cls, topK, maxAnswerLen, handleImpossible));
    }
    return results;
  }

  // TextTokenizer.encode_windows: question + context through the pair template, only the context
  // cut into windows of maxLength tokens sharing `stride` tokens (tokenizers' only_second
  // truncation with overflowing parts, rebuilt from the aligned tokens).
  windows(question, context, maxLength, stride) {
    for (const [what, t] of [["question", question], ["context", context]]) {
      if (!t.trim()) throw new BundleError(`${what} is empty`);
      if (/\p{Surrogate}/u.test(t)) throw new BundleError(`${what} is not valid Unicode (lone surrogates: undecodable bytes?); pass UTF-8 text`);
    }
    const Q = this.aligner.align(question, "question"), C = this.aligner.align(context, "context");
    const full = this.b.tokenizer.tok.encode(this.aligner.prepare(question), {
      text_pair: this.aligner.prepare(context), add_special_tokens: true, return_token_type_ids: true });
    const F = full.ids.map(Number), T = (full.token_type_ids || F.map(() => 0)).map(Number);
    const nq = Q.ids.length, nc = C.ids.length, added = F.length - nq - nc;
    let pq = 0;
    while (pq <= added && !sameIds(F.slice(pq, pq + nq), Q.ids)) pq++;
    let pc = pq + nq;
    while (pc <= added + nq && !sameIds(F.slice(pc, pc + nc), C.ids)) pc++;
    if (pq > added || pc > added + nq) throw new BundleError("question: run.mjs cannot find its tokens in the pair template; use run.py");
    const room = maxLength - added - nq;
    let parts = [[0, nc]];
    if (F.length > maxLength) {
      if (room <= 0) throw new BundleError(`the question is too long for windows of ${maxLength} tokens with a stride of ${stride} (${nq} tokens); shorten it`);
      if (room <= stride) throw new BundleError(`doc_stride ${stride} must be less than the ${room} context tokens a window of ${maxLength} holds beside this question; lower it`);
      parts = [];
      for (let s = 0; ; s += room - stride) {
        const e = Math.min(s + room, nc);
        parts.push([s, e]);
        if (e === nc) break;
      }
    }
    return parts.map(([a, z]) => {
      const w = { ids: [], types: [], seq: [], offsets: [], words: [] };
      const push = (id, type, seq, off, word) => { w.ids.push(id); w.types.push(type); w.seq.push(seq); w.offsets.push(off); w.words.push(word); };
      for (let j = 0; j < pq; j++) push(F[j], T[j], null, [0, 0], null);
      for (let j = 0; j < nq; j++) push(Q.ids[j], T[pq + j], 0, Q.offsets[j], Q.words[j]);
      for (let j = pq + nq; j < pc; j++) push(F[j], T[j], null, [0, 0], null);
      for (let j = a; j < z; j++) push(C.ids[j], T[pc] ?? 1, 1, C.offsets[j], C.words[j]);
      for (let j = pc + nc; j < F.length; j++) push(F[j], T[j], null, [0, 0], null);
      return w;
    });
  }
}

function softmax(row) { // tasks/kernels.py softmax (float32 results)
  const mx = Math.max(...row), e = row.map((v) => Math.exp(v - mx)), s = e.reduce((a, v) => a + v, 0);
  return e.map((v) => Math.fround(v / s));
}

function argmax(xs) { // the first index of the largest value, as numpy's argmax
  let best = 0;
  for (let j = 1; j < xs.length; j++) if (xs[j] > xs[best]) best = j;
  return best;
}

function bio(name) { // tasks/ner.py _tag
  if (name.startsWith("B-")) return ["B", name.slice(2)];
  if (name.startsWith("I-")) return ["I", name.slice(2)];
  return ["I", name];
}

// tasks/qa.py _answers (align_to_words): the pipeline's postprocess over one question's windows.
function qaAnswers(windows, context, cls, topK, maxAnswerLen, handleImpossible) {
  const cps = Array.from(context), answers = [];
  let minNull = 1000000.0;
  const preTopK = topK * 2 + 10;
  for (const [w, logits] of windows) {
    const desired = w.ids.map((id, j) => (w.seq[j] === 1 || id === cls ? 1 : 0)); // 1 - p_mask
    const sel = qaSelect(logits.map((r) => r[0]), logits.map((r) => r[1]), desired, minNull, preTopK, handleImpossible, maxAnswerLen);
    minNull = sel.minNull;
    for (const [s, e, score] of sel.spans) {
      const [start, end] = qaIndices(w, s, e);
      const text = cps.slice(start, end).join("");
      const same = answers.find((x) => x.answer.toLowerCase() === text.toLowerCase());
      if (same) same.score += score;
      else answers.push({ score, start, end, answer: text });
    }
  }
  if (handleImpossible) answers.push({ score: minNull, start: 0, end: 0, answer: "" });
  return answers.sort((x, y) => y.score - x.score).slice(0, topK);
}

// tasks/qa.py _select + _decode_spans (the pipeline's select_starts_ends, decode_spans), in
// float32 as numpy computes them. Spans whose probability is exactly 0 (numpy lists those in an
// arbitrary order once fewer than top-k spans are left) are not listed.
function qaSelect(startL, endL, desired, minNull, topK, handleImpossible, maxAnswerLen) {
  const probs = (l) => {
    const x = l.map((v, j) => (desired[j] ? v : -10000.0));
    const mx = Math.max(...x), e = x.map((v) => Math.fround(Math.exp(Math.fround(v - mx))));
    const s = Math.fround(e.reduce((a, v) => a + v, 0));
    return e.map((v) => Math.fround(v / s));
  };
  const ps = probs(startL), pe = probs(endL), n = ps.length;
  if (handleImpossible) minNull = Math.min(minNull, Math.fround(ps[0] * pe[0]));
  ps[0] = 0;
  pe[0] = 0;
  const spans = [];
  for (let i = 0; i < n; i++) {
    for (let j = i; j < Math.min(n, i + maxAnswerLen); j++) {
      const score = Math.fround(ps[i] * pe[j]);
      if (score > 0) spans.push([i, j, score]);
    }
  }
  spans.sort((a, b) => b[2] - a[2] || a[0] * n + a[1] - (b[0] * n + b[1]));
  return { spans: spans.slice(0, topK), minNull };
}

function qaIndices(w, s, e) { // tasks/qa.py _indices: character offsets, widened to whole words
  const ws = w.words[s], we = w.words[e];
  if (ws !== null && we !== null) {
    const chars = (word) => { // Encoding.word_to_chars(word, 1): that word's tokens in the context part
      let first = -1, last = -1;
      w.words.forEach((x, j) => { if (w.seq[j] === 1 && x === word) { if (first < 0) first = j; last = j; } });
      return first < 0 ? null : [w.offsets[first][0], w.offsets[last][1]];
    };
    const a = chars(ws), b = chars(we);
    if (a && b) return [a[0], b[1]];
  }
  return [w.offsets[s][0], w.offsets[e][1]];
}

function renderNer(texts, result) { // encoderkit's _render_ner
  const lines = [];
  texts.forEach((text, i) => {
    const cps = Array.from(text);
    lines.push(text);
    for (const e of result[i]) {
      lines.push(`  ${e.score.toFixed(4)}  ${(e.entity_group ?? e.entity).padEnd(10)} ${String(e.start).padStart(4)}-${String(e.end).padEnd(4)} ${pyRepr(cps.slice(e.start, e.end).join(""))}`);
    }
  });
  return lines;
}

function renderQa(pairs, result) { // encoderkit's _render_qa
  const lines = [];
  pairs.forEach(([question], i) => {
    lines.push(question);
    for (const a of result[i]) lines.push(`  ${a.score.toFixed(4)}  ${String(a.start).padStart(4)}-${String(a.end).padEnd(4)} ${pyRepr(a.answer)}`);
  });
  return lines;
}

// Python's repr of a str (the text output): its quotes, backslash escapes, and \xhh / \uhhhh /
// \Uhhhhhhhh for what Python does not print (categories C* and Z* but the space).
function pyRepr(s) {
  const q = s.includes("'") && !s.includes('"') ? '"' : "'";
  const named = { "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t", [q]: "\\" + q };
  let out = q;
  for (const ch of s) {
    const cp = ch.codePointAt(0);
    if (named[ch]) out += named[ch];
    else if (ch !== " " && /[\p{C}\p{Z}]/u.test(ch)) {
      const [prefix, width] = cp < 0x100 ? ["\\x", 2] : cp < 0x10000 ? ["\\u", 4] : ["\\U", 8];
      out += prefix + cp.toString(16).padStart(width, "0");
    } else out += ch;
  }
  return out + q;
}

// The ner / qa probes of bundle.json against this runner (run.py's token_task_self_test).
async function tokenTaskSelfTest(b) {
  const probes = b.info.probes, tol = probes.tolerance, lines = [];
  if (!(probes.ner || []).length && !(probes.qa || []).length) return lines;
  const tasks = await TokenTasks.load(b);
  const exact = tol.kind === "atol";
  const strip = (xs) => JSON.stringify(xs.map(({ score, ...rest }) => rest));
  if ((probes.ner || []).length) {
    let worst = 0, agree = 0, n = 0;
    for (const p of probes.ner) {
      if (!sameIds(b.tokenizer.encode([p.text], p.truncate)[0], p.ids)) throw new Error(`ner: token ids differ from encoderkit's for ${JSON.stringify(p.text.slice(0, 40))}`);
      for (const [aggregation, want] of Object.entries(p.entities)) {
        const [got] = await tasks.ner([p.text], aggregation, p.truncate);
        if (exact) {
          if (strip(got) !== strip(want)) throw new Error(`ner (${aggregation}): entities differ from the ${probes.reference} reference for ${JSON.stringify(p.text.slice(0, 40))}: ${strip(got).slice(0, 200)} vs ${strip(want).slice(0, 200)}`);
          got.forEach((g, j) => { worst = Math.max(worst, Math.abs(g.score - want[j].score)); });
        } else if (aggregation === "none") {
          const g = new Set(got.map((x) => `${x.index} ${x.entity}`)), w = new Set(want.map((x) => `${x.index} ${x.entity}`));
          const both = [...g].filter((x) => w.has(x)).length;
          agree += both;
          n += g.size + w.size - both;
        }
      }
    }
    if (exact) {
      if (worst > tol.atol) throw new Error(`ner: max |score diff| ${worst} > ${tol.atol}`);
      lines.push(`ner: ${probes.ner.length} texts x ${AGGREGATIONS.length} aggregations, the same entities, max |score diff| ${worst.toExponential(2)} <= ${tol.atol}`);
    } else {
      const rate = agree / Math.max(n, 1);
      if (rate < tol.top1) throw new Error(`ner: token tag agreement ${rate} < ${tol.top1}`);
      lines.push(`ner: ${probes.ner.length} texts, token tag agreement ${rate.toFixed(3)} >= ${tol.top1}`);
    }
  }
  if ((probes.qa || []).length) {
    let worst = 0, agree = 0;
    const span = (xs) => JSON.stringify(xs.map((x) => [x.answer, x.start, x.end]));
    for (const p of probes.qa) {
      const o = p.options, stride = o.doc_stride ?? Math.min(Math.floor(o.max_seq_len / 2), 128);
      const ids = tasks.windows(p.question, p.context, o.max_seq_len, stride).map((w) => w.ids);
      if (JSON.stringify(ids) !== JSON.stringify(p.window_ids)) throw new Error(`qa: window token ids differ from encoderkit's for ${JSON.stringify(p.question.slice(0, 40))}`);
      const [got] = await tasks.qa([[p.question, p.context]], { topK: o.top_k, maxAnswerLen: o.max_answer_len,
        docStride: o.doc_stride ?? null, maxSeqLen: o.max_seq_len, handleImpossible: o.handle_impossible });
      if (exact) {
        if (span(got) !== span(p.answers)) throw new Error(`qa: answers differ from the ${probes.reference} reference for ${JSON.stringify(p.question.slice(0, 40))}: ${span(got)} vs ${span(p.answers)}`);
        got.forEach((g, j) => { worst = Math.max(worst, Math.abs(g.score - p.answers[j].score)); });
      }
      agree += span(got.slice(0, 1)) === span(p.answers.slice(0, 1)) ? 1 : 0;
    }
    const n = probes.qa.length, windows = Math.max(...probes.qa.map((p) => p.window_ids.length));
    if (exact) {
      if (worst > tol.atol) throw new Error(`qa: max |score diff| ${worst} > ${tol.atol}`);
      lines.push(`qa: ${n} questions (up to ${windows} windows), the same answers, max |score diff| ${worst.toExponential(2)} <= ${tol.atol}`);
    } else {
      if (agree / n < tol.top1) throw new Error(`qa: top answer span agreement ${agree / n} < ${tol.top1}`);
      lines.push(`qa: ${n} questions (up to ${windows} windows), top answer span agreement ${(agree / n).toFixed(3)} >= ${tol.top1}`);
    }
  }
  return lines;
}

// `node run.mjs ner|qa ...`: run and print (tokens: parseArgs' tokens, for qa's --question Q1 Q2 lists).
async function runTokenTask(b, command, a, texts, tokens, threads) {
  const tasks = await TokenTasks.load(b, threads);
  if (command === "ner") {
    const res = await tasks.ner(texts, a.aggregation ?? "none", !!a.truncate);
    console.log(a.json ? JSON.stringify(res) : renderNer(texts, res).join("\n"));
    return;
  }
  const lists = { question: [], context: [] }; // argparse's nargs="+": values follow their flag
  let current = null, seenCommand = false;
  for (const t of tokens) {
    if (t.kind === "option") current = t.name in lists ? t.name : null;
    if (t.kind === "option" && current && t.value !== undefined) lists[current].push(t.value);
    if (t.kind !== "positional") continue;
    if (!seenCommand && !current) { seenCommand = true; continue; } // the command itself
    if (!current) throw new BundleError(`unexpected argument ${JSON.stringify(t.value)}; give --question Q... --context C...`);
    lists[current].push(t.value);
  }
  if (!lists.question.length || !lists.context.length) throw new BundleError("qa needs --question and --context");
  if (lists.question.length !== lists.context.length) throw new BundleError("give as many --question as --context values (one per input)");
  const int = (v, d) => (v === undefined ? d : /^-?\d+$/.test(v) ? Number(v) : NaN);
  const pairs = lists.question.map((q, i) => [q, lists.context[i]]);
  const res = await tasks.qa(pairs, { topK: int(a["top-k"], 1), maxAnswerLen: int(a["max-answer-len"], 15),
    docStride: int(a["doc-stride"], null), maxSeqLen: int(a["max-seq-len"], null), handleImpossible: !!a["handle-impossible"] });
  console.log(a.json ? JSON.stringify(res) : renderQa(pairs, res).join("\n"));
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
  return [...lines, ...(await tokenTaskSelfTest(b))];
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
    args: argv, allowPositionals: true, tokens: true,
    options: {
      bundle: { type: "string", default: HERE }, "self-test": { type: "boolean" }, measure: { type: "boolean" },
      threads: { type: "string" }, json: { type: "boolean" }, truncate: { type: "boolean" },
      pooling: { type: "string" }, normalize: { type: "boolean" }, "no-normalize": { type: "boolean" },
      "top-k": { type: "string" },
      aggregation: { type: "string" }, question: { type: "string", multiple: true },
      context: { type: "string", multiple: true }, "max-answer-len": { type: "string" },
      "doc-stride": { type: "string" }, "max-seq-len": { type: "string" }, "handle-impossible": { type: "boolean" },
    },
    });
  } catch (e) { // a usage error (unknown flag, a flag without its value): one line, as run.py says it
    console.error(`error: ${e.message}`);
    return 2;
  }
  const { values: a, positionals, tokens } = parsed;
  const [command, ...texts] = positionals;
  if (!a["self-test"] && !command) {
    console.error("usage: node run.mjs embed|fill-mask|classify|ner|tokenize TEXT... [--json] | qa --question Q... --context C... | --self-test");
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
    if (command in TOKEN_GRAPHS) { // ner, qa
      await runTokenTask(b, command, a, texts, tokens, Number(a.threads || 0));
    } else if (command === "tokenize") {
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
      throw new BundleError(`unknown command ${command}; use embed, fill-mask, classify, ner, qa or tokenize`);
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
