import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

/** One GPU (or MIG instance) in the server's snapshot. */
export interface IGpu {
  uuid: string;
  name: string;
  index: number;
  mig_parent_uuid: string | null;
  memory: { used: number | null; total: number | null; reserved: number | null };
  utilization: { gpu: number; memory: number | null } | null;
  temperature_c: number | null;
  power_w: number | null;
  power_limit_w: number | null;
  /** Fields read from the whole GPU rather than the MIG instance. */
  whole_gpu_fields: string[];
  processes: { pid: number; name: string | null; used_memory: number | null }[];
  other_processes: { count: number; used_memory: number | null };
  process_note: string | null;
  unsupported: string[];
  errors: { [field: string]: string };
  lost: boolean;
}

/** GET gpuspawner/api/gpus */
export interface ISnapshot {
  timestamp: number;
  available: boolean;
  reason: string | null;
  driver: { version: string; cuda: string } | null;
  gpu_limit: number | null;
  /** When the hub stops this GPU server at the latest (ISO-8601 UTC), and why; null: no limit. */
  deadline: { at: string; reason: string | null } | null;
  gpus: IGpu[];
  sampler: { cost_ms: number; samples: number; interval: number };
}

/** GET gpuspawner/api/history: per GPU, [time (s), utilisation %, memory used, memory total]. */
export interface IHistory {
  interval: number;
  gpus: { [uuid: string]: [number, number | null, number | null, number | null][] };
}

/**
 * Call the gpuspawner server extension under the server's base URL
 * (so it works behind the hub's /user/<name>/ prefix).
 */
export async function requestAPI<T>(
  endPoint: string,
  init: RequestInit = {}
): Promise<T> {
  const settings = ServerConnection.makeSettings();
  const url = URLExt.join(settings.baseUrl, 'gpuspawner', endPoint);
  let response: Response;
  try {
    response = await ServerConnection.makeRequest(url, init, settings);
  } catch (error) {
    throw new ServerConnection.NetworkError(error as TypeError);
  }
  const text = await response.text();
  let data: any = text;
  if (text.length > 0) {
    try {
      data = JSON.parse(text);
    } catch {
      // not JSON: keep the text
    }
  }
  if (!response.ok) {
    throw new ServerConnection.ResponseError(response, data?.message ?? text);
  }
  return data as T;
}
