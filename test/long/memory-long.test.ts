// The RSS target of memory.maxBytes (test/memory.test.ts with CHICAGO_TEST_RSS=1): resident memory
// under the cap plus a margin while floods arrive.
process.env.CHICAGO_TEST_RSS = '1';
await import('../memory.test.js');
