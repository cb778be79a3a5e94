// chicago agent --config FILE: the host agent (docs/agent.md).
import { type Command, str } from '../args.js';
import { UsageError } from '../errors.js';

export const agent: Command = {
  name: 'agent',
  synopsis: '--config FILE',
  summary: 'run the host agent: follow log files and ship them to a node exactly once (docs/agent.md)',
  options: { config: { type: 'string' } },
  args: [0, 0],
  async run(p) {
    const config = str(p, 'config');
    if (!config) throw new UsageError('agent: --config FILE is required', 'agent');
    const { runAgent } = await import('../../agent/agent.js');
    await runAgent({ config });
  },
};
