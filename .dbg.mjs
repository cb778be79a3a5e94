const url = 'http://127.0.0.3:7702';
let stop = false; const log = [];
async function loop(w) { let i = 0; while (!stop) { const t0 = Date.now(); try { const r = await fetch(`${url}/v1/kv/fo/k${w}-${i++}?acks=one`, { method: 'PUT', body: 'x', signal: AbortSignal.timeout(3000) }); log.push([t0, Date.now(), r.status, r.status === 200 ? (await r.json()).replicas : (await r.text()).slice(0, 80)]); } catch (e) { log.push([t0, Date.now(), 0, String(e).slice(0, 60)]); } } }
const ws = [0,1,2,3].map(loop);
await new Promise(r => setTimeout(r, 1000));
const { execSync } = await import('node:child_process');
const pid = execSync("pgrep -f 'node-id n1 '").toString().trim().split('\n')[0];
const killAt = Date.now(); execSync(`kill -9 ${pid}`);
await new Promise(r => setTimeout(r, 4000)); stop = true; await Promise.all(ws);
const after = log.filter(l => l[0] >= killAt);
const fails = after.filter(l => l[2] !== 200);
const firstFail = fails[0]; const lastFail = fails.at(-1);
console.log('ops after kill', after.length, 'failed', fails.length);
if (fails.length) console.log('fail window ms', lastFail[1] - killAt, 'examples', [...new Set(fails.map(f => f[3]))].slice(0, 5));
const ok = after.filter(l => l[2] === 200); console.log('replicas seen after', [...new Set(ok.map(o => o[3]))]);
const maxLat = Math.max(...after.map(l => l[1] - l[0])); console.log('max latency after kill', maxLat);
