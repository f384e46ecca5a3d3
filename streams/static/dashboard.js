// Worker Certification dashboard: plain DOM, no libraries, no network beyond this server.
// Approvals are signed here with WebCrypto Ed25519 (the private key never leaves the page);
// audit entries are verified here (leaf hash, inclusion path, signed checkpoint).
'use strict';

const CONTEXT = 'worker-certification/approval/v1';
const enc = new TextEncoder();
const $ = (id) => document.getElementById(id);
const state = { key: null, pending: '', permits: {}, trusted: [], overview: null };

// --- bytes ---------------------------------------------------------------------------------
const b64decode = (s) => Uint8Array.from(atob(s), (c) => c.charCodeAt(0));
const b64encode = (bytes) => btoa(String.fromCharCode(...new Uint8Array(bytes)));
const b64urlDecode = (s) => b64decode(s.replace(/-/g, '+').replace(/_/g, '/')
  + '==='.slice((s.length + 3) % 4));
const hex = (bytes) => [...new Uint8Array(bytes)].map((b) => b.toString(16).padStart(2, '0')).join('');
const concat = (...parts) => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) { out.set(p, at); at += p.length; }
  return out;
};
const sha256 = async (bytes) => new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
const equal = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);

// RFC 8785 (JCS): sorted keys (UTF-16 code units, JS's default sort), ES number and string forms.
function jcs(v) {
  if (v === null || typeof v === 'boolean' || typeof v === 'string') return JSON.stringify(v);
  if (typeof v === 'number') {
    if (!Number.isFinite(v)) throw new Error('no canonical form for ' + v);
    return JSON.stringify(v);
  }
  if (Array.isArray(v)) return '[' + v.map(jcs).join(',') + ']';
  return '{' + Object.keys(v).sort().map((k) => JSON.stringify(k) + ':' + jcs(v[k])).join(',') + '}';
}

// --- small helpers -------------------------------------------------------------------------
async function api(method, path, body) {
  const init = { method, headers: { Accept: 'application/json' } };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers['Content-Type'] = 'application/json';
  }
  const response = await fetch(path, init);
  let data = null;
  try { data = await response.json(); } catch (e) { data = null; }
  return { ok: response.ok, status: response.status, data };
}
const errorText = (r) => (r.data && r.data.error)
  ? `${r.data.error.code}: ${r.data.error.message}` : `HTTP ${r.status}`;

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'class') node.className = v;
    else if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null) node.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c !== null && c !== undefined) node.append(c instanceof Node ? c : String(c));
  }
  return node;
}
const when = (t) => (t ? t.replace('T', ' ').replace(/\.\d+Z$/, 'Z') : '');

// --- the approver's key ----------------------------------------------------------------------
// Accepted: the PEM file `certify approver keygen` writes (PKCS#8, "BEGIN PRIVATE KEY"), or an
// Ed25519 JWK. Imported as a non-extractable CryptoKey; the text is cleared from the page.
async function importApproverKey(text) {
  text = text.trim();
  let jwk;
  if (text.startsWith('-----BEGIN PRIVATE KEY-----')) {
    const der = b64decode(text.replace(/-----(BEGIN|END) PRIVATE KEY-----/g, '').replace(/\s+/g, ''));
    const extractable = await crypto.subtle.importKey('pkcs8', der, { name: 'Ed25519' }, true, ['sign']);
    jwk = await crypto.subtle.exportKey('jwk', extractable);
  } else if (text.startsWith('{')) {
    jwk = JSON.parse(text);
    if (jwk.kty !== 'OKP' || jwk.crv !== 'Ed25519' || !jwk.d || !jwk.x) {
      throw new Error('a JWK must be {"kty":"OKP","crv":"Ed25519","d":…,"x":…}');
    }
  } else {
    throw new Error('not a PEM PKCS#8 private key (-----BEGIN PRIVATE KEY-----) or an Ed25519 JWK');
  }
  const privateKey = await crypto.subtle.importKey(
    'jwk', { kty: 'OKP', crv: 'Ed25519', d: jwk.d, x: jwk.x }, { name: 'Ed25519' }, false, ['sign']);
  const publicKey = b64urlDecode(jwk.x);
  return { privateKey, publicKey: b64encode(publicKey), keyId: hex(await sha256(publicKey)).slice(0, 16) };
}

