/**
 * Which member to probe next: a shuffled round-robin (SWIM's "round-robin probe target
 * selection"), so every member is probed once per round of N − 1 periods and a
 * failure is noticed within two rounds, unlike uniform random picks that can miss a
 * member for long.
 *
 * A round is a shuffle of the probeable members; members that stop being probeable
 * are skipped when their turn comes; members that appear mid-round are inserted at a
 * random place in what is left of it.
 */
export class ProbeOrder {
  private round: string[] = [];
  private index = 0;

  constructor(private readonly random: () => number) {}

  /** The next member to probe, or undefined when none is probeable. */
  next(candidates: () => string[], isProbeable: (name: string) => boolean): string | undefined {
    // At most the rest of this round plus one fresh round: bounded even if nothing qualifies.
    let reshuffled = false;
    for (;;) {
      if (this.index >= this.round.length) {
        if (reshuffled) return undefined;
        this.round = shuffle(candidates(), this.random);
        this.index = 0;
        reshuffled = true;
        if (this.round.length === 0) return undefined;
      }
      const name = this.round[this.index++]!;
      if (isProbeable(name)) return name;
    }
  }

  /** A member became probeable: give it a turn in the current round. */
  add(name: string): void {
    if (this.round.indexOf(name, this.index) !== -1) return;
    const at = this.index + Math.floor(this.random() * (this.round.length - this.index + 1));
    this.round.splice(at, 0, name);
  }
}

/** Fisher–Yates, in place on a copy. */
export function shuffle<T>(items: readonly T[], random: () => number): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

/** Up to k distinct items chosen uniformly. */
export function pickRandom<T>(items: readonly T[], k: number, random: () => number): T[] {
  return shuffle(items, random).slice(0, Math.max(0, k));
}
