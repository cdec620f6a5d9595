/** Host names as forward-proxy mode judges them (its own module: `airlock explain` reads actions the same way without loading the proxy). */

/**
 * One spelling per host, for the rules and for the connection alike: a deny on `10.0.0.5` or
 * `example.com` must not be passed by another way of writing the same address. WHATWG URL parsing
 * lower-cases, turns IDN into punycode and IPv4 in any notation (`2130706433`, `0x7f.1`,
 * `0177.0.0.1`, which the system resolver would also accept) into dotted decimal; on top of that the
 * DNS root's trailing dot goes (`example.com.` is example.com) and an IPv4-mapped IPv6 address
 * (`[::ffff:7f00:1]`) becomes its IPv4 address. Undefined when it names no host.
 */
export function canonicalHost(host: string): string | undefined {
  let h: string;
  try {
    h = new URL(`http://${host}/`).hostname;
  } catch {
    return undefined;
  }
  if (!h.startsWith('[') && h.endsWith('.')) h = h.slice(0, -1);
  if (h === '' || h.startsWith('.') || h.endsWith('.') || h.includes('..')) return undefined;
  const mapped = /^\[::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})\]$/.exec(h);
  if (mapped) {
    const hi = parseInt(mapped[1]!, 16);
    const lo = parseInt(mapped[2]!, 16);
    h = `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`;
  }
  return h;
}
