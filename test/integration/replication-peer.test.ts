/**
 * Divan's replicator against another implementation (issue 12): PouchDB Server 4.2 from
 * npm, both directions, with conflicts and attachments; the trees must match leaf by
 * leaf. Runs only where `npm run loadtest` installed the peer (loadtest/.peer): tests
 * never install from the network.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { ChildSet, startPeer, type ServerHandle } from '../../loadtest/servers';
import { request, startNode, TestNode } from '../helpers/node-process';

const peerDir = path.join(__dirname, '..', '..', '..', 'loadtest', '.peer');
const installed = existsSync(path.join(peerDir, 'node_modules', 'pouchdb-server', 'bin', 'pouchdb-server'));
const skip = installed ? false : `PouchDB Server not installed in ${peerDir}`;

let node: TestNode;
let peer: ServerHandle;
const children = new ChildSet();

before(async () => {
  if (!installed) return;
  node = await startNode();
  peer = await startPeer(peerDir, children, { socketsMax: 4, requestTimeoutMs: 30_000, startTimeoutMs: 60_000, signal: new AbortController().signal });
});
after(async () => {
  await node?.destroy();
  await children.stopAll();
});

function peerUrl(db: string): string {
  return `http://${peer.auth.username}:${peer.auth.password}@127.0.0.1:${peer.port}/${db}`;
}

async function peerRequest(method: string, p: string, body?: unknown) {
  return peer.client.request(method, p, body);
}

/** Leaves with their paths and attachment digests, per document, read with `open_revs=all`. */
async function leaves(get: (p: string) => Promise<{ status: number; body: unknown }>, db: string, ids: string[]): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const id of ids) {
    const r = await get(`/${db}/${encodeURIComponent(id)}?open_revs=all&revs=true`);
    assert.equal(r.status, 200, `${db}/${id}`);
    const rows = (r.body as { ok?: Record<string, any> }[]).filter((x) => x.ok); // eslint-disable-line @typescript-eslint/no-explicit-any
    out.set(id, rows.map(({ ok }) => JSON.stringify([ok!._rev, ok!._deleted === true, ok!._revisions, Object.entries(ok!._attachments ?? {}).map(([n, s]) => [n, (s as { digest: string }).digest])])).sort().join('|'));
  }
  return out;
}

const IDS = ['a1', 'a2', 'att', 'conflicted', 'gone'];

async function seedDivan(db: string): Promise<void> {
  assert.equal((await request(node, 'PUT', `/${db}`)).status, 201);
  for (const id of ['a1', 'a2']) assert.equal((await request(node, 'PUT', `/${db}/${id}`, { body: { id } })).status, 201);
  assert.equal((await request(node, 'PUT', `/${db}/att`, { body: { _attachments: { 'x.txt': { content_type: 'text/plain', data: Buffer.from('peer bytes').toString('base64') } } } })).status, 201);
  const conflict = await request(node, 'POST', `/${db}/_bulk_docs`, {
    body: { new_edits: false, docs: [{ _id: 'conflicted', _rev: '2-aaa', _revisions: { start: 2, ids: ['aaa', 'root'] } }, { _id: 'conflicted', _rev: '2-bbb', _revisions: { start: 2, ids: ['bbb', 'root'] } }] },
  });
  assert.equal(conflict.status, 201);
  const gone = await request(node, 'PUT', `/${db}/gone`, { body: {} });
  assert.equal((await request(node, 'DELETE', `/${db}/gone?rev=${gone.body.rev}`)).status, 200);
}

test('Divan pushes to PouchDB Server and pulls back from it, trees equal leaf by leaf', { skip }, async () => {
  await seedDivan('to-peer');
  const push = await request(node, 'POST', '/_replicate', { body: { source: 'to-peer', target: peerUrl('from-divan'), create_target: true } });
  assert.equal(push.status, 200, push.text);
  const divanGet = (p: string) => request(node, 'GET', p);
  const peerGet = (p: string) => peerRequest('GET', p);
  assert.deepEqual(await leaves(peerGet, 'from-divan', IDS), await leaves(divanGet, 'to-peer', IDS));
  // A write on the peer, pulled into a fresh Divan database along with everything else.
  assert.equal((await peerRequest('PUT', '/from-divan/peer-doc', { by: 'peer' })).status, 201);
  const pull = await request(node, 'POST', '/_replicate', { body: { source: peerUrl('from-divan'), target: 'back-from-peer', create_target: true } });
  assert.equal(pull.status, 200, pull.text);
  assert.deepEqual(await leaves(divanGet, 'back-from-peer', [...IDS, 'peer-doc']), await leaves(peerGet, 'from-divan', [...IDS, 'peer-doc']));
  assert.equal((await request(node, 'GET', '/back-from-peer/att/x.txt')).text, 'peer bytes');
});
