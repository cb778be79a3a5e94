// The exactly-once test at length: more kills, a higher rate (override with BRIDGE_EOS_KILLS / _RATE).
process.env.BRIDGE_EOS_KILLS ??= '20';
process.env.BRIDGE_EOS_RATE ??= '4000';
await import('../bridge-eos.test.js');
