// Responses of the server extension as the front end receives them, typed by the generated
// types (src/api.ts) and validated against the schema they come from (api.spec.ts).
import { IGpu, IHistory, ISnapshot } from '../src/api';

const GIB = 1024 ** 3;

export function gpu(overrides: Partial<IGpu> = {}): IGpu {
  return {
    uuid: 'GPU-aaaa1111',
    name: 'NVIDIA H100 80GB HBM3',
    index: 0,
    mig_parent_uuid: null,
    memory: { used: Math.round(12.1 * GIB), total: Math.round(79.6 * GIB), reserved: GIB / 2 },
    utilization: { gpu: 37, memory: 12 },
    temperature_c: 45,
    power_w: 312.4,
    power_limit_w: 700,
    whole_gpu_fields: [],
    processes: [],
    other_processes: { count: 0, used_memory: null },
    process_note: null,
    unsupported: [],
    errors: {},
    lost: false,
    ...overrides
  };
}

/** A MIG instance: utilisation unsupported, temperature and power from its parent. */
export const MIG_GPU = gpu({
  uuid: 'MIG-bbbb2222',
  name: 'NVIDIA H100 80GB HBM3 MIG 1g.10gb',
  mig_parent_uuid: 'GPU-aaaa1111',
  memory: { used: 1 * GIB, total: 9.75 * GIB, reserved: null },
  utilization: null,
  whole_gpu_fields: ['temperature', 'power'],
  other_processes: { count: 2, used_memory: null },
  process_note:
    'NVML reports host process IDs, which cannot be matched to processes inside this ' +
    'container, so they are counted but not named.',
  unsupported: ['utilization']
});

export function snapshot(overrides: Partial<ISnapshot> = {}): ISnapshot {
  return {
    timestamp: 1795000000.25,
    available: true,
    reason: null,
    driver: { version: '580.82.07', cuda: '13.0' },
    gpu_limit: 1,
    allocated_not_visible: null,
    deadline: null,
    budget: null,
    usage_url: null,
    idle: null,
    gpus: [gpu()],
    sampler: { cost_ms: 1.234, samples: 3, interval: 2 },
    ...overrides
  };
}

export const NO_GPU = snapshot({
  available: false,
  reason: 'No GPU was requested for this server.',
  driver: null,
  gpu_limit: 0,
  gpus: []
});

/** A server the hub gave a GPU that the container cannot see (no NVIDIA runtime). */
export const HIDDEN_GPU = snapshot({
  available: false,
  reason:
    'The hub allocated GPU-aaaa1111 to this server, but it is not visible here: no NVIDIA ' +
    'driver was found here (libnvidia-ml.so.1 is missing).',
  driver: null,
  gpu_limit: 1,
  allocated_not_visible: { count: 1, uuids: ['GPU-aaaa1111'] },
  gpus: []
});

export const HISTORY: IHistory = {
  interval: 2,
  gpus: {
    'GPU-aaaa1111': [
      [1794999996.25, 30, 10 * GIB, 80 * GIB],
      [1794999998.25, null, null, 80 * GIB]
    ],
    'MIG-bbbb2222': [[1794999998.25, null, GIB, null]]
  }
};
