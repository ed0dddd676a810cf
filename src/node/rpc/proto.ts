/**
 * proto/divan.proto loaded with protobufjs, and turned into grpc-js service
 * definitions (path, streaming flags, encode/decode per method), so the server and
 * clients share one schema without generated code.
 */
import path from 'node:path';
import { existsSync } from 'node:fs';
import * as protobuf from 'protobufjs';
import type { ServiceDefinition } from '@grpc/grpc-js';

function findProto(): string {
  // dist/src/node/rpc → project root; src/node/rpc (ts-node) → project root.
  for (const up of ['../../../../proto/divan.proto', '../../../proto/divan.proto']) {
    const candidate = path.join(__dirname, up);
    if (existsSync(candidate)) return candidate;
  }
  throw new Error('proto/divan.proto not found next to the build');
}

export const root = protobuf.loadSync(findProto());

export type Message = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

const conversion: protobuf.IConversionOptions = { longs: Number, bytes: Buffer as never, defaults: true, arrays: true, oneofs: true };

/**
 * grpc-js service definition for `divan.v1.<name>`, as one side uses it. For calls with
 * a single request message (all but Multiplex) the request travels as raw bytes
 * between grpc-js and our code: the client encodes it itself (its digest goes into
 * the auth token) and the server decodes it only after checking that digest (see
 * rpc/auth.ts). `side` absent: both ends encode and decode (tools, attackers in tests).
 */
export function serviceDefinition(name: string, side?: 'client' | 'server'): ServiceDefinition {
  const service = root.lookupService(`divan.v1.${name}`);
  const definition: Record<string, unknown> = {};
  for (const method of service.methodsArray) {
    method.resolve();
    const requestType = method.resolvedRequestType!;
    const responseType = method.resolvedResponseType!;
    const rawRequest = side !== undefined && !method.requestStream;
    definition[method.name] = {
      path: `/divan.v1.${name}/${method.name}`,
      requestStream: !!method.requestStream,
      responseStream: !!method.responseStream,
      requestSerialize:
        rawRequest && side === 'client'
          ? (value: Uint8Array) => Buffer.from(value.buffer, value.byteOffset, value.byteLength)
          : (value: Message) => Buffer.from(requestType.encode(requestType.fromObject(value)).finish()),
      requestDeserialize: rawRequest && side === 'server' ? (bytes: Buffer) => bytes : (bytes: Buffer) => requestType.toObject(requestType.decode(bytes), conversion),
      responseSerialize: (value: Message) => Buffer.from(responseType.encode(responseType.fromObject(value)).finish()),
      responseDeserialize: (bytes: Buffer) => responseType.toObject(responseType.decode(bytes), conversion),
      originalName: method.name,
    };
  }
  return definition as ServiceDefinition;
}

/** Encoder and decoder of a method's request message (for the raw-request definitions above). */
export function requestCodec(path: string): { encode(value: Message): Uint8Array; decode(bytes: Uint8Array): Message } {
  const match = /^\/divan\.v1\.(\w+)\/(\w+)$/.exec(path);
  const m = match ? root.lookupService(`divan.v1.${match[1]}`).methods[match[2]!] : undefined;
  if (!m) throw new Error(`no method ${path}`);
  m.resolve();
  const type = m.resolvedRequestType!;
  return { encode: (value) => type.encode(type.fromObject(value)).finish(), decode: (bytes) => type.toObject(type.decode(bytes), conversion) };
}

export interface MethodCodec {
  encodeRequest(value: Message): Uint8Array;
  decodeRequest(bytes: Uint8Array): Message;
  encodeResponse(value: Message): Uint8Array;
  decodeResponse(bytes: Uint8Array): Message;
}

/** Encoders of one unary method's request and reply (for frames on the Multiplex stream). */
export function methodCodec(service: string, method: string): MethodCodec {
  const m = root.lookupService(`divan.v1.${service}`).methods[method];
  if (!m) throw new Error(`no method ${service}.${method}`);
  m.resolve();
  const req = m.resolvedRequestType!;
  const res = m.resolvedResponseType!;
  return {
    encodeRequest: (value) => req.encode(req.fromObject(value)).finish(),
    decodeRequest: (bytes) => req.toObject(req.decode(bytes), conversion),
    encodeResponse: (value) => res.encode(res.fromObject(value)).finish(),
    decodeResponse: (bytes) => res.toObject(res.decode(bytes), conversion),
  };
}
