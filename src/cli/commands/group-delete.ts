// chicago group delete: remove a consumer group's committed offsets (Kafka's
// kafka-consumer-groups --delete). Refused while the group has live members, who would commit again.
import { type Parsed } from '../args.js';
import { CliError, EXIT, ServerError } from '../errors.js';
import { enc, httpFrom, wantsJson } from '../http.js';
import { line } from '../output.js';

export async function groupDelete(p: Parsed): Promise<void> {
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
}
