/* Jetpack dashboard: a single-page app over the JSON API in notes/dashboard-api.md.
 *
 * Layout of this file, top to bottom:
 *   1. Helpers: DOM building (text is always inserted as text; SVG strings go through esc()), formatting.
 *   2. Notices and dialogs: #notice messages, the reason/confirm dialog, the token dialog.
 *   3. API: one fetch helper (token header, 401 → token dialog → retry, errors as ApiError).
 *   4. Live: the WebSocket (hello with the last cursor, backoff reconnect, events fan-out).
 *   5. Router: hash routes → view objects {mount() → element, afterAttach?, onEvents?, unmount?}.
 *   6. Task actions shared by every view: move (optimistic on the board), priority, the details panel.
 *   7. One section per view: board, tree, graph, agents, mail, reservations, memory, quality, metrics.
 *   8. Boot.
 * Views re-render from the server rather than patching local state, except the board, which upserts
 * the cards named by live events so a 5,000-card board never has to be rebuilt.
 */

// ---------------------------------------------------------------------------------------------
// 1. Helpers
// ---------------------------------------------------------------------------------------------

const $ = (selector, root = document) => root.querySelector(selector);

/** Append children (nested arrays flattened; null, undefined and false skipped; strings as text). */
function appendAll(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child !== null && child !== undefined && child !== false) node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

/** h('div', {class: 'x', 'data-id': id, onclick}, child, 'text', [more]) — strings become text nodes. */
function h(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs ?? {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? '' : String(value));
  }
  return appendAll(node, children);
}

/** Replace a node's content with children given as h() takes them. */
const fill = (node, ...children) => node.replaceChildren(appendAll(document.createDocumentFragment(), children));

const ESCAPES = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };
/** Escape text for the few places that build SVG markup as a string (graph, charts). */
const esc = (value) => String(value ?? '').replace(/[&<>"']/g, (c) => ESCAPES[c]);
const num = (value) => (Number.isFinite(Number(value)) ? Number(value) : 0);

// Blocked sits beside Ready: blocking and unblocking an unclaimed task are the moves people make most.
const STATES = ['open', 'ready', 'blocked', 'claimed', 'in_progress', 'done', 'failed', 'cancelled'];
const STATE_LABELS = {
  open: 'Waiting', ready: 'Ready', claimed: 'Claimed', in_progress: 'In progress',
  blocked: 'Blocked', done: 'Done', failed: 'Failed', cancelled: 'Cancelled',
};
const FINAL_STATES = new Set(['done', 'failed', 'cancelled']);
const HELD_STATES = new Set(['claimed', 'in_progress']);
const stateLabel = (state) => STATE_LABELS[state] ?? state;

const badge = (text, attrs = {}) => h('span', { ...attrs, class: `badge ${attrs.class ?? ''}`.trim() }, text);
const stateBadge = (state) => badge(stateLabel(state), { class: 'state', 'data-state': state });
const prioBadge = (priority) => badge(`P${priority}`, { class: `prio p${priority}` });
const taskLink = (id, text = id) => h('button', { type: 'button', class: 'link task-link', 'data-link-id': id }, text);
const chips = (items, cls = 'chip') => (items ?? []).map((item) => h('span', { class: cls }, item));
const countdown = (until) => h('span', { class: 'countdown', 'data-until': toMs(until) }, formatCountdown(toMs(until)));

/** Times are epoch ms by the contract; ISO strings (pydantic datetimes) are accepted too. */
function toMs(value) {
  if (value === null || value === undefined || value === '') return null;
  return typeof value === 'number' ? value : Date.parse(value);
}
const emptyRow = (columns, text) => h('tr', { class: 'empty' }, h('td', { colspan: columns }, text));

function formatTime(value) {
  const ms = toMs(value);
  if (!ms) return '—';
  const date = new Date(ms);
  const time = date.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  if (date.toDateString() === new Date().toDateString()) return time;
  return `${date.toLocaleDateString([], { month: 'short', day: 'numeric' })} ${time}`;
}

function formatAge(seconds) {
  if (seconds === null || seconds === undefined) return '—';
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
  return `${Math.floor(s / 86400)}d`;
}

function formatCountdown(until) {
  const left = Math.round((until - Date.now()) / 1000);
  if (left <= 0) return 'lease expired';
  const clock = left < 3600
    ? `${Math.floor(left / 60)}:${String(left % 60).padStart(2, '0')}`
    : `${Math.floor(left / 3600)}h ${String(Math.floor((left % 3600) / 60)).padStart(2, '0')}m`;
  return `lease ${clock}`;
}

const formatPercent = (value) => (value === null || value === undefined ? '—' : `${Math.round(value * 1000) / 10}%`);
function formatMinutes(value) {
  if (value === null || value === undefined) return '—';
  return value < 90 ? `${Math.round(value * 10) / 10} min` : `${Math.round(value / 6) / 10} h`;
}

/**
 * Run fn at most once per minGap ms and never twice at once; a call during a run schedules one more.
 * The first run waits minDelay so a burst of calls (live events) becomes one run.
 */
function refresher(fn, minGap, minDelay = 20) {
  let timer = null, running = false, again = false, last = 0;
  const run = async () => {
    timer = null;
    if (running) { again = true; return; }
    running = true;
    last = Date.now();
    try { await fn(); } catch (err) { reportError(err); }
    running = false;
    if (again) { again = false; schedule(); }
  };
  const schedule = () => { timer ??= setTimeout(run, Math.max(minDelay, last + minGap - Date.now())); };
  return schedule;
}

// Countdowns anywhere on the page ([data-until]) tick together, once a second.
setInterval(() => {
  for (const node of document.querySelectorAll('[data-until]')) node.textContent = formatCountdown(Number(node.dataset.until));
}, 1000);

// ---------------------------------------------------------------------------------------------
// 2. Notices and dialogs
// ---------------------------------------------------------------------------------------------

const NOTICE_MS = { error: 10000, info: 4000 };
const NOTICE_MAX = 6;

function notify(message, kind = 'error') {
  const box = $('#notice');
  const item = h('div', { class: 'notice-item', 'data-kind': kind },
    h('span', { class: 'notice-text' }, message),
    h('button', { type: 'button', class: 'notice-close', 'aria-label': 'Dismiss', onclick: () => item.remove() }, '×'));
  box.append(item);
  while (box.children.length > NOTICE_MAX) box.firstElementChild.remove();
  setTimeout(() => item.remove(), NOTICE_MS[kind] ?? NOTICE_MS.error);
}

const errorMessage = (err) => err?.message || String(err);
const reportError = (err) => notify(errorMessage(err));

/** Open a modal dialog; resolves with accept()'s value (undefined keeps it open) or null on cancel. */
function runDialog(dialog, okButton, cancelButton, accept) {
  return new Promise((resolve) => {
    const close = (value) => {
      okButton.removeEventListener('click', onOk);
      cancelButton.removeEventListener('click', onCancel);
      dialog.removeEventListener('cancel', onCancel);
      dialog.removeEventListener('keydown', onKey);
      if (dialog.open) dialog.close();
      resolve(value);
    };
    const onOk = () => { const value = accept(); if (value !== undefined) close(value); };
    const onCancel = (event) => { event.preventDefault(); close(null); };
    const onKey = (event) => {
      const inTextarea = event.target.tagName === 'TEXTAREA';
      if (event.key === 'Enter' && (!inTextarea || event.ctrlKey || event.metaKey)) { event.preventDefault(); onOk(); }
    };
    okButton.addEventListener('click', onOk);
    cancelButton.addEventListener('click', onCancel);
    dialog.addEventListener('cancel', onCancel);
    dialog.addEventListener('keydown', onKey);
    dialog.showModal();
  });
}

let reasonQueue = Promise.resolve();

/**
 * Ask for a reason (withInput) or a plain confirmation. Resolves with the reason ('' when optional and
 * left empty) or null when cancelled. Calls queue so two moves never fight over the one dialog.
 */
function askReason({ title, message, required = false, withInput = true, okLabel = 'OK', cancelLabel = 'Cancel' }) {
  const ask = () => {
    const dialog = $('#reason-dialog'), input = $('#reason-input'), error = $('#reason-error');
    $('#reason-title').textContent = title;
    $('#reason-message').textContent = message;
    $('#reason-ok').textContent = okLabel;
    $('#reason-cancel').textContent = cancelLabel;
    dialog.dataset.mode = withInput ? 'reason' : 'confirm';
    input.hidden = !withInput;
    input.value = '';
    input.placeholder = required ? 'Reason (required)' : 'Reason (optional)';
    error.hidden = true;
    const accept = () => {
      const reason = input.value.trim();
      if (withInput && required && !reason) {
        error.textContent = 'A reason is required.';
        error.hidden = false;
        input.focus();
        return undefined;
      }
      return reason;
    };
    const answer = runDialog(dialog, $('#reason-ok'), $('#reason-cancel'), accept);
    (withInput ? input : $('#reason-ok')).focus();
    return answer;
  };
  const answer = reasonQueue.then(ask);
  reasonQueue = answer.catch(() => null);
  return answer;
}

const confirmAction = (title, message, okLabel) =>
  askReason({ title, message, okLabel, withInput: false }).then((answer) => answer !== null);

const TOKEN_KEY = 'jetpack.token';
const storedToken = () => localStorage.getItem(TOKEN_KEY);
let tokenPrompt = null;

/** Ask for a token once even when several requests hit 401 together; resolves with it or null. */
function askToken(message) {
  tokenPrompt ??= promptToken(message).finally(() => { tokenPrompt = null; });
  return tokenPrompt;
}

async function promptToken(message) {
  const dialog = $('#token-dialog'), input = $('#token-input');
  if (message) $('#token-message').textContent = message;
  input.value = '';
  const answer = runDialog(dialog, $('#token-ok'), $('#token-cancel'), () => input.value.trim() || undefined);
  input.focus();
  const token = await answer;
  if (token) localStorage.setItem(TOKEN_KEY, token);
  return token;
}

// ---------------------------------------------------------------------------------------------
// 3. API
// ---------------------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

const REQUEST_TIMEOUT_MS = 30000;
const TOKEN_ATTEMPTS = 3;

/** One HTTP exchange, body included, within REQUEST_TIMEOUT_MS: resolves {status, ok, data}. */
async function sendRequest(path, method, body) {
  const headers = { Accept: 'application/json' };
  const token = storedToken();
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), REQUEST_TIMEOUT_MS);
  try {
    const response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), signal: abort.signal });
    let data = null;
    try { data = await response.json(); } catch (err) { if (err.name === 'AbortError') throw err; }
    return { status: response.status, ok: response.ok, data };
  } catch (err) {
    const why = err.name === 'AbortError' ? `no answer within ${REQUEST_TIMEOUT_MS / 1000}s` : err.message;
    throw new ApiError(0, 'network', `${method} ${path} failed (${why}); check that \`jetpack dashboard\` is still running.`);
  } finally {
    clearTimeout(timer);
  }
}

