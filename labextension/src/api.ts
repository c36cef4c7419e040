/**
 * The JSON of the gpuspawner server extension's routes. Generated from
 * gpuspawner/lab/schema/api.schema.json by scripts/api-types.mjs: do not edit,
 * change the schema and run `npm run build:api`.
 */

export type IBytes = number | null;
/**
 * A GPU reading's field, as named in unsupported, whole_gpu_fields and errors.
 */
export type IGpuField =
  'memory' | 'utilization' | 'temperature' | 'power' | 'power_limit' | 'processes';
/**
 * [time (s since the epoch), utilisation %, memory used (bytes), memory total (bytes)]
 *
 * @minItems 4
 */
export type IHistoryPoint = [number, number | null, IBytes, IBytes];

/**
 * The JSON the GPU status server extension serves (gpuspawner/lab/handlers.py). The root is no payload itself: its properties map each JSON route, relative to <base_url>/gpuspawner/, to the schema of the route's response. The Python tests validate real responses against it; the JupyterLab extension's types (labextension/src/api.ts) are generated from it.
 */
export interface IRoutes {
  'api/gpus': ISnapshot;
  'api/history': IHistory;
  'api/verify-code': IVerifyCode;
}
/**
 * GET gpuspawner/api/gpus: the sampler's latest snapshot of this server's GPUs.
 */
export interface ISnapshot {
  /**
   * When the sample was taken (seconds since the epoch).
   */
  timestamp: number;
  /**
   * Whether this server has at least one GPU to show.
   */
  available: boolean;
  /**
   * Why there is no GPU (a sentence for the user); null when there is one.
   */
  reason: string | null;
  /**
   * The NVIDIA driver; null when NVML was not asked or could not start.
   */
  driver: IDriver | null;
  /**
   * How many GPUs the hub gave this server (GPU_LIMIT); null when it did not say.
   */
  gpu_limit: number | null;
  /**
   * GPUs the hub allocated to this server (they count as its own) that the driver here does not show; null when none is missing.
   */
  allocated_not_visible: IAllocatedGpus | null;
  /**
   * When the hub stops this GPU server at the latest, and why; null: no limit.
   */
  deadline: IHubDeadline | null;
  /**
   * The user's GPU-hour budget as the hub found it when this server started; null: no budget.
   */
  budget: IHubBudget | null;
  /**
   * The path of the user's usage page on the hub (GPUSPAWNER_USAGE_URL); null: none.
   */
  usage_url: string | null;
  /**
   * The hub's GPU-idle cull ahead while every GPU of this server is idle; null: in use, or no idle culling.
   */
  idle: IGpuIdle | null;
  /**
   * This server's GPUs (or MIG instances), in NVML's order.
   */
  gpus: IGpu[];
  sampler: ISamplerStats;
}
export interface IDriver {
  /**
   * The driver version, "580.82.07".
   */
  version: string;
  /**
   * The newest CUDA version the driver supports, "13.0".
   */
  cuda: string;
}
export interface IAllocatedGpus {
  /**
   * How many GPUs the hub allocated (GPU_LIMIT).
   */
  count: number;
  /**
   * Their UUIDs (GPUSPAWNER_GPU_UUIDS); empty where the engine picks the devices.
   */
  uuids: string[];
}
export interface IHubDeadline {
  /**
   * ISO-8601 with a UTC offset, to the second.
   */
  at: string;
  /**
   * The hub's sentence saying why, or null.
   */
  reason: string | null;
}
export interface IHubBudget {
  /**
   * GPU-hours per period.
   */
  hours: number;
  /**
   * GPU-hours used this period when the server started.
   */
  used_hours: number;
  /**
   * GPU-hours left then.
   */
  left_hours: number;
  /**
   * "day", "week" or "month".
   */
  period: string;
  /**
   * When the period ends (ISO-8601, UTC), or null.
   */
  resets_at: string | null;
  /**
   * When the hub read the usage (ISO-8601, UTC), or null.
   */
  read_at: string | null;
  /**
   * "7.5 of 10 GPU-hours left this week (at start)".
   */
  text: string;
}
export interface IGpuIdle {
  /**
   * Since when the GPUs are idle (seconds since the epoch).
   */
  since: number;
  /**
   * When the hub's idle cull stops this server (seconds since the epoch).
   */
  stops_at: number;
  /**
   * Seconds of idle GPUs the hub allows.
   */
  timeout_s: number;
  /**
   * Seconds before the stop at which to warn (0: never).
   */
  warning_s: number;
  /**
   * Utilisation (percent) below which a GPU is idle.
   */
  threshold: number;
  /**
   * Whether the warning time has come.
   */
  near: boolean;
}
/**
 * One GPU (or MIG instance) in the snapshot. A reading NVML could not give is null.
 */
export interface IGpu {
  /**
   * "GPU-…", or "MIG-…" for a MIG instance.
   */
  uuid: string;
  /**
   * The product name, "NVIDIA H100 80GB HBM3".
   */
  name: string;
  /**
   * NVML's index (of the parent GPU for a MIG instance).
   */
  index: number;
  /**
   * The whole GPU of a MIG instance; null for a whole GPU.
   */
  mig_parent_uuid: string | null;
  memory: IGpuMemory;
  /**
   * Percent over NVML's last sample period; null where unsupported (MIG) or failed.
   */
  utilization: IGpuUtilization | null;
  /**
   * Degrees Celsius.
   */
  temperature_c: number | null;
  /**
   * Watts drawn.
   */
  power_w: number | null;
  /**
   * The enforced power limit in watts.
   */
  power_limit_w: number | null;
  /**
   * Fields read from the whole GPU rather than the MIG instance.
   */
  whole_gpu_fields: IGpuField[];
  /**
   * This user's processes on the GPU (only where the server shares the host's PID namespace).
   */
  processes: IGpuProcess[];
  other_processes: IOtherProcesses;
  /**
   * A sentence about the processes not shown, or null.
   */
  process_note: string | null;
  /**
   * Fields this device does not support (not an error).
   */
  unsupported: IGpuField[];
  /**
   * Field (or "gpu" for the whole reading) -> why reading it failed.
   */
  errors: {
    [k: string]: string;
  };
  /**
   * The GPU fell off the bus (NVML GPU_IS_LOST): nothing else was read.
   */
  lost: boolean;
}
/**
 * Bytes.
 */
export interface IGpuMemory {
  used: IBytes;
  total: IBytes;
  reserved: IBytes;
}
export interface IGpuUtilization {
  gpu: number;
  memory: number | null;
}
export interface IGpuProcess {
  pid: number;
  /**
   * The command name (comm), or null when unreadable.
   */
  name: string | null;
  used_memory: IBytes;
}
/**
 * Everyone else's processes on the GPU: counted, never named.
 */
export interface IOtherProcesses {
  count: number;
  used_memory: IBytes;
}
/**
 * What sampling costs this server.
 */
export interface ISamplerStats {
  /**
   * Milliseconds the last sample took.
   */
  cost_ms: number;
  /**
   * Samples taken since the server started.
   */
  samples: number;
  /**
   * Seconds between two samples.
   */
  interval: number;
}
/**
 * GET gpuspawner/api/history: recent samples per GPU, oldest first, for the charts.
 */
export interface IHistory {
  /**
   * Seconds between two samples.
   */
  interval: number;
  /**
   * GPU UUID -> its samples.
   */
  gpus: {
    [k: string]: IHistoryPoint[];
  };
}
/**
 * GET gpuspawner/api/verify-code: the "Verify CUDA" cell's source.
 */
export interface IVerifyCode {
  code: string;
}
