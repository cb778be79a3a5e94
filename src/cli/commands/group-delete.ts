// chicago group delete: remove a consumer group's committed offsets (Kafka's
// kafka-consumer-groups --delete). Refused while the group has live members, who would commit again.
import { type Command, clientOptions } from '../args.js';
import { CliError, EXIT, ServerError } from '../errors.js';
import { enc, httpFrom, wantsJson } from '../http.js';
import { line } from '../output.js';

export const groupDelete: Command = {
  name: 'group delete',
  synopsis: 'GROUP [--json]',
  summary: "remove a consumer group's committed offsets; refused while the group has live members",
  details: [
    'A member that joins afterwards starts each partition from its configured start (its `from`),',
    'not from the old offsets. Exit 2 with GROUP_NOT_EMPTY while members are live (chicago group',
    'members GROUP); exit 1 when the group has neither members nor offsets.',
  ].join('\n'),
  options: clientOptions,
  args: [1, 1],
  async run(p) {
    const [group] = p.positionals;
    let r: { group: string; removed: number };
    try {
      r = await httpFrom(p).must<{ group: string; removed: number }>('DELETE', `/v1/groups/${enc(group)}`);
    } catch (err) {
      if (err instanceof ServerError && err.code === 'NOT_FOUND') throw new CliError(EXIT.absent, err.message);
      throw err;
    }
    if (wantsJson(p)) return line(JSON.stringify(r));
    await line(`deleted group ${group} (${r.removed} committed offset${r.removed === 1 ? '' : 's'})`);
  },
};
