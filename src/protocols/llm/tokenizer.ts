/**
 * Token counts for estimates (usage a provider did not report, and the mock provider's usage):
 * js-tiktoken with the bundled cl100k_base ranks, loaded on first use (nothing is downloaded).
 * Loading costs ~0.4 s and ~100 MB, so it happens only in gateways that need it, and `warm()`
 * lets them pay it before the first call. Long texts are counted on a sample and extrapolated:
 * an estimate must not stall the event loop.
 */
import { createRequire } from 'node:module';
import type { Tiktoken as TiktokenT, TiktokenBPE } from 'js-tiktoken/lite';

const require = createRequire(import.meta.url);
/** Counted exactly up to this many characters; longer texts are sampled. */
const SAMPLE_CHARS = 24_000;

let encoder: TiktokenT | undefined;

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
  if (encoder) return;
  setImmediate(() => {
    try {
      load();
    } catch {
      // counted by the heuristic below until it loads
    }
  });
}

/** Tokens in `text` (cl100k_base); texts past 24k characters are extrapolated from a sample. */
export function countTokens(text: string): number {
  if (text.length === 0) return 0;
  let enc: TiktokenT;
  try {
    enc = load();
  } catch {
    return Math.ceil(text.length / 4);
  }
  if (text.length <= SAMPLE_CHARS) return enc.encode(text, 'all').length;
  const sample = enc.encode(text.slice(0, SAMPLE_CHARS), 'all').length;
  return Math.ceil((sample * text.length) / SAMPLE_CHARS);
}