/** Every request goes through here. Writes are POSTs with a JSON body ({} when there is nothing to say). */
async function api(path, { method = 'GET', body } = {}) {
  const payload = method === 'GET' ? undefined : (body ?? {});
  for (let attempt = 1; attempt <= TOKEN_ATTEMPTS; attempt += 1) {
    const { status, ok, data } = await sendRequest(path, method, payload);
    if (status === 401) {
      const token = await askToken(data?.message);
      if (!token) throw new ApiError(401, 'unauthorized', 'This dashboard needs a token; reload the page and paste one (jetpack token create).');
      continue;
    }
    if (!ok) {
      throw new ApiError(status, data?.error ?? 'http_error', data?.message ?? `${method} ${path} failed with HTTP ${status}.`);
    }
    return data ?? {};
  }
  throw new ApiError(401, 'unauthorized', `The token was refused ${TOKEN_ATTEMPTS} times; create a new one with \`jetpack token create\`.`);
}

const post = (path, body) => api(path, { method: 'POST', body });
const taskPath = (id, suffix = '') => `/api/tasks/${encodeURIComponent(id)}${suffix}`;

// ---------------------------------------------------------------------------------------------
// 4. Live updates over the WebSocket
// ---------------------------------------------------------------------------------------------

let lastCursor = null;
const live = { socket: null, attempts: 0, timer: null, wasConnected: false };
const BACKOFF_MIN_MS = 500;
const BACKOFF_MAX_MS = 5000;
const CLOSE_TOKEN_NEEDED = 4401;

/** The first cursor we learn (overview or board) is where the socket resumes, so no event is missed. */
function initCursor(cursor) {
  if (lastCursor === null && Number.isInteger(cursor)) lastCursor = cursor;
}

function setLive(status) {
  const node = $('#live');
  if (node.dataset.status === status) return;
  node.dataset.status = status;
  node.textContent = { connecting: 'connecting', connected: 'live', offline: 'offline' }[status];
}

function connectLive() {
  clearTimeout(live.timer);
  const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`;
  let socket;
  try { socket = new WebSocket(url); } catch (err) { reportError(err); scheduleReconnect(); return; }
  live.socket = socket;
  socket.onopen = () => socket.send(JSON.stringify({ type: 'hello', cursor: lastCursor, token: storedToken() }));
  socket.onmessage = (message) => onLiveMessage(message.data);
  socket.onclose = (event) => onLiveClose(event);
}

function onLiveMessage(raw) {
  let message;
  try { message = JSON.parse(raw); } catch { return; }
  if (message.type === 'welcome') {
    live.attempts = 0;
    live.wasConnected = true;
    setLive('connected');
    initCursor(message.cursor);
  } else if (message.type === 'events') {
    const events = message.events ?? [];
    const cursor = Number.isInteger(message.cursor) ? message.cursor : Math.max(lastCursor ?? 0, ...events.map((e) => e.id));
    lastCursor = Math.max(lastCursor ?? 0, cursor);
    setLive('connected');
    if (events.length) dispatchEvents(events, message);
  } else if (message.type === 'error' && message.message) {
    notify(message.message);
  }
}

async function onLiveClose(event) {
  live.socket = null;
  setLive('offline');
  if (live.wasConnected) notify('Live updates lost; reconnecting…', 'info');
  live.wasConnected = false;
  if (event.code === CLOSE_TOKEN_NEEDED) {
    const token = await askToken(event.reason || 'Live updates need a token.');
    if (token) connectLive();
    else notify('Live updates are off: no token given. Reload the page to enter one.');
    return;
  }
  scheduleReconnect();
}

function scheduleReconnect() {
  const delay = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** live.attempts);
  live.attempts += 1;
  live.timer = setTimeout(connectLive, delay);
}

/** `message` also carries the current cards of the tasks the events touched ("cards", "gone"). */
function dispatchEvents(events, message) {
  currentView?.onEvents?.(events, message);
  detailsOnEvents(events);
}

const isTaskEvent = (event) => Boolean(event.task_id);
const eventsMatch = (events, test) => events.some(test);

// ---------------------------------------------------------------------------------------------
// 5. Router
// ---------------------------------------------------------------------------------------------

let currentView = null;
let routeSeq = 0;
let markReady;
const readyPromise = new Promise((resolve) => { markReady = resolve; });
const views = {}; // filled by the view sections below

function routeName() {
  const name = location.hash.replace(/^#\/?/, '').split(/[/?]/)[0];
  return Object.hasOwn(views, name) ? name : 'board';
}

async function showRoute() {
  const name = routeName();
  const view = views[name];
  const seq = ++routeSeq;
  currentView?.unmount?.();
  currentView = view;
  document.body.dataset.ready = '0';
  document.body.dataset.view = name;
  for (const link of document.querySelectorAll('#nav a')) {
    link.classList.toggle('active', link.dataset.route === name);
    if (link.dataset.route === name) link.setAttribute('aria-current', 'page'); else link.removeAttribute('aria-current');
  }
  const main = $('#view');
  main.replaceChildren(h('p', { class: 'loading' }, 'Loading…'));
  let root;
  try {
    root = await view.mount();
  } catch (err) {
    reportError(err);
    root = h('div', { class: 'error-box' }, `Could not load this view: ${errorMessage(err)}`);
  }
  if (seq !== routeSeq) return;
  main.replaceChildren(root);
  try { view.afterAttach?.(); } catch (err) { reportError(err); }
  document.body.dataset.ready = '1';
  markReady(true);
}

const isCurrent = (view) => currentView === view;
const section = (title, ...children) => h('section', { class: 'panel' }, h('h2', null, title), ...children);

// ---------------------------------------------------------------------------------------------
// 6. Task actions: move, priority, details panel
// ---------------------------------------------------------------------------------------------

/** Ask what a move needs: a reason (block, cancel), a confirmation (release a claim), or nothing. */
function askForMove(task, to) {
  if (to === 'blocked') {
    return askReason({ title: `Block ${task.id}?`, message: 'Agents will not pick it up until it is unblocked. Why is it blocked?', required: true, okLabel: 'Block' });
  }
  if (to === 'cancelled') {
    return askReason({ title: `Cancel ${task.id}?`, message: 'Cancelled tasks are not worked on. Why cancel it?', required: true, okLabel: 'Cancel task', cancelLabel: 'Keep it' });
  }
  if (HELD_STATES.has(task.state) && (to === 'ready' || to === 'open')) {
    const holder = task.assignee ?? 'an agent';
    return askReason({ title: `Release ${task.id}?`, message: `${holder} holds this task. Releasing takes it away from them and puts it back in the queue.`, okLabel: 'Release' });
  }
  return Promise.resolve('');
}

/**
 * The one move flow (drop, keyboard, details select): optimistic placement on the board, ask what the
 * move needs, POST, then place the returned card — or snap back and show the server's message.
 * Resolves true when the server accepted the move.
 */
async function moveTask(id, to, knownTask = null) {
  const task = board.cards.get(id) ?? knownTask;
  if (!task || task.state === to || board.pending.has(id)) return false;
  const onBoard = isCurrent(views.board) && board.elements.has(id);
  board.pending.add(id);
  if (onBoard) placeOptimistically(id, to);
  let accepted = false;
  try {
    const reason = await askForMove(task, to);
    if (reason === null) return false;
    const result = await post(taskPath(id, '/move'), { to, reason: reason || null });
    accepted = true;
    board.pending.delete(id);
    if (isCurrent(views.board)) {
      if (result.card) upsertCard(result.card); else requestCards([id]);
    }
    return true;
  } catch (err) {
    const why = errorMessage(err); // the service's refusals name the task already
    notify(why.includes(id) ? why.charAt(0).toUpperCase() + why.slice(1) : `Could not move ${id} to ${stateLabel(to)}: ${why}`);
    if (onBoard) board.refused.add(id);
    return false;
  } finally {
    board.pending.delete(id);
    if (onBoard && !accepted) snapBack(task);
    if (board.deferred.delete(id)) requestCards([id]);
    refreshDetailsIf(id);
  }
}

async function setPriority(id, priority) {
  try {
    const result = await post(taskPath(id, '/priority'), { priority });
    if (isCurrent(views.board) && result.card) upsertCard(result.card);
    refreshDetailsIf(id);
  } catch (err) {
    notify(`Could not set ${id} to P${priority}: ${errorMessage(err)}`);
  }
}

const details = { id: null, seq: 0 };

async function openDetails(id) {
  const panel = $('#details');
  const seq = ++details.seq;
  details.id = id;
  panel.hidden = false;
  panel.dataset.openId = id;
  panel.dataset.loaded = '0';
  if (panel.firstElementChild?.dataset.for !== id) fill(panel, detailsHeader(id), h('p', { class: 'loading' }, 'Loading…'));
  try {
    const data = await api(taskPath(id));
    if (seq === details.seq) fill(panel, detailsHeader(id), ...detailsBody(data));
  } catch (err) {
    reportError(err);
    if (seq === details.seq) fill(panel, detailsHeader(id), h('p', { class: 'error-box' }, errorMessage(err)));
  }
  if (seq === details.seq) panel.dataset.loaded = '1';
}

function closeDetails() {
  const panel = $('#details');
  details.id = null;
  details.seq += 1;
  panel.hidden = true;
  panel.replaceChildren();
  delete panel.dataset.openId;
}

function refreshDetailsIf(id) {
  if (details.id === id) openDetails(id);
}

const refreshDetailsSoon = refresher(() => (details.id ? openDetails(details.id) : null), 1000);
function detailsOnEvents(events) {
  if (details.id && events.some((event) => event.task_id === details.id)) refreshDetailsSoon();
}

function detailsHeader(id) {
  return h('header', { class: 'details-head', 'data-for': id },
    h('span', { class: 'task-id' }, id),
    h('button', { type: 'button', id: 'details-close', class: 'icon', 'aria-label': 'Close details', onclick: closeDetails }, '×'));
}

function selectControl(id, label, options, selected, onchange) {
  const select = h('select', { id, onchange },
    options.map(([value, text]) => h('option', { value, selected: String(value) === String(selected) }, text)));
  return h('label', { class: 'control' }, label, select);
}

function detailsBody(detail) {
  const { task, dependents, children } = detail;
  const dependencies = detail.dependencies ?? detail.depends_on;
  const events = detail.events ?? detail.recent_events;
  const onMove = async (event) => {
    const select = event.target;
    if (!(await moveTask(task.id, select.value, task))) select.value = task.state;
  };
  const onPriority = (event) => setPriority(task.id, Number(event.target.value));
  return [
    h('h2', { class: 'details-title' }, task.title),
    h('div', { class: 'details-meta' }, stateBadge(task.state), prioBadge(task.priority),
      task.assignee ? h('span', { class: 'assignee' }, `@${task.assignee}`) : null,
      HELD_STATES.has(task.state) && task.lease_expires_at ? countdown(task.lease_expires_at) : null,
      task.max_attempts ? h('span', { class: 'muted' }, `attempts ${task.attempts ?? 0}/${task.max_attempts}`) : null),
    h('div', { class: 'details-controls' },
      selectControl('details-move', 'Move to', STATES.map((s) => [s, stateLabel(s)]), task.state, onMove),
      selectControl('details-priority', 'Priority', [0, 1, 2, 3, 4].map((p) => [p, `P${p}`]), task.priority, onPriority)),
    task.blocked_reason ? h('p', { class: 'blocked-reason' }, `Blocked: ${task.blocked_reason}`) : null,
    task.parent_id ? h('p', null, 'Parent: ', taskLink(task.parent_id)) : null,
    textBlock('Description', task.description),
    textBlock('Acceptance', task.acceptance),
    chipBlock('Labels', task.labels), chipBlock('Skills', task.skills), chipBlock('Files', task.files),
    relatedList('Dependencies (must finish first)', dependencies),
    relatedList('Dependents (wait for this)', dependents),
    relatedList('Children', children),
    attemptErrors(detail.errors),
    h('h3', null, 'Recent events'),
    eventList(events),
  ];
}

function attemptErrors(errors) {
  if (!errors?.length) return null;
  return [h('h3', null, `Failed attempts · ${errors.length}`), h('ol', { class: 'events' }, errors.map((error) => h('li', null,
    h('time', null, formatTime(error.at)), ' ', h('span', { class: 'event-kind' }, `#${error.attempt} ${error.kind}`), ' ',
    h('span', { class: 'actor' }, error.actor ?? ''), error.error ? h('div', { class: 'event-note' }, error.error) : null)))];
}

