/**
 * Finds an object key that appears twice in one JSON object, anywhere in a request body.
 *
 * airlock judges the value `JSON.parse` gives (the last of two equal keys) but forwards the body as
 * the agent sent it, and a remote agent's parser may keep the first: `{"method": "CancelTask",
 * "method": "GetTask"}` would be judged as GetTask and run as CancelTask; two `taskId`s in a
 * message, or two push `url`s, would slip past the task-ownership and SSRF checks the same way. A
 * body with a duplicate key is therefore refused, at any depth, rather than forwarded re-serialised
 * (which would break the "body forwarded unchanged" contract and cost a serialisation per call).
 */

/**
 * Nesting deeper than this is refused too: no A2A call needs it, and the walk keeps a key set per
 * open object (a body of ten million `{"a":` would otherwise cost gigabytes).
 */
export const MAX_DEPTH = 1000;

/**
 * What makes `text` (valid JSON: JSON.parse accepted it) ambiguous to judge: the first key that
 * appears twice in one object (decoded: `"\u0061"` and `"a"` are the same key), or nesting past
 * MAX_DEPTH; undefined when there is nothing. One pass; strings are skipped with indexOf.
 */
export function ambiguousJson(text: string): string | undefined {
  // One entry per open container: the keys seen so far for an object, undefined for an array.
  const stack: (Set<string> | undefined)[] = [];
  let expectKey = false;
  const n = text.length;
  let i = 0;
  while (i < n) {
    const c = text.charCodeAt(i);
    if (c === 0x22 /* " */) {
      const end = stringEnd(text, i);
      const top = stack[stack.length - 1];
      if (expectKey && top !== undefined) {
        const raw = text.slice(i + 1, end);
        const key = raw.includes('\\') ? (JSON.parse(text.slice(i, end + 1)) as string) : raw;
        if (top.has(key)) return `duplicate key ${JSON.stringify(key.slice(0, 100))}`;
        top.add(key);
      }
      expectKey = false;
      i = end + 1;
      continue;
    }
    if (c === 0x7b /* { */) {
      if (stack.length >= MAX_DEPTH) return `nesting deeper than ${MAX_DEPTH} levels`;
      stack.push(new Set());
      expectKey = true;
    } else if (c === 0x5b /* [ */) {
      if (stack.length >= MAX_DEPTH) return `nesting deeper than ${MAX_DEPTH} levels`;
      stack.push(undefined);
      expectKey = false;
    } else if (c === 0x7d /* } */ || c === 0x5d /* ] */) {
      stack.pop();
      expectKey = false;
    } else if (c === 0x2c /* , */) {
      // After a comma inside an object comes a key; inside an array, a value.
      expectKey = stack[stack.length - 1] !== undefined;
    }
    i++;
  }
  return undefined;
}

/** The index of the quote that closes the string opening at `start`. */
function stringEnd(text: string, start: number): number {
  let j = start + 1;
  for (;;) {
    const q = text.indexOf('"', j);
    if (q === -1) return text.length; // not reached for valid JSON
    let backslashes = 0;
    for (let k = q - 1; k > start && text.charCodeAt(k) === 0x5c; k--) backslashes++;
    if (backslashes % 2 === 0) return q;
    j = q + 1;
  }
}
