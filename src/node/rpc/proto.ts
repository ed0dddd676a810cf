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

/** grpc-js service definition for `divan.v1.<name>`. */
export function serviceDefinition(name: string): ServiceDefinition {
  const service = root.lookupService(`divan.v1.${name}`);
  const definition: Record<string, unknown> = {};
  for (const method of service.methodsArray) {
    method.resolve();
    const requestType = method.resolvedRequestType!;
    const responseType = method.resolvedResponseType!;
    definition[method.name] = {
      path: `/divan.v1.${name}/${method.name}`,
      requestStream: !!method.requestStream,
      responseStream: !!method.responseStream,
      requestSerialize: (value: Message) => Buffer.from(requestType.encode(requestType.fromObject(value)).finish()),
      requestDeserialize: (bytes: Buffer) => requestType.toObject(requestType.decode(bytes), conversion),
      responseSerialize: (value: Message) => Buffer.from(responseType.encode(responseType.fromObject(value)).finish()),
      responseDeserialize: (bytes: Buffer) => responseType.toObject(responseType.decode(bytes), conversion),
      originalName: method.name,
    };
  }
  return definition as ServiceDefinition;
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
