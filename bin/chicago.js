#!/bin/sh
':' //; : "${MALLOC_ARENA_MAX:=2}" "${MALLOC_MMAP_THRESHOLD_:=131072}" "${MALLOC_TRIM_THRESHOLD_:=131072}"; export MALLOC_ARENA_MAX MALLOC_MMAP_THRESHOLD_ MALLOC_TRIM_THRESHOLD_; case "$1 $NODE_OPTIONS" in "agent "*--max-semi-space-size*) ;; "agent "*) exec node --max-semi-space-size="${CHICAGO_AGENT_SEMI_SPACE_MB:-4}" "$0" "$@";; "guard "*--max-semi-space-size*) ;; "guard "*) exec node --max-semi-space-size="${CHICAGO_GUARD_SEMI_SPACE_MB:-4}" "$0" "$@";; "server "*--max-semi-space-size*) ;; "server "*) [ "${CHICAGO_SERVER_SEMI_SPACE_MB:-2}" = 0 ] || exec node --max-semi-space-size="${CHICAGO_SERVER_SEMI_SPACE_MB:-2}" "$0" "$@";; esac; exec node "$0" "$@"
// Run as a program, this file is a shell script first: glibc reads its malloc settings only when a
// process starts, and Node cannot exec itself, so the line above sets them (unless already set) and
// execs node on this same file in the same process (same pid, signals and exit code). Without them
// glibc keeps every 1 MB buffer a node frees in per-thread heaps: it held 1.2 GiB after a flood with
// memory.maxBytes at 64 MiB (docs/security.md "Memory"). `chicago agent` also gets V8 semi-spaces of
// at most 4 MiB (limits.agentSemiSpaceMb; CHICAGO_AGENT_SEMI_SPACE_MB; a --max-semi-space-size in
// NODE_OPTIONS wins): V8 takes the cap only at start, and at its default of 2 × 16 MiB the young
// generation is a third of an idle agent's RSS (docs/agent.md "Memory"). `chicago guard` gets 4 MiB (CHICAGO_GUARD_SEMI_SPACE_MB): at a high
// line rate V8 grows it to 2 × 16 MiB (docs/guard.md "Memory"). `chicago server` gets 2 MiB
// (CHICAGO_SERVER_SEMI_SPACE_MB, 0: V8's default; its partition workers get the same through their
// resourceLimits): shorter scavenges, shorter stalls of the threads a write passes (docs/cluster.md).
// To node the line is a string and a comment.
import '../dist/src/cli/main.js';
