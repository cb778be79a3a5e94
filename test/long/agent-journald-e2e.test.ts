// The journald e2e suite of `npm test` (test/agent-journald-e2e.test.ts) at full size: more entries
// before and after a first start, and a longer stream through kill -9s, a killed journalctl and
// rotations. JOURNALD_E2E_BASIC (4000), JOURNALD_E2E_KILL (20000), JOURNALD_E2E_RATE (2000/s).
import { journaldE2eSuite } from '../helpers/journald-e2e.js';

journaldE2eSuite({
  basic: Number(process.env.JOURNALD_E2E_BASIC ?? 4000),
  kill: Number(process.env.JOURNALD_E2E_KILL ?? 20_000),
  killPerSec: Number(process.env.JOURNALD_E2E_RATE ?? 2000),
});
