// encoderkit attention viewer. Plain JS, no library, no network: the data sits in <script> blocks
// of this page (uint8 levels, deflated, base64) and is inflated with the browser's own
// DecompressionStream. window.EK exposes the decoded values and state (notebooks, tests).
(function () {
  'use strict';
  const $ = (id) => document.getElementById(id);
  const root = document.documentElement;
  const meta = JSON.parse($('ek-meta').textContent);
  const L = meta.layers.length, H = meta.heads.length, N = meta.seq, NN = N * N;
  const ROW = 18;  // px per token in the head view (matches .tok height in the CSS)
  // Head view: each query draws its strongest lines until they carry MASS of its attention, at most
  // MAX_LINES per query and head, within a drawing budget (headJob). 512 tokens x 16 heads are 8192
  // queries: 48 lines each would be 393k lines, minutes of drawing.
  const MASS = 0.95, MAX_LINES = 48;
  const WORK_BUDGET = 6e6;  // pixel steps per head view: about 0.3 s of drawing on a busy 2-core machine
  const SLICE_MS = 16;  // drawing work between two yields: a click or hover waits at most about this
  const FLUSH_MS = 250;  // a view still drawing shows its progress this often
  const state = { view: 'model', layer: 0, heads: new Set(), avg: false, hide: !!meta.hide_special,
                  focus: null, mlayer: 0, mhead: 0, dlayer: 0, dhead: 0, thumbScale: meta.thumb.scale };
  for (let h = 0; h < H; h++) state.heads.add(h);
  let probs = null, diff = null, thumbs = null, thumbsNs = null, ratio = null, ratioNs = null,
      dthumbs = null, dthumbsNs = null;
  const EK = window.EK = { meta, state, ready: false };

  // ------------------------------------------------------------------ data
  function b64(name) {
    const s = $('ek-' + name).textContent.trim();
    if (Uint8Array.fromBase64) return Uint8Array.fromBase64(s);
    const bin = atob(s), out = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out;
  }
  async function inflate(name) {
    const stream = new Blob([b64(name)]).stream().pipeThrough(new DecompressionStream('deflate'));
    return new Uint8Array(await new Response(stream).arrayBuffer());
  }
  const off = (l, h) => (l * H + h) * NN;
  const prob = (l, h, i, j) => probs[off(l, h) + i * N + j] / meta.quant.scale;
  const diffAt = (l, h, i, j) => (diff[off(l, h) + i * N + j] - 128) / 127 * meta.diff.scale[l];
  EK.prob = prob;
  EK.diffAt = diffAt;
  EK.decodedMaxDiff = function (l) {  // largest |decoded diff| of layer l: within max_error of max_abs
    let m = 0; const a = off(l, 0), b = off(l + 1, 0);
    for (let k = a; k < b; k++) { const d = Math.abs(diff[k] - 128); if (d > m) m = d; }
    return m / 127 * meta.diff.scale[l];
  };
  function visible() {
    const v = [];
    for (let i = 0; i < N; i++) if (!(state.hide && meta.special[i])) v.push(i);
    return v;
  }
  const boundary = meta.segments.indexOf(1);  // first token of text B, -1 without a pair

  // ------------------------------------------------------------------ drawing jobs
  // Every redraw is a job: a generator run in slices of about SLICE_MS, each slice a task of its own
  // that runs only when nothing else waits (input, rendering, other scripts), so the page answers a
  // click or hover at once while a large view is still drawing. A new job replaces the one in progress
  // (the newest interaction wins). <html> carries data-req (jobs started), data-done (the last one
  // finished) and data-idle (set while nothing is left to draw), EK.doneAt the time it finished:
  // scripts and tests wait on those attributes (the page's CSP forbids eval, so no JS predicate).
  let job = null, jobs = 0, pending = false, lastFlush = 0;
  EK.jobs = { started: 0, finished: 0, replaced: 0 };
  function schedule(fn) {
    const task = { id: ++jobs, flush: null };
    task.it = fn(task);
    if (job) EK.jobs.replaced++;
    EK.jobs.started++;
    job = task;
    root.dataset.req = task.id; delete root.dataset.idle;
    lastFlush = performance.now();
    if (!pending) { pending = true; later(() => { pending = false; pump(); }); }
  }
  // scheduler.postTask 'background' where there is one (Chromium, Firefox); elsewhere a message to ourselves
  const later = (typeof scheduler !== 'undefined' && scheduler.postTask)
    ? (f) => scheduler.postTask(f, { priority: 'background' })
    : (() => { const ch = new MessageChannel(), q = []; ch.port1.onmessage = () => q.shift()(); return (f) => { q.push(f); ch.port2.postMessage(0); }; })();
  function pump() {
    const task = job; if (!task) return;
    const t0 = performance.now();
    for (;;) {
      let r;
      try { r = task.it.next(); } catch (e) { job = null; fail(e); return; }
      if (r.done) {
        job = null; EK.jobs.finished++; EK.doneAt = performance.now(); root.dataset.done = task.id; root.dataset.idle = '1';
        return;
      }
      if (performance.now() - t0 >= SLICE_MS) break;
    }
    const t1 = performance.now();
    if (task.flush && t1 - lastFlush >= FLUSH_MS) {  // show what is drawn so far
      try { task.flush(); } catch (e) { job = null; fail(e); return; }
      lastFlush = performance.now();
    }
    if (!pending) { pending = true; later(() => { pending = false; pump(); }); }
  }
  function fail(e) {
    $('loading').textContent = 'error: ' + e.message; EK.error = String(e);
    root.dataset.idle = '1';
    if (!EK.ready) root.dataset.ready = 'error';
  }

  // ------------------------------------------------------------------ colours
  function seqColor(v, linear) {  // 0..1 -> white..navy; sqrt so that spread-out attention stays visible
    const x = Math.min(1, Math.max(0, v)), s = linear ? x : Math.sqrt(x);
    return [255 - s * 247, 255 - s * 207, 255 - s * 148];
  }
  function redColor(v) {
    const s = Math.sqrt(Math.min(1, Math.max(0, v)));
    return [255 - s * 80, 255 - s * 230, 255 - s * 220];
  }
  function divColor(v) {  // -1..1 -> blue..white..red
    const s = Math.sqrt(Math.min(1, Math.abs(v)));
    return v >= 0 ? [255 - s * 77, 255 - s * 231, 255 - s * 212] : [255 - s * 222, 255 - s * 153, 255 - s * 83];
  }
  const headHue = (h) => Math.round((h * 360 / Math.max(H, 1) + (h % 2) * 180 / Math.max(H, 1)) % 360);
  function headColor(h) { return `hsl(${headHue(h)}, 70%, 42%)`; }
  function headRgb(h) {  // headColor as 0..255 numbers (the line rasterizer blends them itself)
    const s = 0.7, l = 0.42, a = s * Math.min(l, 1 - l), hue = headHue(h);
    const f = (n) => { const k = (n + hue / 30) % 12; return 255 * (l - a * Math.max(-1, Math.min(k - 3, 9 - k, 1))); };
    return [f(0), f(8), f(4)];
  }
  const css = (c) => `rgb(${c.map(Math.round).join(',')})`;

  // ------------------------------------------------------------------ chrome
  function fillSelect(sel, values, labels) {
    sel.innerHTML = '';
    values.forEach((v, k) => { const o = document.createElement('option'); o.value = v; o.textContent = labels[k]; sel.appendChild(o); });
  }
  function showView(name) {
    state.view = name;
    for (const b of document.querySelectorAll('.tab')) b.classList.toggle('active', b.dataset.view === name);
    for (const s of document.querySelectorAll('.view')) s.classList.toggle('active', s.id === 'view-' + name);
    root.dataset.view = name;
    if (EK.ready) redraw();
  }
  EK.showView = showView;
  function redraw() {
    if (state.view === 'head') schedule(headJob);
    else if (state.view === 'matrix') schedule(matrixJob);
    else if (state.view === 'compare') schedule(compareJob);
    else schedule(gridJob);
  }
  function headRanges(hs) {  // [0,1,2,3,7] -> "0–3, 7"
    const out = [];
    for (let k = 0; k < hs.length; k++) {
      let e = k; while (e + 1 < hs.length && hs[e + 1] === hs[e] + 1) e++;
      out.push(e - k >= 2 ? `${hs[k]}–${hs[e]}` : hs.slice(k, e + 1).join(', ')); k = e;
    }
    return out.join(', ');
  }
  function info() {
    const na = meta.segments.filter((s) => s === 0).length, nb = N - na;
    const pair = boundary >= 0 ? ` · pair: A ${na} tokens, B ${nb} tokens (boundary in orange)` : '';
    const sel = (L !== meta.model_layers || H !== meta.model_heads) ? ` (showing ${L} × ${H})` : '';
    const cmp = meta.diff ? ` · compared with ${meta.diff.backend}` : '';
    $('info').textContent = `backend ${meta.backend} · ${meta.model_layers} layers × ${meta.model_heads} heads${sel} · ${N} tokens${pair}${cmp}`;
    $('quant').textContent = `Probabilities are stored as 8-bit levels q (p ≈ q / ${meta.quant.scale}): every value on this page ` +
      `is within ±${meta.quant.bound.toFixed(5)} of the backend's float32 output (largest error here: ${meta.quant.max_error.toFixed(5)}).` +
      ' Thumbnails are pooled from the float32 values.' +
      (meta.diff ? ` Differences are stored as 8-bit levels per layer (±127 = that layer's max |diff|), error ≤ ${meta.diff.max_error.toExponential(2)};` +
        ' the max |diff| column is exact (float32).' : '') +
      ' Hiding special tokens drops their rows and columns without renormalising. Made by encoderkit.';
  }

  // ------------------------------------------------------------------ model view
  // Thumbnails: "thumbs" holds max-pooled p, log-coded (level 1..255 = p from 1e-6 to 1, 0 = less);
  // "thumbs-ratio" holds mean-pooled p x n as 128 + 16 log2 (1/256 x .. 256 x uniform).
  const P_OF = new Float32Array(256);
  for (let q = 1; q < 256; q++) P_OF[q] = Math.pow(10, ((q - 1) / 254 - 1) * meta.thumb.log_decades);
  const OCT = meta.thumb.octave_levels, LOG_FLOOR = -4;  // the log scale starts at p = 1e-4
  function nShown() { return state.hide ? meta.special.filter((s) => !s).length : N; }
  const SCALES = {
    absolute: {
      legend: () => ['max-pooled attention, one scale for every thumbnail: white 0', [0, 1], 'darkest 1 (square-root colour scale)'],
      color: (q) => seqColor(P_OF[q]),
      range: (lo, hi) => `max-pooled p ${P_OF[lo].toPrecision(2)}–${P_OF[hi].toPrecision(2)}`,
    },
    own: {
      legend: () => ['max-pooled attention, each thumbnail from its own smallest value: white', [0, 1],
        'darkest its largest (linear; hover a thumbnail for its range)'],
      color: (q, lo, hi) => seqColor((P_OF[q] - P_OF[lo]) / ((P_OF[hi] - P_OF[lo]) || 1), true),
      range: (lo, hi) => `white ${P_OF[lo].toPrecision(2)}, darkest ${P_OF[hi].toPrecision(2)}`,
    },
    log: {
      legend: () => [`log10 of max-pooled attention: white 1e${LOG_FLOOR} or less`, [0, 1], 'darkest 1 (1e0), linear in log p'],
      color: (q) => seqColor(q ? (Math.log10(P_OF[q]) - LOG_FLOOR) / -LOG_FLOOR : 0, true),
      range: (lo, hi) => `max-pooled p ${P_OF[lo].toPrecision(2)}–${P_OF[hi].toPrecision(2)}`,
    },
    uniform: {
      legend: () => {
        const r = ratioSpan(), f = Math.pow(2, r);
        return [`mean-pooled attention relative to uniform attention 1/n (n = ${nShown()} tokens shown): blue ${fmtRatio(1 / f)} or less`,
          [-1, 1], `white 1 × (uniform), red ${fmtRatio(f)} or more (log2 scale, square-root colour)`];
      },
      color: (q) => divColor((q - 128) / OCT / ratioSpan()),
      range: (lo, hi) => `mean-pooled p × n from ${fmtRatio(Math.pow(2, (lo - 128) / OCT))} to ${fmtRatio(Math.pow(2, (hi - 128) / OCT))} uniform`,
    },
  };
  function fmtRatio(x) { return (x >= 10 ? x.toFixed(0) : x >= 1 ? +x.toFixed(2) : x >= 0.1 ? '1/' + +(1 / x).toFixed(1) : x.toPrecision(2)) + ' ×'; }
  const ratioSpan = () => meta.thumb.ratio_span;  // octaves: 3 = full colour at 1/8 x and 8 x uniform
  function drawThumb(canvas, data, t, l, h, color) {  // the compare grid: |diff| on one linear scale
    canvas.width = Math.max(t, 1); canvas.height = Math.max(t, 1);
    if (!t) return;
    const ctx = canvas.getContext('2d'), img = ctx.createImageData(t, t), base = (l * H + h) * t * t;
    for (let k = 0; k < t * t; k++) {
      const c = color(data[base + k] / 255);
      img.data[4 * k] = c[0]; img.data[4 * k + 1] = c[1]; img.data[4 * k + 2] = c[2]; img.data[4 * k + 3] = 255;
    }
    ctx.putImageData(img, 0, 0);
  }
  function drawScaledThumb(canvas, sc, t, l, h) {
    const data = sc === SCALES.uniform ? (state.hide ? ratioNs : ratio) : (state.hide ? thumbsNs : thumbs);
    canvas.width = Math.max(t, 1); canvas.height = Math.max(t, 1);
    if (!t) return '';
    const base = (l * H + h) * t * t;
    let lo = 255, hi = 0;
    for (let k = 0; k < t * t; k++) { const q = data[base + k]; if (q < lo) lo = q; if (q > hi) hi = q; }
    const ctx = canvas.getContext('2d'), img = ctx.createImageData(t, t);
    for (let k = 0; k < t * t; k++) {
      const c = sc.color(data[base + k], lo, hi);
      img.data[4 * k] = c[0]; img.data[4 * k + 1] = c[1]; img.data[4 * k + 2] = c[2]; img.data[4 * k + 3] = 255;
    }
    ctx.putImageData(img, 0, 0);
    return sc.range(lo, hi);
  }
  function buildGrid(el, onClick, titleOf) {
    el.style.gridTemplateColumns = `auto repeat(${H}, 42px)`;
    el.innerHTML = '';
    el.appendChild(document.createElement('span'));
    for (let h = 0; h < H; h++) { const s = document.createElement('span'); s.className = 'glabel'; s.textContent = 'h' + meta.heads[h]; el.appendChild(s); }
    for (let l = 0; l < L; l++) {
      const s = document.createElement('span'); s.className = 'glabel'; s.textContent = 'L' + meta.layers[l]; el.appendChild(s);
      for (let h = 0; h < H; h++) {
        const c = document.createElement('canvas');
        c.className = 'thumb'; c.dataset.layer = meta.layers[l]; c.dataset.head = meta.heads[h];
        c.dataset.li = l; c.dataset.hi = h; if (titleOf) c.title = titleOf(l, h);
        c.addEventListener('click', () => onClick(l, h));
        el.appendChild(c);
      }
    }
  }
  function drawGrid(el, all, ns, color) {
    const data = state.hide ? ns : all, t = state.hide ? meta.thumb.no_special : meta.thumb.all;
    for (const c of el.querySelectorAll('canvas.thumb')) drawThumb(c, data, t, +c.dataset.li, +c.dataset.hi, color);
  }
  let gridDrawn = '';  // the scale and hide state the model grid was last drawn with
  function* gridJob() {
    const key = `${state.thumbScale}|${state.hide}`, sc = SCALES[state.thumbScale];
    const [before, swatch, after] = sc.legend();
    const lg = $('thumb-legend'); lg.textContent = '';
    const sw = document.createElement('span'); sw.className = 'swatch';
    const stops = [0, 0.25, 0.5, 0.75, 1].map((x) => swatch[0] + x * (swatch[1] - swatch[0]));
    sw.style.background = `linear-gradient(to right, ${stops.map((v) => css(swatch[0] < 0 ? divColor(v) : seqColor(v, sc !== SCALES.absolute))).join(', ')})`;
    lg.append(before, sw, after);
    $('thumb-scale').value = state.thumbScale;
    root.dataset.thumbScale = state.thumbScale;
    if (key === gridDrawn) return;
    const t = state.hide ? meta.thumb.no_special : meta.thumb.all, cs = $('grid').querySelectorAll('canvas.thumb');
    for (let k = 0; k < cs.length; k++) {
      const c = cs[k], l = +c.dataset.li, h = +c.dataset.hi;
      c.title = `layer ${meta.layers[l]} head ${meta.heads[h]}: ${drawScaledThumb(c, sc, t, l, h)}; click for the head view`;
      if (k % H === H - 1) yield;
    }
    gridDrawn = key;
  }
  function openHead(l, h) {
    state.layer = l; state.heads = new Set([h]); state.avg = false; state.focus = null;
    $('layer-select').value = l; $('avg').checked = false;
    showView('head');
  }

  // ------------------------------------------------------------------ head view
  function buildColumns() {
    const vis = visible();
    for (const side of ['left', 'right']) {
      const col = $('col-' + side); col.innerHTML = '';
      for (const i of vis) {
        const d = document.createElement('div');
        d.className = 'tok' + (meta.special[i] ? ' special' : '') + (meta.segments[i] ? ' seg-b' : '') + (i === boundary ? ' boundary' : '');
        d.dataset.i = i; d.dataset.side = side; d.textContent = meta.tokens[i];
        d.title = `${i}: ${meta.raw_tokens[i]}`;
        col.appendChild(d);
      }
    }
    focusEls = [];
  }
  let focusEls = [];
  function markFocus(f) {
    for (const d of focusEls) d.classList.remove('focus');
    focusEls = f ? [...document.querySelectorAll(`#col-${f.side} .tok[data-i="${f.i}"]`)] : [];
    for (const d of focusEls) d.classList.add('focus');
  }
  function* headSources(l) {  // [{rgb, data, base}] for the selected heads, or their average (levels)
    const hs = [...state.heads].sort((a, b) => a - b);
    if (!state.avg) return hs.map((h) => ({ rgb: headRgb(h), data: probs, base: off(l, h) }));
    if (!hs.length) return [];
    const sum = new Uint16Array(NN);
    for (const h of hs) { const o = off(l, h); for (let k = 0; k < NN; k++) sum[k] += probs[o + k]; yield; }
    const avg = new Uint8Array(NN), n = hs.length;
    for (let k = 0; k < NN; k++) avg[k] = Math.round(sum[k] / n);
    return [{ rgb: [51, 51, 51], data: avg, base: 0 }];
  }
  // The head view's lines are drawn by the small rasterizer below, not by canvas paths: a browser fills
  // a path of thousands of crossing segments in one go (minutes at 512 tokens on a slow machine), while
  // this one works in slices between which the page answers. It paints into a float RGB buffer (each
  // line over what is there, with alpha = coverage x opacity, in a fixed order) stored column by
  // column, as the lines run mostly down the columns, and shows it through a transposed copy
  // (putImageData into a canvas turned on its side, then drawImage with a transposing transform).
  const head = { canvas: $('head-canvas'), ctx: null, side: null, sctx: null, img: null, buf: null,
                 W: 0, Hd: 0, s: 1, lo: 0, hi: 0, cache: null, cacheCanvas: null };
  function headSetup(nv) {
    const Wc = 220, Hc = Math.max(nv * ROW, 1), dpr = window.devicePixelRatio || 1;
    const s = Wc * Hc * dpr * dpr <= 4e6 ? dpr : 1;  // 512 tokens at dpr 2 would be 8 M pixels
    const W = Math.round(Wc * s), Hd = Math.round(Hc * s), c = head.canvas;
    if (W !== head.W || Hd !== head.Hd) {
      c.style.width = Wc + 'px'; c.style.height = Hc + 'px'; c.width = W; c.height = Hd;
      head.ctx = c.getContext('2d');
      head.side = document.createElement('canvas'); head.side.width = Hd; head.side.height = W;
      head.sctx = head.side.getContext('2d', { willReadFrequently: true });
      head.img = head.sctx.createImageData(Hd, W); head.px = new Uint32Array(head.img.data.buffer);
      head.buf = new Float32Array(W * Hd * 3); head.W = W; head.Hd = Hd;
    }
    head.s = s; head.buf.fill(1); head.lo = 0; head.hi = Hd;  // all dirty: the first flush clears the canvas
  }
  function headFlush() {  // copy the rows drawn since the last flush to the canvas
    const { buf, W, Hd } = head, d = head.px, lo = Math.max(0, head.lo), hi = Math.min(Hd, head.hi);
    if (hi <= lo) return;
    for (let c = 0; c < W; c++) {  // one 32-bit RGBA word per pixel (alpha 255; little-endian: R in the low byte)
      for (let p = c * Hd + lo, e = c * Hd + hi; p < e; p++) {
        d[p] = 0xff000000 | ((buf[3 * p + 2] * 255 + 0.5) << 16) | ((buf[3 * p + 1] * 255 + 0.5) << 8) | (buf[3 * p] * 255 + 0.5);
      }
    }
    head.sctx.putImageData(head.img, 0, 0, lo, 0, hi - lo, W);
    const ctx = head.ctx;
    ctx.setTransform(0, 1, 1, 0, 0, 0); ctx.imageSmoothingEnabled = false;
    ctx.drawImage(head.side, lo, 0, hi - lo, W, lo, 0, hi - lo, W);
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    head.lo = Hd; head.hi = 0;
  }
  // An antialiased line from (0, yA) to (W, yB): one step per pixel row when steep (the two pixels of a
  // row nearest the line share it by distance, LINE_W pixels' worth of ink, at most 1 each), per pixel
  // column when flat (two pixels of a column). Returns the steps taken.
  const LINE_W = 1.6;  // about the canvas lineWidth the head view used to stroke
  function rasterLine(yA, yB, cr, cg, cb, a) {
    const { buf, W, Hd } = head, dy = yB - yA, H3 = 3 * Hd;
    if (Math.abs(dy) >= W) {
      const inv = W / dy, r0 = Math.max(0, Math.round(Math.min(yA, yB))), r1 = Math.min(Hd - 1, Math.round(Math.max(yA, yB)) - 1);
      let x = (r0 + 0.5 - yA) * inv - 0.5;
      for (let r = r0; r <= r1; r++, x += inv) {
        let c = Math.floor(x), fr = x - c;
        if (c < 0) { c = 0; fr = 0; } else if (c >= W - 1) { c = W - 2; fr = 1; }
        const k = 3 * (c * Hd + r), k2 = k + H3, g = Math.min(1, LINE_W * (1 - fr)) * a, h = Math.min(1, LINE_W * fr) * a;
        buf[k] += (cr - buf[k]) * g; buf[k + 1] += (cg - buf[k + 1]) * g; buf[k + 2] += (cb - buf[k + 2]) * g;
        buf[k2] += (cr - buf[k2]) * h; buf[k2 + 1] += (cg - buf[k2 + 1]) * h; buf[k2 + 2] += (cb - buf[k2 + 2]) * h;
      }
      if (r0 < head.lo) head.lo = r0;
      if (r1 + 1 > head.hi) head.hi = r1 + 1;
      return r1 - r0 + 1;
    }
    const slope = dy / W;
    let y = yA + 0.5 * slope - 0.5;
    for (let c = 0; c < W; c++, y += slope) {
      let r = Math.floor(y), fr = y - r;
      if (r < 0) { r = 0; fr = 0; } else if (r >= Hd - 1) { r = Hd - 2; fr = 1; }
      const k = 3 * (c * Hd + r), g = Math.min(1, LINE_W * (1 - fr)) * a, h = Math.min(1, LINE_W * fr) * a;
      buf[k] += (cr - buf[k]) * g; buf[k + 1] += (cg - buf[k + 1]) * g; buf[k + 2] += (cb - buf[k + 2]) * g;
      buf[k + 3] += (cr - buf[k + 3]) * h; buf[k + 4] += (cg - buf[k + 4]) * h; buf[k + 5] += (cb - buf[k + 5]) * h;
    }
    const lo = Math.max(0, Math.floor(Math.min(yA, yB)) - 1), hi = Math.min(Hd, Math.ceil(Math.max(yA, yB)) + 1);
    if (lo < head.lo) head.lo = lo;
    if (hi > head.hi) head.hi = hi;
    return W;
  }
  function rasterBoundary(y) {  // the A/B boundary: a dashed orange line across the line area
    const { buf, W, Hd, s } = head, r0 = Math.max(0, Math.round(y - 0.5 * s)), r1 = Math.min(Hd, r0 + Math.max(1, Math.round(s)));
    for (let r = r0; r < r1; r++) for (let c = 0; c < W; c++) {
      if ((c / s) % 7 >= 4) continue;
      const k = 3 * (c * Hd + r); buf[k] = 0xd9 / 255; buf[k + 1] = 0x77 / 255; buf[k + 2] = 0x06 / 255;
    }
    if (r0 < head.lo) head.lo = r0;
    if (r1 > head.hi) head.hi = r1;
  }
  const hist = new Int32Array(256), above = new Int32Array(257);
  // Which lines: each query (and head) keeps its strongest lines until they carry MASS of its attention,
  // at most MAX_LINES (ties at the cut spread evenly along the row). If drawing them all would pass
  // WORK_BUDGET pixel steps, lines are drawn in order of rank in their query (every query's strongest
  // first), then weight, until the budget is spent. Hovering a key token draws every query's line to it.
  function* headJob(task) {
    const vis = visible(), l = state.layer, f = state.focus, canvas = head.canvas;
    const hs = [...state.heads].sort((a, b) => a - b), heads = hs.map((h) => meta.heads[h]);
    markFocus(f);
    for (const t of document.querySelectorAll('.head-toggle')) t.classList.toggle('off', !state.heads.has(+t.dataset.hi));
    const status = $('head-status');
    status.classList.add('drawing');
    canvas.dataset.drawn = '0';
    const key = `${l}|${hs}|${state.avg}|${state.hide}|${window.devicePixelRatio}`;
    if (!f && head.cache && head.cache.key === key) {  // back from a hover: the full view as it was drawn
      head.ctx.drawImage(head.cacheCanvas, 0, 0);
      Object.assign(canvas.dataset, head.cache.data);
      status.textContent = head.cache.status; status.title = head.cache.title; status.classList.remove('drawing');
      return;
    }
    headSetup(vis.length);
    task.flush = headFlush;
    const s = head.s, W = head.W, step = ROW * s, rowOf = new Int32Array(N).fill(-1);
    vis.forEach((i, r) => { rowOf[i] = r; });
    const srcs = yield* headSources(l);
    const rows = f && f.side === 'left' ? [f.i] : vis, cols = Int32Array.from(f && f.side === 'right' ? [f.i] : vis);
    const keyFocus = !!f && f.side === 'right';
    const cap = srcs.length * rows.length * Math.min(MAX_LINES, cols.length);
    const li = new Int32Array(cap), lj = new Int32Array(cap), lv = new Uint8Array(cap), ls = new Uint8Array(cap), lk = new Uint16Array(cap);
    const work = new Float64Array(MAX_LINES * 256);  // pixel steps per (rank, 255 - level)
    let n = 0, allMass = 0, rowsCut = 0;
    const add = (i, j, v, si, rank) => {
      const k = rank * 256 + 255 - v;
      li[n] = i; lj[n] = j; lv[n] = v; ls[n] = si; lk[n] = k; n++;
      work[k] += Math.max(W, Math.abs(rowOf[i] - rowOf[j]) * step);
    };
    for (let si = 0; si < srcs.length; si++) {
      const { data, base } = srcs[si];
      for (let ri = 0; ri < rows.length; ri++) {
        const i = rows[ri], o = base + i * N;
        if (keyFocus) { const v = data[o + cols[0]]; allMass += v; if (v) add(i, cols[0], v, si, 0); continue; }
        hist.fill(0);
        let S = 0;
        for (let c = 0; c < cols.length; c++) { const v = data[o + cols[c]]; hist[v]++; S += v; }
        allMass += S;
        if (!S) continue;
        const target = MASS * S;  // the cut level: lines above it are drawn, `take` of the ties at it
        let mass = 0, cnt = 0, cut = 1, take = 0;
        for (let v = 255; v >= 1; v--) {
          const c = hist[v]; above[v] = cnt; if (!c) continue;
          if (cnt + c > MAX_LINES) { cut = v; take = MAX_LINES - cnt; rowsCut++; break; }
          cnt += c; mass += v * c;
          if (mass >= target) { cut = v; take = c; break; }
        }
        const ties = hist[cut];
        let seen = 0;
        for (let c = 0; c < cols.length; c++) {
          const j = cols[c], v = data[o + j];
          if (v < cut) continue;
          if (v === cut) { const pick = Math.floor((seen + 1) * take / ties) > Math.floor(seen * take / ties); seen++; if (!pick) continue; }
          add(i, j, v, si, above[v]);
        }
        if (ri % 32 === 31) yield;
      }
    }
    // the budget: every (rank, level) group before `cutKey` is drawn whole, `frac` of the cut group
    let spent = 0, cutKey = work.length, frac = 1;
    for (let k = 0; k < work.length; k++) {
      if (spent + work[k] > WORK_BUDGET) { cutKey = k; frac = (WORK_BUDGET - spent) / work[k]; break; }
      spent += work[k];
    }
    let top = 0, drawn = 0, drawnMass = 0, seenCut = 0;
    for (let k = 0; k < n; k++) {
      let keep = lk[k] < cutKey;
      if (lk[k] === cutKey) { keep = Math.floor((seenCut + 1) * frac) > Math.floor(seenCut * frac); seenCut++; }
      if (!keep) continue;
      li[drawn] = li[k]; lj[drawn] = lj[k]; lv[drawn] = lv[k]; ls[drawn] = ls[k]; drawn++;
      drawnMass += lv[k]; if (lv[k] > top) top = lv[k];
    }
    yield;
    // draw: opacity = weight / the largest in view, at least 0.04 so that the faintest stay visible
    const rgb = srcs.map((x) => x.rgb.map((c) => c / 255));
    let steps = 0;
    for (let k = 0; k < drawn; k++) {
      const c = rgb[ls[k]];
      steps += rasterLine((rowOf[li[k]] + 0.5) * step, (rowOf[lj[k]] + 0.5) * step, c[0], c[1], c[2], Math.max(lv[k] / top, 0.04));
      if (steps > 20000) { steps = 0; yield; }
    }
    if (boundary >= 0 && rowOf[boundary] >= 0) rasterBoundary(rowOf[boundary] * step);
    headFlush();
    const qrows = new Set(), kcols = new Set();
    for (let k = 0; k < drawn; k++) { qrows.add(li[k]); kcols.add(lj[k]); }
    const topP = top / meta.quant.scale, share = allMass ? drawnMass / allMass : 0;
    const data = { layer: meta.layers[l], heads: heads.join(','), avg: state.avg ? '1' : '0', lines: drawn, rows: qrows.size,
      cols: kcols.size, focus: f ? `${f.side}:${f.i}` : '', top: topP, candidates: n, mass: share.toFixed(4), drawn: '1' };
    Object.assign(canvas.dataset, data);
    const what = keyFocus ? `every query's line to token ${f.i} "${meta.tokens[f.i]}" (weight ≥ 1/${meta.quant.scale})`
      : f ? `only the lines of token ${f.i} "${meta.tokens[f.i]}" (as query)` : 'each query\'s lines carrying 95 % of its attention (≤ 48)';
    const pct = 100 * share, pctText = pct > 0 && pct < 10 ? pct.toFixed(1) : pct.toFixed(0);
    status.textContent = `layer ${meta.layers[l]} · ${state.avg ? 'average of ' : ''}heads ${headRanges(heads) || '(none)'} · ` +
      (drawn < n ? `${drawn} of ${n} lines (drawing budget: each query's strongest first)` : `${drawn} lines`) +
      ` carrying ${pctText} % of the attention shown · ${what} · full opacity = ${topP.toFixed(3)}`;
    status.title = status.textContent + (rowsCut ? ` · ${rowsCut} of ${rows.length * srcs.length} queries reach ${MAX_LINES} lines before 95 %` : '');
    status.classList.remove('drawing');
    if (!f) {
      if (!head.cacheCanvas) head.cacheCanvas = document.createElement('canvas');
      const cc = head.cacheCanvas; cc.width = head.W; cc.height = head.Hd;
      cc.getContext('2d').drawImage(canvas, 0, 0);
      head.cache = { key, data, status: status.textContent, title: status.title };
    }
  }
  function setupHead() {
    fillSelect($('layer-select'), meta.layers.map((_, k) => k), meta.layers.map(String));
    $('layer-select').addEventListener('change', (e) => { state.layer = +e.target.value; state.focus = null; schedule(headJob); });
    $('avg').addEventListener('change', (e) => { state.avg = e.target.checked; schedule(headJob); });
    const tg = $('head-toggles');
    for (let h = 0; h < H; h++) {
      const s = document.createElement('span');
      s.className = 'head-toggle'; s.dataset.hi = h; s.dataset.head = meta.heads[h];
      s.textContent = meta.heads[h]; s.style.background = headColor(h); s.title = 'toggle head ' + meta.heads[h];
      s.addEventListener('click', () => { state.heads.has(h) ? state.heads.delete(h) : state.heads.add(h); schedule(headJob); });
      tg.appendChild(s);
    }
    $('heads-all').addEventListener('click', () => { for (let h = 0; h < H; h++) state.heads.add(h); schedule(headJob); });
    $('heads-none').addEventListener('click', () => { state.heads.clear(); schedule(headJob); });
    for (const side of ['left', 'right']) {
      const col = $('col-' + side);
      col.addEventListener('mouseover', (e) => {
        const t = e.target.closest('.tok'); if (!t) return;
        const i = +t.dataset.i;
        if (!state.focus || state.focus.side !== side || state.focus.i !== i) { state.focus = { side, i }; schedule(headJob); }
      });
      col.addEventListener('mouseleave', () => { if (state.focus) { state.focus = null; schedule(headJob); } });
    }
  }

  // ------------------------------------------------------------------ matrix views
  function matrixLayout(nv) {
    const cell = Math.max(1, Math.min(28, Math.floor(720 / Math.max(nv, 1))));
    const labels = cell >= 9, margin = labels ? 120 : 40;
    return { cell, labels, margin };
  }
  // values: Float32Array [nv * nv] already scaled to the colour function's range
  function drawMatrixOn(canvas, vis, values, color, lab) {
    const nv = vis.length, { cell, labels, margin } = matrixLayout(nv), size = nv * cell;
    const dpr = window.devicePixelRatio || 1;
    canvas.style.width = (margin + size + 8) + 'px'; canvas.style.height = (margin + size + 8) + 'px';
    canvas.width = Math.round((margin + size + 8) * dpr); canvas.height = Math.round((margin + size + 8) * dpr);
    const ctx = canvas.getContext('2d'); ctx.scale(dpr, dpr);
    ctx.fillStyle = '#fff'; ctx.fillRect(0, 0, margin + size + 8, margin + size + 8);
    const src = document.createElement('canvas'); src.width = Math.max(nv, 1); src.height = Math.max(nv, 1);
    if (nv) {
      const sctx = src.getContext('2d'), img = sctx.createImageData(nv, nv);
      for (let k = 0; k < nv * nv; k++) {
        const col = color(values[k]);
        img.data[4 * k] = col[0]; img.data[4 * k + 1] = col[1]; img.data[4 * k + 2] = col[2]; img.data[4 * k + 3] = 255;
      }
      sctx.putImageData(img, 0, 0);
      ctx.imageSmoothingEnabled = false;
      ctx.drawImage(src, margin, margin, size, size);
    }
    ctx.fillStyle = '#1d2330'; ctx.font = `${Math.min(12, Math.max(cell - 2, 8))}px ui-monospace, "DejaVu Sans Mono", monospace`;
    if (labels) {
      ctx.textAlign = 'right'; ctx.textBaseline = 'middle';
      vis.forEach((i, r) => ctx.fillText(meta.tokens[i].slice(0, 14), margin - 4, margin + (r + 0.5) * cell));
      ctx.save(); ctx.translate(margin, margin); ctx.rotate(-Math.PI / 2); ctx.textAlign = 'left';
      vis.forEach((i, c) => ctx.fillText(meta.tokens[i].slice(0, 14), 4, (c + 0.5) * cell));
      ctx.restore();
    } else {  // too many tokens for labels: index ticks; the cursor readout names the tokens
      ctx.textAlign = 'right'; ctx.textBaseline = 'middle'; ctx.font = '10px sans-serif';
      const step = Math.ceil(nv / 8 / 10) * 10 || 1;
      for (let r = 0; r < nv; r += step) { ctx.fillText(vis[r], margin - 3, margin + (r + 0.5) * cell); }
      ctx.textAlign = 'center'; ctx.textBaseline = 'bottom';
      for (let c = 0; c < nv; c += step) { ctx.fillText(vis[c], margin + (c + 0.5) * cell, margin - 3); }
    }
    const b = vis.indexOf(boundary);
    if (boundary >= 0 && b >= 0) {
      ctx.strokeStyle = '#d97706'; ctx.lineWidth = 1.5; ctx.beginPath();
      ctx.moveTo(margin, margin + b * cell); ctx.lineTo(margin + size, margin + b * cell);
      ctx.moveTo(margin + b * cell, margin); ctx.lineTo(margin + b * cell, margin + size); ctx.stroke();
    }
    ctx.fillStyle = '#667085'; ctx.font = '11px sans-serif'; ctx.textAlign = 'left'; ctx.textBaseline = 'top';
    ctx.fillText(lab, 2, 2);
    canvas.onmousemove = (e) => {
      const rect = canvas.getBoundingClientRect();
      const c = Math.floor((e.clientX - rect.left - margin) / cell), r = Math.floor((e.clientY - rect.top - margin) / cell);
      canvas.dispatchEvent(new CustomEvent('ek-cell', { detail: (r >= 0 && c >= 0 && r < nv && c < nv) ? [vis[r], vis[c]] : null }));
    };
    canvas.dataset.n = nv; canvas.dataset.cell = cell; canvas.dataset.margin = margin;
  }
  function headOptions(sel, withAvg) {
    const v = meta.heads.map((_, k) => k), lab = meta.heads.map(String);
    if (withAvg) { v.push(-1); lab.push('average'); }
    fillSelect(sel, v, lab);
  }
  function matrixValue(l, h, i, j) {
    if (h >= 0) return prob(l, h, i, j);
    let s = 0; for (let k = 0; k < H; k++) s += probs[off(l, k) + i * N + j];
    return s / (255 * H);
  }
  function* matrixValues(vis, valueOf) {  // Float32Array of valueOf over vis x vis, a few rows per step
    const nv = vis.length, out = new Float32Array(nv * nv);
    for (let r = 0; r < nv; r++) {
      const i = vis[r], o = r * nv;
      for (let c = 0; c < nv; c++) out[o + c] = valueOf(i, vis[c]);
      if (r % 32 === 31) yield;
    }
    return out;
  }
  function* matrixJob() {
    const l = state.mlayer, h = state.mhead, canvas = $('matrix-canvas'), vis = visible();
    const values = yield* matrixValues(vis, (i, j) => matrixValue(l, h, i, j));
    let top = 0;  // darkest = the largest value shown, stated in the label
    for (let k = 0; k < values.length; k++) if (values[k] > top) top = values[k];
    const sc = 1 / (top || 1);
    for (let k = 0; k < values.length; k++) values[k] *= sc;
    yield;
    drawMatrixOn(canvas, vis, values, seqColor,
      `layer ${meta.layers[l]} · ${h >= 0 ? 'head ' + meta.heads[h] : 'average over heads'} · rows: queries, columns: keys · darkest = ${top.toFixed(3)}`);
    canvas.dataset.top = top;
    canvas.dataset.layer = meta.layers[l]; canvas.dataset.head = h >= 0 ? meta.heads[h] : 'avg';
  }
  function setupMatrix() {
    fillSelect($('matrix-layer'), meta.layers.map((_, k) => k), meta.layers.map(String));
    headOptions($('matrix-head'), true);
    $('matrix-layer').addEventListener('change', (e) => { state.mlayer = +e.target.value; schedule(matrixJob); });
    $('matrix-head').addEventListener('change', (e) => { state.mhead = +e.target.value; schedule(matrixJob); });
    $('matrix-canvas').addEventListener('ek-cell', (e) => {
      const out = $('matrix-value');
      if (!e.detail) { out.textContent = 'move the cursor over the matrix'; out.dataset.value = ''; return; }
      const [i, j] = e.detail, v = matrixValue(state.mlayer, state.mhead, i, j);
      out.textContent = `query ${i} "${meta.tokens[i]}" → key ${j} "${meta.tokens[j]}": ${v.toFixed(4)} (±${meta.quant.bound.toFixed(4)})`;
      out.dataset.value = v; out.dataset.i = i; out.dataset.j = j;
    });
  }

  // ------------------------------------------------------------------ compare view
  let diffGridDrawn = null;
  function* compareJob() {
    const l = state.dlayer, h = state.dhead, s = meta.diff.scale[l] || 1;
    if (diffGridDrawn !== state.hide) { drawGrid($('diff-grid'), dthumbs, dthumbsNs, redColor); diffGridDrawn = state.hide; yield; }
    const values = yield* matrixValues(visible(), (i, j) => diffAt(l, h, i, j) / s);
    drawMatrixOn($('diff-canvas'), visible(), values, divColor,
      `${meta.diff.backend} − ${meta.backend} · layer ${meta.layers[l]} · head ${meta.heads[h]} · colour scale ±${s.toExponential(2)}`);
    for (const tr of document.querySelectorAll('#maxdiff tbody tr')) tr.classList.toggle('sel', +tr.dataset.li === l);
  }
  function setupCompare() {
    const d = meta.diff;
    $('tab-compare').hidden = false;
    $('compare-hint').textContent = `${d.backend} against ${meta.backend} on the same tokens: the largest |difference| of ` +
      'attention probabilities per layer (exact), one thumbnail per head (|diff|, one colour scale for the whole grid: ' +
      `white 0, red ${d.thumb_max.toExponential(2)}), and the signed difference matrix of one head (red: ${d.backend} higher).`;
    if (Math.max(...d.max_abs) === 0) {
      $('compare-hint').textContent += ` The two backends returned identical attention (max |diff| = 0 everywhere): ` +
        'they computed it with the same graph (today every ONNX backend returns attention from one fp32 analysis graph).';
    }
    const tbody = document.querySelector('#maxdiff tbody'), top = Math.max(...d.max_abs) || 1;
    d.max_abs.forEach((v, l) => {
      const tr = document.createElement('tr'); tr.dataset.li = l; tr.dataset.layer = meta.layers[l];
      tr.innerHTML = `<td>${meta.layers[l]}</td><td class="maxdiff"></td><td><div class="bar"></div></td>`;
      tr.querySelector('.maxdiff').textContent = v.toExponential(3);
      tr.querySelector('.maxdiff').dataset.value = String(v);
      tr.querySelector('.bar').style.width = Math.round(200 * v / top) + 'px';
      tr.addEventListener('click', () => { state.dlayer = l; $('diff-layer').value = l; schedule(compareJob); });
      tbody.appendChild(tr);
    });
    buildGrid($('diff-grid'), (l, h) => { state.dlayer = l; state.dhead = h; $('diff-layer').value = l; $('diff-head').value = h; schedule(compareJob); },
      (l, h) => `layer ${meta.layers[l]} head ${meta.heads[h]}: max |diff| ${d.max_abs_head[l][h].toExponential(3)}`);
    fillSelect($('diff-layer'), meta.layers.map((_, k) => k), meta.layers.map(String));
    headOptions($('diff-head'), false);
    $('diff-layer').addEventListener('change', (e) => { state.dlayer = +e.target.value; schedule(compareJob); });
    $('diff-head').addEventListener('change', (e) => { state.dhead = +e.target.value; schedule(compareJob); });
    $('diff-canvas').addEventListener('ek-cell', (e) => {
      const out = $('diff-value');
      if (!e.detail) { out.textContent = 'move the cursor over the matrix'; out.dataset.value = ''; return; }
      const [i, j] = e.detail, v = diffAt(state.dlayer, state.dhead, i, j), p = prob(state.dlayer, state.dhead, i, j);
      out.textContent = `query ${i} "${meta.tokens[i]}" → key ${j} "${meta.tokens[j]}": ${meta.backend} ${p.toFixed(4)}, ` +
        `${d.backend} − ${meta.backend} ${v >= 0 ? '+' : ''}${v.toExponential(2)}`;
      out.dataset.value = v; out.dataset.i = i; out.dataset.j = j;
    });
  }

  // ------------------------------------------------------------------ start
  async function start() {
    const t0 = performance.now();
    info();
    for (const b of document.querySelectorAll('.tab')) b.addEventListener('click', () => showView(b.dataset.view));
    $('hide-special').checked = state.hide;
    $('hide-special').addEventListener('change', (e) => {
      state.hide = e.target.checked; state.focus = null;
      buildColumns(); redraw();  // the model grid and the compare grid redraw when next shown
    });
    $('thumb-scale').value = state.thumbScale;
    $('thumb-scale').addEventListener('change', (e) => { state.thumbScale = e.target.value; if (EK.ready) showView('model'); });
    [thumbs, thumbsNs, ratio, ratioNs] = await Promise.all(['thumbs', 'thumbs-ns', 'thumbs-ratio', 'thumbs-ratio-ns'].map(inflate));
    buildGrid($('grid'), openHead, null);
    const grid = gridJob();
    while (!grid.next().done) { /* all at once: nothing else can happen before the data is decoded */ }
    EK.gridMs = performance.now();
    probs = await inflate('probs');
    if (probs.length !== L * H * NN) throw new Error(`data holds ${probs.length} values, expected ${L * H * NN}`);
    setupHead(); setupMatrix(); buildColumns();
    if (meta.diff) {
      [diff, dthumbs, dthumbsNs] = await Promise.all([inflate('diff'), inflate('diff-thumbs'), inflate('diff-thumbs-ns')]);
      setupCompare(); drawGrid($('diff-grid'), dthumbs, dthumbsNs, redColor); diffGridDrawn = state.hide;
    }
    EK.ready = true;
    EK.decodeMs = performance.now() - t0;
    EK.readyMs = performance.now();  // since navigation start
    $('loading').textContent = '';
    redraw();
    root.dataset.ready = '1';
  }
  start().catch((e) => { fail(e); root.dataset.ready = 'error'; });
})();
