// The guard's peak RSS fed 2.5 × the default ipsMax distinct addresses (test/guard-memory.test.ts at
// a larger count): more evictions, and a longer run at the full line rate, under the same bounds.
process.env.GMEM_IPS = '250000';
await import('../guard-memory.test.js');
