const url = process.env.URL ?? 'http://127.0.0.3:7702';
const victim = process.env.VICTIM ?? 'm1';
let stop = false; const log = [];
async function loop(w) { let i = 0; while (!stop) { const t0 = Date.now(); try { const r = await fetch(`${url}/v1/kv/fo/k${w}-${i++}?acks=all`, { method: 'PUT', body: 'x', signal: AbortSignal.timeout(8000) }); const body = await r.text(); log.push([t0, Date.now(), r.status, r.status === 200 ? JSON.parse(body).replicas : body.slice(0, 100)]); } catch (e) { log.push([t0, Date.now(), 0, String(e).slice(0, 60)]); } } }
const ws = [0,1,2,3,4,5,6,7].map(loop);
await new Promise(r => setTimeout(r, 1500));
const { execSync } = await import('node:child_process');
const pid = execSync(`pgrep -f 'node-id ${victim} '`).toString().trim().split('\n')[0];
const killAt = Date.now(); execSync(`kill -9 ${pid}`);
await new Promise(r => setTimeout(r, 6000)); stop = true; await Promise.all(ws);
const before = log.filter(l => l[0] < killAt && l[1] < killAt);
const after = log.filter(l => l[0] >= killAt);
console.log('ok before kill', before.filter(l => l[2] === 200).length, 'replicas', [...new Set(before.map(l => l[3]))]);
const fails = after.filter(l => l[2] !== 200);
console.log('ops after kill', after.length, 'failed', fails.length);
if (fails.length) { console.log('last failure at +ms', fails.at(-1)[1] - killAt, [...new Set(fails.map(f => String(f[3]).slice(0, 90)))].slice(0, 6)); }
const ok = after.filter(l => l[2] === 200); if (ok.length) console.log('first ok after kill +ms', ok[0][1] - killAt, 'replicas', [...new Set(ok.map(o => o[3]))]);
// longest gap without a successful completion after the kill
let last = killAt, gap = 0; for (const o of ok.sort((a, b) => a[1] - b[1])) { gap = Math.max(gap, o[1] - last); last = o[1]; }
console.log('longest gap between acked writes after kill ms', gap);
