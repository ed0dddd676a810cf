import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { crc32, rangeIndexOf, ranges } from '../../src/ring/ranges';

test('crc32 matches the IEEE check value', () => {
  assert.equal(crc32('123456789'), 0xcbf43926);
  assert.equal(crc32(''), 0);
});

test('property: ranges cover the hash space with no gap or overlap', () => {
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 1024 }), (q) => {
      const list = ranges(q);
      assert.equal(list.length, q);
      assert.equal(list[0]!.begin, 0);
      assert.equal(list[q - 1]!.end, 0xffffffff);
      for (let i = 1; i < q; i++) assert.equal(list[i]!.begin, list[i - 1]!.end + 1);
    }),
  );
});

test('property: a doc id lands in the range whose bounds hold its hash', () => {
  fc.assert(
    fc.property(fc.string(), fc.integer({ min: 1, max: 64 }), (id, q) => {
      const index = rangeIndexOf(id, q);
      const range = ranges(q)[index]!;
      const hash = crc32(id);
      assert.ok(hash >= range.begin && hash <= range.end);
    }),
  );
});
