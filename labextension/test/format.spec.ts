import {
  idleNotice,
  minutesText,
  clockText,
  deadlineNotice,
  deadlineOf,
  gib,
  leftText,
  memoryText,
  noGpuText,
  statusText,
  statusTitle,
  statusWithDeadline
} from '../src/format';
import { gpu, HIDDEN_GPU, MIG_GPU, NO_GPU, snapshot } from './samples';

const GIB = 1024 ** 3;
const MINUTE = 60 * 1000;

describe('gib', () => {
  it.each([
    [null, '?'],
    [undefined, '?'],
    [0, '0.0'],
    [GIB / 2, '0.5'],
    [12.14 * GIB, '12.1'],
    [99.94 * GIB, '99.9'],
    [100 * GIB, '100'],
    [141.4 * GIB, '141']
  ])('%p bytes -> %p', (bytes, text) => {
    expect(gib(bytes)).toBe(text);
  });
});

describe('memoryText', () => {
  it('shows used and total', () => {
    expect(memoryText(gpu())).toBe('12.1/79.6 GiB');
  });
  it('marks what NVML could not read', () => {
    expect(memoryText(gpu({ memory: { used: null, total: 80 * GIB, reserved: null } }))).toBe(
      '?/80.0 GiB'
    );
  });
});

describe('statusText', () => {
  it('says it is asking, or that asking failed, before the first snapshot', () => {
    expect(statusText(null, null)).toBe('GPU …');
    expect(statusText(null, 'Bad Gateway')).toBe('GPU ?');
  });
  it('says No GPU when there is none', () => {
    expect(statusText(NO_GPU, null)).toBe('No GPU');
    expect(statusText(snapshot({ gpus: [] }), null)).toBe('No GPU');
  });
  it('says a GPU the hub allocated is not visible', () => {
    expect(statusText(HIDDEN_GPU, null)).toBe('GPU not visible');
    expect(statusTitle(HIDDEN_GPU, null)).toBe(
      `This server holds a GPU it cannot see. ${HIDDEN_GPU.reason}`
    );
  });
  it('shows one GPU', () => {
    expect(statusText(snapshot(), null)).toBe('GPU 37% · 12.1/79.6 GiB');
  });
  it('averages utilisation over the GPUs that report it and sums memory', () => {
    const two = snapshot({ gpus: [gpu({ utilization: { gpu: 80, memory: 1 } }), gpu(), MIG_GPU] });
    expect(statusText(two, null)).toBe('3 GPUs 59% · 25.2/169 GiB');
  });
  it('leaves out utilisation when no GPU reports it', () => {
    expect(statusText(snapshot({ gpus: [MIG_GPU] }), null)).toBe('GPU · 1.0/9.8 GiB');
  });
  it('says a lost GPU is lost and counts only the others', () => {
    const lost = gpu({
      lost: true,
      utilization: null,
      memory: { used: null, total: 80 * GIB, reserved: null }
    });
    expect(statusText(snapshot({ gpus: [lost] }), null)).toBe('GPU lost');
    expect(statusText(snapshot({ gpus: [lost, lost] }), null)).toBe('2 GPUs lost');
    expect(statusText(snapshot({ gpus: [gpu(), lost] }), null)).toBe(
      '2 GPUs 37% · 12.1/79.6 GiB · 1 lost'
    );
    expect(statusTitle(snapshot({ gpus: [lost] }), null)).toMatch(/: lost \(fallen off the bus\)$/);
  });
});

describe('statusTitle', () => {
  it('puts the error first', () => {
    expect(statusTitle(snapshot(), 'Bad Gateway')).toBe('GPU status unavailable: Bad Gateway');
  });
  it('says it is asking', () => {
    expect(statusTitle(null, null)).toBe('Asking the server about its GPUs…');
  });
  it("gives the hub's reason for no GPU", () => {
    expect(statusTitle(NO_GPU, null)).toBe(
      'This server has no GPU. No GPU was requested for this server.'
    );
    expect(statusTitle(snapshot({ available: false, reason: null, gpus: [] }), null)).toBe(
      'This server has no GPU.'
    );
  });
  it('lists each GPU with its UUID and memory', () => {
    expect(statusTitle(snapshot({ gpus: [gpu(), MIG_GPU] }), null)).toBe(
      'NVIDIA H100 80GB HBM3 (GPU-aaaa1111): 12.1/79.6 GiB\n' +
        'NVIDIA H100 80GB HBM3 MIG 1g.10gb (MIG-bbbb2222): 1.0/9.8 GiB'
    );
  });
});

describe('deadlineOf', () => {
  const at = '2026-11-25T14:32:00+00:00';
  const atMs = Date.parse(at);
  const withDeadline = snapshot({ deadline: { at, reason: 'GPU servers stop after 8 h.' } });

  it('is null without a snapshot, a deadline or a readable time', () => {
    expect(deadlineOf(null, atMs, MINUTE)).toBeNull();
    expect(deadlineOf(snapshot(), atMs, MINUTE)).toBeNull();
    expect(deadlineOf(snapshot({ deadline: { at: 'soon', reason: null } }), 0, MINUTE)).toBeNull();
  });
  it('is near within the lead time, not before', () => {
    const early = deadlineOf(withDeadline, atMs - 15 * MINUTE - 1, 15 * MINUTE)!;
    expect(early).toEqual({
      at: new Date(atMs),
      reason: 'GPU servers stop after 8 h.',
      near: false,
      left: 15 * MINUTE + 1
    });
    expect(deadlineOf(withDeadline, atMs - 15 * MINUTE, 15 * MINUTE)!.near).toBe(true);
  });
  it('has no time left once past', () => {
    const past = deadlineOf(withDeadline, atMs + 5 * MINUTE, 15 * MINUTE)!;
    expect(past.left).toBe(0);
    expect(past.near).toBe(true);
  });
});

