#!/usr/bin/env python3
"""A Chicago client in plain Python 3 (standard library only), written from docs/http.md.

It creates a topic, produces records with headers (one with a binary value sent as base64), reads
them back from every partition, tails the topic with long polls (waitMs) until it has seen
--tail-count new records or --tail-seconds have passed, and puts a KV key with a TTL, reads it and
waits for it to expire.

    python3 examples/python/chicago_http.py --url http://127.0.0.1:7070 [--token T] [--topic NAME]

A token comes from --token or $CHICAGO_TOKEN and is sent as `Authorization: Bearer …`.
Output is one line per step, e.g. `read p=0 off=0 key=host-1 value='GET /' headers={'task': 'web'}`.
"""

import argparse
import base64
import json
import os
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request


class ChicagoError(Exception):
    """An answer with {"error": {"code", "message", "retryable"}}."""

    def __init__(self, status, code, message, retryable):
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.retryable = status, code, retryable


class Client:
    def __init__(self, url, token=None, timeout_s=10.0):
        self.url = url.rstrip("/")
        self.token = token
        self.timeout_s = timeout_s

    def request(self, method, path, params=None, body=None, raw=False, timeout_s=None):
        """Sends one request; returns parsed JSON (or (bytes, headers) when raw). Raises ChicagoError."""
        url = self.url + path
        if params:
            url += "?" + urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
        headers = {}
        data = None
        if isinstance(body, bytes):
            data = body
            headers["content-type"] = "application/octet-stream"
        elif body is not None:
            data = json.dumps(body).encode()
            headers["content-type"] = "application/json"
        if self.token:
            headers["authorization"] = "Bearer " + self.token
        req = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=timeout_s or self.timeout_s) as res:
                payload = res.read()
                if raw:
                    return payload, res.headers
                return json.loads(payload) if payload else None
        except urllib.error.HTTPError as e:
            text = e.read()
            try:
                err = json.loads(text)["error"]
            except (ValueError, KeyError, TypeError):
                raise ChicagoError(e.code, "HTTP", text.decode(errors="replace"), e.code >= 500) from None
            raise ChicagoError(e.code, err["code"], err["message"], err["retryable"]) from None

    # topics and records

    def create_topic(self, name, partitions):
        """Creates the topic, or returns the existing one (TOPIC_EXISTS)."""
        try:
            return self.request("POST", "/v1/topics", body={"name": name, "partitions": partitions})
        except ChicagoError as e:
            if e.code != "TOPIC_EXISTS":
                raise
            return self.request("GET", "/v1/topics/" + urllib.parse.quote(name, safe=""))

    def describe(self, topic):
        return self.request("GET", "/v1/topics/" + urllib.parse.quote(topic, safe=""))

    def produce(self, topic, records, partition=None):
        """records: [{"key"?, "value", "headers"?, "valueEncoding"?}]; returns the answer."""
        return self.request(
            "POST", f"/v1/topics/{urllib.parse.quote(topic, safe='')}/records",
            params={"partition": partition}, body=records,
        )

    def read(self, topic, partition, offset=None, wait_ms=None, max_records=None):
        """One partition from `offset` (default: the earliest retained). With wait_ms, long-polls."""
        params = {"partition": partition, "maxRecords": max_records, "waitMs": wait_ms}
        if offset is None:
            params["from"] = "earliest"
        else:
            params["offset"] = offset
        timeout = self.timeout_s + (wait_ms or 0) / 1000
        return self.request("GET", f"/v1/topics/{urllib.parse.quote(topic, safe='')}/records",
                            params=params, timeout_s=timeout)

    # key-value

    def kv_put(self, keyspace, key, value, ttl_s=None):
        path = f"/v1/kv/{urllib.parse.quote(keyspace, safe='')}/{urllib.parse.quote(key, safe='')}"
        return self.request("PUT", path, params={"ttl": ttl_s}, body=value)

    def kv_get(self, keyspace, key):
        """(value bytes, version), or None when the key is absent or expired."""
        path = f"/v1/kv/{urllib.parse.quote(keyspace, safe='')}/{urllib.parse.quote(key, safe='')}"
        try:
            value, headers = self.request("GET", path, raw=True)
        except ChicagoError as e:
            if e.code == "NOT_FOUND":
                return None
            raise
        return value, int(headers["x-chicago-version"])


def value_bytes(record):
    """A record's value as bytes: base64 when the node flags it, UTF-8 text otherwise."""
    if record.get("valueEncoding") == "base64":
        return base64.b64decode(record["value"])
    return record["value"].encode()


