/**
 * Reading JSON text without parsing all of it: where its strings and brackets are. The scans jump
 * from one quote or bracket to the next with native searches, so megabytes of numbers (embeddings)
 * or of prompt text cost little; everything else in the text cannot change what a position means.
 */

export const QUOTE = 0x22;
const BACKSLASH = 0x5c;
export const OPEN_BRACE = 0x7b;
export const CLOSE_BRACE = 0x7d;
export const OPEN_BRACKET = 0x5b;
const CLOSE_BRACKET = 0x5d;
const STRUCTURAL = [QUOTE, OPEN_BRACE, CLOSE_BRACE, OPEN_BRACKET, CLOSE_BRACKET] as const;

export const isSpace = (c: number | undefined) => c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;

/** Index just past the string whose opening quote is at `i`; -1 if it never closes. */
export function stringEnd(b: Buffer, i: number): number {
  for (let j = b.indexOf(QUOTE, i + 1); j !== -1; j = b.indexOf(QUOTE, j + 1)) {
    let slashes = 0;
    while (b[j - 1 - slashes] === BACKSLASH) slashes++;
    if (slashes % 2 === 0) return j + 1;
  }
  return -1;
}

/** Finds the next quote or bracket at or after a position; positions must not go backwards. */
export class StructuralScan {
  private readonly next = STRUCTURAL.map(() => -2); // next position of each byte; -1: none left

  constructor(private readonly b: Buffer) {}

  /** The next quote or bracket at or after `i`, or -1. */
  from(i: number): number {
    let at = -1;
    for (let k = 0; k < STRUCTURAL.length; k++) {
      let p = this.next[k]!;
      if (p !== -1 && p < i) this.next[k] = p = this.b.indexOf(STRUCTURAL[k]!, i);
      if (p !== -1 && (at === -1 || p < at)) at = p;
    }
    return at;
  }
}

/**
 * How deep a document from an upstream may nest before airlock refuses to read it whole: far
 * beyond any real card or task list, far below what overflows the stack when it is walked or
 * serialized again.
 */
export const MAX_NESTING = 256;

/** Whether JSON text nests arrays and objects more than `limit` deep (strings skipped). */
export function nestedDeeperThan(b: Buffer, limit: number): boolean {
  const scan = new StructuralScan(b);
  let depth = 0;
  for (let i = scan.from(0); i !== -1; i = scan.from(i)) {
    const c = b[i]!;
    if (c === QUOTE) {
      i = stringEnd(b, i);
      if (i === -1) return false;
      continue;
    }
    if (c === OPEN_BRACE || c === OPEN_BRACKET) {
      if (++depth > limit) return true;
    } else depth--;
    i++;
  }
  return false;
}
