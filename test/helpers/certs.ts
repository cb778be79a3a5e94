// Certificates for TLS tests, made at test time with the openssl CLI (never committed): a CA, and
// certificates it signs for the given IP addresses.
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface Certs {
  dir: string;
  caFile: string;
  ca: string;
  /** a certificate the CA signed for the given addresses, and its key */
  certFile: string;
  keyFile: string;
  /** a self-signed certificate the CA never saw (an impostor) */
  rogueCertFile: string;
  rogueKeyFile: string;
  cleanup(): Promise<void>;
}

export async function makeCerts(ips: string[]): Promise<Certs> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'chicago-certs-'));
  const f = (n: string) => path.join(dir, n);
  const ossl = (...args: string[]) => run('openssl', args, { cwd: dir });
  await ossl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', f('ca.key'), '-out', f('ca.crt'), '-days', '2', '-subj', '/CN=chicago test CA');
  await ossl('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', f('node.key'), '-out', f('node.csr'), '-subj', '/CN=chicago node');
  const san = `subjectAltName=${ips.map((ip) => `IP:${ip}`).join(',')}`;
  await run('bash', ['-c', `printf '%s\\n' '${san}' 'extendedKeyUsage=serverAuth,clientAuth' > ext.cnf`], { cwd: dir });
  await ossl('x509', '-req', '-in', f('node.csr'), '-CA', f('ca.crt'), '-CAkey', f('ca.key'), '-CAcreateserial', '-out', f('node.crt'), '-days', '2', '-extfile', f('ext.cnf'));
  await ossl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', f('rogue.key'), '-out', f('rogue.crt'), '-days', '2', '-subj', '/CN=rogue', '-addext', san);
  return {
    dir, caFile: f('ca.crt'), ca: await readFile(f('ca.crt'), 'utf8'), certFile: f('node.crt'), keyFile: f('node.key'),
    rogueCertFile: f('rogue.crt'), rogueKeyFile: f('rogue.key'),
    cleanup: () => rm(dir, { recursive: true, force: true }),
  };
}
