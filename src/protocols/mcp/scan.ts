/**
 * Tool-poisoning scan (SPEC 5.3): looks through a tool's name, title, description and schemas —
 * every string inside them, keys included, at any depth — for signs that the definition talks to
 * the model rather than describing the tool: hidden-instruction phrasing, invisible or tag Unicode,
 * references to secrets and key files, mentions of other servers' tools, overlong descriptions.
 * Findings raise alerts; they do not block (pinning does that for changes).
 */
import type { ToolDef } from './pinning.js';

export interface Finding {
  /** Which sign: hidden_instruction, invisible_unicode, secret_reference, cross_server_reference, overlong_description. */
  sign: string;
  /** Where and what, readable by a person (invisible characters shown as U+XXXX). */
  detail: string;
  severity: 'warning' | 'critical';
}

/** Descriptions longer than this are a sign in themselves: room for instructions no one reads. */
export const MAX_DESCRIPTION_CHARS = 2000;

const HIDDEN_INSTRUCTIONS: { re: RegExp; what: string; severity: Finding['severity'] }[] = [
  { re: /\b(?:ignore|disregard|forget|override)\s+(?:all\s+|any\s+|the\s+)?(?:previous|prior|above|earlier|preceding|other|all|your)\s+(?:instructions|prompts?|rules|directions|guidelines)/i, what: 'tells the model to ignore its instructions', severity: 'critical' },
  { re: /\b(?:do\s+not|don'?t|never)\s+(?:tell|mention|inform|reveal|show|disclose|notify|alert)\s+(?:this\s+|it\s+|anything\s+)?(?:to\s+)?(?:the\s+)?users?\b/i, what: 'hides something from the user', severity: 'critical' },
  { re: /\bwithout\s+(?:telling|informing|notifying|alerting)\s+(?:the\s+)?users?\b/i, what: 'hides something from the user', severity: 'critical' },
  { re: /<\s*\/?\s*(?:important|system|instructions?|secret|hidden)\s*>/i, what: 'a pseudo-tag addressed to the model', severity: 'critical' },
  { re: /\byou\s+must\s+always\b/i, what: 'a standing order to the model', severity: 'warning' },
  { re: /\bbefore\s+(?:using|calling|invoking|running)\s+this\s+tool\b[^]{0,300}?\bread\b/i, what: 'asks the model to read something before using the tool', severity: 'critical' },
];

// Zero-width and joiner controls, invisible operators, BOM, bidi embedding/override/isolate controls, tag characters.
const INVISIBLE = /[\u200B-\u200F\u2060-\u2064\uFEFF\u202A-\u202E\u2066-\u2069\u{E0000}-\u{E007F}]/gu;

const KEY_PATHS: { re: RegExp; severity: Finding['severity'] }[] = [
  { re: /~\/\.ssh\b|\.ssh\/(?:id_|authorized_keys|known_hosts|config)/i, severity: 'critical' },
  { re: /\bid_(?:rsa|dsa|ecdsa|ed25519)\b/i, severity: 'critical' },
  { re: /\.aws\/credentials\b|\.aws\/config\b/i, severity: 'critical' },
  { re: /(?:^|[\s'"`(/~])\.(?:netrc|npmrc|pypirc|git-credentials|docker\/config\.json|kube\/config)\b/i, severity: 'critical' },
  { re: /(?:^|[\s'"`(/~])\.env\b(?!\w)/i, severity: 'warning' },
];

// A verb that moves or reveals data, shortly before a word for a secret, in one sentence.
const SECRET_IN_INSTRUCTION =
  /\b(?:read|send|include|pass|put|append|copy|upload|share|forward|exfiltrate|extract|collect|leak|transmit|embed|attach|dump|print|output|cat)\b[^.!?\n]{0,60}?\b(?:api[\s_-]?keys?|private[\s_-]?keys?|secret[\s_-]?keys?|passwords?|passphrases?|tokens?|credentials?|secrets)\b/i;

/** A string found in a definition, and where. */
interface Text {
  at: string;
  value: string;
}

function collect(def: ToolDef): Text[] {
  const out: Text[] = [];
  const walk = (v: unknown, at: string, depth: number): void => {
    if (depth > 64 || out.length > 10_000) return; // a pathological schema is not worth a stack overflow
    if (typeof v === 'string') out.push({ at, value: v });
    else if (Array.isArray(v)) v.forEach((x, i) => walk(x, `${at}[${i}]`, depth + 1));
    else if (v !== null && typeof v === 'object') {
      for (const [k, x] of Object.entries(v as Record<string, unknown>)) {
        out.push({ at: `${at} (key)`, value: k });
        walk(x, `${at}.${k}`, depth + 1);
      }
    }
  };
  walk(def.name, 'name', 0);
  walk(def.title, 'title', 0);
  walk(def.description, 'description', 0);
  walk(def.inputSchema, 'inputSchema', 0);
  walk(def.outputSchema, 'outputSchema', 0);
  walk(def.annotations, 'annotations', 0);
  return out;
}

/** Shows invisible characters as U+XXXX and keeps an excerpt short. */
function visible(s: string, max = 80): string {
  const t = s.replace(INVISIBLE, (c) => `<U+${c.codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0')}>`).replace(/\s+/g, ' ');
  return t.length > max ? `${t.slice(0, max)}…` : t;
}

const escapeRe = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** Scans a tool's name, description and schemas (all string values inside, recursively) for poisoning signs. */
export function scanTool(server: string, def: ToolDef, otherServers: readonly string[]): Finding[] {
  const findings: Finding[] = [];
  const seen = new Set<string>();
  const add = (sign: string, detail: string, severity: Finding['severity']) => {
    const k = `${sign}\n${detail}`;
    if (seen.has(k)) return;
    seen.add(k);
    findings.push({ sign, detail, severity });
  };
  const others = otherServers
    .filter((s) => s !== server && s !== '')
    .map((s) => ({ name: s, re: new RegExp(`(?<![\\w./:-])${escapeRe(s)}(?:(__|/)[\\w-]|\\s+tools?\\b|'s\\s+tools?\\b)`, 'i') }));

  for (const { at, value } of collect(def)) {
    for (const h of HIDDEN_INSTRUCTIONS) {
      const m = h.re.exec(value);
      if (m) add('hidden_instruction', `${at}: ${h.what}: "${visible(m[0])}"`, h.severity);
    }
    const invisible = value.match(INVISIBLE);
    if (invisible) {
      const points = [...new Set(invisible.map((c) => `U+${c.codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0')}`))];
      // Tag characters mirror ASCII (U+E0020..E007E): decode what they spell, which is usually the hidden instruction.
      const tagText = [...value].filter((c) => c.codePointAt(0)! >= 0xe0020 && c.codePointAt(0)! <= 0xe007e).map((c) => String.fromCharCode(c.codePointAt(0)! - 0xe0000)).join('');
      add('invisible_unicode', `${at}: ${invisible.length} invisible character(s) (${points.slice(0, 8).join(', ')}${points.length > 8 ? ', …' : ''})${tagText ? `; tag characters spell "${visible(tagText)}"` : ''}`, 'critical');
    }
    for (const p of KEY_PATHS) {
      const m = p.re.exec(value);
      if (m) add('secret_reference', `${at}: names a secret file: "${visible(m[0].trim())}"`, p.severity);
    }
    const s = SECRET_IN_INSTRUCTION.exec(value);
    if (s) add('secret_reference', `${at}: asks for a secret: "${visible(s[0])}"`, 'warning');
    for (const o of others) {
      const m = o.re.exec(value);
      if (m) add('cross_server_reference', `${at}: mentions server "${o.name}"'s tools: "${visible(m[0])}"`, m[1] === '__' ? 'critical' : 'warning');
    }
  }
  if (typeof def.description === 'string' && def.description.length > MAX_DESCRIPTION_CHARS) {
    add('overlong_description', `description: ${def.description.length} characters (over ${MAX_DESCRIPTION_CHARS})`, 'warning');
  }
  return findings;
}
