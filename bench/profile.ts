// Summarise V8 .cpuprofile files (from `chicago bench … --spawn --cpu-prof DIR`): per file (one per
// thread: main, then workers), the busy share and the functions with the most self time.
//   node dist/bench/profile.js DIR [TOP]
import { readdirSync, readFileSync } from 'node:fs';
import { basename, join } from 'node:path';

interface CallFrame { functionName: string; url: string; lineNumber: number }
interface ProfileNode { id: number; callFrame: CallFrame; children?: number[] }
interface Profile { nodes: ProfileNode[]; samples: number[]; timeDeltas: number[]; startTime: number; endTime: number }

function label(cf: CallFrame): string {
  const where = cf.url === '' ? '' : ` ${cf.url.replace(/^file:\/\/.*?\/(node_modules|dist)\//, '$1/').replace(/^node:/, 'node:')}:${cf.lineNumber + 1}`;
  return `${cf.functionName || '(anonymous)'}${where}`;
}

export function summarizeProfile(p: Profile, top: number): string {
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const self = new Map<string, number>();
  let total = 0;
  let idle = 0;
  for (let i = 0; i < p.samples.length; i++) {
    const n = byId.get(p.samples[i]!);
    const dt = p.timeDeltas[i] ?? 0;
    if (!n) continue;
    total += dt;
    const name = n.callFrame.functionName;
    if (name === '(idle)' || name === '(program)') {
      if (name === '(idle)') idle += dt;
    }
    const k = label(n.callFrame);
    self.set(k, (self.get(k) ?? 0) + dt);
  }
  const busy = total - idle;
  const rows = [...self.entries()]
    .filter(([k]) => !k.startsWith('(idle)'))
    .sort((a, b) => b[1] - a[1])
    .slice(0, top)
    .map(([k, v]) => `  ${((v / Math.max(1, busy)) * 100).toFixed(1).padStart(5)} %  ${(v / 1000).toFixed(0).padStart(7)} ms  ${k}`);
  return [
    `busy ${(busy / 1000).toFixed(0)} ms of ${(total / 1000).toFixed(0)} ms (${((busy / Math.max(1, total)) * 100).toFixed(1)} %); self time, % of busy:`,
    ...rows,
  ].join('\n');
}

if (process.argv[1]?.endsWith('profile.js')) {
  const dir = process.argv[2] ?? '.';
  const top = Number(process.argv[3] ?? 25);
  for (const f of readdirSync(dir).filter((x) => x.endsWith('.cpuprofile')).sort()) {
    const p = JSON.parse(readFileSync(join(dir, f), 'utf8')) as Profile;
    process.stdout.write(`== ${basename(f)}\n${summarizeProfile(p, top)}\n\n`);
  }
}
