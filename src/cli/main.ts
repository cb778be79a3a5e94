// `chicago <command>`: finds the command (catalog.ts), parses its flags, runs it, and turns the
// outcome into an exit code (see errors.ts).
import { type Command, type Parsed, parse } from './args.js';
import { CliError, EXIT, UsageError } from './errors.js';
import { DEFAULT_URL } from './http.js';
import { bench, commands } from './catalog.js';

const byName = new Map(commands.map((c) => [c.name, c]));
/** words that only make sense with a subcommand after them */
const groups = new Set(commands.filter((c) => c.name.includes(' ')).map((c) => c.name.split(' ')[0]));

const usageLine = (c: Command) => `chicago ${c.name} ${c.synopsis}`.trimEnd();

function commandUsage(c: Command): string {
  const details = c.details ? `\n\n${c.details.replace(/^/gm, '  ')}` : '';
  const client = 'url' in c.options ? `\n\n${clientHelp}` : '';
  return `usage: ${usageLine(c)}\n\n  ${c.summary}${details}${client}\n`;
}

const clientHelp = [
  'Options of commands that talk to a node:',
  `  --url URL       the node (default ${DEFAULT_URL}, or env CHICAGO_URL)`,
  '  --token T       access token (or --token-file FILE, env CHICAGO_TOKEN or CHICAGO_TOKEN_FILE)',
  '  --ca FILE       a CA certificate (PEM) to trust for https:// URLs (env CHICAGO_CA)',
  '  --timeout DUR   deadline of each request: ms or 500ms, 10s, 1m (default 30s)',
  '  --json          print the JSON answer instead of text (where listed)',
].join('\n');

function generalUsage(): string {
  const rows = commands.map((c) => `  ${usageLine(c)}\n      ${c.summary}`);
  return [
    'usage: chicago <command> [arguments] [options]',
    '',
    'Commands:',
    ...rows,
    '  chicago help [COMMAND]',
    '',
    clientHelp,
    '',
    'Exit codes: 0 ok, 1 key absent, 2 the node answered with an error, 3 the node could not be',
    'reached or did not answer in time, 64 wrong command line, 69 the port or data dir is in use',
    '(server), 75 the disk is too full to start (server), 78 the configuration is wrong (server).',
    '',
  ].join('\n');
}

/** `kv put …` → the 'kv put' command and the arguments after its name. */
function resolve(argv: string[]): { cmd: Command; rest: string[] } {
  const [first = '', second = ''] = argv;
  if (groups.has(first)) {
    const cmd = byName.get(`${first} ${second}`);
    if (cmd) return { cmd, rest: argv.slice(2) };
    // a command that also has subcommands (`agent --config`, `agent status`)
    const bare = byName.get(first);
    if (bare && (second === '' || second.startsWith('-'))) return { cmd: bare, rest: argv.slice(1) };
    const subs = commands.filter((c) => c.name.startsWith(first + ' ')).map((c) => c.name.split(' ')[1]);
    throw new UsageError(`${first}: ${second ? `unknown subcommand '${second}'` : 'missing subcommand'}; one of ${subs.join(', ')}`);
  }
  const cmd = byName.get(first);
  if (!cmd) throw new UsageError(first ? `unknown command '${first}'` : 'missing command');
  return { cmd, rest: argv.slice(1) };
}

const isHelp = (a: string | undefined) => a === '--help' || a === '-h';

