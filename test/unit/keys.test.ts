import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import * as keys from '../../src/storage/keys';
import { compareRaw } from '../../src/shard/query/collate';

const text = fc.oneof(fc.string(), fc.fullUnicodeString(), fc.constantFrom('', '\u0000', 'a\u0000b', '\u0000\u0000', '\uffff'));
const wellFormed = text.filter((s) => !/\p{Cs}/u.test(s));
const copy = fc.integer({ min: 0, max: 0xfffffffe });

test('property: doc info keys round-trip and sort in code-point order', () => {
  fc.assert(
    fc.property(copy, wellFormed, wellFormed, (c, a, b) => {
      assert.equal(keys.decodeTextKey(keys.docInfoKey(c, a)), a);
      const byKey = Math.sign(Buffer.compare(keys.docInfoKey(c, a), keys.docInfoKey(c, b)));
      assert.equal(byKey, Math.sign(compareRaw(a, b)));
    }),
  );
});

test('property: seq keys round-trip and sort numerically', () => {
  const seq = fc.oneof(fc.nat(), fc.maxSafeNat());
  fc.assert(
    fc.property(copy, seq, seq, (c, a, b) => {
      assert.equal(keys.decodeSeqKey(keys.seqKey(c, a)), a);
      assert.equal(Math.sign(Buffer.compare(keys.seqKey(c, a), keys.seqKey(c, b))), Math.sign(a - b));
    }),
  );
});

test('property: escaped text round-trips, keeps order, and a prefix sorts first', () => {
  fc.assert(
    fc.property(wellFormed, wellFormed, (a, b) => {
      const ea = keys.escapeText(a);
      assert.equal(keys.unescapeText(ea, 0).text, a);
      assert.equal(keys.unescapeText(ea, 0).end, ea.length);
      assert.equal(Math.sign(Buffer.compare(ea, keys.escapeText(b))), Math.sign(Buffer.compare(Buffer.from(a), Buffer.from(b))));
    }),
  );
});

test('property: rev body keys round-trip and stay inside their document range', () => {
  fc.assert(
    fc.property(copy, wellFormed, wellFormed, fc.hexaString({ minLength: 1, maxLength: 32 }), (c, id, other, hash) => {
      const rev = `7-${hash}`;
      const key = keys.revBodyKey(c, id, rev);
      assert.deepEqual(keys.decodeRevBodyKey(key), { docId: id, rev });
      const range = keys.revBodyRange(c, id);
      assert.ok(Buffer.compare(key, range.gte!) >= 0 && Buffer.compare(key, range.lt!) < 0);
      if (other !== id) {
        const otherKey = keys.revBodyKey(c, other, rev);
        assert.ok(Buffer.compare(otherKey, range.gte!) < 0 || Buffer.compare(otherKey, range.lt!) >= 0, 'another doc leaks into the range');
      }
    }),
  );
});

test('property: a copy range holds all of its keys and none of the next copy', () => {
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 0xfffffffd }), wellFormed, (c, id) => {
      const range = keys.copyRange(c);
      for (const key of [keys.docInfoKey(c, id), keys.seqKey(c, 5), keys.metaKey(c, 'state'), keys.localKey(c, id)]) {
        assert.ok(Buffer.compare(key, range.gte!) >= 0 && Buffer.compare(key, range.lt!) < 0);
      }
      assert.ok(Buffer.compare(keys.docInfoKey(c + 1, id), range.lt!) >= 0);
    }),
  );
});