def show(record):
    v = value_bytes(record)
    try:
        shown = repr(v.decode())
    except UnicodeDecodeError:
        shown = "0x" + v.hex()
    return (f"p={record['partition']} off={record['offset']} key={record.get('key')} "
            f"value={shown} headers={record.get('headers') or {}}")


def tail(client, topic, partitions, start, count, seconds):
    """Long-polls every partition from `start` (partition -> offset) until `count` records or `seconds`."""
    deadline = time.monotonic() + seconds
    lock = threading.Lock()
    seen = []
    done = threading.Event()

    def follow(p):
        offset = start[p]
        while not done.is_set():
            left_ms = int((deadline - time.monotonic()) * 1000)
            if left_ms <= 0:
                return
            try:
                page = client.read(topic, p, offset=offset, wait_ms=min(left_ms, 1000), max_records=100)
            except ChicagoError as e:
                if not e.retryable:
                    raise
                time.sleep(0.2)  # retryable (the node restarting, a failover): ask again
                continue
            for r in page["records"]:
                r.setdefault("partition", p)
                with lock:
                    if len(seen) >= count:
                        break
                    seen.append(r)
                    print("tail " + show(r), flush=True)
                    if len(seen) >= count:
                        done.set()
            offset = page["nextOffset"]

    threads = [threading.Thread(target=follow, args=(p,), daemon=True) for p in partitions]
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()) + 5)
    return seen


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", default=os.environ.get("CHICAGO_URL", "http://127.0.0.1:7070"))
    ap.add_argument("--token", default=os.environ.get("CHICAGO_TOKEN"))
    ap.add_argument("--topic", default="py-example")
    ap.add_argument("--partitions", type=int, default=2)
    ap.add_argument("--keyspace", default="py-example")
    ap.add_argument("--tail-count", type=int, default=3, help="stop the tail after this many new records")
    ap.add_argument("--tail-seconds", type=float, default=10.0, help="stop the tail after this long")
    ap.add_argument("--ttl", type=int, default=1, help="the KV key's TTL in seconds")
    args = ap.parse_args()
    c = Client(args.url, args.token)

    topic = c.create_topic(args.topic, args.partitions)
    print(f"topic {topic['name']} partitions={topic['partitions'] if isinstance(topic['partitions'], int) else len(topic['partitions'])}", flush=True)

    binary = bytes([0x00, 0xFF, 0x10, 0x80])
    records = [
        {"key": "host-1", "value": "GET /", "headers": {"task": "web", "host": "host-1"}},
        {"key": "host-2", "value": "POST /login", "headers": {"task": "web", "host": "host-2"}},
        {"value": "no key, one header", "headers": {"task": "cron"}},
        {"key": "blob", "value": base64.b64encode(binary).decode(), "valueEncoding": "base64",
         "headers": {"content": "binary"}},
    ]
    ack = c.produce(args.topic, records)
    where = " ".join(f"{r['partition']}:{r['offset']}" for r in ack["records"])
    print(f"produced {len(ack['records'])} records replicas={ack['replicas']} at {where}", flush=True)

    # Read every partition back from its start; `partition` is required when a topic has several.
    parts = [p["partition"] for p in c.describe(args.topic)["partitions"]]
    got = []
    for p in parts:
        page = c.read(args.topic, p)
        for r in page["records"]:
            r.setdefault("partition", p)
            got.append(r)
            print("read " + show(r), flush=True)
    blob = [r for r in got if r.get("key") == "blob"]
    print("binary " + ("ok" if blob and value_bytes(blob[-1]) == binary else "MISMATCH"), flush=True)

    # Tail from the current end of each partition.
    ends = {p["partition"]: p["endOffset"] for p in c.describe(args.topic)["partitions"]}
    print(f"tailing {args.topic} from {json.dumps(ends, sort_keys=True)}", flush=True)
    seen = tail(c, args.topic, parts, ends, args.tail_count, args.tail_seconds)
    print(f"tail done: {len(seen)} records", flush=True)

    put = c.kv_put(args.keyspace, "session/1", b"alice", ttl_s=args.ttl)
    print(f"kv put version={put['version']} replicas={put['replicas']} ttl={args.ttl}s", flush=True)
    value, version = c.kv_get(args.keyspace, "session/1")
    print(f"kv get {value.decode()} version={version}", flush=True)
    deadline = time.monotonic() + args.ttl + 5
    while c.kv_get(args.keyspace, "session/1") is not None:
        if time.monotonic() > deadline:
            print("kv still present past its ttl", flush=True)
            return 1
        time.sleep(0.1)
    print("kv expired", flush=True)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except ChicagoError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except urllib.error.URLError as e:
        print(f"cannot reach the node: {e.reason}", file=sys.stderr)
        sys.exit(2)
