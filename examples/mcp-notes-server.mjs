#!/usr/bin/env node
// An example MCP server (stdio) for the quickstart, built with the official MCP SDK: a notebook
// kept in memory, with a read tool (`list_notes`), a write tool (`add_note`), each note as a
// resource (note://<id>) and a prompt. The quickstart's rules allow the read tool and deny the
// write tool, so an agent sees both an allowed and a denied call. NOTES_OWNER shows how airlock
// injects credentials into a stdio server's environment (the agent never sees them).
import { McpServer } from '@modelcontextprotocol/server';
import { StdioServerTransport } from '@modelcontextprotocol/server/stdio';
import * as z from 'zod/v4';

const owner = process.env.NOTES_OWNER ?? 'nobody';
const notes = [{ id: 1, text: 'Welcome to airlock: this note came from an MCP server, through the gateway.' }];
const server = new McpServer({ name: 'notes', version: '1.0.0' });

server.registerTool(
  'list_notes',
  { description: 'Lists the notes in the notebook.', inputSchema: z.object({ contains: z.string().optional().describe('only notes containing this text') }), annotations: { readOnlyHint: true } },
  async ({ contains }) => {
    const found = notes.filter((n) => contains === undefined || n.text.includes(contains));
    return { content: [{ type: 'text', text: found.map((n) => `#${n.id} ${n.text}`).join('\n') || '(no notes)' }] };
  },
);

server.registerTool(
  'add_note',
  { description: 'Adds a note to the notebook.', inputSchema: z.object({ text: z.string().min(1).max(2000) }) },
  async ({ text }) => {
    const note = { id: notes.length + 1, text };
    notes.push(note);
    server.sendResourceListChanged?.();
    return { content: [{ type: 'text', text: `added note #${note.id} (notebook of ${owner})` }] };
  },
);

server.registerResource('welcome', 'note://1', { description: 'The first note', mimeType: 'text/plain' }, async (uri) => ({ contents: [{ uri: uri.href, mimeType: 'text/plain', text: notes[0].text }] }));

server.registerPrompt('summarize', { description: 'Asks for a summary of the notebook', argsSchema: z.object({ style: z.string().optional() }) }, async ({ style }) => ({
  messages: [{ role: 'user', content: { type: 'text', text: `Summarize these notes${style ? ` in a ${style} style` : ''}:\n${notes.map((n) => n.text).join('\n')}` } }],
}));

await server.connect(new StdioServerTransport());