describe('leftText', () => {
  it.each([
    [-1, 'now'],
    [0, 'now'],
    [1, 'in 1 min'],
    [MINUTE, 'in 1 min'],
    [MINUTE + 1, 'in 2 min'],
    [59 * MINUTE, 'in 59 min'],
    [60 * MINUTE, 'in 1 h'],
    [125 * MINUTE, 'in 2 h 5 min']
  ])('%p ms -> %p', (ms, text) => {
    expect(leftText(ms)).toBe(text);
  });
});

describe('clockText', () => {
  const now = new Date(2026, 10, 25, 9, 5);
  it('gives the time of day today', () => {
    expect(clockText(new Date(2026, 10, 25, 14, 32), now)).toBe('14:32');
    expect(clockText(new Date(2026, 10, 25, 0, 7), now)).toBe('00:07');
  });
  it('adds the weekday on another day', () => {
    const text = clockText(new Date(2026, 10, 26, 8, 0), now);
    expect(text).toMatch(/^\S+ 08:00$/);
    expect(text).not.toBe(clockText(new Date(2026, 10, 27, 8, 0), now));
  });
});

describe('statusWithDeadline', () => {
  const at = new Date(2026, 10, 25, 14, 32);
  const base = { at, reason: null, left: 10 * MINUTE };
  it('adds the stop time only when the deadline is near', () => {
    const text = statusWithDeadline(snapshot(), null, { ...base, near: true });
    expect(text).toBe(`GPU 37% · 12.1/79.6 GiB · stops ${clockText(at)}`);
    expect(statusWithDeadline(snapshot(), null, { ...base, near: false })).toBe(
      'GPU 37% · 12.1/79.6 GiB'
    );
    expect(statusWithDeadline(snapshot(), null, null)).toBe('GPU 37% · 12.1/79.6 GiB');
  });
});

describe('deadlineNotice', () => {
  const now = new Date(2026, 10, 25, 14, 0);
  const at = new Date(2026, 10, 25, 14, 32);
  it('names the cause up to its first colon and says the workspace is kept', () => {
    const notice = deadlineNotice(
      {
        at,
        reason: 'The GPU-hour budget is spent: 40.0 of 40 GPU-hours this month.',
        near: true,
        left: 32 * MINUTE
      },
      now
    );
    expect(notice).toBe(
      'This server stops at 14:32 (in 32 min) – The GPU-hour budget is spent. ' +
        'Your workspace is kept; save your work before then.'
    );
    expect(notice.length).toBeLessThanOrEqual(140);
  });
  it('drops the trailing full stop of a short reason, and has no dash without one', () => {
    const short = { at, near: true, left: 5 * MINUTE };
    expect(deadlineNotice({ ...short, reason: 'GPU servers stop after 8 h.' }, now)).toBe(
      'This server stops at 14:32 (in 5 min) – GPU servers stop after 8 h. ' +
        'Your workspace is kept; save your work before then.'
    );
    expect(deadlineNotice({ ...short, reason: null }, now)).toBe(
      'This server stops at 14:32 (in 5 min). Your workspace is kept; save your work before then.'
    );
  });
});

describe('noGpuText', () => {
  it('tells a server without a GPU how to get one', () => {
    const text = noGpuText(NO_GPU);
    expect(text.title).toBe('No GPU');
    expect(text.reason).toBe('No GPU was requested for this server.');
    expect(text.hint).toContain('start it again with a GPU');
  });
  it('outside a hub, says only that code runs on the CPU', () => {
    const text = noGpuText(snapshot({ available: false, gpu_limit: null, gpus: [], reason: 'x' }));
    expect(text.hint).toBe('Code in this server runs on the CPU.');
  });
  it('says an allocated GPU is not visible, and why, not to start again with a GPU', () => {
    const text = noGpuText(HIDDEN_GPU);
    expect(text.title).toBe('GPU allocated, not visible');
    expect(text.reason).toBe(HIDDEN_GPU.reason);
    expect(text.hint).toContain('counts this GPU as this server');
    expect(text.hint).toContain("will not help until the hub's admin fixes this");
    expect(text.hint).not.toContain('start it again with a GPU');
  });
  it('counts several hidden GPUs', () => {
    const two = snapshot({
      ...HIDDEN_GPU,
      gpu_limit: 2,
      allocated_not_visible: { count: 2, uuids: [] },
      reason: null
    });
    expect(noGpuText(two).title).toBe('2 GPUs allocated, not visible');
    expect(noGpuText(two).reason).toBe('The hub allocated GPUs to this server.');
    expect(noGpuText(two).hint).toContain('counts these GPUs');
  });
});

describe('idleNotice', () => {
  const idle = {
    since: 1000,
    stops_at: 1000 + 30 * 60,
    timeout_s: 1800,
    warning_s: 300,
    threshold: 5,
    near: true
  };
  it('says how long the GPU was idle and when the server stops', () => {
    expect(idleNotice(idle, (1000 + 25 * 60) * 1000)).toBe(
      'No GPU use for 25 min: this server stops in 5 min unless the GPU is used; ' +
        'your workspace is kept.'
    );
  });
  it('says "now" once the time is past', () => {
    expect(idleNotice(idle, (1000 + 31 * 60) * 1000)).toContain('this server stops now unless');
  });
  it('writes hours and minutes', () => {
    expect(minutesText(65 * 60000)).toBe('1 h 5 min');
    expect(minutesText(1000)).toBe('1 min');
  });
});
