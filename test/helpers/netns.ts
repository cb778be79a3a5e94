// A private network namespace with nftables usable in it, for tests that must not touch the host's
// firewall. Where either is missing (no root, no nft), tests skip with the reason.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** Creates `ns` and checks nft runs inside it; the reason it cannot, or undefined. */
export async function addNftNamespace(ns: string): Promise<string | undefined> {
  try {
    await run('ip', ['netns', 'add', ns]);
    await run('ip', ['netns', 'exec', ns, 'nft', 'list', 'tables']);
    return undefined;
  } catch (err) {
    return (err as Error).message;
  }
}

export async function deleteNamespace(ns: string): Promise<void> {
  await run('ip', ['netns', 'del', ns]).catch(() => undefined);
}