const textBlock = (title, text) => (text ? [h('h3', null, title), h('div', { class: 'prose' }, text)] : null);
const chipBlock = (title, items) => (items?.length ? [h('h3', null, title), h('div', { class: 'chips' }, chips(items))] : null);

/** Related tasks: the contract leaves their shape open, so accept ids or objects with id/task_id. */
function relatedList(title, items) {
  if (!items?.length) return null;
  const rows = items.map((item) => {
    const ref = typeof item === 'string' ? { id: item } : item;
    const id = ref.id ?? ref.task_id ?? ref.depends_on;
    return h('li', null, taskLink(id), ' ', ref.title ?? '', ' ', ref.state ? stateBadge(ref.state) : null,
      ref.kind && ref.kind !== 'blocks' ? h('span', { class: 'muted' }, ` (${ref.kind})`) : null);
  });
  return [h('h3', null, `${title} · ${items.length}`), h('ul', { class: 'related' }, rows)];
}

function eventList(events) {
  if (!events?.length) return h('p', { class: 'muted' }, 'No events.');
  return h('ol', { class: 'events' }, events.map((event) => h('li', { 'data-event-id': event.id },
    h('time', null, formatTime(event.at)), ' ',
    h('span', { class: 'event-kind' }, event.kind), ' ',
    h('span', { class: 'actor' }, event.actor ?? ''),
    event.task_id ? [' ', taskLink(event.task_id)] : null,
    event.before || event.after ? h('span', { class: 'muted' }, ` ${event.before ?? '∅'} → ${event.after ?? '∅'}`) : null,
    event.note ? h('div', { class: 'event-note' }, event.note) : null)));
}

// ---------------------------------------------------------------------------------------------
// 7a. Board
// ---------------------------------------------------------------------------------------------

const board = {
  cards: new Map(), // id → Card, as the server last described it
  elements: new Map(), // id → <article class="card">
  columns: new Map(), // state → {section, list, count, more}
  hidden: {},
  pending: new Set(), // ids with a move in flight: live updates wait for its answer
  deferred: new Set(), // ids whose live update arrived while pending
  refused: new Set(), // ids to flag with .refused when they snap back
  wanted: new Set(), // ids to fetch from /api/cards
  mounted: false, // false while /api/board loads: wanted ids wait, the fresh board would overwrite them
  dragId: null,
};
const REFUSED_FLASH_MS = 3000;
const CARDS_PER_REQUEST = 100;

/**
 * Final columns show the newest first; the others the most urgent first, and within a priority the
 * server's order (oldest first): the sort is stable and a placed card goes after its equals.
 */
function compareCards(a, b) {
  if (FINAL_STATES.has(a.state)) return (b.updated_at ?? 0) - (a.updated_at ?? 0);
  return a.priority - b.priority;
}

function renderCard(card) {
  const held = HELD_STATES.has(card.state);
  const el = h('article', {
    class: 'card', 'data-task-id': card.id, 'data-state': card.state, 'data-priority': card.priority,
    draggable: 'true', tabindex: '0', 'aria-label': `${card.id}: ${card.title}`,
  },
  h('div', { class: 'card-head' }, h('span', { class: 'card-id' }, card.id), prioBadge(card.priority)),
  h('div', { class: 'card-title' }, card.title),
  h('div', { class: 'card-meta' },
    card.assignee ? h('span', { class: 'assignee' }, `@${card.assignee}`) : null,
    held && card.lease_expires_at ? countdown(card.lease_expires_at) : null,
    card.attempts > 0 ? h('span', { class: 'attempts' }, `try ${card.attempts}/${card.max_attempts}`) : null,
    chips((card.labels ?? []).slice(0, 3))),
  card.blocked_reason ? h('div', { class: 'card-blocked' }, card.blocked_reason) : null);
  return el;
}

