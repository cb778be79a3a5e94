// chicago agent --config FILE: the host agent (docs/agent.md).
import { type Parsed, str } from '../args.js';
import { UsageError } from '../errors.js';

export async function agent(p: Parsed): Promise<void> {
  const config = str(p, 'config');
  if (!config) throw new UsageError('agent: --config FILE is required', 'agent');
  const { runAgent } = await import('../../agent/agent.js');
  await runAgent({ config });
}
