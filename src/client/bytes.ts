// Keys and values are bytes on the wire; strings are taken as UTF-8.
export function toBytes(v: string | Uint8Array): Uint8Array {
  return typeof v === 'string' ? Buffer.from(v, 'utf8') : v;
}
