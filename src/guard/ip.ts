// Client addresses: parsed once per event into a canonical string and its prefix (/24 for IPv4,
// /64 for IPv6), and an allowlist of CIDRs. Anything that is not an IP address is refused here.
import ipaddr from 'ipaddr.js';
import { limits } from '../runtime/limits.js';

export interface ClientIp {
  /** canonical text: IPv4 dotted, IPv6 compressed; IPv4-mapped IPv6 becomes IPv4 */
  ip: string;
  v6: boolean;
  /** the aggregate it belongs to, e.g. 198.18.7.0/24 or 2001:db8:1:2::/64 */
  prefix: string;
}

/** Longest text worth parsing: an IPv6 address with a zone is under 64 characters. */
const IP_TEXT_MAX_CHARS = 64;

export function parseIp(text: unknown, prefixV4 = 24, prefixV6 = 64): ClientIp | undefined {
  if (typeof text !== 'string' || text.length === 0 || text.length > IP_TEXT_MAX_CHARS) return undefined;
  let addr: ipaddr.IPv4 | ipaddr.IPv6;
  try {
    addr = ipaddr.parse(text);
  } catch {
    return undefined;
  }
  // ipaddr.parse also accepts "1", "0x7f.1" and the like; only the standard forms are client addresses.
  if (addr.kind() === 'ipv4' && !ipaddr.IPv4.isValidFourPartDecimal(text)) return undefined;
  if (addr.kind() === 'ipv6' && (addr as ipaddr.IPv6).isIPv4MappedAddress()) addr = (addr as ipaddr.IPv6).toIPv4Address();
  const v6 = addr.kind() === 'ipv6';
  const ip = addr.toString();
  return { ip, v6, prefix: prefixOf(addr, v6 ? prefixV6 : prefixV4) };
}

function prefixOf(addr: ipaddr.IPv4 | ipaddr.IPv6, bits: number): string {
  const bytes = addr.toByteArray();
  for (let i = 0; i < bytes.length; i++) {
    const keep = Math.max(0, Math.min(8, bits - i * 8));
    bytes[i] &= (0xff << (8 - keep)) & 0xff;
  }
  return `${ipaddr.fromByteArray(bytes).toString()}/${bits}`;
}

/** A target of a decision: one address or a CIDR; returns the canonical text or undefined. */
export function canonicalTarget(text: string): { value: string; v6: boolean; cidr: boolean } | undefined {
  if (text.includes('/')) {
    try {
      let [addr, bits] = ipaddr.parseCIDR(text);
      // an IPv4-mapped prefix is the IPv4 one, as a mapped address is (parseIp): an IPv6 set never sees IPv4 packets
      if (addr.kind() === 'ipv6' && bits >= 96 && (addr as ipaddr.IPv6).isIPv4MappedAddress()) {
        addr = (addr as ipaddr.IPv6).toIPv4Address();
        bits -= 96;
      }
      const v6 = addr.kind() === 'ipv6';
      if (bits === (v6 ? 128 : 32)) return { value: addr.toString(), v6, cidr: false };
      return { value: prefixOf(addr, bits), v6, cidr: true };
    } catch {
      return undefined;
    }
  }
  const c = parseIp(text);
  return c ? { value: c.ip, v6: c.v6, cidr: false } : undefined;
}

/**
 * Why a manual ban of `t` (a canonical target) is too wide to take without --force, or undefined: a
 * prefix shorter than /8 (IPv6 /16) is tens of millions of addresses, more likely a typo than a decision.
 */
export function banTooWide(t: { value: string; v6: boolean; cidr: boolean }): string | undefined {
  const bits = t.cidr ? Number(t.value.slice(t.value.indexOf('/') + 1)) : t.v6 ? 128 : 32;
  const bitsMin = t.v6 ? limits.guardManualPrefixV6BitsMin : limits.guardManualPrefixV4BitsMin;
  return bits < bitsMin ? `${t.value} covers ${t.v6 ? `2^${128 - bits}` : 2 ** (32 - bits)} addresses; a prefix shorter than /${bitsMin} needs --force` : undefined;
}

/** CIDRs that are never banned (and whose events are not counted). */
export class Allowlist {
  private readonly ranges: Array<[ipaddr.IPv4 | ipaddr.IPv6, number]>;

  constructor(cidrs: readonly string[]) {
    this.ranges = cidrs.map((c) => {
      const r = c.includes('/') ? ipaddr.parseCIDR(c) : ipaddr.parseCIDR(`${c}/${ipaddr.parse(c).kind() === 'ipv6' ? 128 : 32}`);
      return r;
    });
  }

  static check(cidrs: readonly string[]): string | undefined {
    for (const c of cidrs) {
      try {
        if (c.includes('/')) ipaddr.parseCIDR(c);
        else ipaddr.parse(c);
      } catch {
        return c;
      }
    }
    return undefined;
  }

  /** `target` is an address or a CIDR (a prefix decision is refused when it overlaps an allowed range); anything else is not in it. */
  has(target: string): boolean {
    if (this.ranges.length === 0 || canonicalTarget(target) === undefined) return false;
    if (target.includes('/')) {
      const [addr, bits] = ipaddr.parseCIDR(target);
      return this.ranges.some(([r, rb]) => r.kind() === addr.kind() && (addr.match(r, rb) || r.match(addr, bits)));
    }
    const addr = ipaddr.process(target);
    return this.ranges.some(([r, rb]) => r.kind() === addr.kind() && addr.match(r, rb));
  }
}