async function main(argv: string[]): Promise<void> {
  // `kv --help` is `help kv`
  if (groups.has(argv[0] ?? '') && isHelp(argv[1])) argv = ['help', argv[0]];
  if (argv[0] === 'help' || isHelp(argv[0])) {
    // `help --help` and `help help` are `help`, as the general usage lists `help` among the commands
    const topic = argv.slice(1).filter((a) => !isHelp(a));
    if (topic[0] === 'help') topic.shift();
    if (topic[0] === 'bench') {
      const { BENCH_HELP } = await import('../../bench/args.js');
      process.stdout.write(BENCH_HELP);
      return;
    }
    // `help kv` shows every kv subcommand.
    const family = topic.length === 1 && groups.has(topic[0]) ? commands.filter((c) => c.name === topic[0] || c.name.startsWith(topic[0] + ' ')) : undefined;
    if (family) process.stdout.write(family.map(commandUsage).join('\n'));
    else process.stdout.write(topic.length > 0 ? commandUsage(resolve(topic).cmd) : generalUsage());
    return;
  }
  const { cmd, rest } = resolve(argv);
  // bench's flags belong to bench; everything after the scenario goes through untouched.
  const p: Parsed = cmd === bench ? benchArgs(rest) : parse(cmd, rest);
  if (p.values.help && cmd === bench) return main(['help', 'bench']);
  if (p.values.help) {
    process.stdout.write(commandUsage(cmd));
    return;
  }
  await cmd.run(p);
}

function benchArgs(rest: string[]): Parsed {
  if (rest.length === 0 || rest[0].startsWith('-')) {
    const help = rest[0] === '--help' || rest[0] === '-h';
    if (!help) throw new UsageError('bench: missing SCENARIO', 'bench');
    return { command: 'bench', positionals: [], values: { help: true } };
  }
  return { command: 'bench', positionals: rest, values: {} };
}

/** After a wrong command line: what exists, in a few lines. */
function briefUsage(): string {
  const names = [...new Set(commands.map((c) => c.name.split(' ')[0]))];
  return `usage: chicago <command> [arguments] [options]\ncommands: ${names.join(', ')}, help\nsee 'chicago help' or 'chicago help COMMAND'\n`;
}

/** stdout's reader went away (`chicago topic list | head`): the output ends there, as for any Unix tool */
const readerGone = (err: unknown): boolean => (err as NodeJS.ErrnoException | undefined)?.code === 'EPIPE';

function report(err: unknown): number {
  if (readerGone(err)) return EXIT.ok;
  if (err instanceof UsageError) {
    const cmd = err.command ? byName.get(err.command) : undefined;
    process.stderr.write(`chicago: ${err.message}\n\n${cmd ? commandUsage(cmd) : briefUsage()}`);
    return err.exitCode;
  }
  if (err instanceof CliError) {
    process.stderr.write(`${err.message}\n`);
    return err.exitCode;
  }
  const e = err as Error;
  if (e?.name === 'ConfigError') {
    process.stderr.write(`chicago: ${e.message}\n`);
    return EXIT.config;
  }
  if (e?.name === 'PortInUseError' || e?.name === 'DataDirInUseError') {
    process.stderr.write(`chicago: ${e.message}\n`);
    return EXIT.inUse;
  }
  // the node (or the client library) said no: not a bug of the CLI
  if (e?.name === 'ChicagoError') {
    process.stderr.write(`error ${(err as { code: string }).code}: ${e.message}\n`);
    return EXIT.server;
  }
  if (e?.name === 'BenchArgsError') {
    process.stderr.write(`chicago bench: ${e.message}\nsee 'chicago bench --help'\n`);
    return EXIT.usage;
  }
  if (e?.name === 'DiskFullError') {
    process.stderr.write(`chicago: ${e.message}\n`);
    return EXIT.tempFail;
  }
  // Anything else is a bug: the stack is what whoever fixes it needs.
  process.stderr.write(`chicago: unexpected error: ${e?.stack ?? String(err)}\n`);
  return EXIT.internal;
}

// An EPIPE on stdout is said once as an 'error' event: without a listener it would end the run with a stack.
process.stdout.on('error', (err) => {
  if (!readerGone(err)) throw err;
});
// Set the code and let the event loop drain, so buffered stdout is never cut off by an exit.
main(process.argv.slice(2)).then(
  () => {
    process.exitCode ??= EXIT.ok;
  },
  (err: unknown) => {
    process.exitCode = report(err);
  },
);
