#!/usr/bin/env node
// An example HTTP API for the quickstart: a tiny in-memory notes service on 127.0.0.1:$PORT.
// It demands a bearer token that only airlock holds (injected from the quickstart config), which
// shows that agents never need the real credential.
import { createServer } from 'node:http';

const port = Number(process.env.PORT ?? 8850);
const token = process.env.NOTES_TOKEN ?? 'demo-secret-token';
const notes = new Map([[1, { id: 1, text: 'Welcome to the notes API behind airlock.' }]]);
let nextId = 2;

function send(res, status, value) {
  const body = JSON.stringify(value);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

createServer((req, res) => {
  if (req.headers.authorization !== `Bearer ${token}`) return send(res, 401, { error: 'missing or wrong token' });
  const url = new URL(req.url, 'http://notes');
  const m = /^\/notes(?:\/(\d+))?$/.exec(url.pathname);
  if (!m) return send(res, 404, { error: 'not found' });
  const id = m[1] ? Number(m[1]) : undefined;
  if (req.method === 'GET' && id === undefined) return send(res, 200, { notes: [...notes.values()] });
  if (req.method === 'GET') return notes.has(id) ? send(res, 200, notes.get(id)) : send(res, 404, { error: 'no such note' });
  if (req.method === 'POST' && id === undefined) {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      let text;
      try {
        text = JSON.parse(body).text;
      } catch {
        return send(res, 400, { error: 'send {"text": "..."}' });
      }
      if (typeof text !== 'string') return send(res, 400, { error: 'send {"text": "..."}' });
      const note = { id: nextId++, text };
      notes.set(note.id, note);
      send(res, 201, note);
    });
    return;
  }
  if (req.method === 'DELETE' && id !== undefined) return notes.delete(id) ? (res.writeHead(204), res.end()) : send(res, 404, { error: 'no such note' });
  send(res, 405, { error: 'method not allowed' });
}).listen(port, '127.0.0.1');
