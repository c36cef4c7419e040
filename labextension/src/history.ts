import { IHistory, IHistoryPoint, ISnapshot } from './api';

/** One point of a GPU's history. */
export interface IPoint {
  /** Seconds since the epoch. */
  t: number;
  /** Utilisation in percent, or null where unsupported (MIG). */
  util: number | null;
  /** Memory used as a fraction of the total, or null. */
  mem: number | null;
}

/** Recent points per GPU UUID, oldest first. */
export type History = Map<string, IPoint[]>;

function fraction(used: number | null, total: number | null): number | null {
  return used !== null && total ? used / total : null;
}

/** A point of the server's api/history: [time, utilisation, memory used, memory total]. */
export function pointOf([t, util, used, total]: IHistoryPoint): IPoint {
  return { t, util, mem: fraction(used, total) };
}

/** The history the server kept (api/history), per GPU. */
export function historyOf(history: IHistory): History {
  const result: History = new Map();
  for (const [uuid, points] of Object.entries(history.gpus)) {
    result.set(uuid, points.map(pointOf));
  }
  return result;
}

/**
 * Add a snapshot's sample to ``history``, keeping at most ``length`` points per GPU;
 * a sample not newer than a GPU's last point is skipped, and GPUs no longer in the
 * snapshot are dropped.
 */
export function appendSnapshot(history: History, snapshot: ISnapshot, length: number): void {
  const seen = new Set<string>();
  for (const gpu of snapshot.gpus) {
    seen.add(gpu.uuid);
    const points = history.get(gpu.uuid) ?? [];
    const last = points[points.length - 1];
    if (last && last.t >= snapshot.timestamp) {
      continue;
    }
    points.push({
      t: snapshot.timestamp,
      util: gpu.utilization ? gpu.utilization.gpu : null,
      mem: fraction(gpu.memory.used, gpu.memory.total)
    });
    if (points.length > length) {
      points.splice(0, points.length - length);
    }
    history.set(gpu.uuid, points);
  }
  for (const uuid of [...history.keys()]) {
    if (!seen.has(uuid)) {
      history.delete(uuid);
    }
  }
}
