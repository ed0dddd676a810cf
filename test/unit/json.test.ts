/**
 * The JSON parser of src/json.ts: what CouchDB refuses is refused (invalid UTF-8,
 * lone surrogates, overflowing numbers), integers beyond 2^53 round-trip exactly,
 * and fast-check properties (seed printed as a diagnostic; rerun with JSON_SEED=<seed>).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { BadRequestError } from '../../src/errors';
import { ExactInteger, parseJsonBytes, parseJsonText, parseStoredJson, stringifyJson } from '../../src/json';

const seed = Number(process.env['JSON_SEED'] ?? Date.now() % 2_147_483_647);

function refused(fn: () => unknown, reason = 'invalid UTF-8 JSON'): void {
  assert.throws(fn, (err: unknown) => err instanceof BadRequestError && err.kind === 'bad_request' && err.reason === reason);
}

const roundTrip = (text: string, exact = true) => stringifyJson(parseJsonBytes(Buffer.from(text, 'utf8'), { depthMax: 64, exact }));

test('invalid UTF-8 bytes are refused: 0xFF, overlong forms, encoded surrogates, truncated sequences', () => {
  for (const bytes of [[0xff], [0xc0, 0xaf], [0xe0, 0x80, 0xaf], [0xed, 0xa0, 0x80], [0xed, 0xbf, 0xbf], [0xe2, 0x82], [0xf4, 0x90, 0x80, 0x80]]) {
    const body = Buffer.concat([Buffer.from('{"a":"'), Buffer.from(bytes), Buffer.from('"}')]);
    refused(() => parseJsonBytes(body, { depthMax: 64 }));
  }
  // Valid multi-byte text passes unchanged.
  assert.equal(roundTrip('{"a":"café ☃ 😀"}'), '{"a":"café ☃ 😀"}');
});

test('escaped lone surrogates are refused in values and keys; pairs and escaped backslashes pass', () => {
  for (const text of ['{"a":"\\ud800"}', '{"a":"\\uDC00x"}', '{"\\udbff":1}', '["\\ude00\\ud83d"]', '{"a":{"b":["x\\ud800"]}}']) {
    refused(() => parseJsonBytes(Buffer.from(text), { depthMax: 64 }));
    refused(() => parseJsonText(text));
  }
  assert.equal(roundTrip('{"a":"\\ud83d\\ude00"}'), '{"a":"😀"}');
  assert.equal(roundTrip('{"a":"\\\\ud800"}'), '{"a":"\\\\ud800"}');
  // A query parameter that decoded to a lone surrogate is refused too.
  refused(() => parseJsonText('"\ud800"'));
});

test('numbers that overflow a double are refused; underflow and big exponents that fit pass', () => {
  for (const text of ['{"x":1e400}', '{"x":-1e400}', '[2e308]', '1' + '0'.repeat(400) + '.5', '{"x":1.5E+999}']) {
    refused(() => parseJsonBytes(Buffer.from(text), { depthMax: 64, exact: true }));
    refused(() => parseJsonText(text));
  }
  assert.equal(roundTrip('[1e308,-1.7976931348623157e308,1e-400]'), '[1e+308,-1.7976931348623157e+308,0]');
});

test('integers beyond 2^53 are kept exact in exact mode, nearest double otherwise', () => {
  const text = '{"a":9007199254740993,"b":-9007199254740993,"c":[123456789012345678901234567890],"d":{"e":18446744073709551616}}';
  assert.equal(roundTrip(text), text);
  assert.equal(roundTrip(text, false), JSON.stringify(JSON.parse(text)));
  const parsed = parseJsonBytes(Buffer.from(text), { exact: true }) as Record<string, unknown>;
  assert.ok(parsed.a instanceof ExactInteger);
  // An integer too long for a double at all is still a number, not an overflow, when exact.
  const huge = '[' + '9'.repeat(400) + ']';
  assert.equal(roundTrip(huge), huge);
  // Outside stringifyJson an exact integer serialises as its nearest double, never a marker.
  assert.equal(JSON.stringify(parsed.a), '9007199254740992');
  // Stored text keeps them too.
  assert.equal(stringifyJson(parseStoredJson(text)), text);
  // Safe integers and 16-digit strings are untouched.
  assert.equal(roundTrip('{"id":"1234567890123456789","n":9007199254740991}'), '{"id":"1234567890123456789","n":9007199254740991}');
});

test('__proto__ stays an own property, as with JSON.parse', () => {
  const text = '{"__proto__":{"polluted":9007199254740993},"n":12345678901234567890}';
  const value = parseJsonBytes(Buffer.from(text), { exact: true }) as Record<string, unknown>;
  assert.equal(Object.getPrototypeOf(value), Object.prototype);
  assert.equal(({} as Record<string, unknown>).polluted, undefined);
  assert.equal(stringifyJson(value), text);
});

test('nesting deeper than the limit is refused before parsing', () => {
  refused(() => parseJsonBytes(Buffer.from('['.repeat(65) + ']'.repeat(65)), { depthMax: 64 }), 'JSON nesting deeper than 64 levels');
  assert.equal(roundTrip('['.repeat(64) + ']'.repeat(64)), '['.repeat(64) + ']'.repeat(64));
  // Depth counting ignores brackets inside strings, with escaped quotes.
  assert.equal(roundTrip('{"a":"[[[[\\"{{{{"}'), '{"a":"[[[[\\"{{{{"}');
});

test('the careful parser handles long strings with escapes (no regex backtracking, no stack overflow)', () => {
  const long = 'a\\"\\\\b'.repeat(500_000) + 'z'.repeat(4_000_000);
  const text = `{"n":9007199254740993,"s":"${long}","t":"\\\\"}`;
  assert.equal(roundTrip(text), text);
});

test('syntax errors are refused', () => {
  for (const text of ['', '{', '{"a":}', 'NaN', '[1,]', '{"a":1}x', "{'a':1}"]) refused(() => parseJsonBytes(Buffer.from(text), { depthMax: 64 }));
});

test('property: any JSON value round-trips unchanged (both parse paths)', (t) => {
  t.diagnostic(`seed ${seed}`);
  fc.assert(
    fc.property(fc.jsonValue({ maxDepth: 6 }), (value) => {
      const text = JSON.stringify(value);
      assert.equal(roundTrip(text), text);
      assert.equal(roundTrip(text, false), text);
      assert.equal(stringifyJson(parseStoredJson(text)), text);
    }),
    { seed, numRuns: 500 },
  );
});

test('property: big integers anywhere in a value round-trip exactly', (t) => {
  t.diagnostic(`seed ${seed}`);
  class Big {
    constructor(readonly digits: string) {}
  }
  const big = fc.bigInt({ min: -(10n ** 40n), max: 10n ** 40n }).map((n) => new Big(n.toString()));
  const leaf = fc.oneof(fc.string(), fc.double({ noNaN: true, noDefaultInfinity: true }), fc.integer(), fc.boolean(), fc.constant(null), big);
  const tree = fc.letrec((tie) => ({
    value: fc.oneof({ depthSize: 'small' }, leaf, fc.array(tie('value'), { maxLength: 4 }), fc.dictionary(fc.string(), tie('value'), { maxKeys: 4 })),
  })).value;
  // Written as a client would: big integers as bare digits, the rest as JSON.stringify does.
  const render = (v: unknown): string => {
    if (v instanceof Big) return v.digits;
    if (Array.isArray(v)) return '[' + v.map(render).join(',') + ']';
    if (v !== null && typeof v === 'object') return '{' + Object.entries(v).map(([k, x]) => JSON.stringify(k) + ':' + render(x)).join(',') + '}';
    return JSON.stringify(v);
  };
  fc.assert(
    fc.property(tree, (value) => {
      const text = render(value);
      assert.equal(roundTrip(text), text);
      assert.equal(stringifyJson(parseStoredJson(text)), text);
    }),
    { seed, numRuns: 300 },
  );
});