async function loadKey() {
  const status = $('key-status');
  try {
    state.key = await importApproverKey($('key-text').value);
    $('key-text').value = '';
    status.textContent = `Key loaded: key id ${state.key.keyId} (public ${state.key.publicKey}).`;
    status.dataset.state = 'ok';
  } catch (error) {
    state.key = null;
    status.textContent = `Key refused: ${error.message || error}`;
    status.dataset.state = 'error';
  }
}

// --- signing an approval ---------------------------------------------------------------------
function normaliseTime(text) {
  const m = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|\+00:00)$/.exec(text);
  if (!m) throw new Error(`cannot put the time ${text} in canonical form`);
  return `${m[1]}.${((m[2] || '') + '000000').slice(0, 6)}Z`;
}

// The request hash, recomputed from the request the server shows (events/signing.py): an
// approver signs what they can see, never a hash they were merely told.
async function requestHash(view) {
  const doc = JSON.parse(JSON.stringify(view.request));
  for (const name of ['request_sha256', 'key_id', 'signature']) delete doc[name];
  if (doc.scope) {
    for (const name of ['not_before', 'not_after']) {
      if (typeof doc.scope[name] === 'string') doc.scope[name] = normaliseTime(doc.scope[name]);
    }
  }
  if (typeof doc.requested_at === 'string') doc.requested_at = normaliseTime(doc.requested_at);
  return hex(await sha256(enc.encode(jcs(doc))));
}

async function decide(permitId, decision) {
  // The outcome goes to the row (while it is there) and to the log below the table (which
  // stays: an issued permit leaves the pending list at the next poll).
  const say = (text, ok) => {
    const line = `${permitId}: ${text}`;
    let result = $(`result-${permitId}`);
    if (!result) {
      result = el('li', { id: `result-${permitId}`, 'data-testid': `result-${permitId}` });
      $('decisions').prepend(result);
    }
    for (const node of [$(`msg-${permitId}`), result]) {
      if (node) { node.textContent = node === result ? line : text; node.dataset.state = ok ? 'ok' : 'error'; }
    }
  };
  if (!state.key) return say('Load your key first (Approver, above).', false);
  const approverId = $('approver-id').value.trim();
  const role = $('approver-role').value.trim();
  if (!approverId || !role) return say('Fill in your approver id and role.', false);
  const got = await api('GET', `/v1/permits/${encodeURIComponent(permitId)}`);
  if (!got.ok) return say(`refused (${errorText(got)})`, false);
  const view = got.data.permit;
  let sha;
  try {
    sha = await requestHash(view);
  } catch (error) {
    return say(`not signed: ${error.message}`, false);
  }
  if (sha !== view.request_sha256) {
    return say('not signed: the request hash the server shows is not the hash of the request it shows', false);
  }
  const decidedAt = new Date().toISOString().replace(/Z$/, '000Z');
  const members = { approver_id: approverId, approver_role: role, context: CONTEXT,
    decided_at: decidedAt, decision, permit_id: permitId, request_sha256: sha };
  const message = enc.encode(JSON.stringify(members)); // keys already in canonical order
  const signature = await crypto.subtle.sign({ name: 'Ed25519' }, state.key.privateKey, message);
  const body = { permit_id: permitId, request_sha256: sha, decision, approver_id: approverId,
    approver_role: role, decided_at: decidedAt, key_id: state.key.keyId,
    signature: b64encode(signature), comments: `${decision} from the dashboard` };
  const sent = await api('POST', `/v1/permits/${encodeURIComponent(permitId)}/approvals`, body);
  if (!sent.ok) return say(`refused (${errorText(sent)})`, false);
  const permit = sent.data.permit;
  say(`${decision === 'approve' ? 'approved' : 'denied'}: the permit is now ${permit.state}`, true);
  refreshPermits();
}