function renderColumn(state, cards) {
  const list = h('div', { class: 'cards', role: 'list' });
  const fragment = document.createDocumentFragment();
  for (const card of cards) {
    const el = renderCard(card);
    board.elements.set(card.id, el);
    fragment.append(el);
  }
  list.append(fragment);
  const count = h('span', { class: 'count' });
  const more = h('div', { class: 'more', hidden: true });
  const column = h('section', { class: 'column', 'data-column': state, 'aria-label': stateLabel(state) },
    h('header', { class: 'column-head', 'data-state': state }, h('span', { class: 'column-label' }, stateLabel(state)), count),
    list, more);
  board.columns.set(state, { section: column, list, count, more });
  updateCount(state);
  return column;
}

function updateCount(state) {
  const column = board.columns.get(state);
  if (!column) return;
  const hidden = board.hidden[state] ?? 0;
  column.count.textContent = String(column.list.childElementCount + hidden);
  column.more.hidden = hidden === 0;
  column.more.textContent = `+${hidden} more`;
}

function insertSorted(list, el, card) {
  for (const other of list.children) {
    const otherCard = board.cards.get(other.dataset.taskId);
    if (otherCard && compareCards(card, otherCard) < 0) { list.insertBefore(el, other); return; }
  }
  list.append(el);
}

/** Put the card's element where its state says, replacing any older element and keeping focus. */
function placeCard(card) {
  const old = board.elements.get(card.id);
  const hadFocus = old !== undefined && document.activeElement === old;
  const oldState = old?.parentElement?.closest('.column')?.dataset.column;
  old?.remove();
  board.cards.set(card.id, card);
  const el = renderCard(card);
  board.elements.set(card.id, el);
  const column = board.columns.get(card.state);
  if (column) insertSorted(column.list, el, card);
  if (hadFocus) el.focus({ preventScroll: true });
  if (oldState) updateCount(oldState);
  updateCount(card.state);
  return el;
}

function removeCard(id) {
  const el = board.elements.get(id);
  const state = el?.parentElement?.closest('.column')?.dataset.column;
  el?.remove();
  board.elements.delete(id);
  board.cards.delete(id);
  if (state) updateCount(state);
}

/** A live update. Cards with children on the board are not leaves, so they leave it. */
function upsertCard(card) {
  if (board.pending.has(card.id)) { board.deferred.add(card.id); return; }
  if (card.parent_id && board.cards.has(card.parent_id)) removeCard(card.parent_id);
  for (const other of board.cards.values()) {
    if (other.parent_id === card.id) { removeCard(card.id); return; }
  }
  placeCard(card);
}

function placeOptimistically(id, to) {
  const el = board.elements.get(id);
  const column = board.columns.get(to);
  if (!el || !column) return;
  const hadFocus = document.activeElement === el;
  const from = el.dataset.state;
  el.dataset.state = to;
  el.classList.add('moving');
  column.list.prepend(el);
  if (hadFocus) el.focus({ preventScroll: true });
  updateCount(from);
  updateCount(to);
}

function snapBack(card) {
  const el = placeCard(board.cards.get(card.id) ?? card);
  if (!board.refused.delete(card.id)) return;
  el.classList.add('refused');
  setTimeout(() => el.classList.remove('refused'), REFUSED_FLASH_MS);
}

function requestCards(ids) {
  for (const id of ids) board.wanted.add(id);
  fetchWantedSoon();
}

const fetchWantedSoon = refresher(async () => {
  if (!isCurrent(views.board)) { board.wanted.clear(); return; }
  if (!board.mounted) return;
  const ids = [...board.wanted];
  board.wanted.clear();
  for (let i = 0; i < ids.length; i += CARDS_PER_REQUEST) {
    const chunk = ids.slice(i, i + CARDS_PER_REQUEST);
    const data = await api(`/api/cards?ids=${chunk.map(encodeURIComponent).join(',')}`);
    if (!isCurrent(views.board)) return;
    for (const card of data.cards ?? []) upsertCard(card);
    for (const id of data.missing ?? []) if (!board.pending.has(id)) removeCard(id);
  }
}, 50, 50);

function applyCards(cards, gone) {
  if (!board.mounted) return;
  for (const card of cards) upsertCard(card);
  for (const id of gone) if (!board.pending.has(id)) removeCard(id);
}

function columnOf(target) {
  return target.closest?.('.column') ?? null;
}

function onBoardKey(event) {
  const el = event.target.closest?.('.card');
  if (!el) return;
  const id = el.dataset.taskId;
  const card = board.cards.get(id);
  if (!card) return;
  if (event.shiftKey && (event.key === 'ArrowRight' || event.key === 'ArrowLeft')) {
    event.preventDefault();
    const to = STATES[STATES.indexOf(card.state) + (event.key === 'ArrowRight' ? 1 : -1)];
    if (to) moveTask(id, to).finally(() => board.elements.get(id)?.focus());
  } else if (event.key === 'Enter') {
    event.preventDefault();
    openDetails(id);
  } else if (/^[0-4]$/.test(event.key) && !event.ctrlKey && !event.metaKey && !event.altKey) {
    event.preventDefault();
    setPriority(id, Number(event.key));
  } else if (event.key === 'ArrowDown' || event.key === 'ArrowUp') {
    event.preventDefault();
    (event.key === 'ArrowDown' ? el.nextElementSibling : el.previousElementSibling)?.focus();
  }
}

function markDropTarget(column) {
  for (const { section: other } of board.columns.values()) other.classList.toggle('drop-target', other === column);
}

function wireBoard(root) {
  root.addEventListener('dragstart', (event) => {
    const el = event.target.closest?.('.card');
    if (!el) return;
    board.dragId = el.dataset.taskId;
    event.dataTransfer.setData('text/plain', board.dragId);
    event.dataTransfer.effectAllowed = 'move';
    el.classList.add('dragging');
  });
  root.addEventListener('dragend', (event) => {
    event.target.closest?.('.card')?.classList.remove('dragging');
    board.dragId = null;
    markDropTarget(null);
  });
  root.addEventListener('dragover', (event) => {
    const column = columnOf(event.target);
    if (!column || !board.dragId) return;
    event.preventDefault();
    event.dataTransfer.dropEffect = 'move';
    markDropTarget(column);
  });
  root.addEventListener('drop', (event) => {
    const column = columnOf(event.target);
    if (!column) return;
    event.preventDefault();
    const id = board.dragId || event.dataTransfer.getData('text/plain');
    board.dragId = null;
    markDropTarget(null);
    if (id) moveTask(id, column.dataset.column);
  });
  root.addEventListener('click', (event) => {
    const el = event.target.closest('.card');
    if (el) openDetails(el.dataset.taskId);
  });
  root.addEventListener('keydown', onBoardKey);
}

views.board = {
  async mount() {
    board.mounted = false;
    const data = await api('/api/board');
    initCursor(data.cursor);
    board.cards = new Map((data.cards ?? []).map((card) => [card.id, card]));
    board.elements = new Map();
    board.columns = new Map();
    board.hidden = data.hidden ?? {};
    const byState = new Map(STATES.map((state) => [state, []]));
    for (const card of board.cards.values()) byState.get(card.state)?.push(card);
    const root = h('div', { class: 'board', id: 'board' });
    for (const state of STATES) root.append(renderColumn(state, byState.get(state).sort(compareCards)));
    wireBoard(root);
    board.mounted = true;
    if (board.wanted.size) fetchWantedSoon();
    return root;
  },
  onEvents(events, message) {
    if (Array.isArray(message?.cards)) {
      applyCards(message.cards, message.gone ?? []); // the feed sent them: no request per page
    } else {
      requestCards(events.filter(isTaskEvent).map((event) => event.task_id));
    }
  },
  unmount() {
    board.wanted.clear();
  },
};

// ---------------------------------------------------------------------------------------------
// 7b. Tree
// ---------------------------------------------------------------------------------------------

const tree = { collapsed: new Set(), container: null };

function progressBar(done, total) {
  const percent = total ? Math.round((done / total) * 100) : 0;
  const bar = h('span', { class: 'progress-bar' });
  bar.style.width = `${percent}%`;
  return h('span', { class: 'progress', title: `${done} of ${total} done`, role: 'progressbar', 'aria-valuenow': percent, 'aria-valuemin': 0, 'aria-valuemax': 100 },
    h('span', { class: 'progress-track' }, bar), h('span', { class: 'progress-text' }, `${done}/${total}`));
}

function renderTreeNode(node) {
  const hasChildren = node.children?.length > 0;
  const collapsed = tree.collapsed.has(node.id);
  const row = h('div', { class: 'tree-row', 'data-task-id': node.id, 'data-state': node.state, tabindex: '0' },
    hasChildren
      ? h('button', { type: 'button', class: 'toggle', 'aria-expanded': String(!collapsed), 'aria-label': 'Expand or collapse' }, collapsed ? '▸' : '▾')
      : h('span', { class: 'toggle-spacer' }),
    h('span', { class: 'task-id' }, node.id),
    h('span', { class: 'tree-title' }, node.title),
    stateBadge(node.state), prioBadge(node.priority),
    node.assignee ? h('span', { class: 'assignee' }, `@${node.assignee}`) : null,
    hasChildren ? progressBar(node.done, node.total) : null);
  const item = h('li', { class: 'tree-node' }, row);
  if (hasChildren) item.append(h('ul', { class: 'tree-children', hidden: collapsed }, node.children.map(renderTreeNode)));
  return item;
}

