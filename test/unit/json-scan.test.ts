/**
 * largestContainerAt: the member count of the largest container at a nesting depth,
 * from the raw bytes, agrees with what JSON.parse then finds; splitting a body into
 * its members (and an array member into its elements) and parsing each piece gives
 * what JSON.parse gives for the whole, and malformed structure is refused.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { arrayElementSpans, largestContainerAt, objectMemberSpans, startsWithObject } from '../../src/api/http/json-scan';

/** The same count from the parsed value. */
function expected(value: unknown, depth: number): number {
  if (typeof value !== 'object' || value === null) return 0;
  const members = Array.isArray(value) ? value : Object.values(value);
  if (depth === 1) return members.length;
  return Math.max(0, ...members.map((m) => expected(m, depth - 1)));
}

test('examples', () => {
  const at = (text: string, depth: number) => largestContainerAt(Buffer.from(text), depth);
  assert.equal(at('{}', 1), 0);
  assert.equal(at(' { "a" : [ ] } ', 1), 1);
  assert.equal(at('{"a":[1,2,3],"b":{"x":",,,"}}', 1), 2);
  assert.equal(at('{"a":[1,2,3],"b":{"x":",,,"}}', 2), 3);
  assert.equal(at('{"docs":[{},{},{"s":"\\",["}]}', 2), 3);
  assert.equal(at('[[],[[]],[1]]', 2), 1);
  assert.equal(at('"a,b"', 1), 0);
});

test('property: agrees with JSON.parse at depths 1..3', () => {
  fc.assert(
    fc.property(fc.jsonValue({ maxDepth: 4 }), fc.integer({ min: 1, max: 3 }), fc.boolean(), (value, depth, pretty) => {
      const text = JSON.stringify(value, null, pretty ? 1 : undefined);
      assert.equal(largestContainerAt(Buffer.from(text), depth), expected(JSON.parse(text), depth));
    }),
    { numRuns: 2000 },
  );
});

/** Parse through the spans, as `_bulk_docs` does. */
function parseSplit(text: string): unknown {
  const body = Buffer.from(text);
  const out: Record<string, unknown> = {};
  for (const [key, span] of objectMemberSpans(body)) {
    const slice = (s: readonly [number, number]) => JSON.parse(body.toString('utf8', s[0], s[1])) as unknown;
    out[key] = body[span[0]] === 0x5b ? arrayElementSpans(body, span).map(slice) : slice(span);
  }
  return out;
}

test('property: splitting an object body and parsing the pieces equals JSON.parse', () => {
  const bodies = fc.record({ docs: fc.array(fc.jsonValue({ maxDepth: 3 }), { maxLength: 6 }), other: fc.jsonValue({ maxDepth: 2 }) }, { requiredKeys: [] });
  fc.assert(
    fc.property(bodies, fc.boolean(), (value, pretty) => {
      const text = JSON.stringify(value, null, pretty ? 2 : undefined);
      assert.ok(startsWithObject(Buffer.from(text)));
      assert.deepEqual(parseSplit(text), JSON.parse(text));
    }),
    { numRuns: 1000 },
  );
});

test('malformed structure around the pieces is refused', () => {
  for (const text of ['{"docs":[1,]}', '{"a":1,}', '{"a" 1}', '{"a":1}x', '{"docs":[1 2]}', '{"docs":[{]}', '{', '{"a":', '{"docs":[', '{"a":"x}']) {
    assert.throws(() => parseSplit(text), Error, text);
  }
  assert.equal(startsWithObject(Buffer.from(' [1]')), false);
});
