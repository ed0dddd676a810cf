/**
 * A bounded gate in front of PBKDF2: at most `concurrencyMax` hashes run at once and
 * at most `queueMax` wait; beyond that a check is refused at once with 503.
 *
 * Why a gate at all: `crypto.pbkdf2` runs on libuv's thread pool (4 threads by
 * default), and so do RocksDB's reads and writes. Twenty clients sending wrong
 * passwords would otherwise keep every pool thread busy with 30–40 ms hashes, and
 * every document read would queue behind them. Capping the hashes below the pool size
 * leaves threads for the store.
 *
 * Why 503 and not 401 when the queue is full: the password was not checked, so
 * saying it is wrong would be a lie that makes a correct client give up (and would
 * count towards its lockout); 503 tells it to retry. Admins already known (cached
 * credentials, cookie sessions) never reach the gate, so an attack that fills it only
 * delays first logins.
 */
import { UnavailableError } from '../../../errors';
import { pbkdf2Async } from './password';

export class HashPool {
  private running = 0;
  private readonly waiting: (() => void)[] = [];

  constructor(
    private readonly concurrencyMax: number,
    private readonly queueMax: number,
  ) {}

  /** Checks running and waiting now (for tests and metrics). */
  get load(): { running: number; waiting: number } {
    return { running: this.running, waiting: this.waiting.length };
  }

  async derive(password: string, salt: string, iterations: number, keyBytes: number, digest = 'sha256'): Promise<Buffer> {
    if (this.running < this.concurrencyMax) {
      this.running++;
    } else {
      if (this.waiting.length >= this.queueMax) {
        throw new UnavailableError('Too many password checks in progress; retry shortly.', 'service_unavailable', 1);
      }
      // The slot is handed over by the job that finishes (running stays the same).
      await new Promise<void>((resolve) => this.waiting.push(resolve));
    }
    try {
      return await pbkdf2Async(password, salt, iterations, keyBytes, digest);
    } finally {
      const next = this.waiting.shift();
      if (next) next();
      else this.running--;
    }
  }
}
