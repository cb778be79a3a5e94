// The web console served at /ui: live tail, topics, groups, cluster, hosts and guard views over the
// node's own WebSocket and HTTP API. Vanilla DOM; all record data goes in as text, never as HTML.
import { LiveChart } from './chart.js';
import { matches, parseFilter, Ring, shownText, type Filter, type ShownRecord } from './filter.js';
import { getJson, Wire, WireError, type RecordTuple } from './wire.js';

/** records the live tail keeps in the page; the oldest go first */
const TAIL_BUFFER_RECORDS = 2_000;
/** rows the tail draws (newest first) */
const TAIL_ROWS_MAX = 500;
/** characters of a value shown in a row */
const VALUE_CHARS_MAX = 400;
/** topics whose rates and groups whose lag are sampled; more are listed but not charted */
const SAMPLED_TOPICS_MAX = 50;
const SAMPLED_GROUPS_MAX = 20;
const SAMPLE_MS = 1_000;
const SLOW_SAMPLE_MS = 3_000;
const TOKEN_KEY = 'chicago.console.token';
const GROUPS_KEY = 'chicago.console.groups';

// ---- small DOM helpers (text only) ----

type Child = Node | string | number | null | undefined | false;
function el<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Record<string, string> = {}, ...children: Child[]): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') e.className = v;
    else e.setAttribute(k, v);
  }
  for (const c of children) if (c !== null && c !== undefined && c !== false) e.append(typeof c === 'number' ? String(c) : c);
  return e;
}
/** replaces the children of `e`, leaving out the empty ones */
function fill(e: Element, ...children: Child[]): void {
  e.replaceChildren(...children.filter((c): c is Node | string | number => c !== null && c !== undefined && c !== false).map((c) => (typeof c === 'number' ? String(c) : c)));
}
function table(head: string[], rows: Child[][], attrs: Record<string, string> = {}): HTMLTableElement {
  return el('table', attrs, el('thead', {}, el('tr', {}, ...head.map((h) => el('th', {}, h)))),
    el('tbody', {}, ...rows.map((r) => el('tr', {}, ...r.map((c) => el('td', {}, c))))));
}
const fmtBytes = (n: number) => (n < 1024 ? `${n} B` : n < 1024 ** 2 ? `${(n / 1024).toFixed(1)} KiB` : n < 1024 ** 3 ? `${(n / 1024 ** 2).toFixed(1)} MiB` : `${(n / 1024 ** 3).toFixed(2)} GiB`);
const fmtMs = (ms: number) => (ms % 86_400_000 === 0 ? `${ms / 86_400_000} d` : ms % 3_600_000 === 0 ? `${ms / 3_600_000} h` : ms % 60_000 === 0 ? `${ms / 60_000} min` : `${ms / 1000} s`);
const fmtTime = (ms: number) => new Date(ms).toISOString().replace('T', ' ').replace('Z', '');
const text = (b: Uint8Array | null | undefined, maxBytes?: number) => (b ? shownText(b, maxBytes) : null);

