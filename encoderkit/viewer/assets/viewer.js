// encoderkit attention viewer. Plain JS, no library, no network: the data sits in <script> blocks
// of this page (uint8 levels, deflated, base64) and is inflated with the browser's own
// DecompressionStream. window.EK exposes the decoded values and state (notebooks, tests).
(function () {
  'use strict';
  const $ = (id) => document.getElementById(id);
  const meta = JSON.parse($('ek-meta').textContent);
  const L = meta.layers.length, H = meta.heads.length, N = meta.seq, NN = N * N;
  const ROW = 18;  // px per token in the head view (matches .tok height in the CSS)
  // Head view: a line is drawn when its weight is at least MIN_LINE x the largest in view, and a query
  // keeps at most MAX_LINES of them (512 tokens are 262k pairs per head: all of them would be a grey wall).
  const MIN_LINE = 0.05, MAX_LINES = 48;
  const state = { view: 'model', layer: 0, heads: new Set(), avg: false, hide: !!meta.hide_special,
                  focus: null, mlayer: 0, mhead: 0, dlayer: 0, dhead: 0 };
  for (let h = 0; h < H; h++) state.heads.add(h);
  let probs = null, diff = null, thumbs = null, thumbsNs = null, dthumbs = null, dthumbsNs = null;
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

  // ------------------------------------------------------------------ colours
  function seqColor(v) {  // 0..1 -> white..navy; sqrt so that spread-out attention stays visible
    const s = Math.sqrt(Math.min(1, Math.max(0, v)));
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
  function headColor(h) { return `hsl(${Math.round((h * 360 / Math.max(H, 1) + (h % 2) * 180 / Math.max(H, 1)) % 360)}, 70%, 42%)`; }

  // ------------------------------------------------------------------ chrome
  function fillSelect(sel, values, labels) {
    sel.innerHTML = '';
    values.forEach((v, k) => { const o = document.createElement('option'); o.value = v; o.textContent = labels[k]; sel.appendChild(o); });
  }
  function showView(name) {
    state.view = name;
    for (const b of document.querySelectorAll('.tab')) b.classList.toggle('active', b.dataset.view === name);
    for (const s of document.querySelectorAll('.view')) s.classList.toggle('active', s.id === 'view-' + name);
    document.documentElement.dataset.view = name;
    if (EK.ready) redraw();
  }
  EK.showView = showView;
  function redraw() {
    if (state.view === 'head') drawHead();
    else if (state.view === 'matrix') drawMatrix();
    else if (state.view === 'compare') drawCompare();
  }
  function info() {
    const na = meta.segments.filter((s) => s === 0).length, nb = N - na;
    const pair = boundary >= 0 ? ` · pair: A ${na} tokens, B ${nb} tokens (boundary in orange)` : '';
    const sel = (L !== meta.model_layers || H !== meta.model_heads) ? ` (showing ${L} × ${H})` : '';
    const cmp = meta.diff ? ` · compared with ${meta.diff.backend}` : '';
    $('info').textContent = `backend ${meta.backend} · ${meta.model_layers} layers × ${meta.model_heads} heads${sel} · ${N} tokens${pair}${cmp}`;
    $('quant').textContent = `Probabilities are stored as 8-bit levels q (p ≈ q / ${meta.quant.scale}): every value on this page ` +
      `is within ±${meta.quant.bound.toFixed(5)} of the backend's float32 output (largest error here: ${meta.quant.max_error.toFixed(5)}).` +
      (meta.diff ? ` Differences are stored as 8-bit levels per layer (±127 = that layer's max |diff|), error ≤ ${meta.diff.max_error.toExponential(2)};` +
        ' the max |diff| column is exact (float32).' : '') +
      ' Hiding special tokens drops their rows and columns without renormalising. Made by encoderkit.';
  }

  // ------------------------------------------------------------------ model view
  function drawThumb(canvas, data, t, l, h, color) {
    canvas.width = Math.max(t, 1); canvas.height = Math.max(t, 1);
    if (!t) return;
    const ctx = canvas.getContext('2d'), img = ctx.createImageData(t, t), base = (l * H + h) * t * t;
    for (let k = 0; k < t * t; k++) {
      const c = color(data[base + k] / 255);
      img.data[4 * k] = c[0]; img.data[4 * k + 1] = c[1]; img.data[4 * k + 2] = c[2]; img.data[4 * k + 3] = 255;
    }
    ctx.putImageData(img, 0, 0);
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
        c.dataset.li = l; c.dataset.hi = h; c.title = titleOf(l, h);
        c.addEventListener('click', () => onClick(l, h));
        el.appendChild(c);
      }
    }
  }
  function drawGrid(el, all, ns, color) {
    const data = state.hide ? ns : all, t = state.hide ? meta.thumb.no_special : meta.thumb.all;
    for (const c of el.querySelectorAll('canvas.thumb')) drawThumb(c, data, t, +c.dataset.li, +c.dataset.hi, color);
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
  }
  function headWeights(l) {  // [{color, get(i, j)}] for the selected heads, or their average
    const hs = [...state.heads].sort((a, b) => a - b);
    if (!state.avg) return hs.map((h) => ({ color: headColor(h), get: (i, j) => probs[off(l, h) + i * N + j] / 255 }));
    if (!hs.length) return [];
    const avg = new Float32Array(NN);
    for (const h of hs) { const o = off(l, h); for (let k = 0; k < NN; k++) avg[k] += probs[o + k]; }
    const s = 1 / (255 * hs.length);
    return [{ color: '#333', get: (i, j) => avg[i * N + j] * s }];
  }
  function drawHead() {
    const vis = visible(), nv = vis.length, l = state.layer;
    const canvas = $('head-canvas'), W = 220, Ht = Math.max(nv * ROW, 1), dpr = window.devicePixelRatio || 1;
    canvas.style.width = W + 'px'; canvas.style.height = Ht + 'px';
    canvas.width = Math.round(W * dpr); canvas.height = Math.round(Ht * dpr);
    const ctx = canvas.getContext('2d'); ctx.scale(dpr, dpr); ctx.lineWidth = 1.6;
    const pos = new Map(vis.map((i, r) => [i, (r + 0.5) * ROW]));
    const f = state.focus;
    const rows = f && f.side === 'left' ? [f.i] : vis, cols = f && f.side === 'right' ? [f.i] : vis;
    const ws = headWeights(l);
    let top = 0;  // opacity 1 = the largest weight in view, so spread-out heads stay visible
    for (const w of ws) for (const i of rows) for (const j of cols) { const p = w.get(i, j); if (p > top) top = p; }
    const floor = Math.max(MIN_LINE * top, 1 / meta.quant.scale);
    let lines = 0; const qrows = new Set(), kcols = new Set();
    for (const w of ws) {
      const buckets = Array.from({ length: 17 }, () => []);
      for (const i of rows) {
        let cand = [];
        for (const j of cols) { const p = w.get(i, j); if (p >= floor) cand.push([p, j]); }
        if (cand.length > MAX_LINES) cand = cand.sort((a, b) => b[0] - a[0]).slice(0, MAX_LINES);
        for (const [p, j] of cand) { buckets[Math.round(16 * p / top)].push(i, j); qrows.add(i); kcols.add(j); }
        lines += cand.length;
      }
      ctx.strokeStyle = w.color;
      buckets.forEach((b, k) => {
        if (!b.length) return;
        ctx.globalAlpha = Math.max(k / 16, 0.04);
        ctx.beginPath();
        for (let m = 0; m < b.length; m += 2) { ctx.moveTo(0, pos.get(b[m])); ctx.lineTo(W, pos.get(b[m + 1])); }
        ctx.stroke();
      });
    }
    ctx.globalAlpha = 1;
    if (boundary >= 0 && pos.has(boundary)) {  // the A/B boundary across the line area
      ctx.strokeStyle = '#d97706'; ctx.setLineDash([4, 3]); ctx.beginPath();
      ctx.moveTo(0, pos.get(boundary) - ROW / 2); ctx.lineTo(W, pos.get(boundary) - ROW / 2); ctx.stroke(); ctx.setLineDash([]);
    }
    const heads = [...state.heads].sort((a, b) => a - b).map((h) => meta.heads[h]);
    Object.assign(canvas.dataset, { layer: meta.layers[l], heads: heads.join(','), avg: state.avg ? '1' : '0', lines,
      rows: qrows.size, cols: kcols.size, focus: f ? `${f.side}:${f.i}` : '', top });
    for (const d of document.querySelectorAll('.tokcol .tok')) d.classList.toggle('focus', !!f && d.dataset.side === f.side && +d.dataset.i === f.i);
    for (const t of document.querySelectorAll('.head-toggle')) t.classList.toggle('off', !state.heads.has(+t.dataset.hi));
    $('head-status').textContent = `layer ${meta.layers[l]} · ${state.avg ? 'average of ' : ''}heads ${heads.join(', ') || '(none)'} · ` +
      `${lines} lines (full opacity = ${top.toFixed(3)})` +
      (f ? ` · only the lines of token ${f.i} "${meta.tokens[f.i]}" (${f.side === 'left' ? 'as query' : 'as key'})` : '');
  }
  function setupHead() {
    fillSelect($('layer-select'), meta.layers.map((_, k) => k), meta.layers.map(String));
    $('layer-select').addEventListener('change', (e) => { state.layer = +e.target.value; state.focus = null; drawHead(); });
    $('avg').addEventListener('change', (e) => { state.avg = e.target.checked; drawHead(); });
    const tg = $('head-toggles');
    for (let h = 0; h < H; h++) {
      const s = document.createElement('span');
      s.className = 'head-toggle'; s.dataset.hi = h; s.dataset.head = meta.heads[h];
      s.textContent = meta.heads[h]; s.style.background = headColor(h); s.title = 'toggle head ' + meta.heads[h];
      s.addEventListener('click', () => { state.heads.has(h) ? state.heads.delete(h) : state.heads.add(h); drawHead(); });
      tg.appendChild(s);
    }
    $('heads-all').addEventListener('click', () => { for (let h = 0; h < H; h++) state.heads.add(h); drawHead(); });
    $('heads-none').addEventListener('click', () => { state.heads.clear(); drawHead(); });
    for (const side of ['left', 'right']) {
      const col = $('col-' + side);
      col.addEventListener('mouseover', (e) => {
        const t = e.target.closest('.tok'); if (!t) return;
        const i = +t.dataset.i;
        if (!state.focus || state.focus.side !== side || state.focus.i !== i) { state.focus = { side, i }; drawHead(); }
      });
      col.addEventListener('mouseleave', () => { state.focus = null; drawHead(); });
    }
  }

  // ------------------------------------------------------------------ matrix views
  function matrixLayout(nv) {
    const cell = Math.max(1, Math.min(28, Math.floor(720 / Math.max(nv, 1))));
    const labels = cell >= 9, margin = labels ? 120 : 40;
    return { cell, labels, margin };
  }
  function drawMatrixOn(canvas, vis, valueOf, color, lab) {
    const nv = vis.length, { cell, labels, margin } = matrixLayout(nv), size = nv * cell;
    const dpr = window.devicePixelRatio || 1;
    canvas.style.width = (margin + size + 8) + 'px'; canvas.style.height = (margin + size + 8) + 'px';
    canvas.width = Math.round((margin + size + 8) * dpr); canvas.height = Math.round((margin + size + 8) * dpr);
    const ctx = canvas.getContext('2d'); ctx.scale(dpr, dpr);
    ctx.fillStyle = '#fff'; ctx.fillRect(0, 0, margin + size + 8, margin + size + 8);
    const src = document.createElement('canvas'); src.width = Math.max(nv, 1); src.height = Math.max(nv, 1);
    if (nv) {
      const sctx = src.getContext('2d'), img = sctx.createImageData(nv, nv);
      for (let r = 0; r < nv; r++) for (let c = 0; c < nv; c++) {
        const k = 4 * (r * nv + c), col = color(valueOf(vis[r], vis[c]));
        img.data[k] = col[0]; img.data[k + 1] = col[1]; img.data[k + 2] = col[2]; img.data[k + 3] = 255;
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
  function drawMatrix() {
    const l = state.mlayer, h = state.mhead, canvas = $('matrix-canvas'), vis = visible();
    let top = 0;  // darkest = the largest value shown, stated in the label
    for (const i of vis) for (const j of vis) { const v = matrixValue(l, h, i, j); if (v > top) top = v; }
    drawMatrixOn(canvas, vis, (i, j) => matrixValue(l, h, i, j) / (top || 1), seqColor,
      `layer ${meta.layers[l]} · ${h >= 0 ? 'head ' + meta.heads[h] : 'average over heads'} · rows: queries, columns: keys · darkest = ${top.toFixed(3)}`);
    canvas.dataset.top = top;
    canvas.dataset.layer = meta.layers[l]; canvas.dataset.head = h >= 0 ? meta.heads[h] : 'avg';
  }
  function setupMatrix() {
    fillSelect($('matrix-layer'), meta.layers.map((_, k) => k), meta.layers.map(String));
    headOptions($('matrix-head'), true);
    $('matrix-layer').addEventListener('change', (e) => { state.mlayer = +e.target.value; drawMatrix(); });
    $('matrix-head').addEventListener('change', (e) => { state.mhead = +e.target.value; drawMatrix(); });
    $('matrix-canvas').addEventListener('ek-cell', (e) => {
      const out = $('matrix-value');
      if (!e.detail) { out.textContent = 'move the cursor over the matrix'; out.dataset.value = ''; return; }
      const [i, j] = e.detail, v = matrixValue(state.mlayer, state.mhead, i, j);
      out.textContent = `query ${i} "${meta.tokens[i]}" → key ${j} "${meta.tokens[j]}": ${v.toFixed(4)} (±${meta.quant.bound.toFixed(4)})`;
      out.dataset.value = v; out.dataset.i = i; out.dataset.j = j;
    });
  }

  // ------------------------------------------------------------------ compare view
  function drawCompare() {
    const l = state.dlayer, h = state.dhead, s = meta.diff.scale[l] || 1;
    drawMatrixOn($('diff-canvas'), visible(), (i, j) => diffAt(l, h, i, j) / s, divColor,
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
      tr.addEventListener('click', () => { state.dlayer = l; $('diff-layer').value = l; drawCompare(); });
      tbody.appendChild(tr);
    });
    buildGrid($('diff-grid'), (l, h) => { state.dlayer = l; state.dhead = h; $('diff-layer').value = l; $('diff-head').value = h; drawCompare(); },
      (l, h) => `layer ${meta.layers[l]} head ${meta.heads[h]}: max |diff| ${d.max_abs_head[l][h].toExponential(3)}`);
    fillSelect($('diff-layer'), meta.layers.map((_, k) => k), meta.layers.map(String));
    headOptions($('diff-head'), false);
    $('diff-layer').addEventListener('change', (e) => { state.dlayer = +e.target.value; drawCompare(); });
    $('diff-head').addEventListener('change', (e) => { state.dhead = +e.target.value; drawCompare(); });
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
      drawGrid($('grid'), thumbs, thumbsNs, seqColor);
      if (meta.diff) drawGrid($('diff-grid'), dthumbs, dthumbsNs, redColor);
      buildColumns(); redraw();
    });
    [thumbs, thumbsNs] = await Promise.all([inflate('thumbs'), inflate('thumbs-ns')]);
    buildGrid($('grid'), openHead, (l, h) => `layer ${meta.layers[l]} head ${meta.heads[h]}: click for the head view`);
    drawGrid($('grid'), thumbs, thumbsNs, seqColor);
    EK.gridMs = performance.now();
    probs = await inflate('probs');
    if (probs.length !== L * H * NN) throw new Error(`data holds ${probs.length} values, expected ${L * H * NN}`);
    setupHead(); setupMatrix(); buildColumns();
    if (meta.diff) {
      [diff, dthumbs, dthumbsNs] = await Promise.all([inflate('diff'), inflate('diff-thumbs'), inflate('diff-thumbs-ns')]);
      setupCompare(); drawGrid($('diff-grid'), dthumbs, dthumbsNs, redColor);
    }
    EK.ready = true;
    EK.decodeMs = performance.now() - t0;
    EK.readyMs = performance.now();  // since navigation start
    $('loading').textContent = '';
    redraw();
    document.documentElement.dataset.ready = '1';
  }
  start().catch((e) => { $('loading').textContent = 'error: ' + e.message; document.documentElement.dataset.ready = 'error'; EK.error = String(e); });
})();
