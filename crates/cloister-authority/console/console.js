// Cloister web console. Plain script, no dependencies, no build step.
//
// Rules this file keeps: every string from the service is written with textContent (never as
// markup); the bearer token lives in sessionStorage only and travels only in the Authorization
// header of same-origin requests; the audit verification recomputes everything itself and
// trusts nothing the service says about its own log.
'use strict';

(() => {
  const TOKEN_KEY = 'cloister.token';
  const ROLE_KEY = 'cloister.role';
  const PAGE_SIZE = 20;
  const GENESIS = '0'.repeat(64);
  const ENTRY_DOMAIN = 'cloister-audit-entry v1\u0000';
  const SIGN_PREFIX = 'cloister-sign-bytes v1\u0000';
  const CHECKPOINT_DOMAIN = 'cloister-audit-checkpoint v1';
  const utf8 = new TextEncoder();

  const $ = (id) => document.getElementById(id);
  const state = {
    audit: [], page: 0, flags: new Map(), verified: false, instance: null, challenge: null,
  };

  // ---- small DOM helpers: text only ---------------------------------------------------------

  function cell(value) {
    const td = document.createElement('td');
    if (value instanceof Node) td.appendChild(value);
    else td.textContent = value === null || value === undefined ? '' : String(value);
    return td;
  }

  function addRow(tbody, values) {
    const tr = document.createElement('tr');
    for (const value of values) tr.appendChild(cell(value));
    tbody.appendChild(tr);
    return tr;
  }

  function button(label, action) {
    const b = document.createElement('button');
    b.type = 'button';
    b.textContent = label;
    b.addEventListener('click', action);
    return b;
  }

  function body(tableId) {
    const tbody = $(tableId).tBodies[0];
    tbody.replaceChildren();
    return tbody;
  }

  function when(seconds) {
    if (typeof seconds !== 'number') return '';
    return new Date(seconds * 1000).toISOString().replace('.000Z', 'Z');
  }

  function say(text, ok) {
    const m = $('message');
    m.textContent = text || '';
    m.hidden = !text;
    m.className = ok ? 'notice' : 'alert';
  }

  // ---- the API ------------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  async function api(method, path, payload) {
    const headers = { Accept: 'application/json' };
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (token) headers.Authorization = 'Bearer ' + token;
    const init = { method, headers, cache: 'no-store', credentials: 'omit' };
    if (payload !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(payload);
    }
    const response = await fetch(path, init);
    const text = await response.text();
    let data = text;
    try {
      data = text ? JSON.parse(text) : null;
    } catch (_) {
      // Not JSON (e.g. /readyz): keep the text.
    }
    if (!response.ok) {
      const message = data && typeof data.message === 'string'
        ? data.message
        : `${response.status} ${response.statusText}`;
      throw new ApiError(response.status, message);
    }
    return data;
  }

  async function guarded(action) {
    try {
      say('');
      await action();
    } catch (error) {
      if (error instanceof ApiError && error.status === 401) {
        signOut();
        say('The service refused the token (' + error.message + '). Sign in again.');
      } else {
        say(error && error.message ? error.message : String(error));
      }
    }
  }

  // ---- sign-in ------------------------------------------------------------------------------

  async function signIn(token) {
    sessionStorage.setItem(TOKEN_KEY, token);
    try {
      await api('GET', '/v1/tenants');
      sessionStorage.setItem(ROLE_KEY, 'operator');
    } catch (error) {
      if (!(error instanceof ApiError) || error.status !== 403) {
        sessionStorage.removeItem(TOKEN_KEY);
        throw error;
      }
      await api('GET', '/v1/instances');
      sessionStorage.setItem(ROLE_KEY, 'tenant');
    }
    enter();
  }

  function signOut() {
    sessionStorage.removeItem(TOKEN_KEY);
    sessionStorage.removeItem(ROLE_KEY);
    $('nav').hidden = true;
    $('sign-out').hidden = true;
    $('whoami').textContent = '';
    $('signin').hidden = false;
    for (const view of document.querySelectorAll('.view')) view.hidden = true;
  }

  function enter() {
    const role = sessionStorage.getItem(ROLE_KEY);
    $('signin').hidden = true;
    $('nav').hidden = false;
    $('sign-out').hidden = false;
    $('whoami').textContent = {
      operator: 'signed in as the operator',
      tenant: 'signed in as a tenant admin',
      owner: 'signed in as a data owner',
    }[role] || '';
    for (const el of document.querySelectorAll('[data-role]')) {
      el.hidden = !el.dataset.role.split(' ').includes(role);
    }
    open({ operator: 'tenants', tenant: 'instances', owner: 'datasets' }[role] || 'health');
  }

  // ---- data owners: sign-in with a party key -------------------------------------------------

  // The secret key never comes to the page: the owner answers the challenge with
  // `cloister owner sign-in` on its own machine and pastes the one-line answer.
  async function ownerChallenge() {
    const challenge = await api('POST', '/v1/owners/challenge');
    state.challenge = challenge.challenge;
    $('owner-command').textContent = 'cloister owner sign-in --key YOUR_PARTY.key ' +
      `--service-fingerprint ${challenge.service_key_sha256} \\\n  ${challenge.challenge}`;
    $('owner-steps').hidden = false;
  }

  async function ownerSignIn() {
    let answer;
    try {
      answer = JSON.parse($('owner-answer').value.trim());
    } catch (_) {
      throw new Error('Paste the one line of JSON that cloister owner sign-in printed.');
    }
    if (!answer || typeof answer !== 'object' || answer.challenge !== state.challenge) {
      throw new Error('That answer is for another challenge: answer the challenge shown here.');
    }
    const session = await api('POST', '/v1/owners/sessions', {
      owner: answer.owner,
      challenge: answer.challenge,
      statement: answer.statement,
    });
    $('owner-answer').value = '';
    $('owner-steps').hidden = true;
    sessionStorage.setItem(TOKEN_KEY, session.token);
    sessionStorage.setItem(ROLE_KEY, 'owner');
    enter();
  }

  function pair(budget) {
    if (!budget || typeof budget.epsilon !== 'number') return '—';
    return `(${budget.epsilon.toPrecision(4)}, ${budget.delta})`;
  }

  async function loadDatasets() {
    const view = await api('GET', '/v1/owners/me');
    $('owner-key').textContent = view.owner;
    const sets = body('datasets-table');
    const charges = body('charges-table');
    for (const d of view.datasets) {
      const last = d.charges.length ? d.charges[d.charges.length - 1] : null;
      const total = last && last.account ? pair(last.account.total) : (last ? 'unbounded or not kept' : '—');
      addRow(sets, [d.object_id, d.sha256, when(d.registered_at), d.charges.length, total,
        last ? pair(last.budget) : '—']);
      for (const c of d.charges) {
        addRow(charges, [d.object_id, c.job_id, c.instance_id, when(c.charged_at),
          c.account ? pair(c.account.job) : '—', c.account ? pair(c.account.total) : '—']);
      }
    }
    const jobs = body('owner-jobs-table');
    for (const j of view.jobs) {
      const tr = addRow(jobs, [j.audit_seq, when(j.at), j.job_id, j.outcome,
        j.detail && j.detail.instance, j.detail && j.detail.measurement]);
      if (j.outcome !== 'success') tr.classList.add('refused');
    }
  }

  // ---- receipts, for anyone -----------------------------------------------------------------

  async function explainReceipt(file) {
    if (!file) return;
    if (file.size > 1 << 20) throw new Error('That file is over 1 MiB: not a job status.');
    const text = await file.text();
    let status;
    try {
      status = JSON.parse(text);
    } catch (_) {
      throw new Error('That file is not JSON: drop what cloister job status ID --json printed.');
    }
    const explanation = await api('POST', '/v1/receipts/explain', status);
    const verdict = $('receipt-verdict');
    verdict.textContent = explanation.verified
      ? `Verified: every check passed (${file.name}).`
      : `NOT verified (${file.name}): see the failed check below.`;
    verdict.className = explanation.verified ? 'ok' : 'broken';
    const warnings = $('receipt-warnings');
    warnings.replaceChildren();
    for (const w of explanation.warnings || []) {
      const li = document.createElement('li');
      li.textContent = 'Warning: ' + w;
      li.className = 'alert';
      warnings.appendChild(li);
    }
    const checks = body('receipt-checks');
    for (const c of explanation.checks) {
      const tr = addRow(checks, [c.check, c.passed ? 'passed' : 'FAILED', c.detail]);
      if (!c.passed) tr.classList.add('broken');
    }
    const claims = $('receipt-claims');
    claims.replaceChildren();
    const r = explanation.receipt;
    if (r) {
      const facts = [
        ['Job', r.job_id], ['Job digest', r.job_digest], ['Shards', r.shards], ['Rows', r.rows],
        ['Chunks', r.chunk_count], ['Measurement', r.measurement],
        ['Enclaves that ran it', (r.enclaves || []).length],
        ['Submitted', when(r.submitted_at)], ['Finished', when(r.finished_at)],
        ['Audit checkpoint', r.audit_checkpoint ? `entry ${r.audit_checkpoint.seq}` : ''],
        ['Erased when it ended', (r.erased || []).join(', ')],
        ['Inputs', (r.inputs || []).map((i) => `${i.object_id} (${i.ciphertext_sha256})`).join('; ')],
      ];
      for (const [term, value] of facts) {
        const dt = document.createElement('dt');
        dt.textContent = term;
        const dd = document.createElement('dd');
        dd.textContent = value === undefined || value === null ? '' : String(value);
        claims.append(dt, dd);
      }
    }
  }

  function openReceipt() {
    for (const section of document.querySelectorAll('.view')) {
      section.hidden = section.id !== 'view-receipt';
    }
  }

  const loaders = {
    health: loadHealth,
    tenants: loadTenants,
    instances: loadInstances,
    attestations: loadAttestations,
    keys: loadKeys,
    audit: loadAudit,
    datasets: loadDatasets,
    receipt: async () => {},
  };

  function open(view) {
    for (const section of document.querySelectorAll('.view')) {
      section.hidden = section.id !== 'view-' + view;
    }
    for (const b of document.querySelectorAll('#nav button')) {
      b.classList.toggle('current', b.dataset.view === view);
    }
    guarded(loaders[view]);
  }

  // ---- operator -----------------------------------------------------------------------------

  async function loadHealth() {
    $('health-ready').textContent = '…';
    try {
      $('health-ready').textContent = String(await api('GET', '/readyz'));
    } catch (error) {
      $('health-ready').textContent = 'not ready: ' + error.message;
    }
    const key = await api('GET', '/v1/service-key');
    $('health-key').textContent = key.signing_key;
    $('health-fingerprint').textContent = key.signing_key_sha256;
  }

  async function loadTenants() {
    const tenants = await api('GET', '/v1/tenants');
    const tbody = body('tenants-table');
    for (const t of tenants) addRow(tbody, [t.id, t.name, when(t.created_at)]);
  }

  async function createTenant() {
    const created = await api('POST', '/v1/tenants', { name: $('tenant-name').value.trim() });
    $('tenant-created-id').textContent = created.tenant.id;
    $('tenant-created-token').textContent = created.token;
    $('tenant-created').hidden = false;
    $('tenant-name').value = '';
    await loadTenants();
  }

  // ---- tenant admin -------------------------------------------------------------------------

  async function loadInstances() {
    const instances = await api('GET', '/v1/instances');
    const tbody = body('instances-table');
    for (const i of instances) {
      const tr = addRow(tbody, [i.id, i.name, i.policy_id, when(i.created_at),
        button('Open', () => guarded(() => openInstance(i.id)))]);
      tr.dataset.id = i.id;
    }
  }

  async function createInstance() {
    const created = await api('POST', '/v1/instances', {
      name: $('instance-name').value.trim(),
      policy: { builtin: $('instance-policy').value },
    });
    $('instance-name').value = '';
    await loadInstances();
    await openInstance(created.id);
  }

  async function policyText(id, version) {
    const v = await api('GET', `/v1/instances/${encodeURIComponent(id)}/policy/${version}`);
    return v.rego || '';
  }

  async function openInstance(id, diff) {
    const instance = await api('GET', `/v1/instances/${encodeURIComponent(id)}`);
    state.instance = instance;
    $('instance-detail').hidden = false;
    $('detail-name').textContent = instance.name;
    $('detail-id').textContent = instance.id;
    const tbody = body('versions-table');
    for (const v of instance.policy_versions) {
      const tr = addRow(tbody, [v.version, v.builtin || '', v.rego_sha256, when(v.created_at)]);
      if (v.version === instance.policy_version) tr.className = 'current';
    }
    $('policy-text').value = await policyText(id, instance.policy_version);
    const versions = instance.policy_versions.map((v) => v.version);
    for (const [selectId, chosen] of [
      ['diff-from', versions.length > 1 ? versions[versions.length - 2] : versions[0]],
      ['diff-to', versions[versions.length - 1]],
    ]) {
      const select = $(selectId);
      select.replaceChildren();
      for (const v of versions) {
        const option = document.createElement('option');
        option.value = String(v);
        option.textContent = 'v' + v;
        option.selected = v === chosen;
        select.appendChild(option);
      }
    }
    $('policy-diff').replaceChildren();
    if (diff) await showDiff();
  }

  async function updatePolicy() {
    const id = state.instance && state.instance.id;
    if (!id) return;
    const updated = await api('PUT', `/v1/instances/${encodeURIComponent(id)}/policy`,
      { rego: $('policy-text').value });
    say(`Policy version ${updated.version} installed (${updated.policy_id}).`, true);
    await openInstance(id, true);
    await loadInstances();
  }

  // A line diff by longest common subsequence (policies are short).
  function lineDiff(a, b) {
    const n = a.length;
    const m = b.length;
    if (n * m > 4000000) {
      return a.map((l) => ['-', l]).concat(b.map((l) => ['+', l]));
    }
    const lcs = Array.from({ length: n + 1 }, () => new Uint32Array(m + 1));
    for (let i = n - 1; i >= 0; i--) {
      for (let j = m - 1; j >= 0; j--) {
        lcs[i][j] = a[i] === b[j] ? lcs[i + 1][j + 1] + 1 : Math.max(lcs[i + 1][j], lcs[i][j + 1]);
      }
    }
    const out = [];
    let i = 0;
    let j = 0;
    while (i < n && j < m) {
      if (a[i] === b[j]) {
        out.push([' ', a[i]]);
        i++;
        j++;
      } else if (lcs[i + 1][j] >= lcs[i][j + 1]) {
        out.push(['-', a[i++]]);
      } else {
        out.push(['+', b[j++]]);
      }
    }
    while (i < n) out.push(['-', a[i++]]);
    while (j < m) out.push(['+', b[j++]]);
    return out;
  }

  async function showDiff() {
    const id = state.instance && state.instance.id;
    if (!id) return;
    const from = Number($('diff-from').value);
    const to = Number($('diff-to').value);
    const [a, b] = await Promise.all([policyText(id, from), policyText(id, to)]);
    const pre = $('policy-diff');
    pre.replaceChildren();
    const head = document.createElement('span');
    head.className = 'head';
    head.textContent = `--- v${from}\n+++ v${to}\n`;
    pre.appendChild(head);
    // Changed lines with three lines of context around each; skipped runs shown as one line.
    const ops = lineDiff(a.split('\n'), b.split('\n'));
    const near = ops.map(() => false);
    ops.forEach(([mark], i) => {
      if (mark === ' ') return;
      for (let k = Math.max(0, i - 3); k <= Math.min(ops.length - 1, i + 3); k++) near[k] = true;
    });
    let changes = 0;
    let skipped = 0;
    const flush = () => {
      if (skipped === 0) return;
      const gap = document.createElement('span');
      gap.className = 'head';
      gap.textContent = `@@ ${skipped} unchanged lines @@\n`;
      pre.appendChild(gap);
      skipped = 0;
    };
    ops.forEach(([mark, line], i) => {
      if (mark !== ' ') changes++;
      if (!near[i]) {
        skipped++;
        return;
      }
      flush();
      const span = document.createElement('span');
      span.className = mark === '+' ? 'add' : mark === '-' ? 'del' : 'same';
      span.textContent = mark + ' ' + line + '\n';
      pre.appendChild(span);
    });
    flush();
    if (changes === 0) {
      const same = document.createElement('span');
      same.className = 'head';
      same.textContent = '(the two versions are identical)\n';
      pre.appendChild(same);
    }
  }

  // The newest 50 audit records of one kind, counted by result.
  async function recentByResult(kind, what, countsId, tableId) {
    const records = (await api('GET', '/v1/audit'))
      .filter((r) => r.kind === kind)
      .sort((x, y) => y.seq - x.seq);
    const counts = {};
    for (const r of records) counts[r.outcome] = (counts[r.outcome] || 0) + 1;
    const summary = Object.keys(counts).sort().map((k) => `${k}: ${counts[k]}`).join(', ');
    $(countsId).textContent = records.length
      ? `${records.length} ${what} (${summary})`
      : `No ${what} yet.`;
    const tbody = body(tableId);
    for (const r of records.slice(0, 50)) {
      const tr = addRow(tbody, [r.seq, when(r.at), r.subject, r.outcome, JSON.stringify(r.detail)]);
      tr.className = r.outcome;
    }
  }

  async function loadAttestations() {
    await recentByResult('attestation', 'attestations', 'attestation-counts', 'attestations-table');
  }

  async function loadKeys() {
    const keys = await api('GET', '/v1/keys');
    const tbody = body('keys-table');
    for (const k of keys) {
      addRow(tbody, [k.id, k.name, k.key_id, (k.instances || []).join(', '),
        k.revoked_at ? when(k.revoked_at) : '']);
    }
    await recentByResult('key.released', 'key releases', 'release-counts', 'releases-table');
  }

  // ---- audit log ----------------------------------------------------------------------------

  async function loadAudit() {
    state.audit = (await api('GET', '/v1/audit')).sort((x, y) => y.seq - x.seq);
    state.page = 0;
    renderAudit();
  }

  function auditFilter() {
    const kind = $('audit-kind').value.trim().toLowerCase();
    const outcome = $('audit-outcome').value;
    const text = $('audit-text').value.trim().toLowerCase();
    return state.audit.filter((r) => {
      if (kind && !r.kind.toLowerCase().includes(kind)) return false;
      if (outcome && r.outcome !== outcome) return false;
      if (text) {
        const haystack = [r.actor, r.subject, r.tenant_id || '', JSON.stringify(r.detail)]
          .join(' ').toLowerCase();
        if (!haystack.includes(text)) return false;
      }
      return true;
    });
  }

  function renderAudit() {
    const rows = auditFilter();
    const pages = Math.max(1, Math.ceil(rows.length / PAGE_SIZE));
    state.page = Math.min(Math.max(state.page, 0), pages - 1);
    $('audit-page').textContent = `page ${state.page + 1} of ${pages} (${rows.length} records)`;
    $('audit-prev').disabled = state.page === 0;
    $('audit-next').disabled = state.page >= pages - 1;
    const tbody = body('audit-table');
    for (const r of rows.slice(state.page * PAGE_SIZE, (state.page + 1) * PAGE_SIZE)) {
      const flag = state.flags.get(r.seq);
      const verdict = state.flags.size === 0 && !state.verified ? '' : flag ? 'BROKEN: ' + flag : 'ok';
      const tr = addRow(tbody, [r.seq, when(r.at), r.kind, r.actor, r.subject, r.outcome,
        JSON.stringify(r.detail), verdict]);
      tr.dataset.seq = String(r.seq);
      if (flag) tr.className = 'broken';
    }
  }

  function concat(parts) {
    const total = parts.reduce((n, p) => n + p.length, 0);
    const out = new Uint8Array(total);
    let at = 0;
    for (const p of parts) {
      out.set(p, at);
      at += p.length;
    }
    return out;
  }

  function int64(n) {
    const bytes = new Uint8Array(8);
    new DataView(bytes.buffer).setBigInt64(0, BigInt(n), false);
    return bytes;
  }

  function uint32(n) {
    const bytes = new Uint8Array(4);
    new DataView(bytes.buffer).setUint32(0, n, false);
    return bytes;
  }

  // A string as the chain encodes it: 8-byte big-endian byte length, then its UTF-8 bytes.
  function text(s) {
    const bytes = utf8.encode(s);
    return concat([int64(bytes.length), bytes]);
  }

  function hex(buffer) {
    return Array.from(new Uint8Array(buffer), (b) => b.toString(16).padStart(2, '0')).join('');
  }

  async function sha256(bytes) {
    return hex(await crypto.subtle.digest('SHA-256', bytes));
  }

  // The service's entry_hash, field for field.
  async function entryHash(e) {
    const tenant = e.tenant_id === null || e.tenant_id === undefined
      ? new Uint8Array([0])
      : concat([new Uint8Array([1]), text(e.tenant_id)]);
    return sha256(concat([
      utf8.encode(ENTRY_DOMAIN), int64(e.seq), int64(e.at), text(e.kind), text(e.actor), tenant,
      text(e.subject), text(e.outcome), text(e.detail), text(e.prev_hash),
    ]));
  }

  // What a checkpoint signature covers: the signing prefix, the domain, then seq ‖ at ‖ hash.
  function checkpointMessage(c) {
    const domain = utf8.encode(CHECKPOINT_DOMAIN);
    const hash = utf8.encode(c.hash);
    return concat([utf8.encode(SIGN_PREFIX), uint32(domain.length), domain,
      int64(c.seq), int64(c.at), int64(hash.length), hash]);
  }

  function base64url(s) {
    let b64 = s.trim().replace(/-/g, '+').replace(/_/g, '/');
    while (b64.length % 4) b64 += '=';
    const raw = atob(b64);
    return Uint8Array.from(raw, (c) => c.charCodeAt(0));
  }

  // P-256: the published key is a compressed SEC1 point; WebCrypto imports uncompressed ones.
  const P = 0xffffffff00000001000000000000000000000000ffffffffffffffffffffffffn;
  const B = 0x5ac635d8aa3a93e7b3ebbd55769886bc651d06b0cc53b0f63bce3c3e27d2604bn;

  function modPow(base, exp, m) {
    let result = 1n;
    base %= m;
    while (exp > 0n) {
      if (exp & 1n) result = (result * base) % m;
      base = (base * base) % m;
      exp >>= 1n;
    }
    return result;
  }

  function uncompress(point) {
    if (point.length === 65 && point[0] === 4) return point;
    if (point.length !== 33 || (point[0] !== 2 && point[0] !== 3)) {
      throw new Error('the service signing key is not a P-256 point');
    }
    let x = 0n;
    for (const b of point.slice(1)) x = (x << 8n) | BigInt(b);
    const rhs = (((modPow(x, 3n, P) - 3n * x + B) % P) + P) % P;
    let y = modPow(rhs, (P + 1n) / 4n, P);
    if ((y * y) % P !== rhs) throw new Error('the service signing key is not on P-256');
    if ((y & 1n) !== BigInt(point[0] & 1)) y = P - y;
    const out = new Uint8Array(65);
    out[0] = 4;
    out.set(point.slice(1), 1);
    for (let i = 64; i >= 33; i--) {
      out[i] = Number(y & 0xffn);
      y >>= 8n;
    }
    return out;
  }

  async function serviceKey() {
    const doc = await api('GET', '/v1/service-key');
    const prefix = 'cloister-es256:';
    if (!doc.signing_key.startsWith(prefix)) throw new Error('unknown service key type');
    const point = base64url(doc.signing_key.slice(prefix.length));
    const fingerprint = await sha256(point);
    const pinned = $('verify-pin').value.trim().toLowerCase();
    if (pinned && pinned !== fingerprint) {
      throw new Error(`the service key's SHA-256 is ${fingerprint}, not the pinned ${pinned}: ` +
        'this is not the service you meant to audit');
    }
    const key = await crypto.subtle.importKey('raw', uncompress(point),
      { name: 'ECDSA', namedCurve: 'P-256' }, false, ['verify']);
    return { key, fingerprint };
  }

  async function verifyChain() {
    const result = $('verify-result');
    result.textContent = 'verifying…';
    result.className = '';
    const problems = $('verify-problems');
    problems.replaceChildren();
    const [chain, service] = await Promise.all([api('GET', '/v1/audit/chain'), serviceKey()]);
    const flags = new Map();
    const found = [];
    const flag = (seq, why) => {
      if (!flags.has(seq)) flags.set(seq, why);
      found.push(`entry ${seq}: ${why}`);
    };
    const entries = chain.entries.slice().sort((x, y) => x.seq - y.seq);
    const bySeq = new Map();
    let previous = null;
    for (const e of entries) {
      if (bySeq.has(e.seq)) flag(e.seq, 'a second entry with this seq');
      bySeq.set(e.seq, e);
      const expected = previous ? previous.seq + 1 : 1;
      if (e.seq > expected) {
        found.push(`entries ${expected}–${e.seq - 1} are missing`);
        flags.set(e.seq, flags.get(e.seq) || 'follows missing entries');
      }
      if ((await entryHash(e)) !== e.hash) {
        flag(e.seq, 'its content does not match its hash (altered)');
      }
      const link = previous ? previous.hash : GENESIS;
      if (e.seq === expected && e.prev_hash !== link) {
        flag(e.seq, 'it does not link to the entry before it');
      }
      previous = e;
    }
    let signedThrough = 0;
    let valid = 0;
    for (const c of chain.checkpoints) {
      let ok = false;
      try {
        ok = await crypto.subtle.verify({ name: 'ECDSA', hash: 'SHA-256' }, service.key,
          base64url(c.signature), checkpointMessage(c));
      } catch (_) {
        ok = false;
      }
      if (!ok) {
        found.push(`checkpoint at ${c.seq}: its signature does not verify with the service key`);
        continue;
      }
      valid++;
      const e = bySeq.get(c.seq);
      if (!e) {
        found.push(`checkpoint at ${c.seq}: signed entry ${c.seq}, which is missing`);
      } else if (e.hash !== c.hash) {
        flag(c.seq, 'its hash differs from the signed checkpoint');
      } else {
        signedThrough = Math.max(signedThrough, c.seq);
      }
    }
    state.flags = flags;
    state.verified = true;
    state.audit = (await api('GET', '/v1/audit')).sort((x, y) => y.seq - x.seq);
    const last = entries.length ? entries[entries.length - 1].seq : 0;
    if (found.length === 0) {
      result.textContent = `Intact: ${entries.length} entries, ${valid} valid checkpoints, ` +
        `signed through entry ${signedThrough} of ${last} by the key with SHA-256 ` +
        `${service.fingerprint}.` +
        (signedThrough < last ? ` Entries after ${signedThrough} are protected by the chain only.` : '');
      result.className = 'ok';
    } else {
      const noun = found.length === 1 ? 'problem' : 'problems';
      result.textContent = `BROKEN: ${found.length} ${noun} in ${entries.length} entries ` +
        `(service key SHA-256 ${service.fingerprint}).`;
      result.className = 'broken';
      for (const p of found) {
        const li = document.createElement('li');
        li.textContent = p;
        problems.appendChild(li);
      }
    }
    renderAudit();
  }

  // ---- wiring -------------------------------------------------------------------------------

  function start() {
    document.addEventListener('securitypolicyviolation', (event) => {
      const box = $('csp-violations');
      box.hidden = false;
      box.textContent = `${box.textContent} Blocked by the content security policy: ` +
        `${event.violatedDirective} ${event.blockedURI}.`.trim();
    });
    $('signin-form').addEventListener('submit', (event) => {
      event.preventDefault();
      const token = $('token').value.trim();
      $('token').value = '';
      guarded(() => signIn(token));
    });
    $('sign-out').addEventListener('click', signOut);
    for (const b of document.querySelectorAll('#nav button')) {
      b.addEventListener('click', () => open(b.dataset.view));
    }
    $('health-refresh').addEventListener('click', () => guarded(loadHealth));
    $('owner-challenge').addEventListener('click', () => guarded(ownerChallenge));
    $('owner-form').addEventListener('submit', (event) => {
      event.preventDefault();
      guarded(ownerSignIn);
    });
    $('receipt-open').addEventListener('click', openReceipt);
    $('receipt-file').addEventListener('change', () => {
      guarded(() => explainReceipt($('receipt-file').files[0]));
    });
    const drop = $('receipt-drop');
    drop.addEventListener('dragover', (event) => {
      event.preventDefault();
      drop.classList.add('over');
    });
    drop.addEventListener('dragleave', () => drop.classList.remove('over'));
    drop.addEventListener('drop', (event) => {
      event.preventDefault();
      drop.classList.remove('over');
      guarded(() => explainReceipt(event.dataTransfer.files[0]));
    });
    for (const [form, action] of [['tenant-form', createTenant], ['instance-form', createInstance],
      ['policy-form', updatePolicy], ['diff-form', showDiff]]) {
      $(form).addEventListener('submit', (event) => {
        event.preventDefault();
        guarded(action);
      });
    }
    $('audit-filter').addEventListener('submit', (e) => {
      e.preventDefault();
      state.page = 0;
      renderAudit();
    });
    $('audit-prev').addEventListener('click', () => {
      state.page--;
      renderAudit();
    });
    $('audit-next').addEventListener('click', () => {
      state.page++;
      renderAudit();
    });
    $('verify-form').addEventListener('submit', (event) => {
      event.preventDefault();
      guarded(verifyChain);
    });
    if (sessionStorage.getItem(TOKEN_KEY) && sessionStorage.getItem(ROLE_KEY)) enter();
  }

  start();
})();