function message(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

// ---- state ----

interface TopicMeta { name: string; partitions: number; replicas: number; retention: { ms?: number; bytes?: number; untilGroup?: string }; createdAtMs: number }
interface PartitionMeta { partition: number; startOffset: number; endOffset: number; bytes: number; leader: string | null; replicas: string[] }
interface GroupOffset { topic: string; partition: number; offset: number; committedAtMs: number; endOffset: number; lagRecords: number; lagSeconds: number }

const state = {
  token: sessionStorage.getItem(TOKEN_KEY) ?? undefined as string | undefined,
  wire: undefined as Wire | undefined,
  connected: false,
  server: '',
  topics: [] as TopicMeta[],
  partitions: new Map<string, PartitionMeta[]>(),
  lastEnds: new Map<string, { t: number; end: number }>(),
  groups: new Map<string, GroupOffset[]>(),
  groupErrors: new Map<string, string>(),
  extraGroups: new Set<string>(JSON.parse(localStorage.getItem(GROUPS_KEY) ?? '[]') as string[]),
  status: undefined as any,
  statusError: '',
  hosts: undefined as undefined | { hosts: Array<[string, any]>; alerts: Array<[string, any]>; error?: string },
  blocklist: undefined as undefined | { items: Array<[string, string]>; error?: string },
};

const rateChart = new LiveChart('records/s per topic', 'rec/s');
const bytesChart = new LiveChart('bytes stored per topic', 'B');
const lagChart = new LiveChart('lag per group (records)', 'rec');

// ---- the live tail ----

interface TailSub { partition: number; sub: number; owed: number }
const tail = {
  topic: '',
  from: 'latest',
  subs: [] as TailSub[],
  ring: new Ring<ShownRecord>(TAIL_BUFFER_RECORDS),
  received: 0,
  paused: false,
  filter: parseFilter('', '') as Filter,
  error: '',
  drawPending: false,
  /** bumped by every start: a start overtaken by a newer one undoes what it subscribed */
  generation: 0,
  /** per partition, the offset after the last record received: a reconnect resumes there (no gap, no repeat) */
  next: new Map<number, number>(),
};

async function startTail(topic: string, from: string, resume = false): Promise<void> {
  stopTail();
  const generation = ++tail.generation;
  tail.topic = topic;
  tail.from = from;
  if (!resume) {
    tail.ring.clear();
    tail.received = 0;
    tail.next.clear();
  }
  tail.error = '';
  document.body.dataset.tail = 'starting';
  if (!topic || !state.wire) return;
  const wire = state.wire;
  try {
    const meta = await wire.request({ op: 'topic', topic });
    if (generation !== tail.generation) return;
    const count = meta.partitionCount as number;
    const fromFrame = from === 'earliest' ? 'earliest' : from === 'recent' ? { bytes: 64 * 1024 } : 'latest';
    // "new records" starts at each partition's end now: a partition that gets none before a
    // reconnect resumes there too, not at the end of then (which would skip what came meanwhile);
    // so does an empty partition under "last 64 KiB" (asked again, it would start 64 KiB before its end of then)
    if (!resume && fromFrame !== 'earliest') {
      for (const p of meta.partitions as PartitionMeta[]) if (fromFrame === 'latest' || p.startOffset === p.endOffset) tail.next.set(p.partition, p.endOffset);
    }
    for (let p = 0; p < count; p++) {
      const s: TailSub = { partition: p, sub: 0, owed: 0 };
      const next = resume ? tail.next.get(p) : undefined;
      s.sub = await wire.subscribe(topic, p, next !== undefined ? { offset: next } : fromFrame, {
        records: (records, bytes) => onTailRecords(s, records, bytes),
        end: (code, msg) => { if (code && tail.subs.includes(s)) { tail.error = `partition ${p}: ${code} ${msg ?? ''}`; scheduleTailDraw(); } },
      });
      if (generation !== tail.generation) { wire.unsubscribe(s.sub); return; }
      tail.subs.push(s);
      if (!tail.paused && s.owed > 0) { wire.credit(s.sub, s.owed); s.owed = 0; }
    }
    // every partition is subscribed: what is produced from now on shows (tests wait for this)
    document.body.dataset.tail = 'live';
  } catch (e) {
    tail.error = message(e);
  }
  scheduleTailDraw();
}

function stopTail(): void {
  for (const s of tail.subs) state.wire?.unsubscribe(s.sub);
  tail.subs = [];
}

function onTailRecords(s: TailSub, records: RecordTuple[], bytes: number): void {
  if (s.sub !== 0 && !tail.subs.includes(s)) return; // an overtaken start's records
  for (const [offset, timestampMs, value, key, headers] of records) {
    tail.ring.push({ partition: s.partition, offset, timestampMs, value: text(value) ?? '', valueBytes: value.length, key: text(key), headers: headers ?? {} });
    tail.next.set(s.partition, offset + 1);
  }
  tail.received += records.length;
  // Paused: the credit is kept, so the node stops pushing once the window is used up and the
  // records wait there, not in the page.
  if (tail.paused || s.sub === 0) s.owed += bytes; // sub 0: before the subscribe reply, granted once it comes
  else state.wire?.credit(s.sub, bytes);
  if (!tail.paused) scheduleTailDraw();
}

function setPaused(paused: boolean): void {
  tail.paused = paused;
  if (!paused) {
    for (const s of tail.subs) { state.wire?.credit(s.sub, s.owed); s.owed = 0; }
    scheduleTailDraw();
  }
}

function scheduleTailDraw(): void {
  if (tail.drawPending) return;
  tail.drawPending = true;
  requestAnimationFrame(() => {
    tail.drawPending = false;
    if (currentView() === 'tail') drawTailRows();
  });
}

function drawTailRows(): void {
  const body = document.getElementById('tail-rows');
  const info = document.getElementById('tail-info');
  if (!body || !info) return;
  const shown = tail.filter.error ? [] : tail.ring.newest(TAIL_ROWS_MAX, (r) => matches(tail.filter, r));
  body.replaceChildren(...shown.map((r) => el('tr', { 'data-partition': String(r.partition), 'data-offset': String(r.offset) },
    el('td', {}, fmtTime(r.timestampMs)),
    el('td', {}, `${r.partition}:${r.offset}`),
    el('td', {}, r.key ?? ''),
    el('td', { class: 'headers' }, Object.entries(r.headers).map(([k, v]) => `${k}=${v}`).join(' ')),
    el('td', { class: 'value' }, r.value.length > VALUE_CHARS_MAX ? `${r.value.slice(0, VALUE_CHARS_MAX)}… (${fmtBytes(r.valueBytes ?? r.value.length)})` : r.value))));
  info.textContent = [
    tail.paused ? 'paused' : 'live',
    `${tail.received} received`,
    `${tail.ring.size} in the page buffer (it keeps the newest ${TAIL_BUFFER_RECORDS})`,
    `${shown.length} shown${shown.length === TAIL_ROWS_MAX ? ` (at most ${TAIL_ROWS_MAX} rows)` : ''}`,
    tail.filter.error ?? '',
    tail.error,
  ].filter(Boolean).join(' · ');
}

// ---- sampling: rates, bytes and lag, whichever view is open ----

async function sampleTopics(): Promise<void> {
  const wire = state.wire;
  if (!wire || !state.connected) return;
  const list = (await wire.request({ op: 'topics' })).topics as TopicMeta[];
  state.topics = list.sort((a, b) => a.name.localeCompare(b.name));
  const now = Date.now();
  const rates = new Map<string, number>();
  const bytes = new Map<string, number>();
  await Promise.all(state.topics.slice(0, SAMPLED_TOPICS_MAX).map(async (t) => {
    try {
      const d = await wire.request({ op: 'topic', topic: t.name });
      const parts = d.partitions as PartitionMeta[];
      state.partitions.set(t.name, parts);
      const end = parts.reduce((n, p) => n + p.endOffset, 0);
      const last = state.lastEnds.get(t.name);
      if (last && now > last.t) rates.set(t.name, Math.max(0, ((end - last.end) * 1000) / (now - last.t)));
      state.lastEnds.set(t.name, { t: now, end });
      bytes.set(t.name, parts.reduce((n, p) => n + p.bytes, 0));
    } catch {
      state.partitions.delete(t.name); // no read scope on it, or deleted meanwhile
    }
  }));
  if (rates.size > 0) rateChart.push(now, rates);
  if (bytes.size > 0) bytesChart.push(now, bytes);
}

const GROUP_NAMES_MS = 5_000;
const groupNames = { names: [] as string[], atMs: 0 };

async function sampleGroups(): Promise<void> {
  const wire = state.wire;
  if (!wire || !state.connected) return;
  // the list asks every partition: refreshed less often than the offsets
  if (Date.now() - groupNames.atMs >= GROUP_NAMES_MS) {
    try {
      groupNames.names = (await getJson(`/v1/groups?limit=${SAMPLED_GROUPS_MAX}`, state.token)).groups as string[];
    } catch { /* an older node: the groups entered by hand still show */ }
    groupNames.atMs = Date.now();
  }
  const all = [...new Set([...groupNames.names, ...state.extraGroups])].sort().slice(0, SAMPLED_GROUPS_MAX);
  const lag = new Map<string, number>();
  await Promise.all(all.map(async (g) => {
    try {
      const offsets = (await wire.request({ op: 'offsets', group: g })).offsets as GroupOffset[];
      state.groups.set(g, offsets);
      state.groupErrors.delete(g);
      lag.set(g, offsets.reduce((n, o) => n + o.lagRecords, 0));
    } catch (e) {
      state.groupErrors.set(g, message(e));
    }
  }));
  for (const g of state.groups.keys()) if (!all.includes(g)) state.groups.delete(g);
  if (lag.size > 0) lagChart.push(Date.now(), lag);
}

async function sampleSlow(): Promise<void> {
  const wire = state.wire;
  if (!wire || !state.connected) return;
  const view = currentView();
  if (view === 'cluster') {
    try { state.status = await getJson('/v1/status', state.token); state.statusError = ''; } catch (e) { state.statusError = message(e); }
  }
  if (view === 'hosts') state.hosts = await scanHosts(wire);
  if (view === 'guard') state.blocklist = await scanKv(wire, 'blocklist', '');
}

async function scanKv(wire: Wire, ks: string, prefix: string): Promise<{ items: Array<[string, string]>; error?: string }> {
  try {
    const r = await wire.request({ op: 'kv.scan', ks, prefix, limit: 1000 });
    return { items: (r.items as Array<[Uint8Array, Uint8Array, number]>).map(([k, v]) => [text(k, Infinity) ?? '', text(v, Infinity) ?? '']) };
  } catch (e) {
    return { items: [], error: message(e) };
  }
}

function parseJson(s: string): any {
  try { return JSON.parse(s); } catch { return { value: s }; }
}

async function scanHosts(wire: Wire) {
  const [hosts, alerts] = await Promise.all([scanKv(wire, 'agent', 'hosts/'), scanKv(wire, 'agent', 'alerts/')]);
  return {
    hosts: hosts.items.map(([k, v]) => [k.slice('hosts/'.length), parseJson(v)] as [string, any]),
    alerts: alerts.items.map(([k, v]) => [k.slice('alerts/'.length), parseJson(v)] as [string, any]),
    ...(hosts.error ?? alerts.error ? { error: hosts.error ?? alerts.error } : {}),
  };
}

// ---- views ----

type View = 'tail' | 'topics' | 'groups' | 'cluster' | 'hosts' | 'guard';
const VIEWS: View[] = ['tail', 'topics', 'groups', 'cluster', 'hosts', 'guard'];
function currentView(): View {
  const v = location.hash.replace(/^#\/?/, '') as View;
  return VIEWS.includes(v) ? v : 'tail';
}

const main = () => document.getElementById('main')!;
/** the view whose controls are on the page: they stay while its data is redrawn (inputs keep focus and text) */
let skeleton: View | '' = '';
const body = () => document.getElementById('view-body')!;

function renderView(): void {
  const view = currentView();
  for (const a of Array.from(document.querySelectorAll('nav a'))) a.classList.toggle('active', a.getAttribute('href') === `#/${view}`);
  if (!state.connected) return;
  if (skeleton !== view) {
    main().replaceChildren(view === 'tail' ? tailControls() : view === 'groups' ? groupControls() : '', el('div', { id: 'view-body' }));
    skeleton = view;
  }
  switch (view) {
    case 'tail': return renderTail();
    case 'topics': return renderTopics();
    case 'groups': return renderGroups();
    case 'cluster': return renderCluster();
    case 'hosts': return renderHosts();
    case 'guard': return renderGuard();
  }
}

function tailControls(): HTMLElement {
  const topicSel = el('select', { id: 'tail-topic' }, el('option', { value: '' }, '(pick a topic)'),
    ...state.topics.map((t) => el('option', { value: t.name }, `${t.name} (${t.partitions} partitions)`)));
  topicSel.value = tail.topic;
  const fromSel = el('select', { id: 'tail-from' }, el('option', { value: 'latest' }, 'new records'), el('option', { value: 'recent' }, 'the last 64 KiB of each partition'), el('option', { value: 'earliest' }, 'the beginning'));
  fromSel.value = tail.from;
  const headerIn = el('input', { id: 'tail-headers', placeholder: 'headers: task=nginx host=web-1', size: '28' });
  const textIn = el('input', { id: 'tail-text', placeholder: 'text or /regex/i', size: '22' });
  const pause = el('button', { id: 'tail-pause', type: 'button' }, tail.paused ? 'Resume' : 'Pause');
  const clear = el('button', { id: 'tail-clear', type: 'button' }, 'Clear');
  const refilter = () => { tail.filter = parseFilter(headerIn.value, textIn.value); scheduleTailDraw(); };
  headerIn.value = tail.filter.headers.map(([k, v]) => (v === undefined ? k : `${k}=${v}`)).join(' ');
  headerIn.oninput = refilter;
  textIn.oninput = refilter;
  topicSel.onchange = () => void startTail(topicSel.value, fromSel.value);
  fromSel.onchange = () => void startTail(topicSel.value, fromSel.value);
  pause.onclick = () => { setPaused(!tail.paused); pause.textContent = tail.paused ? 'Resume' : 'Pause'; drawTailRows(); };
  clear.onclick = () => { tail.ring.clear(); tail.received = 0; drawTailRows(); };
  return el('div', { class: 'toolbar' }, 'Topic ', topicSel, ' from ', fromSel, ' ', headerIn, ' ', textIn, ' ', pause, ' ', clear);
}

function renderTail(): void {
  // topics created since the controls were drawn join the list
  const sel = document.getElementById('tail-topic') as HTMLSelectElement | null;
  if (sel) {
    const have = new Set(Array.from(sel.options, (o) => o.value));
    for (const t of state.topics) if (!have.has(t.name)) sel.append(el('option', { value: t.name }, `${t.name} (${t.partitions} partitions)`));
    // and deleted ones leave it (the one being tailed stays, with its error, until another is picked)
    const names = new Set(state.topics.map((t) => t.name));
    for (const o of Array.from(sel.options)) if (o.value !== '' && o.value !== tail.topic && !names.has(o.value)) o.remove();
    sel.value = tail.topic;
  }
  if (!document.getElementById('tail-rows')) {
    fill(body(), 
      el('p', { id: 'tail-info', class: 'muted' }),
      el('table', { class: 'records' }, el('thead', {}, el('tr', {}, ...['time (UTC)', 'partition:offset', 'key', 'headers', 'value'].map((h) => el('th', {}, h)))), el('tbody', { id: 'tail-rows' })),
    );
  }
  drawTailRows();
}

function retentionText(r: TopicMeta['retention']): string {
  const parts = [r.ms !== undefined ? fmtMs(r.ms) : '', r.bytes !== undefined ? fmtBytes(r.bytes) : '', r.untilGroup ? `until ${r.untilGroup} read it` : ''].filter(Boolean);
  return parts.length > 0 ? parts.join(', ') : 'kept';
}

function renderTopics(): void {
  const rows = state.topics.map((t) => {
    const parts = state.partitions.get(t.name);
    return [t.name, t.partitions, t.replicas, retentionText(t.retention),
      parts ? parts.reduce((n, p) => n + p.endOffset - p.startOffset, 0) : '–',
      parts ? fmtBytes(parts.reduce((n, p) => n + p.bytes, 0)) : '–'];
  });
  const details = state.topics.slice(0, SAMPLED_TOPICS_MAX).flatMap((t) => (state.partitions.get(t.name) ?? []).map((p) =>
    [t.name, p.partition, p.startOffset, p.endOffset, fmtBytes(p.bytes), p.leader ?? '(electing)', p.replicas.join(', ')] as Child[]));
  fill(body(), 
    rateChart.root, bytesChart.root,
    el('h2', {}, 'Topics'),
    state.topics.length === 0 ? el('p', { class: 'muted' }, 'No topics this token may see.') : table(['topic', 'partitions', 'replicas', 'retention', 'records held', 'bytes'], rows, { id: 'topics-table' }),
    state.topics.length > SAMPLED_TOPICS_MAX ? el('p', { class: 'muted' }, `Rates and partitions are sampled for the first ${SAMPLED_TOPICS_MAX} topics.`) : null,
    el('h2', {}, 'Partitions'),
    table(['topic', 'partition', 'start offset', 'end offset', 'bytes', 'leader', 'replicas'], details, { id: 'partitions-table' }),
  );
  rateChart.draw();
  bytesChart.draw();
}

function groupControls(): HTMLElement {
  const input = el('input', { id: 'group-add', placeholder: 'group name', size: '20', required: '' });
  // a name the node would refuse (INVALID_NAME) is refused here, saying why, before anything is kept
  const GROUP_NAME = /^[A-Za-z0-9._-]{1,128}$/;
  input.oninput = () => input.setCustomValidity(input.value.trim() === '' || GROUP_NAME.test(input.value.trim()) ? '' : 'a group name is 1-128 of A-Z a-z 0-9 . _ -');
  const add = el('button', { type: 'submit' }, 'Watch');
  const form = el('form', { class: 'toolbar' }, 'Watch a group: ', input, ' ', add);
  form.onsubmit = (ev) => {
    ev.preventDefault();
    const g = input.value.trim();
    if (GROUP_NAME.test(g)) {
      state.extraGroups.add(g);
      localStorage.setItem(GROUPS_KEY, JSON.stringify([...state.extraGroups]));
      input.value = '';
      void sampleGroups().then(renderView);
    }
  };
  return form;
}

function renderGroups(): void {
  const rows: Child[][] = [];
  for (const [g, offsets] of state.groups) {
    for (const o of offsets) rows.push([g, o.topic, o.partition, o.offset, o.endOffset, o.lagRecords, o.lagSeconds.toFixed(1), fmtTime(o.committedAtMs)]);
  }
  fill(body(), 
    lagChart.root,
    el('p', { class: 'muted' }, `Groups with committed offsets (the first ${SAMPLED_GROUPS_MAX} by name) and the ones watched here (kept in this browser).`),
    ...[...state.groupErrors].map(([g, e]) => el('p', { class: 'error' }, `${g}: ${e}`)),
    // a watched group that has committed nothing yet still shows that it is watched
    ...[...state.extraGroups].filter((g) => state.groups.get(g)?.length === 0).map((g) => el('p', { class: 'muted watched-empty' }, `${g}: watched, no committed offsets yet.`)),
    rows.length === 0 ? el('p', { class: 'muted' }, 'No group offsets yet.') : table(['group', 'topic', 'partition', 'committed', 'end', 'lag (records)', 'lag (s)', 'committed at (UTC)'], rows, { id: 'groups-table' }),
  );
  lagChart.draw();
}

function renderCluster(): void {
  const s = state.status;
  if (state.statusError) { fill(body(), el('p', { class: 'error' }, `status: ${state.statusError}`)); return; }
  if (!s) { fill(body(), el('p', { class: 'muted' }, 'Loading…')); return; }
  const intro = s.clustered
    ? el('p', { id: 'cluster-intro' }, `Cluster seen from node ${s.nodeId}: ${s.nodes.length} nodes, ${s.partitions.length} partitions.`)
    : el('p', { id: 'single-node' }, `Single node ${s.nodeId} (not in a cluster): it leads every partition; there is no replication or rebalance.`);
  const rb = s.rebalance;
  fill(body(), 
    intro,
    el('h2', {}, 'Nodes'),
    table(['node', 'url', 'state'], (s.nodes as Array<{ id: string; url: string; state: string }>).map((n) => [n.id, n.url, n.state])),
    rb ? el('h2', {}, 'Rebalance') : null,
    // `completed` counts the moves of the last minute, `snapshotBytesSent` what this node copied
    rb ? el('p', { id: 'rebalance' }, rb.moving === 0 ? `No partition moving (${rb.completed} moves completed in the last minute).`
      : `${rb.moving} partitions moving, ${rb.completed} completed in the last minute, ETA ${rb.etaSeconds ?? '?'} s, ${fmtBytes(rb.snapshotBytesSent)} copied from this node${rb.bytesLeftEstimate !== null ? `, about ${fmtBytes(rb.bytesLeftEstimate)} left` : ''}; catching up: ${rb.catchingUp.map((c: { partition: number; nodes: string[] }) => `${c.partition} → ${c.nodes.join(', ')}`).join('; ')}`) : null,
    el('h2', {}, 'Partitions'),
    table(['partition', 'epoch', 'leader', 'replicas', 'in sync', 'role here', 'applied seq', 'worker'],
      (s.partitions as Array<{ id: number; epoch: number; leader: string | null; replicas: string[]; isr: string[]; role: string; seq: number; worker: number }>)
        .map((p) => [p.id, p.epoch, p.leader ?? '(electing)', p.replicas.join(', '), p.isr.join(', '), p.role, p.seq, p.worker]), { id: 'cluster-partitions' }),
  );
}

function renderHosts(): void {
  const h = state.hosts;
  if (!h) { fill(body(), el('p', { class: 'muted' }, 'Loading…')); return; }
  if (h.error) { fill(body(), el('p', { class: 'error' }, `keyspace agent: ${h.error}`)); return; }
  if (h.hosts.length === 0 && h.alerts.length === 0) {
    fill(body(), el('p', { class: 'muted', id: 'no-hosts' }, 'No host agent reports here: agents with a health or alerts section write hosts/<host> and alerts/<host>/<id> in keyspace agent (docs/agent.md).'));
    return;
  }
  const num = (v: unknown, digits = 1) => (typeof v === 'number' ? v.toFixed(digits) : '–');
  fill(body(), 
    el('h2', {}, 'Hosts'),
    table(['host', 'sample (UTC)', 'load 1m', 'cpu %', 'memory free %', 'zombies', 'alerts firing', 'ship lag (s)', 'spool'],
      h.hosts.map(([name, v]) => [name, v.timeMs ? fmtTime(v.timeMs) : v.time ?? '–', num(v.load1, 2), num(v.cpuUsedPercent), num(v.memoryAvailablePercent), v.zombies ?? '–', v.alertsFiring ?? '–', num(v.lagSeconds), typeof v.spoolBytes === 'number' ? fmtBytes(v.spoolBytes) : '–']), { id: 'hosts-table' }),
    el('h2', {}, 'Firing alerts'),
    h.alerts.length === 0 ? el('p', { class: 'muted' }, 'None.') : table(['host/alert', 'severity', 'field', 'value', 'condition', 'since (UTC)', 'description'],
      h.alerts.map(([id, a]) => [id, a.severity ?? '', a.field ?? '', a.value ?? '', `${a.op ?? ''} ${a.threshold ?? ''}`, a.sinceMs ? fmtTime(a.sinceMs) : a.since ?? '', a.description ?? '']), { id: 'alerts-table' }),
  );
}

function renderGuard(): void {
  const b = state.blocklist;
  if (!b) { fill(body(), el('p', { class: 'muted' }, 'Loading…')); return; }
  if (b.error) { fill(body(), el('p', { class: 'error' }, `keyspace blocklist: ${b.error}`)); return; }
  const hasTopic = state.topics.some((t) => t.name === 'guard.decisions');
  if (b.items.length === 0 && !hasTopic) {
    fill(body(), el('p', { class: 'muted', id: 'no-guard' }, 'No guard decisions here: a guard writes topic guard.decisions and keyspace blocklist (docs/guard.md).'));
    return;
  }
  const tailIt = el('button', { type: 'button' }, 'Tail guard.decisions');
  tailIt.onclick = () => { location.hash = '#/tail'; void startTail('guard.decisions', 'recent'); };
  fill(body(), 
    el('h2', {}, 'Bans in force (keyspace blocklist)'),
    b.items.length === 0 ? el('p', { class: 'muted' }, 'None.') : table(['target', 'until (UTC)', 'scenario', 'reason', 'decision'],
      b.items.map(([target, v]) => {
        const d = parseJson(v);
        return [target, typeof d.untilMs === 'number' ? fmtTime(d.untilMs) : d.until ?? '', d.scenario ?? '', d.reason ?? '', JSON.stringify(d).slice(0, 300)];
      }), { id: 'blocklist-table' }),
    hasTopic ? el('p', {}, 'Every decision is a record in topic guard.decisions. ', tailIt) : null,
  );
}

// ---- connection and login ----

function setStatus(s: string, cls = ''): void {
  const e = document.getElementById('conn')!;
  e.textContent = s;
  e.className = cls;
}

function showLogin(why: string): void {
  const input = el('input', { id: 'token', type: 'password', autocomplete: 'off', size: '48', placeholder: 'chicago_…' });
  const form = el('form', { id: 'login' }, el('p', {}, why), el('label', {}, 'Token ', input), ' ', el('button', { type: 'submit' }, 'Connect'),
    el('p', { class: 'muted' }, 'Kept in this tab only (sessionStorage) and sent in the WebSocket hello and the Authorization header, never in a URL.'));
  form.onsubmit = (ev) => {
    ev.preventDefault();
    state.token = input.value.trim() || undefined;
    if (state.token) sessionStorage.setItem(TOKEN_KEY, state.token);
    void connect();
  };
  main().replaceChildren(form);
  skeleton = '';
  input.focus();
}

let reconnectMs = 500;
let timers: number[] = [];

async function connect(): Promise<void> {
  for (const t of timers) clearInterval(t);
  timers = [];
  state.wire?.close();
  state.connected = false;
  setStatus('connecting…');
  const wire = new Wire(state.token);
  state.wire = wire;
  try {
    const hello = await wire.open();
    state.server = String(hello.server ?? '');
  } catch (e) {
    wire.close();
    if (e instanceof WireError && (e.code === 'UNAUTHENTICATED' || e.code === 'FORBIDDEN')) {
      const had = state.token !== undefined;
      sessionStorage.removeItem(TOKEN_KEY);
      state.token = undefined;
      setStatus('token needed', 'bad');
      showLogin(had ? `The node refused the token: ${e.message}` : 'This node needs a token.');
      return;
    }
    setStatus(`not connected: ${message(e)}`, 'bad');
    setTimeout(() => void connect(), reconnectMs);
    reconnectMs = Math.min(reconnectMs * 2, 10_000);
    return;
  }
  reconnectMs = 500;
  state.connected = true;
  // how many times the console has connected (tests wait for a reconnect)
  document.body.dataset.connections = String(Number(document.body.dataset.connections ?? 0) + 1);
  setStatus(`connected${state.token ? ' with a token' : ''}`, 'good');
  document.getElementById('logout')!.hidden = !state.token;
  wire.onClose = (reason) => {
    if (state.wire !== wire) return;
    state.connected = false;
    tail.subs = [];
    setStatus(`disconnected: ${reason}; reconnecting`, 'bad');
    setTimeout(() => void connect(), reconnectMs);
  };
  await sampleTopics().catch(() => undefined);
  renderView();
  // a tail that was running resumes after the last record it received
  if (tail.topic) void startTail(tail.topic, tail.from, true);
  // one sample of each kind at a time: a slow node skips ticks rather than piling requests up
  const tick = (f: () => Promise<void>) => {
    let busy = false;
    return () => {
      if (busy) return;
      busy = true;
      void f().then(renderView, () => undefined).finally(() => { busy = false; });
    };
  };
  timers.push(window.setInterval(tick(sampleTopics), SAMPLE_MS));
  timers.push(window.setInterval(tick(sampleGroups), SAMPLE_MS));
  timers.push(window.setInterval(tick(sampleSlow), SLOW_SAMPLE_MS));
  void sampleGroups();
  void sampleSlow().then(renderView);
}

window.addEventListener('hashchange', () => { renderView(); void sampleSlow().then(renderView); });
document.getElementById('logout')!.onclick = () => {
  sessionStorage.removeItem(TOKEN_KEY);
  state.token = undefined;
  stopTail();
  state.wire?.close();
  state.connected = false;
  showLogin('Signed out.');
};
void connect();
