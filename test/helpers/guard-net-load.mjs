// Traffic for the guard's test net, run inside a client namespace (`ip netns exec NS node this.mjs
// '<json>' or a file)`): HTTP requests from many source addresses, paced, bounded in count and time; prints
// one JSON line of counts. Plain JS so it runs without a build.
//   { host, port, sources: [ip…], rate (req/s in all), durationMs, maxRequests, paths: [p…],
//     concurrency, timeoutMs, headers, raw: [{ src, data }] }
// With `raw`, each entry is sent as it is on a fresh connection (one after another, `concurrency`
// at a time) and the answer's status is counted; otherwise `paths` are requested round robin over
// `sources` (one keep-alive agent per source).
import http from 'node:http';
import net from 'node:net';
import { readFileSync } from 'node:fs';

// the spec, or the path of a file holding it (a 1 MB request does not fit in argv)
const spec = JSON.parse(process.argv[2].startsWith('{') ? process.argv[2] : readFileSync(process.argv[2], 'utf8'));
// blockedAtMs / sentBeforeBlocked: when the first request was refused (403) or dropped (timeout),
// and how many were sent until then (the rate before enforcement)
const out = { sent: 0, status: {}, timeouts: 0, errors: 0, elapsedMs: 0, blockedAtMs: -1, sentBeforeBlocked: -1, bySource: {} };
const count = (src, key) => {
  out.status[key] = (out.status[key] ?? 0) + 1;
  if (spec.perSource) (out.bySource[src] ??= {})[key] = ((out.bySource[src] ?? {})[key] ?? 0) + 1;
};
const t0 = Date.now();
const deadline = t0 + spec.durationMs;

function rawOnce(src, data) {
  return new Promise((resolve) => {
    const s = net.connect({ host: spec.host, port: spec.port, localAddress: src });
    let buf = '';
    const timer = setTimeout(() => { s.destroy(); resolve('timeout'); }, spec.timeoutMs ?? 2000);
    s.on('connect', () => s.end(Buffer.from(data, 'latin1')));
    s.on('data', (b) => { buf += b.toString('latin1'); });
    s.on('error', () => { clearTimeout(timer); resolve('error'); });
    s.on('close', () => { clearTimeout(timer); const m = /^HTTP\/1\.[01] (\d{3})/.exec(buf); resolve(m ? m[1] : 'error'); });
  });
}

const agents = new Map();
function agentFor(src) {
  let a = agents.get(src);
  if (!a) { a = new http.Agent({ keepAlive: true, maxSockets: spec.socketsPerSource ?? 2, localAddress: src }); agents.set(src, a); }
  return a;
}

function getOnce(src, path) {
  return new Promise((resolve) => {
    const req = http.request({ host: spec.host, port: spec.port, path, agent: agentFor(src), headers: spec.headers ?? {}, timeout: spec.timeoutMs ?? 2000 }, (res) => {
      res.resume();
      res.on('end', () => resolve(String(res.statusCode)));
      res.on('error', () => resolve('error'));
    });
    req.on('timeout', () => { req.destroy(); resolve('timeout'); });
    req.on('error', () => resolve('error'));
    req.end();
  });
}

async function main() {
  const total = spec.raw ? spec.raw.length : Math.min(spec.maxRequests, Math.ceil((spec.rate * spec.durationMs) / 1000));
  const intervalMs = spec.raw ? 0 : 1000 / spec.rate;
  let next = 0;
  const worker = async () => {
    for (;;) {
      const i = next++;
      if (i >= total || Date.now() >= deadline) return;
      // paced: request i is due at t0 + i / rate
      const due = t0 + i * intervalMs;
      if (due > Date.now() + 1) await new Promise((r) => setTimeout(r, due - Date.now()));
      out.sent++;
      let src, status;
      if (spec.raw) {
        ({ src } = spec.raw[i]);
        status = await rawOnce(src, spec.raw[i].data);
      } else {
        src = spec.sources[i % spec.sources.length];
        const path = spec.paths[Math.floor(i / spec.sources.length) % spec.paths.length].replace('{i}', String(i));
        status = await getOnce(src, path);
      }
      if ((status === 'timeout' || status === '403') && out.blockedAtMs < 0) {
        out.blockedAtMs = Date.now() - t0;
        out.sentBeforeBlocked = out.sent;
      }
      if (status === 'timeout') out.timeouts++;
      else if (status === 'error') out.errors++;
      count(src, status);
    }
  };
  await Promise.all(Array.from({ length: spec.concurrency ?? 16 }, worker));
  out.elapsedMs = Date.now() - t0;
  for (const a of agents.values()) a.destroy();
  process.stdout.write(JSON.stringify(out) + '\n');
}

void main();
