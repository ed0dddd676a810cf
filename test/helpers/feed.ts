/**
 * A continuous `_changes` feed read as a client would: line by line, collecting the
 * ids of the rows it sees, with Basic auth as the test admin.
 */
import * as http from 'node:http';
import { ADMIN } from './node-process';

export interface ContinuousFeed {
  /** Ids of every row seen so far. */
  readonly ids: Set<string>;
  /** Resolves with the response status once headers arrive. */
  readonly status: Promise<number>;
  ended(): boolean;
  /** Stop reading (the server then blocks on a full socket) and go on again. */
  pause(): void;
  resume(): void;
  close(): void;
}

/** `query` is appended after `feed=continuous`, e.g. `heartbeat=1000`. */
export function continuousFeed(port: number, db: string, query = ''): ContinuousFeed {
  const ids = new Set<string>();
  let ended = false;
  let buffered = '';
  let response: http.IncomingMessage | undefined;
  const req = http.get(`http://127.0.0.1:${port}/${db}/_changes?feed=continuous${query ? '&' + query : ''}`, {
    headers: { authorization: 'Basic ' + Buffer.from(`${ADMIN.user}:${ADMIN.password}`).toString('base64') },
  });
  const status = new Promise<number>((resolve, reject) => {
    req.on('response', (res) => {
      response = res;
      resolve(res.statusCode ?? 0);
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        buffered += chunk;
        for (let nl = buffered.indexOf('\n'); nl >= 0; nl = buffered.indexOf('\n')) {
          const line = buffered.slice(0, nl).trim();
          buffered = buffered.slice(nl + 1);
          if (line) ids.add(JSON.parse(line).id);
        }
      });
      res.on('end', () => (ended = true));
    });
    req.on('error', (err) => {
      ended = true;
      reject(err);
    });
  });
  status.catch(() => undefined); // a feed closed by the test is not a failure
  return {
    ids,
    status,
    ended: () => ended,
    pause: () => response?.pause(),
    resume: () => response?.resume(),
    close: () => req.destroy(),
  };
}