// --- permits (polled) --------------------------------------------------------------------------
function scopeText(p) {
  const s = p.scope || {};
  return `${(s.operations || []).join(', ')} on ${(s.services || []).join(', ') || '-'} in ${s.environment || '?'}`;
}

function renderPending(pending) {
  const ids = pending.map((p) => `${p.permit_id}:${p.approvals.length}`).join('|');
  if (ids === state.pending) return; // keep the messages and focus while nothing changed
  state.pending = ids;
  const body = $('pending');
  const kept = {};
  for (const node of body.querySelectorAll('.msg')) kept[node.id] = [node.textContent, node.dataset.state];
  body.replaceChildren();
  if (!pending.length) body.append(el('tr', {}, el('td', { colspan: 7 }, 'Nothing waits for approval.')));
  for (const p of pending) {
    const msgId = `msg-${p.permit_id}`;
    const msg = el('span', { id: msgId, class: 'msg', 'data-testid': msgId });
    if (kept[msgId]) { [msg.textContent, msg.dataset.state] = kept[msgId]; }
    const quorum = p.quorum ? (p.quorum.met ? 'met' : `missing ${JSON.stringify(p.quorum.missing)}`) : '';
    body.append(el('tr', { id: `pending-${p.permit_id}` },
      el('td', {}, el('code', {}, p.permit_id), el('br'), p.permit_type),
      el('td', {}, p.level), el('td', {}, p.requested_by),
      el('td', {}, scopeText(p), el('br'), el('small', {}, p.justification || '')),
      el('td', {}, when(p.requested_at)), el('td', {}, quorum),
      el('td', {},
        el('button', { id: `approve-${p.permit_id}`, onclick: () => decide(p.permit_id, 'approve') }, 'Approve'),
        ' ',
        el('button', { id: `deny-${p.permit_id}`, onclick: () => decide(p.permit_id, 'deny') }, 'Deny'),
        msg)));
  }
}

function renderPermits(permits) {
  const body = $('permit-list');
  body.replaceChildren();
  if (!permits.length) body.append(el('tr', {}, el('td', { colspan: 7 }, 'No permits yet.')));
  for (const p of permits.slice().reverse()) {
    const last = p.history && p.history.length ? p.history[p.history.length - 1] : null;
    const changed = state.permits[p.permit_id] && state.permits[p.permit_id] !== p.state;
    state.permits[p.permit_id] = p.state;
    body.append(el('tr', { class: changed ? 'changed' : '' },
      el('td', {}, el('code', {}, p.permit_id)), el('td', {}, p.permit_type), el('td', {}, p.level),
      el('td', { id: `state-${p.permit_id}`, class: `state-${p.state}` }, p.state),
      el('td', {}, p.worker_id || ''), el('td', {}, when(p.requested_at)),
      el('td', {}, last ? `${last.event} ${when(last.at)}${last.actor ? ' by ' + last.actor : ''}` : '')));
  }
}

async function refreshPermits() {
  const [pending, all] = await Promise.all([api('GET', '/v1/permits?state=pending&limit=200'),
    api('GET', '/v1/permits?limit=200')]);
  if (pending.ok) renderPending(pending.data.permits);
  if (all.ok) renderPermits(all.data.permits);
}

// --- charts (inline SVG) -----------------------------------------------------------------------
function barChart(series, labels, colors) {
  const width = 420, height = 190, left = 34, bottom = 24, top = 12;
  const max = Math.max(1e-9, ...series.flatMap((s) => s.values));
  const group = (width - left) / Math.max(1, labels.length);
  const bar = (group - 10) / series.length;
  const ns = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(ns, 'svg');
  svg.setAttribute('width', width); svg.setAttribute('height', height);
  svg.setAttribute('role', 'img');
  const add = (tag, attrs, text) => {
    const node = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    svg.append(node);
  };
  add('line', { x1: left, y1: height - bottom, x2: width, y2: height - bottom, stroke: '#99a' });
  add('text', { x: 2, y: top + 4 }, max >= 10 ? max.toFixed(0) : max.toFixed(2));
  labels.forEach((label, i) => {
    series.forEach((s, j) => {
      const v = s.values[i] || 0;
      const h = (height - bottom - top) * v / max;
      add('rect', { x: left + i * group + 5 + j * bar, y: height - bottom - h, width: bar - 2,
        height: h, fill: colors[j] }, undefined);
      add('text', { x: left + i * group + 5 + j * bar, y: height - bottom - h - 2 },
        v >= 10 || Number.isInteger(v) ? String(Math.round(v)) : v.toFixed(2));
    });
    add('text', { x: left + i * group + group / 2 - 8, y: height - 6 }, label);
  });
  return svg;
}