function toggleTreeNode(button) {
  const row = button.closest('.tree-row');
  const id = row.dataset.taskId;
  const collapse = !tree.collapsed.has(id);
  if (collapse) tree.collapsed.add(id); else tree.collapsed.delete(id);
  button.setAttribute('aria-expanded', String(!collapse));
  button.textContent = collapse ? '▸' : '▾';
  row.nextElementSibling.hidden = collapse;
}

function setAllTreeNodes(collapse) {
  for (const button of tree.container.querySelectorAll('.toggle')) {
    if ((button.getAttribute('aria-expanded') === 'true') === collapse) toggleTreeNode(button);
  }
}

async function loadTree() {
  const data = await api('/api/tree');
  const roots = data.roots ?? [];
  const list = h('ul', { class: 'tree', id: 'tree' }, roots.map(renderTreeNode));
  tree.container.replaceChildren(roots.length ? list : h('p', { class: 'muted' }, 'No tasks yet. Add some with `jetpack task add`.'));
}

const refreshTree = refresher(() => (isCurrent(views.tree) ? loadTree() : null), 1000);

views.tree = {
  async mount() {
    tree.container = h('div', { class: 'tree-wrap' });
    tree.container.addEventListener('click', (event) => {
      const toggle = event.target.closest('.toggle');
      if (toggle) { toggleTreeNode(toggle); return; }
      const row = event.target.closest('.tree-row');
      if (row && !event.target.closest('[data-link-id]')) openDetails(row.dataset.taskId);
    });
    tree.container.addEventListener('keydown', (event) => {
      const row = event.target.closest('.tree-row');
      if (row && event.key === 'Enter' && event.target === row) openDetails(row.dataset.taskId);
    });
    await loadTree();
    return h('div', { class: 'tree-view' },
      h('div', { class: 'toolbar' },
        h('button', { type: 'button', id: 'tree-expand', onclick: () => setAllTreeNodes(false) }, 'Expand all'),
        h('button', { type: 'button', id: 'tree-collapse', onclick: () => setAllTreeNodes(true) }, 'Collapse all')),
      tree.container);
  },
  onEvents(events) {
    if (eventsMatch(events, isTaskEvent)) refreshTree();
  },
};

// ---------------------------------------------------------------------------------------------
// 7c. Graph (server-side layout; we only draw, zoom and pan)
// ---------------------------------------------------------------------------------------------

const graph = { data: null, wrap: null, header: null, view: { x: 0, y: 0, k: 1 }, moved: false, frame: 0, pan: null };
const ZOOM_MIN = 0.03;
const ZOOM_MAX = 4;
const CHAR_WIDTH = 6.6;
const LABELS_FROM_ZOOM = 0.45; // below this labels are unreadable anyway: hiding them keeps zoom and pan fast

/** Where the line from a box's centre towards (tx, ty) leaves the box. */
function borderPoint(box, tx, ty) {
  const cx = box.x + box.w / 2, cy = box.y + box.h / 2;
  const dx = tx - cx, dy = ty - cy;
  if (!dx && !dy) return [cx, cy];
  const scale = 1 / Math.max(Math.abs(dx) / (box.w / 2 || 1), Math.abs(dy) / (box.h / 2 || 1));
  return [cx + dx * scale, cy + dy * scale];
}

const clip = (text, width) => {
  const max = Math.max(4, Math.floor((width - 14) / CHAR_WIDTH));
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
};

function nodeMarkup(node) {
  const x = num(node.x), y = num(node.y), w = num(node.w) || 160, hgt = num(node.h) || 48;
  const holder = node.assignee ? clip(`@${node.assignee}`, w / 2) : '';
  const lines = [`<text class="node-id" x="8" y="15">${esc(clip(node.id, w - holder.length * CHAR_WIDTH))}</text>`];
  if (holder) lines.push(`<text class="node-holder" x="${w - 8}" y="15" text-anchor="end">${esc(holder)}</text>`);
  if (hgt >= 32) lines.push(`<text class="node-title" x="8" y="31">${esc(clip(node.title ?? '', w))}</text>`);
  return `<g class="node${node.critical ? ' critical' : ''}" data-task-id="${esc(node.id)}" data-state="${esc(node.state)}" transform="translate(${x} ${y})" tabindex="0">`
    + `<title>${esc(`${node.id} · ${stateLabel(node.state)} · ${node.title ?? ''}`)}</title>`
    + `<rect width="${w}" height="${hgt}" rx="6"></rect>${lines.join('')}</g>`;
}

function edgeMarkup(edge, boxes) {
  const from = boxes.get(edge.from), to = boxes.get(edge.to);
  if (!from || !to) return '';
  const [x1, y1] = borderPoint(from, to.x + to.w / 2, to.y + to.h / 2);
  const [x2, y2] = borderPoint(to, from.x + from.w / 2, from.y + from.h / 2);
  const critical = edge.critical ? ' critical' : '';
  return `<line class="edge${critical}" data-from="${esc(edge.from)}" data-to="${esc(edge.to)}" x1="${x1}" y1="${y1}" x2="${x2}" y2="${y2}" marker-end="url(#arrow${critical ? '-critical' : ''})"></line>`;
}

function graphMarkup(data) {
  const boxes = new Map(data.nodes.map((n) => [n.id, { x: num(n.x), y: num(n.y), w: num(n.w) || 160, h: num(n.h) || 48 }]));
  const marker = (id) => `<marker id="${id}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0 0L10 5L0 10z"></path></marker>`;
  return `<svg id="graph-svg" class="graph-svg" xmlns="http://www.w3.org/2000/svg" role="img" aria-label="Task dependency graph">`
    + `<defs>${marker('arrow')}${marker('arrow-critical')}</defs>`
    + `<g id="graph-viewport"><g class="edges">${data.edges.map((e) => edgeMarkup(e, boxes)).join('')}</g>`
    + `<g class="nodes">${data.nodes.map(nodeMarkup).join('')}</g></g></svg>`;
}

function applyGraphTransform() {
  cancelAnimationFrame(graph.frame);
  graph.frame = requestAnimationFrame(() => {
    const { x, y, k } = graph.view;
    graph.wrap.querySelector('#graph-viewport')?.setAttribute('transform', `translate(${x} ${y}) scale(${k})`);
    graph.wrap.classList.toggle('zoomed-out', k < LABELS_FROM_ZOOM);
  });
}

function zoomAt(px, py, factor) {
  const { x, y, k } = graph.view;
  const next = Math.min(ZOOM_MAX, Math.max(ZOOM_MIN, k * factor));
  graph.view = { x: px - ((px - x) * next) / k, y: py - ((py - y) * next) / k, k: next };
  graph.moved = true;
  applyGraphTransform();
}

function zoomCentre(factor) {
  const rect = graph.wrap.getBoundingClientRect();
  zoomAt(rect.width / 2, rect.height / 2, factor);
}

function fitGraph() {
  const rect = graph.wrap.getBoundingClientRect();
  const width = num(graph.data?.width) || 1, height = num(graph.data?.height) || 1;
  const margin = 24;
  const k = Math.min(ZOOM_MAX, 1.5, Math.max(ZOOM_MIN, Math.min((rect.width - 2 * margin) / width, (rect.height - 2 * margin) / height)));
  graph.view = { x: (rect.width - width * k) / 2, y: margin, k };
  graph.moved = false;
  applyGraphTransform();
}

function wireGraph(wrap) {
  wrap.addEventListener('wheel', (event) => {
    event.preventDefault();
    const rect = wrap.getBoundingClientRect();
    zoomAt(event.clientX - rect.left, event.clientY - rect.top, Math.exp(-event.deltaY * 0.0015));
  }, { passive: false });
  wrap.addEventListener('pointerdown', (event) => {
    if (event.button !== 0 || event.target.closest('.node')) return;
    graph.pan = { startX: event.clientX, startY: event.clientY, x: graph.view.x, y: graph.view.y };
    wrap.setPointerCapture(event.pointerId);
    wrap.classList.add('panning');
  });
  wrap.addEventListener('pointermove', (event) => {
    if (!graph.pan) return;
    graph.view = { ...graph.view, x: graph.pan.x + event.clientX - graph.pan.startX, y: graph.pan.y + event.clientY - graph.pan.startY };
    graph.moved = true;
    applyGraphTransform();
  });
  const endPan = () => { graph.pan = null; wrap.classList.remove('panning'); };
  wrap.addEventListener('pointerup', endPan);
  wrap.addEventListener('pointercancel', endPan);
  wrap.addEventListener('click', (event) => {
    const node = event.target.closest('.node');
    if (node) openDetails(node.dataset.taskId);
  });
  wrap.addEventListener('keydown', (event) => {
    const node = event.target.closest('.node');
    if (node && event.key === 'Enter') openDetails(node.dataset.taskId);
  });
}

function criticalPathList(ids) {
  if (!ids?.length) return h('p', { id: 'critical-path', class: 'muted' }, 'No critical path: nothing is left to do.');
  return h('ol', { id: 'critical-path', class: 'critical-path', 'aria-label': 'Critical path' },
    ids.map((id) => h('li', null, taskLink(id))));
}

