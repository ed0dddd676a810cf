/**
 * Structured logs: one JSON line per event on stdout (pino), each with the node's
 * name; callers add `component` and, for requests, `reqId`. Log state changes and
 * failures, not every success.
 */
import pino from 'pino';
import type { Logger } from '../api/http/context';

export function createLogger(options: { nodeName: string; level: string }): Logger & pino.Logger {
  return pino({
    level: options.level,
    // The name may only be known once the cluster layer opened: `setBindings` adds it then.
    base: options.nodeName ? { node: options.nodeName } : {},
    messageKey: 'msg',
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
  });
}
