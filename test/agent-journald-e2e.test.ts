// The journald source against a real systemd-journald (standalone: PID 1 is not systemd here; a
// private one per test) and a real sshd, at a size for `npm test`: a first start at the journal's
// end with entries waiting, headers, bytes and cut pieces; kill -9 of the agent, a killed journalctl
// and rotations mid-stream; a vacuumed cursor with and without lost entries; sshd's failed logins
// from a network namespace. The same suite at full size: test/long/agent-journald-e2e.test.ts.
import { journaldE2eSuite } from './helpers/journald-e2e.js';

journaldE2eSuite({ basic: 400, kill: 2000, killPerSec: 2000 });
