// anypop web view.
//
// Reads GET /v1/state, follows GET /v1/events and posts admin actions, the
// same API every client uses. The event stream is read with fetch() (not
// EventSource) so the bearer token can be sent; every event, and every
// keep-alive of the stream, makes the page read the state again, so there
// is no polling timer. The one-second timer below only re-renders ages.
// The token is kept in a variable of this module: never stored.
// All text from the API goes into the page through textContent.

const MAX_EVENTS = 200;
const SVG = 'http://www.w3.org/2000/svg';

let token = null;
let state = null;
let skewMs = 0;
let lastEventId = null;
let tokenWaiters = [];
const events = [];
const ops = [];

const $ = (sel) => document.querySelector(sel);

// ------------------------------------------------------------------ DOM

function el(tag, props, ...children) {
  const e = document.createElement(tag);
  setProps(e, props);
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    e.append(c instanceof Node ? c : String(c));
  }
  return e;
}

function svg(tag, props) {
  const e = document.createElementNS(SVG, tag);
  setProps(e, props);
  return e;
}

function setProps(e, props) {
  for (const [k, v] of Object.entries(props || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'text') e.textContent = v;
    else if (k === 'class') e.setAttribute('class', v);
    else e.setAttribute(k, v);
  }
}

function fill(tbody, rows, empty, columns) {
  if (rows.length === 0) {
    rows = [el('tr', {}, el('td', { colspan: columns, class: 'muted', text: empty }))];
  }
  tbody.replaceChildren(...rows);
}

function badge(text, cls) {
  return el('span', { class: `badge ${cls || ''}`, text });
}

// ----------------------------------------------------------------- time

function nowSecs() {
  return (Date.now() + skewMs) / 1000;
}