async function refreshCharts() {
  const r = await api('GET', '/dashboard/api/metrics');
  if (!r.ok) { $('chart-decisions').textContent = errorText(r); return; }
  const m = r.data;
  const levels = ['0', '1', '2', '3', '4'];
  $('chart-decisions').replaceChildren(barChart(
    [{ values: levels.map((l) => m.decisions_by_level[l] || 0) }], levels.map((l) => `L${l}`), ['#4a78b5']));
  const appr = Object.keys(m.approval_time_by_level).sort();
  const longest = Math.max(0, ...appr.map((l) => m.approval_time_by_level[l].p95_hours));
  const [unit, scale] = longest < 2 ? ['minutes', 60] : ['hours', 1];
  $('approvals-caption').textContent = `Approval time by level (${unit}: mean, p95)`;
  $('chart-approvals').replaceChildren(appr.length ? barChart(
    [{ values: appr.map((l) => m.approval_time_by_level[l].mean_hours * scale) },
      { values: appr.map((l) => m.approval_time_by_level[l].p95_hours * scale) }],
    appr.map((l) => `L${l}`), ['#6aa36f', '#c99a3b']) : 'No approvals yet.');
  $('metric-targets').replaceChildren(...m.targets.map((t) => el('span', {
    class: t.met === false ? 'bad' : (t.met ? 'ok' : '') },
  `${t.metric} ${t.value === null ? 'n/a' : (typeof t.value === 'number' ? +t.value.toFixed(3) : t.value)} (${t.target}) · `)));
}

// --- audit log: verified in the browser --------------------------------------------------------
async function nodeHash(left, right) { return sha256(concat(Uint8Array.of(1), left, right)); }

async function rootFromInclusion(index, size, leaf, proof) {  // RFC 9162 2.1.3.2
  if (index < 0 || index >= size) throw new Error('index outside the tree');
  let fn = index, sn = size - 1, r = leaf;
  const half = (x) => Math.floor(x / 2);
  for (const p of proof) {
    if (sn === 0) throw new Error('proof too long');
    if (fn % 2 === 1 || fn === sn) {
      r = await nodeHash(p, r);
      if (fn % 2 === 0) { while (fn !== 0 && fn % 2 === 0) { fn = half(fn); sn = half(sn); } }
    } else {
      r = await nodeHash(r, p);
    }
    fn = half(fn); sn = half(sn);
  }
  if (sn !== 0) throw new Error('proof too short');
  return r;
}

async function parseVkey(vkey) {  // name+hexid+base64(0x01 || public key)
  const a = vkey.indexOf('+'), b = vkey.indexOf('+', a + 1);
  if (a < 1 || b < 0) throw new Error('not a verifier key');
  const name = vkey.slice(0, a), id = vkey.slice(a + 1, b), raw = b64decode(vkey.slice(b + 1).trim());
  if (raw.length !== 33 || raw[0] !== 1) throw new Error('not an Ed25519 verifier key');
  const pub = raw.slice(1);
  const expected = hex((await sha256(concat(enc.encode(name + '\n'), Uint8Array.of(1), pub))).slice(0, 4));
  if (expected !== id) throw new Error('key id does not match the key');
  return { name, id, key: await crypto.subtle.importKey('raw', pub, { name: 'Ed25519' }, false, ['verify']) };
}