function renderGraph(data) {
  graph.data = data;
  graph.wrap.innerHTML = graphMarkup(data); // every string in it went through esc()
  applyGraphTransform();
  fill(graph.header, 
    h('h2', null, `Critical path (${data.critical_path?.length ?? 0})`),
    criticalPathList(data.critical_path),
    data.truncated ? h('p', { class: 'hint' }, `Showing ${data.nodes.length} tasks: the graph was truncated by the server.`) : null,
    data.nodes.length ? null : h('p', { class: 'muted' }, 'No tasks to draw.'));
}

async function loadGraph() {
  const data = await api('/api/graph');
  if (!isCurrent(views.graph)) return;
  renderGraph({ ...data, nodes: data.nodes ?? [], edges: data.edges ?? [] });
}

const refreshGraph = refresher(loadGraph, 1000);

views.graph = {
  async mount() {
    const data = await api('/api/graph');
    graph.moved = false;
    graph.wrap = h('div', { class: 'graph-wrap', id: 'graph-wrap' });
    graph.header = h('div', { class: 'graph-header' });
    wireGraph(graph.wrap);
    renderGraph({ ...data, nodes: data.nodes ?? [], edges: data.edges ?? [] });
    return h('div', { class: 'graph-view' }, graph.header,
      h('div', { class: 'toolbar' },
        h('button', { type: 'button', id: 'graph-zoom-in', 'aria-label': 'Zoom in', onclick: () => zoomCentre(1.25) }, '+'),
        h('button', { type: 'button', id: 'graph-zoom-out', 'aria-label': 'Zoom out', onclick: () => zoomCentre(0.8) }, '−'),
        h('button', { type: 'button', id: 'graph-fit', onclick: fitGraph }, 'Fit'),
        h('span', { class: 'muted' }, 'Wheel to zoom, drag the background to pan, click a task for details.')),
      graph.wrap);
  },
  afterAttach() {
    if (!graph.moved) fitGraph();
  },
  onEvents(events) {
    if (eventsMatch(events, isTaskEvent)) refreshGraph();
  },
};

// ---------------------------------------------------------------------------------------------
// Shared by the simpler views: a view that loads, renders, and reloads on relevant events.
// ---------------------------------------------------------------------------------------------

function dataView({ load, render, relevant = null }) {
  const view = { root: null };
  view.fill = async () => {
    const data = await load();
    if (view.root) fill(view.root, render(data));
  };
  view.refresh = refresher(() => (isCurrent(view) ? view.fill() : null), 1000);
  view.mount = async () => {
    view.root = h('div', { class: 'view-body' });
    await view.fill();
    return view.root;
  };
  view.onEvents = (events) => { if (relevant && eventsMatch(events, relevant)) view.refresh(); };
  return view;
}

function table(attrs, headers, rows, emptyText = 'Nothing here.') {
  return h('div', { class: 'table-wrap' }, h('table', { class: 'table', ...attrs },
    h('thead', null, h('tr', null, headers.map((title) => h('th', { scope: 'col' }, title)))),
    h('tbody', null, rows.length ? rows : emptyRow(headers.length, emptyText))));
}

// ---------------------------------------------------------------------------------------------
// 7d. Agents and leaderboard
// ---------------------------------------------------------------------------------------------

const expandedAgents = new Set();

function agentRows(agent) {
  const open = expandedAgents.has(agent.name);
  const toggle = () => {
    if (expandedAgents.has(agent.name)) expandedAgents.delete(agent.name); else expandedAgents.add(agent.name);
    eventsRow.hidden = !expandedAgents.has(agent.name);
    button.setAttribute('aria-expanded', String(!eventsRow.hidden));
  };
  const button = h('button', { type: 'button', class: 'events-toggle', 'aria-expanded': String(open), onclick: toggle },
    `Events (${agent.recent_events?.length ?? 0})`);
  const row = h('tr', { class: 'agent-row', 'data-agent': agent.name },
    h('td', { class: 'agent-name' }, agent.name),
    h('td', null, badge(agent.state, { class: 'agent-state', 'data-state': agent.state, title: agent.reason ?? '' })),
    h('td', null, formatAge(agent.heartbeat_age_seconds)),
    h('td', null, (agent.tasks ?? []).map((task) => h('div', { class: 'agent-task' },
      taskLink(task.id), ' ', task.title ?? '', ' ', task.lease_expires_at ? countdown(task.lease_expires_at) : null))),
    h('td', { class: 'numeric' }, agent.done_last_hour ?? 0),
    h('td', null, chips(agent.skills)),
    h('td', null, button));
  const eventsRow = h('tr', { class: 'agent-events', 'data-agent': agent.name, hidden: !open },
    h('td', { colspan: 7 }, eventList(agent.recent_events)));
  return [row, eventsRow];
}

function leaderboardRow(row) {
  return h('tr', { 'data-agent': row.agent },
    h('td', null, row.agent), h('td', { class: 'numeric' }, row.done), h('td', { class: 'numeric' }, row.failed ?? 0),
    h('td', { class: 'numeric' }, formatPercent(row.success_rate)), h('td', { class: 'numeric' }, formatMinutes(row.median_minutes)),
    h('td', { class: 'numeric' }, row.retries_caused ?? 0));
}

views.agents = dataView({
  load: () => Promise.all([api('/api/agents'), api('/api/leaderboard')]),
  render: ([agents, leaderboard]) => [
    h('p', { class: 'summary', id: 'agent-counts' },
      Object.entries(agents.counts ?? {}).map(([state, n]) => badge(`${state} ${n}`, { class: 'agent-state', 'data-state': state }))),
    section('Agents', table({ id: 'agents-table' },
      ['Agent', 'State', 'Heartbeat', 'Current tasks', 'Done (1 h)', 'Skills', ''],
      (agents.agents ?? []).flatMap(agentRows), 'No agents have joined yet.')),
    section('Leaderboard', table({ id: 'leaderboard' },
      ['Agent', 'Done', 'Failed', 'Success', 'Median per task', 'Retries caused'],
      (leaderboard.rows ?? []).map(leaderboardRow), 'No finished work yet.')),
  ],
  relevant: () => true,
});

// ---------------------------------------------------------------------------------------------
// 7e. Mail
// ---------------------------------------------------------------------------------------------

const mail = { selection: null, threads: null, messages: null, root: null };
const IMPORTANCE = ['low', 'normal', 'high', 'urgent'];

function renderMessage(message, inInbox = false) {
  return h('article', { class: 'message', 'data-message-id': message.id, 'data-importance': message.importance },
    h('header', { class: 'message-head' },
      h('strong', null, message.sender), ' → ', (message.to ?? []).join(', '), ' ',
      h('time', null, formatTime(message.created_at)), ' ',
      message.importance && message.importance !== 'normal' ? badge(message.importance, { class: 'importance', 'data-importance': message.importance }) : null,
      message.kind ? h('span', { class: 'muted' }, ` ${message.kind}`) : null,
      message.task_id ? [' ', taskLink(message.task_id)] : null,
      inInbox ? badge(message.read ? 'read' : 'unread', { class: message.read ? 'quiet' : 'attention' }) : null,
      inInbox && (message.acked || message.acknowledged) ? badge('acked', { class: 'quiet' }) : null),
    h('div', { class: 'message-subject' }, message.subject),
    h('div', { class: 'prose' }, message.body));
}

function renderThreadItem(thread) {
  const selected = mail.selection?.kind === 'thread' && mail.selection.id === thread.thread_id;
  return h('li', null, h('button', {
    type: 'button', class: `thread${selected ? ' selected' : ''}`, 'data-thread-id': thread.thread_id,
    'data-importance': thread.importance, onclick: () => selectMail({ kind: 'thread', id: thread.thread_id, title: thread.subject }),
  },
  h('span', { class: 'thread-subject' }, thread.subject || '(no subject)'),
  h('span', { class: 'muted' }, `${(thread.participants ?? []).join(', ')} · ${thread.count} · ${formatTime(thread.last_at)}`)));
}

async function loadThreads() {
  const data = await api('/api/mail/threads?limit=50');
  const threads = data.threads ?? [];
  fill(mail.threads, threads.length
    ? h('ul', { class: 'thread-list' }, threads.map(renderThreadItem))
    : h('p', { class: 'muted' }, 'No mail yet.'));
}

/** The middle pane shows one thing: a thread, search hits, or an agent's inbox. */
async function loadSelection() {
  const selection = mail.selection;
  if (!selection) { fill(mail.messages, h('p', { class: 'muted' }, 'Pick a thread, search, or open an inbox.')); return; }
  const source = {
    thread: () => api(`/api/mail/threads/${encodeURIComponent(selection.id)}`).then((d) => d.messages),
    search: () => api(`/api/mail/search?q=${encodeURIComponent(selection.q)}`).then((d) => d.hits),
    inbox: () => api(`/api/mail/inbox/${encodeURIComponent(selection.agent)}?limit=50`).then((d) => d.messages),
  }[selection.kind];
  const messages = (await source()) ?? [];
  if (mail.selection !== selection) return;
  fill(mail.messages, h('h2', null, selection.title),
    messages.length ? messages.map((message) => renderMessage(message, selection.kind === 'inbox')) : h('p', { class: 'muted' }, 'No messages.'));
  mail.messages.dataset.kind = selection.kind;
}

