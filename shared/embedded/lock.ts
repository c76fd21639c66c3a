import { closeSync, existsSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { StateDirectoryLockedError } from '../core/errors.js';

/**
 * One process per state directory. The lock file holds the owner's pid; a lock left by a
 * process that no longer exists (SIGKILL) is taken over, a live owner is refused.
 */
export class StateDirLock {
  private constructor(private readonly path: string) {}

  static acquire(dir: string): StateDirLock {
    const path = join(dir, 'LOCK');
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        const fd = openSync(path, 'wx');
        writeSync(fd, String(process.pid));
        closeSync(fd);
        return new StateDirLock(path);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
        const owner = StateDirLock.owner(dir);
        if (owner !== undefined && owner !== process.pid && isAlive(owner)) throw new StateDirectoryLockedError(dir, owner);
        rmSync(path, { force: true });
      }
    }
    throw new Error(`could not lock ${dir}`);
  }

  /** Pid of the process holding the lock, if any. */
  static owner(dir: string): number | undefined {
    const path = join(dir, 'LOCK');
    if (!existsSync(path)) return undefined;
    const pid = Number(readFileSync(path, 'utf8').trim());
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  }

  release(): void {
    rmSync(this.path, { force: true });
  }
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}
