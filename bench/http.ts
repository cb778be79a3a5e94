// Plain HTTP/1.1 access to a node (keep-alive): topic admin, and the `--via http` fallback target.
// The token and CA come from CHICAGO_TOKEN / CHICAGO_TOKEN_FILE and CHICAGO_CA, which the bench's
// --token, --token-file and --ca flags set.
import http from 'node:http';
import https from 'node:https';
import { authHeader, resolveToken } from '../src/client/token.js';
import { readCa } from '../src/client/tls.js';

/** what every connection of this bench process presents: a token, and a CA to trust for https:// */
export function benchCredentials(): { token?: string; ca?: string } {
  return { token: resolveToken(), ca: readCa(process.env.CHICAGO_CA) };
}

export interface HttpResponse {
  status: number;
  body: Buffer;
}

export class HttpTarget {
  private readonly agent: http.Agent;
  private readonly base: URL;
  private readonly auth: Record<string, string>;
  private readonly lib: typeof http | typeof https;

  constructor(url: string, connections: number) {
    this.base = new URL(url);
    const { token, ca } = benchCredentials();
    this.auth = authHeader(token);
    const tls = this.base.protocol === 'https:';
    this.lib = tls ? https : http;
    const opts = { keepAlive: true, maxSockets: connections, maxFreeSockets: connections };
    this.agent = tls ? new https.Agent({ ...opts, ...(ca ? { ca } : {}) }) : new http.Agent(opts);
  }

  request(method: string, path: string, body?: Buffer | string, contentType?: string): Promise<HttpResponse> {
    return new Promise((resolve, reject) => {
      const headers: Record<string, string | number> = { ...this.auth };
      if (body !== undefined) {
        headers['content-length'] = Buffer.byteLength(body);
        if (contentType) headers['content-type'] = contentType;
      }
      const req = this.lib.request(
        { host: this.base.hostname, port: this.base.port, method, path, agent: this.agent, headers },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks) }));
          res.on('error', reject);
        },
      );
      req.on('error', reject);
      if (body !== undefined) req.end(body);
      else req.end();
    });
  }

  /** rejects unless 2xx, with the node's error message */
  async ok(method: string, path: string, body?: Buffer | string, contentType?: string): Promise<Buffer> {
    const r = await this.request(method, path, body, contentType);
    if (r.status < 200 || r.status >= 300) {
      let msg = r.body.toString('utf8').slice(0, 300);
      try {
        const e = JSON.parse(msg) as { error?: { code?: string; message?: string } };
        if (e.error) msg = `${e.error.code ?? ''} ${e.error.message ?? ''}`.trim();
      } catch {
        // not JSON
      }
      throw new Error(`${method} ${path} → ${r.status}: ${msg}`);
    }
    return r.body;
  }

  async health(): Promise<Record<string, unknown>> {
    return JSON.parse((await this.ok('GET', '/v1/health')).toString('utf8')) as Record<string, unknown>;
  }

  async createTopic(name: string, partitions: number, replicas: number): Promise<void> {
    const r = await this.request(
      'POST',
      '/v1/topics',
      JSON.stringify({ name, partitions, replicas, retention: {} }),
      'application/json',
    );
    if (r.status === 409) return; // exists already (a re-run against the same node)
    if (r.status < 200 || r.status >= 300) throw new Error(`create topic ${name} → ${r.status}: ${r.body.toString()}`);
  }

  async deleteTopic(name: string): Promise<void> {
    await this.request('DELETE', `/v1/topics/${encodeURIComponent(name)}`);
  }

  async kvPut(ks: string, key: string, value: Buffer, acks: string): Promise<{ version: number; replicas: number }> {
    const body = await this.ok(
      'PUT',
      `/v1/kv/${encodeURIComponent(ks)}/${encodeURIComponent(key)}?acks=${acks}`,
      value,
      'application/octet-stream',
    );
    return JSON.parse(body.toString('utf8')) as { version: number; replicas: number };
  }

  async kvGet(ks: string, key: string): Promise<Buffer | undefined> {
    const r = await this.request('GET', `/v1/kv/${encodeURIComponent(ks)}/${encodeURIComponent(key)}`);
    if (r.status === 404) return undefined;
    if (r.status !== 200) throw new Error(`GET kv → ${r.status}: ${r.body.toString().slice(0, 200)}`);
    return r.body;
  }

  async produce(
    topic: string,
    records: Array<{ key?: string; value: string }>,
    acks: string,
  ): Promise<{ records: Array<{ partition: number; offset: number }>; replicas: number }> {
    const body = await this.ok(
      'POST',
      `/v1/topics/${encodeURIComponent(topic)}/records?acks=${acks}`,
      JSON.stringify(records),
      'application/json',
    );
    return JSON.parse(body.toString('utf8')) as { records: Array<{ partition: number; offset: number }>; replicas: number };
  }

  async fetch(
    topic: string,
    partition: number,
    offset: number,
    waitMs: number,
  ): Promise<{ records: Array<{ offset: number; value: string }>; nextOffset: number }> {
    const body = await this.ok(
      'GET',
      `/v1/topics/${encodeURIComponent(topic)}/records?partition=${partition}&offset=${offset}&maxRecords=10000&waitMs=${waitMs}`,
    );
    return JSON.parse(body.toString('utf8')) as { records: Array<{ offset: number; value: string }>; nextOffset: number };
  }

  /** end offset of each partition (the node lists them under `partitions`, or `partitionsInfo`) */
  async endOffsets(name: string): Promise<Map<number, number>> {
    const body = await this.ok('GET', `/v1/topics/${encodeURIComponent(name)}`);
    type P = { partition: number; endOffset: number };
    const t = JSON.parse(body.toString('utf8')) as { partitions?: unknown; partitionsInfo?: P[] };
    const list = Array.isArray(t.partitions) ? (t.partitions as P[]) : (t.partitionsInfo ?? []);
    return new Map(list.map((p) => [p.partition, p.endOffset]));
  }

  close(): void {
    this.agent.destroy();
  }
}
