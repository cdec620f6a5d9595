/**
 * Test support for forward-proxy mode: the Proxy-Authorization value of an agent and key, and a
 * proxy request (a CONNECT, or another request line) sent on a raw socket, as proxy clients do.
 */
import { connect, type Socket } from 'node:net';

/** `Proxy-Authorization: Basic base64(<agent>:<key>)`. */
export const basic = (agent: string, key: string) => `Basic ${Buffer.from(`${agent}:${key}`).toString('base64')}`;

/**
 * Sends `CONNECT <authority>` (or, with `line`, another proxy request line) on a raw socket, with
 * `auth` as Proxy-Authorization when given; resolves with the socket and the proxy's answer head,
 * the socket left open (a tunnel, when the answer is 200).
 */
export function rawProxyRequest(port: number, authority: string, auth: string | undefined, line = `CONNECT ${authority} HTTP/1.1`): Promise<{ socket: Socket; head: string }> {
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1');
    let got = '';
    const onData = (c: Buffer) => {
      got += c.toString('latin1');
      const end = got.indexOf('\r\n\r\n');
      if (end === -1) return;
      s.off('data', onData);
      resolve({ socket: s, head: got.slice(0, end) });
    };
    s.on('data', onData);
    s.on('error', reject);
    s.write(`${line}\r\nHost: ${authority}\r\n${auth ? `Proxy-Authorization: ${auth}\r\n` : ''}\r\n`);
  });
}