async function selectMail(selection) {
  mail.selection = selection;
  for (const item of mail.threads.querySelectorAll('.thread')) {
    item.classList.toggle('selected', selection.kind === 'thread' && item.dataset.threadId === String(selection.id));
  }
  fill(mail.messages, h('p', { class: 'loading' }, 'Loading…'));
  try { await loadSelection(); } catch (err) {
    reportError(err);
    fill(mail.messages, h('p', { class: 'error-box' }, errorMessage(err)));
  }
}

function field(label, control) {
  return h('label', { class: 'field' }, h('span', null, label), control);
}

function searchForm(id, inputAttrs, onsubmit, buttonText = 'Search') {
  const input = h('input', { type: 'search', ...inputAttrs });
  const form = h('form', { id, class: 'inline-form', onsubmit: (event) => { event.preventDefault(); onsubmit(input.value.trim(), form); } },
    input, h('button', { type: 'submit' }, buttonText));
  return form;
}

function composeForm() {
  const form = h('form', { id: 'mail-form', class: 'stack-form', onsubmit: (event) => { event.preventDefault(); sendMail(form); } },
    h('h2', null, 'Send a message'),
    field('To (names, comma-separated, or *)', h('input', { name: 'to', id: 'mail-to', required: true, placeholder: 'blue-heron, *' })),
    field('Subject', h('input', { name: 'subject', id: 'mail-subject', required: true })),
    field('Body', h('textarea', { name: 'body', id: 'mail-body', rows: 5 })),
    h('div', { class: 'row' },
      field('Importance', h('select', { name: 'importance', id: 'mail-importance' },
        IMPORTANCE.map((level) => h('option', { value: level, selected: level === 'normal' }, level)))),
      h('label', { class: 'check' }, h('input', { type: 'checkbox', name: 'ack_required', id: 'mail-ack' }), 'Ask for an acknowledgement')),
    h('button', { type: 'submit', id: 'mail-send', class: 'primary' }, 'Send'));
  return form;
}

async function sendMail(form) {
  const values = new FormData(form);
  const to = String(values.get('to') ?? '').split(',').map((name) => name.trim()).filter(Boolean);
  if (!to.length) { notify('Add at least one recipient (an agent name, or * for everyone).'); return; }
  const button = form.querySelector('#mail-send');
  button.disabled = true;
  try {
    const result = await post('/api/mail/send', {
      to, subject: values.get('subject'), body: values.get('body'),
      importance: values.get('importance'), ack_required: values.get('ack_required') === 'on',
    });
    notify(`Sent to ${to.join(', ')}.`, 'info');
    form.reset();
    await loadThreads();
    if (result.message?.thread_id) selectMail({ kind: 'thread', id: result.message.thread_id, title: result.message.subject });
  } catch (err) {
    notify(`Message not sent: ${errorMessage(err)}`);
  } finally {
    button.disabled = false;
  }
}

const refreshMail = refresher(async () => {
  if (!isCurrent(views.mail)) return;
  await loadThreads();
  if (mail.selection) await loadSelection();
}, 1000);

views.mail = {
  async mount() {
    mail.threads = h('div', { id: 'mail-threads', class: 'mail-threads' });
    mail.messages = h('div', { id: 'mail-messages', class: 'mail-messages' });
    await loadThreads();
    await (mail.selection ? loadSelection().catch(reportError) : loadSelection());
    const search = searchForm('mail-search-form', { id: 'mail-search', placeholder: 'Search mail…', 'aria-label': 'Search mail' },
      (q) => (q ? selectMail({ kind: 'search', q, title: `Search: ${q}` }) : notify('Type words to search for.')));
    const inbox = searchForm('mail-inbox-form', { id: 'mail-inbox-agent', placeholder: 'agent name', 'aria-label': 'Inbox of agent' },
      (agent) => (agent ? selectMail({ kind: 'inbox', agent, title: `Inbox of ${agent}` }) : notify('Type an agent name to open its inbox.')), 'Open inbox');
    return h('div', { class: 'mail-view' },
      h('div', { class: 'mail-side' }, search, h('h2', null, 'Threads'), mail.threads),
      mail.messages,
      h('div', { class: 'mail-tools' }, h('h2', null, 'Inbox'), inbox, composeForm()));
  },
  onEvents(events) {
    if (eventsMatch(events, (event) => event.kind === 'mail_sent')) refreshMail();
  },
};

// ---------------------------------------------------------------------------------------------
// 7f. Reservations
// ---------------------------------------------------------------------------------------------

async function releaseReservation(reservation) {
  const ok = await confirmAction(`Release ${reservation.pattern}?`,
    `${reservation.agent} holds this ${reservation.mode} reservation. Releasing it lets others edit these files.`, 'Release');
  if (!ok) return;
  try {
    const result = await post(`/api/reservations/${encodeURIComponent(reservation.id)}/release`);
    notify(`Released ${result.released ?? 0} reservation(s).`, 'info');
  } catch (err) {
    notify(`Could not release ${reservation.pattern}: ${errorMessage(err)}`);
  }
  views.reservations.refresh();
}

function reservationRow(reservation) {
  const conflicts = reservation.conflicts ?? [];
  return h('tr', { 'data-reservation-id': reservation.id, class: conflicts.length ? 'conflict' : null },
    h('td', null, h('code', null, reservation.pattern)),
    h('td', null, badge(reservation.mode, { class: 'mode', 'data-mode': reservation.mode })),
    h('td', null, reservation.agent),
    h('td', null, reservation.task_id ? taskLink(reservation.task_id) : '—'),
    h('td', null, reservation.reason ?? ''),
    h('td', null, reservation.expires_at ? countdown(reservation.expires_at) : 'no expiry'),
    h('td', null, conflicts.map((c) => h('div', { class: 'conflict-item' }, `${c.agent}: `, h('code', null, c.pattern)))),
    h('td', null, h('button', { type: 'button', class: 'release', onclick: () => releaseReservation(reservation) }, 'Release')));
}

views.reservations = dataView({
  load: () => api('/api/reservations'),
  render: (data) => section('Active file reservations', table({ id: 'reservations-table' },
    ['Pattern', 'Mode', 'Holder', 'Task', 'Reason', 'Expires', 'Conflicts', ''],
    (data.reservations ?? []).map(reservationRow), 'No active reservations.')),
  relevant: (event) => event.kind?.startsWith('files_'),
});

// ---------------------------------------------------------------------------------------------
// 7g. Memory
// ---------------------------------------------------------------------------------------------

const MEMORY_LAYERS = ['all', 'episodic', 'working', 'procedural'];

function memoryHit(hit) {
  return h('article', { class: 'memory-hit', 'data-memory-id': hit.id, 'data-layer': hit.layer },
    h('header', { class: 'message-head' },
      badge(hit.layer, { class: 'layer', 'data-layer': hit.layer }), ' ',
      h('span', { class: 'score' }, `score ${Math.round(num(hit.score) * 1000) / 1000}`), ' ',
      h('time', null, formatTime(hit.created_at)),
      hit.task_id ? [' ', taskLink(hit.task_id)] : null, ' ', chips(hit.tags)),
    h('div', { class: 'prose' }, hit.content));
}

async function searchMemory(form, results) {
  const q = form.querySelector('#memory-q').value.trim();
  const layer = form.querySelector('#memory-layer').value;
  results.replaceChildren(h('p', { class: 'loading' }, 'Searching…'));
  try {
    const data = await api(`/api/memory/search?q=${encodeURIComponent(q)}&layer=${encodeURIComponent(layer)}&limit=20`);
    const hits = data.hits ?? [];
    fill(results, hits.length ? hits.map(memoryHit) : h('p', { class: 'muted' }, 'No memories match.'));
  } catch (err) {
    reportError(err);
    results.replaceChildren(h('p', { class: 'error-box' }, errorMessage(err)));
  }
}

views.memory = {
  async mount() {
    const results = h('div', { id: 'memory-results', class: 'memory-results' }, h('p', { class: 'muted' }, 'Search what the swarm has learned.'));
    const form = h('form', { id: 'memory-form', class: 'inline-form', onsubmit: (event) => { event.preventDefault(); searchMemory(form, results); } },
      h('input', { type: 'search', id: 'memory-q', placeholder: 'words to search for', 'aria-label': 'Search memory' }),
      h('select', { id: 'memory-layer', 'aria-label': 'Layer' }, MEMORY_LAYERS.map((layer) => h('option', { value: layer }, layer))),
      h('button', { type: 'submit' }, 'Search'));
    return section('Memory', form, results);
  },
};

// ---------------------------------------------------------------------------------------------
// 7h. Quality
// ---------------------------------------------------------------------------------------------

const gateChips = (gates) => (gates ?? []).map((gate) =>
  h('span', { class: 'gate', 'data-ok': String(Boolean(gate.ok)), title: gate.summary ?? '' }, `${gate.ok ? '✓' : '✗'} ${gate.name}`));
const okBadge = (ok) => badge(ok ? 'pass' : 'fail', { class: 'result', 'data-ok': String(Boolean(ok)) });

