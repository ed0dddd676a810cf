/**
 * Reading multipart answers in tests, with the server's own parser.
 */
import assert from 'node:assert/strict';
import { parseContentType, parseMultipart } from '../../src/api/http/multipart';
import type { RawReply } from './node-process';

/** Splits a multipart/mixed open_revs answer into per-revision documents and their attachment parts. */
export function readOpenRevsMultipart(reply: RawReply): { doc: Record<string, any> /* eslint-disable-line @typescript-eslint/no-explicit-any */; parts: { headers: Record<string, string>; body: Buffer }[] }[] {
  const outer = parseContentType(String(reply.headers['content-type']));
  assert.equal(outer.type, 'multipart/mixed');
  return parseMultipart(reply.body, outer.params['boundary']!, { partsMax: 100 }).map((part) => {
    const type = parseContentType(part.headers['content-type'] ?? 'application/json');
    if (type.type === 'application/json') return { doc: JSON.parse(part.body.toString()), parts: [] };
    assert.equal(type.type, 'multipart/related');
    const [json, ...parts] = parseMultipart(part.body, type.params['boundary']!, { partsMax: 100 });
    return { doc: JSON.parse(json!.body.toString()), parts };
  });
}
