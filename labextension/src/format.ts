import { IGpu, IGpuIdle, ISnapshot } from './api';

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

/** The hub's deadline for this server, and whether it is within the warning lead time. */
export interface IDeadline {
  at: Date;
  reason: string | null;
  /** Within the lead time (or past): warn. */
  near: boolean;
  /** Milliseconds left (0 when past). */
  left: number;
}

/** The snapshot's deadline seen at ``now``, warning ``leadMs`` before it; null when none or unreadable. */
export function deadlineOf(
  snapshot: ISnapshot | null,
  now: number,
  leadMs: number
): IDeadline | null {
  const deadline = snapshot?.deadline;
  if (!deadline) {
    return null;
  }
  const at = new Date(deadline.at);
  if (isNaN(at.getTime())) {
    return null;
  }
  const left = Math.max(at.getTime() - now, 0);
  return { at, reason: deadline.reason, near: left <= leadMs, left };
}

function pad(value: number): string {
  return String(value).padStart(2, '0');
}

/** Local time of day, "14:32"; with the weekday ("Mon 14:32") when not today. */
export function clockText(at: Date, now: Date = new Date()): string {
  const time = `${pad(at.getHours())}:${pad(at.getMinutes())}`;
  if (at.toDateString() === now.toDateString()) {
    return time;
  }
  return `${at.toLocaleDateString(undefined, { weekday: 'short' })} ${time}`;
}

/** "in 12 min", "in 2 h 5 min", "now". */
export function leftText(ms: number): string {
  const minutes = Math.ceil(ms / 60000);
  if (minutes <= 0) {
    return 'now';
  }
  if (minutes < 60) {
    return `in ${minutes} min`;
  }
  const rest = minutes % 60;
  return `in ${Math.floor(minutes / 60)} h${rest ? ` ${rest} min` : ''}`;
}

/**
 * The notification shown once when a deadline's lead time begins. Toasts cut messages at
 * 140 characters: it names the cause only (the reason up to its first colon); the panel
 * shows the full reason.
 */
export function deadlineNotice(deadline: IDeadline, now: Date = new Date()): string {
  const cause = deadline.reason ? deadline.reason.split(':')[0].replace(/\.$/, '') : '';
  return (
    `This server stops at ${clockText(deadline.at, now)} (${leftText(deadline.left)})` +
    `${cause ? ` – ${cause}` : ''}. Your workspace is kept; save your work before then.`
  );
}

/** The status bar's text with " · stops 14:32" when the deadline is near. */
export function statusWithDeadline(
  snapshot: ISnapshot | null,
  error: string | null,
  deadline: IDeadline | null
): string {
  const text = statusText(snapshot, error);
  return deadline?.near ? `${text} · stops ${clockText(deadline.at)}` : text;
}

/** The status bar's text: "GPU 37% · 12.1/79.6 GiB", "2 GPUs 40% · …" or "No GPU". */
export function statusText(snapshot: ISnapshot | null, error: string | null): string {
  if (!snapshot) {
    return error ? 'GPU ?' : 'GPU …';
  }
  const gpus = snapshot.gpus;
  if (!snapshot.available || gpus.length === 0) {
    return snapshot.allocated_not_visible ? 'GPU not visible' : 'No GPU';
  }
  const label = gpus.length === 1 ? 'GPU' : `${gpus.length} GPUs`;
  const working = gpus.filter(g => !g.lost);
  if (working.length === 0) {
    return `${label} lost`;
  }
  const utils = working.filter(g => g.utilization).map(g => g.utilization!.gpu);
  const used = working.reduce((sum, g) => sum + (g.memory.used ?? 0), 0);
  const total = working.reduce((sum, g) => sum + (g.memory.total ?? 0), 0);
  const parts = [label];
  if (utils.length > 0) {
    parts.push(`${Math.round(utils.reduce((a, b) => a + b, 0) / utils.length)}%`);
  }
  const memory = `${gib(used)}/${gib(total)} GiB`;
  const lost = gpus.length - working.length;
  return `${parts.join(' ')} · ${memory}${lost > 0 ? ` · ${lost} lost` : ''}`;
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
    const what = snapshot.allocated_not_visible
      ? 'This server holds a GPU it cannot see.'
      : 'This server has no GPU.';
    return `${what} ${snapshot.reason ?? ''}`.trim();
  }
  return snapshot.gpus
    .map(g => `${g.name} (${g.uuid}): ${g.lost ? 'lost (fallen off the bus)' : memoryText(g)}`)
    .join('\n');
}

/** What the panel says when it has no GPU card to show: a title, why, and what to do. */
export interface INoGpuText {
  title: string;
  reason: string;
  hint: string;
}

/**
 * "No GPU" (none was given: start again with one) or, for a server the hub allocated GPUs to
 * that the driver here does not show, that they are allocated but not visible, and why: the
 * GPUs still count as this server's, and starting it again on the same engine cannot help.
 */
export function noGpuText(snapshot: ISnapshot): INoGpuText {
  const hidden = snapshot.allocated_not_visible;
  if (hidden) {
    const one = hidden.count === 1;
    return {
      title: one ? 'GPU allocated, not visible' : `${hidden.count} GPUs allocated, not visible`,
      reason: snapshot.reason ?? `The hub allocated ${one ? 'a GPU' : 'GPUs'} to this server.`,
      hint:
        `The hub counts ${one ? 'this GPU' : 'these GPUs'} as this server's (and against ` +
        'any GPU-hour budget) while it runs, but code here runs on the CPU. Starting the ' +
        "server again will not help until the hub's admin fixes this; stop it from the hub " +
        'control panel when you do not need it.'
    };
  }
  let hint = 'Code in this server runs on the CPU.';
  if (snapshot.gpu_limit !== null) {
    hint +=
      ' To use a GPU, stop this server from the hub control panel and start it again with a GPU.';
  }
  return { title: 'No GPU', reason: snapshot.reason ?? 'This server has no GPU.', hint };
}

/** Minutes as words: "25 min", "1 h 5 min" (at least 1 min). */
export function minutesText(ms: number): string {
  const minutes = Math.max(Math.round(ms / 60000), 1);
  if (minutes < 60) {
    return `${minutes} min`;
  }
  const rest = minutes % 60;
  return `${Math.floor(minutes / 60)} h${rest ? ` ${rest} min` : ''}`;
}

/**
 * The warning before the hub's GPU-idle cull: "No GPU use for 25 min: this server stops in
 * 5 min unless the GPU is used; your workspace is kept."
 */
export function idleNotice(idle: IGpuIdle, now: number = Date.now()): string {
  const idleFor = minutesText(now - idle.since * 1000);
  const left = idle.stops_at * 1000 - now;
  const when = left > 0 ? `stops in ${minutesText(left)}` : 'stops now';
  return (
    `No GPU use for ${idleFor}: this server ${when} unless the GPU is used; ` +
    'your workspace is kept.'
  );
}