const noteCache = new Map();
async function verifyNote(note, vkeys) {  // C2SP signed note: one trusted signature must verify
  const cacheKey = note + '\u0000' + vkeys.join(',');
  if (!noteCache.has(cacheKey)) {
    noteCache.set(cacheKey, (async () => {
      const cut = note.lastIndexOf('\n\n');
      const text = note.slice(0, cut + 1);
      const lines = text.split('\n');
      const keys = await Promise.all(vkeys.map(parseVkey));
      let good = false;
      for (const line of note.slice(cut + 2).split('\n').filter((x) => x)) {
        if (!line.startsWith('\u2014 ')) throw new Error('malformed signature line');
        const [name, blob] = line.slice(2).split(' ');
        const raw = b64decode(blob);
        const key = keys.find((k) => k.name === name && k.id === hex(raw.slice(0, 4)));
        if (!key) continue;
        if (!await crypto.subtle.verify({ name: 'Ed25519' }, key.key, raw.slice(4), enc.encode(text))) {
          throw new Error('checkpoint signature does not verify');
        }
        good = true;
      }
      if (!good) throw new Error('checkpoint not signed by a trusted key');
      return { origin: lines[0], size: Number(lines[1]), root: b64decode(lines[2]) };
    })());
  }
  return noteCache.get(cacheKey);
}

async function verifyEntry(entry, checkpoint, vkeys) {
  if (!entry.proof || !checkpoint) return { status: 'pending', text: 'not yet under a signed checkpoint' };
  const leafData = b64decode(entry.leaf_data);
  const leaf = await sha256(concat(Uint8Array.of(0), leafData));
  if (hex(leaf) !== entry.leaf_hash) throw new Error('stored bytes do not hash to the leaf hash');
  const event = JSON.parse(new TextDecoder().decode(leafData.slice(46)));
  if (event.event_id !== entry.event_id) throw new Error('the stored event is another event');
  const root = await rootFromInclusion(entry.index, entry.tree_size, leaf, entry.proof.map(b64decode));
  const cp = await verifyNote(checkpoint.note, vkeys);
  if (cp.size !== entry.tree_size || !equal(cp.root, root)) throw new Error('path does not lead to the signed root');
  return { status: 'verified', text: `verified in browser (tree ${cp.size})`, event };
}

function trustedKeys() {
  const pinned = $('pinned-key').value.trim();
  localStorage.setItem('pinnedLedgerKey', pinned);
  $('key-source').textContent = pinned ? 'checking against your pinned key'
    : 'checking against the key this server names (pin yours to be independent of it)';
  return pinned ? [pinned] : state.trusted;
}

let auditSeq = 0;
async function loadAudit(event) {
  if (event) event.preventDefault();
  const seq = ++auditSeq; // only the latest request may fill the table
  const form = new FormData($('audit-form'));
  const query = new URLSearchParams();
  for (const [k, v] of form) if (String(v).trim()) query.set(k, String(v).trim());
  const rows = $('audit-rows');
  const r = await api('GET', `/dashboard/api/audit?${query}`);
  if (seq !== auditSeq) return;
  rows.replaceChildren();
  if (!r.ok) { rows.append(el('tr', {}, el('td', { colspan: 6, class: 'bad' }, errorText(r)))); return; }
  if (r.data.trusted_keys && r.data.trusted_keys.length) state.trusted = r.data.trusted_keys;
  const vkeys = trustedKeys();
  if (!r.data.entries.length) rows.append(el('tr', {}, el('td', { colspan: 6 }, 'No entries.')));
  for (const entry of r.data.entries) {
    const status = el('span', { 'data-status': 'pending', class: 'verification' }, 'checking…');
    const details = el('details', {}, el('summary', {}, 'entry and proof'));
    rows.append(el('tr', { 'data-event': entry.event_id, 'data-type': entry.type,
      'data-subject': entry.subject },
      el('td', {}, when(entry.occurred_at)), el('td', {}, entry.type),
      el('td', {}, entry.subject), el('td', {}, el('code', {}, `p${entry.partition}#${entry.index}`)),
      el('td', {}, entry.level ?? ''), el('td', {}, status, details)));
    const checkpoint = r.data.checkpoints[String(entry.partition)];
    verifyEntry(entry, checkpoint, vkeys).then((result) => {
      status.dataset.status = result.status;
      status.textContent = (result.status === 'verified' ? '\u2713 ' : '') + result.text
        + (entry.server_verified ? '; server: verified' : '');
      details.append(el('pre', {}, JSON.stringify(result.event || {}, null, 1)),
        el('pre', {}, `leaf ${entry.leaf_hash}\ntree size ${entry.tree_size}\npath:\n${(entry.proof || []).join('\n')}\n\n${checkpoint ? checkpoint.note : ''}`));
    }).catch((error) => {
      status.dataset.status = 'failed';
      status.textContent = `\u2717 ${error.message || error}`;
    });
  }
}