function human(secs) {
  secs = Math.max(0, Math.round(secs));
  if (secs < 90) return `${secs}s`;
  const m = Math.floor(secs / 60);
  if (m < 90) return `${m}m${secs % 60 ? ` ${secs % 60}s` : ''}`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h}h${m % 60 ? ` ${m % 60}m` : ''}`;
  return `${Math.floor(h / 24)}d ${h % 24}h`;
}

function clock(at) {
  return new Date(at * 1000 - skewMs).toLocaleTimeString([], { hour12: false });
}

// <time> elements carry data-at (unix seconds) and data-rel (ago, in,
// for): the ticker keeps their text current without asking the server.
function rel(at, mode) {
  if (at === null || at === undefined) return el('span', { class: 'muted', text: '–' });
  const t = el('time', { 'data-at': at, 'data-rel': mode, title: new Date(at * 1000 - skewMs).toISOString() });
  tickOne(t);
  return t;
}

function tickOne(t) {
  const at = Number(t.dataset.at);
  const d = nowSecs() - at;
  switch (t.dataset.rel) {
    case 'ago': t.textContent = `${human(d)} ago`; break;
    case 'in': t.textContent = d < 0 ? `in ${human(-d)}` : 'due'; break;
    default: t.textContent = human(d);
  }
}

function tick() {
  document.querySelectorAll('time[data-at]').forEach(tickOne);
}

// ------------------------------------------------------------------ API

class AuthNeeded extends Error {}

function headers(extra) {
  const h = { ...extra };
  if (token) h.Authorization = `Bearer ${token}`;
  return h;
}

function noteClock(res) {
  const date = Date.parse(res.headers.get('date') || '');
  if (Number.isNaN(date)) return;
  const skew = date - Date.now();
  // The Date header has one-second resolution: correct real skew only.
  skewMs = Math.abs(skew) > 2000 ? skew : 0;
}

async function api(method, path, body) {
  const init = { method, headers: headers(body ? { 'Content-Type': 'application/json' } : {}), cache: 'no-store' };
  if (body) init.body = JSON.stringify(body);
  const res = await fetch(path, init);
  noteClock(res);
  let data = null;
  try { data = await res.json(); } catch (_) { /* not JSON */ }
  if (res.status === 401) {
    throw new AuthNeeded((data && data.error) || 'this API needs its bearer token');
  }
  if (!res.ok) {
    const e = new Error(data && data.error ? data.error : `HTTP ${res.status}`);
    e.status = res.status;
    e.field = data && data.field;
    throw e;
  }
  return data;
}

function showError(msg) {
  const e = $('#error');
  e.hidden = !msg;
  e.textContent = msg || '';
}

// --------------------------------------------------------------- token

function askToken(reason) {
  $('#token-reason').textContent = reason;
  $('#token-panel').hidden = false;
  $('#token-input').focus();
}

function tokenEntered() {
  return new Promise((resolve) => tokenWaiters.push(resolve));
}

function useToken(t) {
  token = t || null;
  $('#token-panel').hidden = true;
  const waiters = tokenWaiters;
  tokenWaiters = [];
  waiters.forEach((w) => w());
  refresh();
}

// ---------------------------------------------------------------- state

let refreshing = false;
let refreshAgain = false;

async function refresh() {
  if (refreshing) { refreshAgain = true; return; }
  refreshing = true;
  try {
    do {
      refreshAgain = false;
      state = await api('GET', '/v1/state');
      render();
    } while (refreshAgain);
    showError(null);
  } catch (e) {
    if (e instanceof AuthNeeded) askToken(`Reading the state needs the bearer token (${e.message}).`);
    else showError(`Cannot read the state: ${e.message}`);
  } finally {
    refreshing = false;
  }
}

function render() {
  $('#node').textContent = state.node.pop ? `${state.node.name} · PoP ${state.node.pop}` : state.node.name;
  $('#version').textContent = `snapshot ${state.version}`;
  renderPops();
  renderChecks();
  renderAnnouncements();
  renderPeers();
  renderMap();
  renderOps();
}

function renderPops() {
  const rows = Object.values(state.pops).map((p) => {
    const admin = p.admin
      ? el('span', {},
        `${p.admin.kind} · ${p.admin.step} by ${p.admin.who}`,
        p.admin.next_at ? el('span', { class: 'muted' }, ' · next ', rel(p.admin.next_at, 'in')) : null,
        p.admin.until ? el('span', { class: 'muted' }, ' · until ', clock(p.admin.until)) : null,
        p.admin_unsaved ? el('div', { class: 'error', text: `not saved: ${p.admin_unsaved}` }) : null)
      : el('span', { class: 'muted', text: '–' });
    const health = p.healthy === null ? 'undecided' : p.healthy ? 'healthy' : 'unhealthy';
    return el('tr', { 'data-pop': p.name, 'data-state': p.state },
      el('td', {}, el('strong', { text: p.name }), p.local ? el('span', { class: 'tag', text: 'this node' }) : null),
      el('td', { class: 'state' }, badge(p.state, `state-${p.state}`)),
      el('td', { text: health }),
      el('td', { text: p.serves_dns ? 'serves' : 'out' }),
      el('td', { class: 'admin' }, admin),
      el('td', { class: 'detail', text: p.reason }),
      el('td', {}, rel(p.since, 'ago')),
      el('td', { class: 'actions' }, actionButtons(p)));
  });
  fill($('#pops tbody'), rows, 'no PoPs configured', 8);
}

function actionButtons(p) {
  const kind = p.admin && p.admin.kind;
  const wanted = [];
  if (kind !== 'drain' && kind !== 'disable') wanted.push('drain');
  if (kind === 'drain') wanted.push('undrain');
  if (kind !== 'disable') wanted.push('disable');
  if (kind) wanted.push('enable');
  return wanted.map((a) => el('button', { type: 'button', 'data-action': a, 'data-pop': p.name, text: a }));
}

function renderChecks() {
  const rows = [];
  for (const p of Object.values(state.pops)) {
    for (const [name, c] of Object.entries(p.checks)) {
      const last = c.last;
      rows.push(el('tr', { 'data-pop': p.name, 'data-check': name },
        el('td', { text: p.name }),
        el('td', { text: name }),
        el('td', {}, badge(c.verdict, c.verdict === 'up' ? 'ok' : c.verdict === 'down' ? 'fail' : '')),
        el('td', { class: 'num', text: `${c.successes} ok · ${c.failures} fail`, title: `rise ${c.rise}, fall ${c.fall}` }),
        el('td', { class: 'detail' }, last ? [badge(last.ok ? 'ok' : 'fail', last.ok ? 'ok' : 'fail'), ' ', last.detail] : '–'),
        el('td', { class: 'num', text: last ? `${last.took.toFixed(1)} ms` : '–' }),
        el('td', {}, last ? rel(last.at, 'ago') : '–')));
    }
  }
  fill($('#checks tbody'), rows, 'no checks', 7);
}

function attrsText(a) {
  const parts = [];
  if (a.prepend) parts.push(`prepend ${a.prepend}`);
  if (a.med !== null && a.med !== undefined) parts.push(`MED ${a.med}`);
  if (a.local_pref !== null && a.local_pref !== undefined) parts.push(`LOCAL_PREF ${a.local_pref}`);
  if (a.communities.length) parts.push(a.communities.map((c) => c.join(':')).join(' '));
  if (a.large_communities.length) parts.push(a.large_communities.map((c) => c.join(':')).join(' '));
  return parts.join(' · ') || '–';
}

function renderAnnouncements() {
  const rows = Object.entries(state.announcements).map(([prefix, a]) =>
    el('tr', { 'data-prefix': prefix },
      el('td', { class: 'mono', text: prefix }),
      el('td', { text: a.pop }),
      el('td', {}, badge(a.mode.replaceAll('_', ' '), a.mode === 'normal' ? 'state-up' : 'state-draining')),
      el('td', { class: 'mono', text: attrsText(a.attrs) })));
  fill($('#announcements tbody'), rows, 'nothing announced', 4);
}

function renderPeers() {
  const rows = Object.entries(state.peers).map(([name, p]) =>
    el('tr', { 'data-peer': name, 'data-state': p.state },
      el('td', {}, el('strong', { text: name }), el('div', { class: 'muted mono', text: `${p.address} AS${p.remote_asn}` })),
      el('td', { class: 'state' }, badge(p.state, `state-${p.state}`)),
      el('td', {}, p.established_since ? rel(p.established_since, 'for') : '–'),
      el('td', { class: 'num', text: `${p.prefixes_advertised} prefixes` }),
      el('td', { class: 'num', text: `${p.updates_sent} / ${p.updates_received}` }),
      el('td', { class: 'detail' },
        p.last_error ? [p.last_error, p.last_error_at ? el('div', { class: 'muted' }, rel(p.last_error_at, 'ago')) : null] : '–')));
  fill($('#peers tbody'), rows, 'no BGP peers', 6);
}

// The map shows the PoPs' region: their bounding box with a margin, at
// least 40 degrees wide, in the 5:2 shape of the whole map (x = lon + 180,
// y = 90 - lat, one unit per degree).
function mapView(points) {
  if (points.length === 0) return { x: 0, y: 6, w: 360, h: 144 };
  const xs = points.map((p) => p[0]);
  const ys = points.map((p) => p[1]);
  let w = Math.max(Math.max(...xs) - Math.min(...xs) + 30, 40);
  let h = Math.max(Math.max(...ys) - Math.min(...ys) + 20, 16);
  if (w / h < 2.5) w = h * 2.5; else h = w / 2.5;
  w = Math.min(w, 360);
  h = Math.min(h, 144);
  const cx = (Math.max(...xs) + Math.min(...xs)) / 2;
  const cy = (Math.max(...ys) + Math.min(...ys)) / 2;
  const x = Math.min(Math.max(cx - w / 2, 0), 360 - w);
  const y = Math.min(Math.max(cy - h / 2, 0), 180 - h);
  return { x, y, w, h };
}

function renderMap() {
  const placed = Object.values(state.pops).filter((p) => p.location);
  const unplaced = Object.values(state.pops).filter((p) => !p.location).map((p) => p.name);
  const view = mapView(placed.map((p) => [p.location.lon + 180, 90 - p.location.lat]));
  const k = view.w / 360;
  $('#map').setAttribute('viewBox', [view.x, view.y, view.w, view.h].map((v) => v.toFixed(2)).join(' '));
  $('#map-land').setAttribute('stroke-width', (0.4 * k).toFixed(3));
  const markers = [];
  for (const p of placed) {
    const x = p.location.lon + 180;
    const y = 90 - p.location.lat;
    const c = svg('circle', { cx: x.toFixed(2), cy: y.toFixed(2), r: (4 * k).toFixed(3), 'stroke-width': (1 * k).toFixed(3), class: `state-${p.state}`, 'data-pop': p.name });
    const title = svg('title');
    title.textContent = `${p.name}: ${p.state}`;
    c.append(title);
    const label = svg('text', { x: (x + 6 * k).toFixed(2), y: (y + 2.2 * k).toFixed(2), 'font-size': (7 * k).toFixed(3), 'stroke-width': (1.4 * k).toFixed(3) });
    label.textContent = `${p.name} · ${p.state}`;
    markers.push(c, label);
  }
  $('#map-pops').replaceChildren(...markers);
  $('#map-unplaced').textContent = unplaced.length ? `Without a location: ${unplaced.join(', ')}` : '';
}

async function loadWorld() {
  try {
    const res = await fetch('world.svg');
    const doc = new DOMParser().parseFromString(await res.text(), 'image/svg+xml');
    const land = doc.getElementById('land');
    if (land) $('#map-land').setAttribute('d', land.getAttribute('d'));
  } catch (e) {
    $('#map-unplaced').textContent = `World outline not loaded: ${e.message}`;
  }
}

// --------------------------------------------------------------- events

function setConn(text, live) {
  const c = $('#conn');
  c.textContent = text;
  c.dataset.live = live ? 'true' : 'false';
}

function addEvent(ev) {
  events.push(ev);
  if (events.length > MAX_EVENTS) events.shift();
  const li = el('li', { 'data-kind': ev.kind, 'data-seq': ev.seq },
    el('time', { text: clock(ev.at) }),
    badge(ev.kind.replaceAll('_', ' '), `kind kind-${ev.kind}`),
    ' ', ev.message);
  const list = $('#events');
  list.prepend(li);
  while (list.children.length > MAX_EVENTS) list.lastElementChild.remove();
}

function trackOps(ev) {
  for (const op of ops) {
    if (op.pop === ev.pop && ev.seq > op.after && ['admin', 'drain_step', 'pop_state'].includes(ev.kind)) {
      op.steps.push({ at: ev.at, text: ev.message, kind: ev.kind });
    }
  }
  renderOps();
}

// The PoP's state and admin step as the last /v1/state read shows them.
function popNow(name) {
  const p = state && state.pops[name];
  if (!p) return null;
  return p.admin ? `${p.state}, step ${p.admin.step}` : p.state;
}

function renderOps() {
  const items = ops.slice(-5).reverse().map((op) =>
    el('li', { class: 'op', 'data-pop': op.pop, 'data-action': op.action },
      el('strong', { text: `${op.action} ${op.pop}` }),
      op.result ? el('span', { class: 'muted', text: ` · answer: ${op.result}` }) : null,
      op.result && popNow(op.pop) ? el('span', { class: 'muted now', text: ` · now: ${popNow(op.pop)}` }) : null,
      el('ol', {}, op.steps.map((s) =>
        el('li', { class: 'step', 'data-kind': s.kind }, el('time', { text: clock(s.at) }), s.text)))));
  $('#ops').replaceChildren(...items);
}

function onMessage(block) {
  let id = null;
  let kind = 'message';
  let data = '';
  let comment = false;
  for (const line of block.split('\n')) {
    if (line.startsWith(':')) { comment = true; continue; }
    const c = line.indexOf(':');
    const field = c < 0 ? line : line.slice(0, c);
    let value = c < 0 ? '' : line.slice(c + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'id') id = value;
    else if (field === 'event') kind = value;
    else if (field === 'data') data += (data ? '\n' : '') + value;
  }
  if (!data) {
    // A keep-alive: BGP sessions and probe results change without events.
    if (comment) refresh();
    return;
  }
  if (id !== null) lastEventId = id;
  if (kind === 'lagged') {
    addEvent({ seq: 0, at: nowSecs(), kind: 'lagged', message: 'this page fell behind the event stream; state re-read' });
    refresh();
    return;
  }
  let ev;
  try { ev = JSON.parse(data); } catch (_) { return; }
  addEvent(ev);
  trackOps(ev);
  refresh();
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function follow() {
  let backoff = 1000;
  for (;;) {
    try {
      const h = headers();
      if (lastEventId !== null) h['Last-Event-ID'] = lastEventId;
      const res = await fetch(lastEventId === null ? '/v1/events?replay=100' : '/v1/events', { headers: h, cache: 'no-store' });
      if (res.status === 401) {
        setConn('needs token', false);
        askToken('Reading the state needs the bearer token.');
        await tokenEntered();
        continue;
      }
      if (!res.ok || !res.body) throw new Error(`HTTP ${res.status}`);
      setConn('live', true);
      backoff = 1000;
      refresh();
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += value;
        let i;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          onMessage(buf.slice(0, i));
          buf = buf.slice(i + 2);
        }
      }
      setConn('reconnecting…', false);
    } catch (e) {
      setConn(`reconnecting… (${e.message})`, false);
    }
    await sleep(backoff);
    backoff = Math.min(backoff * 2, 15000);
  }
}

// -------------------------------------------------------------- actions

const HELP = {
  drain: 'Graceful: DNS stops answering with the PoP, then its prefixes get the drain attributes, then the final drain action. Immediate: straight to the end.',
  undrain: 'Graceful: routes come back at once, DNS after the settle time. Immediate: both at once.',
  disable: 'Out of DNS and prefixes withdrawn at once.',
  enable: 'Removes the drain or disable at once.',
};

let pending = null;

function openAction(action, pop) {
  pending = { action, pop };
  $('#action-title').textContent = `${action[0].toUpperCase()}${action.slice(1)} ${pop}`;
  $('#action-help').textContent = HELP[action];
  $('#action-submit').textContent = action;
  document.querySelectorAll('#action-form label[data-for]').forEach((l) => {
    l.hidden = !l.dataset.for.split(' ').includes(action);
  });
  $('#action-error').hidden = true;
  $('#action-token-row').hidden = true;
  $('#action-reason').value = '';
  $('#action-duration').value = '';
  $('#action-mode').value = 'graceful';
  $('#action-force').checked = false;
  $('#action-dialog').showModal();
}

function actionBody(action) {
  const body = { who: 'web view' };
  const reason = $('#action-reason').value.trim();
  const duration = $('#action-duration').value.trim();
  if ((action === 'drain' || action === 'disable') && reason) body.reason = reason;
  if (action === 'drain' && duration) body.duration = duration;
  if (action === 'drain' || action === 'undrain') body.mode = $('#action-mode').value;
  if ((action === 'drain' || action === 'disable') && $('#action-force').checked) body.force = true;
  return body;
}

async function submitAction(ev) {
  ev.preventDefault();
  if (!pending) return;
  const { action, pop } = pending;
  const typed = $('#action-token').value.trim();
  if (typed) { token = typed; $('#action-token').value = ''; }
  // Tracked before the request is sent: its first events can arrive on the
  // stream before the answer does.
  const op = { action, pop, after: Number(lastEventId || 0), steps: [], result: 'sent' };
  ops.push(op);
  try {
    const r = await api('POST', `/v1/pops/${encodeURIComponent(pop)}/${action}`, actionBody(action));
    op.result = r.admin ? `${r.state}, step ${r.admin.step}` : r.state;
    renderOps();
    $('#action-dialog').close();
    pending = null;
    refresh();
  } catch (e) {
    ops.splice(ops.indexOf(op), 1);
    const err = $('#action-error');
    err.hidden = false;
    if (e instanceof AuthNeeded) {
      err.textContent = `${e.message}: enter the token and submit again.`;
      $('#action-token-row').hidden = false;
      $('#action-token').focus();
    } else if (e.status === 409 && e.field === 'force') {
      err.textContent = `Refused: ${e.message} Tick "force" to do it anyway.`;
    } else {
      err.textContent = `Refused: ${e.message}`;
    }
  }
}

// -------------------------------------------------------------- explain

async function explain(ev) {
  ev.preventDefault();
  if (!state) return;
  const client = $('#explain-client').value.trim();
  const type = $('#explain-type').value;
  const records = [];
  for (const z of state.dns.zones) {
    for (const r of z.records) if (r.type === 'steered') records.push(r.name);
  }
  const tbody = $('#explain tbody');
  if (records.length === 0) { fill(tbody, [], 'no steered records', 4); return; }
  const rows = await Promise.all(records.map(async (name) => {
    const q = new URLSearchParams({ name, type });
    if (client) q.set('client', client);
    try {
      const x = await api('GET', `/v1/explain?${q}`);
      const s = x.steering;
      const why = s
        ? [s.decision, s.excluded.length ? el('div', { class: 'muted', text: `excluded: ${s.excluded.map((e) => `${e.pop} (${e.reason.replaceAll('_', ' ')})`).join(', ')}` }) : null]
        : x.rcode;
      return el('tr', { 'data-record': name },
        el('td', { class: 'mono', text: name }),
        el('td', { class: 'mono', text: x.answers.join('\n') || x.rcode }),
        el('td', { text: s ? s.chosen.join(', ') || '–' : '–' }),
        el('td', { class: 'detail' }, why));
    } catch (e) {
      return el('tr', { 'data-record': name },
        el('td', { class: 'mono', text: name }),
        el('td', { colspan: 3, class: 'error', text: e.message }));
    }
  }));
  fill(tbody, rows, '', 4);
}

// ------------------------------------------------------------------ wire

function init() {
  $('#token-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const input = $('#token-input');
    const t = input.value.trim();
    input.value = '';
    useToken(t);
  });
  $('#token-button').addEventListener('click', () => askToken('Enter the API bearer token for this page.'));
  $('#pops').addEventListener('click', (ev) => {
    const b = ev.target.closest('button[data-action]');
    if (b) openAction(b.dataset.action, b.dataset.pop);
  });
  $('#action-form').addEventListener('submit', submitAction);
  $('#action-cancel').addEventListener('click', () => { pending = null; $('#action-dialog').close(); });
  $('#explain-form').addEventListener('submit', explain);
  setInterval(tick, 1000);
  loadWorld();
  refresh();
  follow();
}

init();
