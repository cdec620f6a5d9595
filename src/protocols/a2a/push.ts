/**
 * SSRF defence for push notifications: a push config makes the remote agent POST to a URL the
 * calling agent chose. URLs on private, loopback, link-local (cloud metadata) or otherwise
 * non-public addresses are refused unless the remote agent's config allows them. Host names are
 * resolved, and refused when any address they resolve to is not public or when they cannot be
 * resolved (the check fails closed).
 */
import { lookup } from 'node:dns/promises';
import { BlockList, isIP } from 'node:net';

const NON_PUBLIC = new BlockList();
for (const [net, bits] of [
  ['0.0.0.0', 8],
  ['10.0.0.0', 8],
  ['100.64.0.0', 10],
  ['127.0.0.0', 8],
  ['169.254.0.0', 16],
  ['172.16.0.0', 12],
  ['192.0.0.0', 24],
  ['192.0.2.0', 24],
  ['192.168.0.0', 16],
  ['198.18.0.0', 15],
  ['198.51.100.0', 24],
  ['203.0.113.0', 24],
  ['224.0.0.0', 4],
  ['240.0.0.0', 4],
] as const) {
  NON_PUBLIC.addSubnet(net, bits, 'ipv4');
}
for (const [net, bits] of [
  ['::', 128],
  ['::1', 128],
  ['fc00::', 7],
  ['fe80::', 10],
  ['fec0::', 10],
  ['ff00::', 8],
  ['2001:db8::', 32],
] as const) {
  NON_PUBLIC.addSubnet(net, bits, 'ipv6');
}

/** An IPv6 address that carries an IPv4 one (mapped, compatible, NAT64) → that IPv4 address. */
function embeddedV4(v6: string): string | undefined {
  const groups = expand(v6);
  if (!groups) return undefined;
  const zeros5 = groups.slice(0, 5).every((g) => g === 0);
  const mapped = zeros5 && groups[5] === 0xffff;
  const compatible = zeros5 && groups[5] === 0 && (groups[6]! !== 0 || groups[7]! > 1);
  const nat64 = groups[0] === 0x64 && groups[1] === 0xff9b && groups.slice(2, 6).every((g) => g === 0);
  if (!mapped && !compatible && !nat64) return undefined;
  return `${groups[6]! >> 8}.${groups[6]! & 0xff}.${groups[7]! >> 8}.${groups[7]! & 0xff}`;
}

/** `::ffff:7f00:1` → eight 16-bit groups (a dotted IPv4 tail is understood too). */
function expand(v6: string): number[] | undefined {
  let s = v6.toLowerCase();
  const dotted = /(\d+\.\d+\.\d+\.\d+)$/.exec(s);
  if (dotted) {
    const p = dotted[1]!.split('.').map(Number);
    s = `${s.slice(0, -dotted[1]!.length)}${((p[0]! << 8) | p[1]!).toString(16)}:${((p[2]! << 8) | p[3]!).toString(16)}`;
  }
  const [head, tail] = s.split('::');
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const fill = s.includes('::') ? 8 - h.length - t.length : 0;
  const all = [...h, ...Array<string>(Math.max(0, fill)).fill('0'), ...t];
  if (all.length !== 8) return undefined;
  const out = all.map((g) => parseInt(g, 16));
  return out.some((g) => Number.isNaN(g)) ? undefined : out;
}

/** Is this IP address one a push notification must not be sent to? */
export function isNonPublicAddress(ip: string): boolean {
  const family = isIP(ip);
  if (family === 4) return NON_PUBLIC.check(ip, 'ipv4');
  if (family === 6) {
    const v4 = embeddedV4(ip);
    if (v4 !== undefined) return NON_PUBLIC.check(v4, 'ipv4');
    return NON_PUBLIC.check(ip, 'ipv6');
  }
  return true;
}

/** Every string under a `url` key, at most `depth` objects deep. */
export function urlsIn(v: unknown, depth = 4): string[] {
  if (depth < 0 || v === null || typeof v !== 'object') return [];
  const out: string[] = [];
  for (const [k, x] of Object.entries(v as Record<string, unknown>)) {
    if (k === 'url' && typeof x === 'string') out.push(x);
    else if (x !== null && typeof x === 'object') out.push(...urlsIn(x, depth - 1));
  }
  return out;
}

async function resolveAll(host: string, timeoutMs: number): Promise<string[]> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error('DNS lookup timed out')), timeoutMs);
  });
  try {
    const r = await Promise.race([lookup(host, { all: true, verbatim: true }), timeout]);
    return r.map((a) => a.address);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Why this push URL is refused, or undefined when it may be used. `allowPrivate` lifts the address
 * check (the scheme must still be http or https).
 */
export async function pushUrlProblem(raw: string, allowPrivate: boolean, dnsTimeoutMs = 2000): Promise<string | undefined> {
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    return `push-notification URL "${raw.slice(0, 200)}" is not a valid URL`;
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') return `push-notification URL ${u.origin} must use http or https`;
  if (allowPrivate) return undefined;
  const host = u.hostname.startsWith('[') ? u.hostname.slice(1, -1) : u.hostname;
  const hint = 'push notifications to private, loopback or link-local addresses are refused (SSRF defence); set allowPrivatePushUrls on this A2A agent to allow them';
  if (host === 'localhost' || host.endsWith('.localhost')) return `push-notification URL ${u.origin} points at this machine; ${hint}`;
  if (isIP(host)) return isNonPublicAddress(host) ? `push-notification URL ${u.origin} points at a non-public address; ${hint}` : undefined;
  let addresses: string[];
  try {
    addresses = await resolveAll(host, dnsTimeoutMs);
  } catch {
    return `push-notification URL ${u.origin}: the host name could not be resolved, so its address could not be checked`;
  }
  const bad = addresses.find(isNonPublicAddress);
  return bad !== undefined ? `push-notification URL ${u.origin} resolves to a non-public address (${bad}); ${hint}` : undefined;
}