// --- reports -----------------------------------------------------------------------------------
async function refreshReports() {
  const r = await api('GET', '/reports');
  const body = $('report-list');
  body.replaceChildren();
  if (!r.ok) { body.append(el('tr', {}, el('td', { colspan: 7 }, errorText(r)))); return; }
  if (!r.data.reports.length) body.append(el('tr', {}, el('td', { colspan: 7 }, 'No reports yet.')));
  for (const rep of r.data.reports) {
    body.append(el('tr', {},
      el('td', {}, el('code', {}, rep.report_id)), el('td', {}, rep.framework),
      el('td', {}, `${when(rep.from)} – ${when(rep.to)}`), el('td', {}, rep.population),
      el('td', { class: rep.exceptions ? 'bad' : 'ok' }, rep.exceptions), el('td', {}, when(rep.generated_at)),
      el('td', {}, ...Object.entries(rep.links).map(([fmt, href]) => [el('a', { href, download: fmt === 'html' ? null : '' }, fmt), ' ']))));
  }
}

async function makeReport(event) {
  event.preventDefault();
  const form = new FormData($('report-form'));
  const body = {};
  for (const [k, v] of form) if (String(v).trim()) body[k] = String(v).trim();
  if (body.sample_size) body.sample_size = Number(body.sample_size);
  $('report-status').textContent = 'making the report…';
  const r = await api('POST', '/reports', body);
  $('report-status').textContent = r.ok ? `made ${r.data.report.report_id}` : `refused (${errorText(r)})`;
  $('report-status').className = r.ok ? 'ok' : 'bad';
  refreshReports();
}

// --- start -------------------------------------------------------------------------------------
async function start() {
  $('load-key').addEventListener('click', loadKey);
  $('key-file').addEventListener('change', async (e) => {
    const file = e.target.files[0];
    if (file) { $('key-text').value = await file.text(); e.target.value = ''; loadKey(); }
  });
  $('audit-form').addEventListener('submit', loadAudit);
  $('report-form').addEventListener('submit', makeReport);
  $('pinned-key').value = localStorage.getItem('pinnedLedgerKey') || '';
  $('pinned-key').addEventListener('change', () => loadAudit());
  const o = await api('GET', '/dashboard/api/overview');
  if (o.ok) {
    state.overview = o.data;
    state.trusted = o.data.trusted_keys;
    const signed = Object.values(o.data.checkpoints).reduce((n, c) => n + c.size, 0);
    $('overview').textContent = `Ledger ${o.data.origin}: ${signed} signed entries in `
      + `${Object.keys(o.data.checkpoints).length} partitions · policy ${o.data.policy.version}`;
    const select = document.querySelector('#report-form select[name=framework]');
    for (const f of o.data.frameworks) select.append(el('option', { value: f.key }, f.title));
  } else {
    $('overview').textContent = errorText(o);
  }
  refreshPermits();
  setInterval(refreshPermits, 2000);
  refreshCharts();
  setInterval(refreshCharts, 15000);
  loadAudit();
  refreshReports();
  document.body.dataset.ready = 'true';
}

if (!window.crypto || !crypto.subtle) {
  document.addEventListener('DOMContentLoaded', () => {
    $('overview').textContent = 'This page needs WebCrypto: open it over https or from localhost.';
  });
} else {
  document.addEventListener('DOMContentLoaded', start);
}