function snapshotRow(snapshot) {
  const regressions = snapshot.regressions ?? [];
  const cls = [regressions.length ? 'regressed' : '', snapshot.ok ? '' : 'failed'].join(' ').trim() || null;
  return h('tr', { 'data-snapshot-id': snapshot.id, class: cls },
    h('td', null, snapshot.id), h('td', null, snapshot.kind), h('td', null, formatTime(snapshot.at)),
    h('td', null, snapshot.task_id ? taskLink(snapshot.task_id) : '—'),
    h('td', null, okBadge(snapshot.ok)), h('td', null, gateChips(snapshot.gates)),
    h('td', null, regressions.map((r) => h('div', { class: 'regression' }, `${r.gate}: ${r.what}`))));
}

function baselineCard(baseline) {
  if (!baseline) return h('p', { id: 'quality-baseline', class: 'muted' }, 'No baseline yet: run `jetpack quality baseline`.');
  return h('div', { id: 'quality-baseline', class: 'tile-card' },
    h('h3', null, `Baseline #${baseline.id}`), h('p', null, formatTime(baseline.at), ' ', okBadge(baseline.ok)),
    h('div', { class: 'chips' }, gateChips(baseline.gates)));
}

views.quality = dataView({
  load: () => api('/api/quality'),
  render: (data) => [
    data.configured ? null : h('p', { id: 'quality-hint', class: 'hint' },
      'Quality gates are not configured. Add your test, lint and type commands to [quality] in .jetpack/config.toml (see docs/quality.md), then run `jetpack quality baseline`.'),
    section('Baseline', baselineCard(data.baseline)),
    section('Snapshots', table({ id: 'quality-snapshots' }, ['#', 'Kind', 'When', 'Task', 'Result', 'Gates', 'Regressions'],
      (data.snapshots ?? []).map(snapshotRow), 'No snapshots yet.')),
  ],
  relevant: (event) => isTaskEvent(event) || event.kind?.startsWith('quality'),
});

// ---------------------------------------------------------------------------------------------
// 7i. Metrics (hand-drawn SVG charts)
// ---------------------------------------------------------------------------------------------

const metrics = { hours: 24 };
const CHART = { w: 640, h: 200, left: 40, right: 10, top: 12, bottom: 26 };

function niceMax(value) {
  if (value <= 0) return 1;
  const magnitude = 10 ** Math.floor(Math.log10(value));
  return [1, 2, 5, 10].map((f) => f * magnitude).find((step) => step >= value);
}

function hourLabel(ms, span) {
  const date = new Date(ms);
  const hour = `${String(date.getHours()).padStart(2, '0')}:00`;
  return span <= 24 ? hour : `${date.toLocaleDateString([], { weekday: 'short' })} ${hour}`;
}

/** Axes and grid shared by the charts; plot(x(i), y(v), slot width) draws the data. */
function chart(id, title, buckets, maxValue, plot, legend = []) {
  const { w, h: height, left, right, top, bottom } = CHART;
  const plotW = w - left - right, plotH = height - top - bottom;
  const slot = plotW / Math.max(1, buckets.length);
  const x = (i) => left + i * slot;
  const y = (value) => top + plotH * (1 - value / maxValue);
  const grid = [0, 0.5, 1].map((f) => `<line class="grid" x1="${left}" x2="${w - right}" y1="${y(maxValue * f)}" y2="${y(maxValue * f)}"></line>`
    + `<text class="axis" x="${left - 5}" y="${y(maxValue * f) + 4}" text-anchor="end">${esc(Math.round(maxValue * f * 10) / 10)}</text>`).join('');
  const every = Math.max(1, Math.ceil(buckets.length / 6));
  const ticks = buckets.map((bucket, i) => (i % every ? '' : `<text class="axis" x="${x(i) + slot / 2}" y="${height - 8}" text-anchor="middle">${esc(hourLabel(bucket.hour, buckets.length))}</text>`)).join('');
  const keys = legend.map(([cls, label]) => `<span class="legend ${esc(cls)}">${esc(label)}</span>`).join('');
  return `<figure class="chart"><figcaption>${esc(title)} ${keys}</figcaption>`
    + `<svg id="${esc(id)}" class="chart-svg" viewBox="0 0 ${w} ${height}" role="img" aria-label="${esc(title)}">${grid}${ticks}${plot(x, y, slot)}</svg></figure>`;
}

function barChart(id, title, buckets, series) {
  const max = niceMax(Math.max(0, ...buckets.flatMap((b) => series.map(([key]) => num(b[key])))));
  return chart(id, title, buckets, max, (x, y, slot) => buckets.map((bucket, i) => series.map(([key, cls, label], s) => {
    const width = (slot * 0.8) / series.length;
    const top = y(num(bucket[key]));
    return `<rect class="bar ${cls}" x="${x(i) + slot * 0.1 + s * width}" y="${top}" width="${Math.max(1, width - 1)}" height="${y(0) - top}">`
      + `<title>${esc(`${hourLabel(bucket.hour, 0)}: ${num(bucket[key])} ${label}`)}</title></rect>`;
  }).join('')).join(''), series.map(([, cls, label]) => [cls, label]));
}

function lineChart(id, title, buckets, key) {
  const max = niceMax(Math.max(0, ...buckets.map((b) => num(b[key]))));
  return chart(id, title, buckets, max, (x, y, slot) => {
    const points = buckets.map((bucket, i) => `${x(i) + slot / 2},${y(num(bucket[key]))}`).join(' ');
    return `<polyline class="line" points="${points}"></polyline>`;
  });
}

function tile(label, value) {
  return h('div', { class: 'tile' }, h('span', { class: 'tile-value' }, value), h('span', { class: 'tile-label' }, label));
}

function renderMetrics(data) {
  const buckets = data.buckets ?? [];
  const charts = h('div', { class: 'charts', id: 'metrics-charts' });
  charts.innerHTML = buckets.length // every string in the markup went through esc()
    ? barChart('chart-throughput', 'Tasks done per hour', buckets, [['done', 'bar-done', 'done']])
      + lineChart('chart-queue', 'Queue depth', buckets, 'queue_depth')
      + barChart('chart-failures', 'Failures and retries per hour', buckets, [['failed', 'bar-failed', 'failed'], ['retries', 'bar-retries', 'retries']])
    : '<p class="muted">No activity in this window.</p>';
  return [
    h('div', { class: 'tiles', id: 'metrics-tiles' },
      tile('Lead time p50', formatMinutes(data.lead_time_minutes?.p50)), tile('Lead time p90', formatMinutes(data.lead_time_minutes?.p90)),
      tile('Cycle time p50', formatMinutes(data.cycle_time_minutes?.p50)), tile('Cycle time p90', formatMinutes(data.cycle_time_minutes?.p90)),
      tile('Failure rate', formatPercent(data.failure_rate)), tile('Retry rate', formatPercent(data.retry_rate)),
      tile('Throughput / hour', String(Math.round(num(data.throughput_per_hour) * 100) / 100))),
    charts,
  ];
}

const metricsBody = dataView({ load: () => api(`/api/metrics?hours=${metrics.hours}`), render: renderMetrics });

views.metrics = {
  async mount() {
    const select = h('select', { id: 'metrics-hours', 'aria-label': 'Time window' },
      [[24, 'Last 24 hours'], [72, 'Last 3 days'], [168, 'Last 7 days']].map(([hours, label]) => h('option', { value: hours, selected: hours === metrics.hours }, label)));
    select.addEventListener('change', () => { metrics.hours = Number(select.value); metricsBody.fill().catch(reportError); });
    const body = await metricsBody.mount();
    return h('div', { class: 'metrics-view' }, h('div', { class: 'toolbar' }, h('label', { class: 'control' }, 'Window', select)), body);
  },
  onEvents(events) {
    if (eventsMatch(events, isTaskEvent)) refreshMetrics();
  },
};
const refreshMetrics = refresher(() => (isCurrent(views.metrics) ? metricsBody.fill() : null), 1000);

// ---------------------------------------------------------------------------------------------
// 8. Boot
// ---------------------------------------------------------------------------------------------

function wireGlobal() {
  window.addEventListener('hashchange', showRoute);
  window.addEventListener('unhandledrejection', (event) => reportError(event.reason));
  document.addEventListener('click', (event) => {
    const link = event.target.closest?.('[data-link-id]');
    if (link) { event.preventDefault(); event.stopPropagation(); openDetails(link.dataset.linkId); }
  }, true);
  document.addEventListener('keydown', (event) => {
    if (event.key === 'Escape' && details.id && !document.querySelector('dialog[open]')) closeDetails();
  });
}

function showOverview(overview) {
  $('#project').textContent = overview.project ?? '';
  $('#actor').textContent = overview.actor ? `as ${overview.actor}` : '';
  document.title = overview.project ? `Jetpack · ${overview.project}` : 'Jetpack';
}

async function boot() {
  window.jetpack = { cursor: () => lastCursor, ready: readyPromise, isReady: () => document.body.dataset.ready === '1' };
  wireGlobal();
  setLive('connecting');
  try {
    const overview = await api('/api/overview');
    showOverview(overview);
    initCursor(overview.cursor);
  } catch (err) {
    reportError(err);
  }
  connectLive();
  await showRoute();
}

boot();
