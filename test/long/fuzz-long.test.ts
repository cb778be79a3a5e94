// The long edge fuzz: over a million generated HTTP requests and WebSocket frames (test/fuzz-edge.test.ts).
//   npm run test:fuzz-long        (FUZZ_HTTP_RUNS / FUZZ_WS_RUNS / FUZZ_TIME_LIMIT_MS override)
process.env.FUZZ_HTTP_RUNS ??= '40000'; // × 8 requests
process.env.FUZZ_WS_RUNS ??= '22000'; // × 32 frames
process.env.FUZZ_TIME_LIMIT_MS ??= '3600000';
await import('../fuzz-edge.test.js');
