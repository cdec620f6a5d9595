/**
 * Token counts for estimates (usage a provider did not report, and the mock provider's usage):
 * js-tiktoken with the bundled cl100k_base ranks (nothing is downloaded). Loading them costs
 * ~0.4 s of CPU and ~100 MB, so gateways that never need an estimate never load them: until they
 * are loaded, `countTokens` answers with a characters-per-token heuristic (the result is marked
 * estimated either way) and loads them in the background. The mock provider, whose numbers must
 * be reproducible, counts exactly from its first reply. Long texts are counted on a sample and
 * extrapolated: an estimate must not stall the event loop.
 */
import { createRequire } from 'node:module';
import type { Tiktoken as TiktokenT, TiktokenBPE } from 'js-tiktoken/lite';

const require = createRequire(import.meta.url);
/** Counted exactly up to this many characters; longer texts are sampled. */
const SAMPLE_CHARS = 24_000;

let encoder: TiktokenT | undefined;
let warming = false;

function load(): TiktokenT {
  if (!encoder) {
    const { Tiktoken } = require('js-tiktoken/lite') as { Tiktoken: new (ranks: TiktokenBPE) => TiktokenT };
    const ranks = require('js-tiktoken/ranks/cl100k_base') as TiktokenBPE | { default: TiktokenBPE };
    encoder = new Tiktoken('default' in ranks ? ranks.default : ranks);
  }
  return encoder;
}

/** Loads the tokenizer in the background, so the first estimate does not wait for it. */
export function warmTokenizer(): void {
  if (encoder || warming) return;
  warming = true;
  setImmediate(() => {
    try {
      load();
    } catch {
      // counted by the heuristic below until it loads
    }
  });
}

/**
 * js-tiktoken merges each piece of the text in time that grows with at least the square of its length, and a
 * run of letters (or digits, spaces, symbols) with no break is one piece: 10,000 repeated letters
 * took 12 s, a 24,000-character sample of them over a minute, CJK text without spaces as badly, all
 * of it with the event loop stopped. Runs this long are counted in slices of this length instead
 * (about 0.1-0.4 s for the worst 24,000-character sample); prose and code have no such runs and
 * are counted exactly as before.
 */
const MAX_RUN = 32;
const LONG_RUN = /\p{L}{32,}|\p{N}{32,}|\s{32,}|[^\s\p{L}\p{N}]{32,}/gu; // runs of MAX_RUN or more

function encodedLength(enc: TiktokenT, text: string): number {
  let n = 0;
  let at = 0;
  for (const m of text.matchAll(LONG_RUN)) {
    if (m.index > at) n += enc.encode(text.slice(at, m.index), 'all').length;
    const run = m[0];
    for (let i = 0; i < run.length; ) {
      let end = Math.min(i + MAX_RUN, run.length);
      const last = run.charCodeAt(end - 1);
      if (last >= 0xd800 && last <= 0xdbff) end++; // never between the halves of a surrogate pair
      n += enc.encode(run.slice(i, end), 'all').length;
      i = end;
    }
    at = m.index + run.length;
  }
  if (at < text.length) n += enc.encode(at === 0 ? text : text.slice(at), 'all').length;
  return n;
}

function count(enc: TiktokenT, text: string): number {
  if (text.length <= SAMPLE_CHARS) return encodedLength(enc, text);
  const sample = encodedLength(enc, text.slice(0, SAMPLE_CHARS));
  return Math.ceil((sample * text.length) / SAMPLE_CHARS);
}

/** About four characters per token: what English prose averages with OpenAI's tokenizers. */
const heuristic = (text: string) => Math.ceil(text.length / 4);

/** Tokens in `text`: cl100k_base once loaded, the heuristic until then (and the load begins). */
export function countTokens(text: string): number {
  if (text.length === 0) return 0;
  if (!encoder) {
    warmTokenizer();
    return heuristic(text);
  }
  return count(encoder, text);
}

/**
 * Tokens in `text`: cl100k_base if it is loaded, else the heuristic, without starting the load (for
 * estimates made just before more work on the same event loop, such as a fallback attempt).
 */
export function countTokensIfLoaded(text: string): number {
  if (text.length === 0) return 0;
  return encoder ? count(encoder, text) : heuristic(text);
}

/** Tokens in `text` by cl100k_base, loading it now if need be (texts past 24k characters are extrapolated). */
export function countTokensExact(text: string): number {
  if (text.length === 0) return 0;
  try {
    return count(load(), text);
  } catch {
    return heuristic(text);
  }
}
