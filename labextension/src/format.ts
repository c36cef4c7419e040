import { IGpu, ISnapshot } from './request';

const GIB = 1024 ** 3;

/** Bytes as GiB with one decimal ("12.1"); "?" when unknown. */
export function gib(bytes: number | null | undefined): string {
  if (bytes === null || bytes === undefined) {
    return '?';
  }
  const value = bytes / GIB;
  return value >= 100 ? value.toFixed(0) : value.toFixed(1);
}

/** "12.1/79.6 GiB" */
export function memoryText(gpu: IGpu): string {
  return `${gib(gpu.memory.used)}/${gib(gpu.memory.total)} GiB`;
}

/** The status bar's text: "GPU 37% · 12.1/79.6 GiB", "2 GPUs 40% · …" or "No GPU". */
export function statusText(snapshot: ISnapshot | null, error: string | null): string {
  if (!snapshot) {
    return error ? 'GPU ?' : 'GPU …';
  }
  const gpus = snapshot.gpus;
  if (!snapshot.available || gpus.length === 0) {
    return 'No GPU';
  }
  const label = gpus.length === 1 ? 'GPU' : `${gpus.length} GPUs`;
  const utils = gpus.filter(g => g.utilization).map(g => g.utilization!.gpu);
  const used = gpus.reduce((sum, g) => sum + (g.memory.used ?? 0), 0);
  const total = gpus.reduce((sum, g) => sum + (g.memory.total ?? 0), 0);
  const parts = [label];
  if (utils.length > 0) {
    parts.push(`${Math.round(utils.reduce((a, b) => a + b, 0) / utils.length)}%`);
  }
  const memory = `${gib(used)}/${gib(total)} GiB`;
  return `${parts.join(' ')} · ${memory}`;
}

/** The status bar's tooltip. */
export function statusTitle(snapshot: ISnapshot | null, error: string | null): string {
  if (error) {
    return `GPU status unavailable: ${error}`;
  }
  if (!snapshot) {
    return 'Asking the server about its GPUs…';
  }
  if (!snapshot.available) {
    return `This server has no GPU. ${snapshot.reason ?? ''}`.trim();
  }
  return snapshot.gpus.map(g => `${g.name} (${g.uuid}): ${memoryText(g)}`).join('\n');
}
