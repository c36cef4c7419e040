import { appendSnapshot, History, historyOf, pointOf } from '../src/history';
import { gpu, HISTORY, MIG_GPU, snapshot } from './samples';

const GIB = 1024 ** 3;

describe('pointOf', () => {
  it('turns memory into a fraction of the total', () => {
    expect(pointOf([10, 30, 20 * GIB, 80 * GIB])).toEqual({ t: 10, util: 30, mem: 0.25 });
  });
  it('has no memory fraction without both numbers (or with a zero total)', () => {
    expect(pointOf([10, null, null, 80 * GIB]).mem).toBeNull();
    expect(pointOf([10, null, GIB, null]).mem).toBeNull();
    expect(pointOf([10, null, 0, 0]).mem).toBeNull();
  });
});

describe('historyOf', () => {
  it("keeps the server's points per GPU, oldest first", () => {
    const history = historyOf(HISTORY);
    expect([...history.keys()]).toEqual(['GPU-aaaa1111', 'MIG-bbbb2222']);
    expect(history.get('GPU-aaaa1111')).toEqual([
      { t: 1794999996.25, util: 30, mem: 0.125 },
      { t: 1794999998.25, util: null, mem: null }
    ]);
  });
});

describe('appendSnapshot', () => {
  it('adds one point per GPU', () => {
    const history: History = historyOf(HISTORY);
    appendSnapshot(history, snapshot({ gpus: [gpu(), MIG_GPU] }), 150);
    const points = history.get('GPU-aaaa1111')!;
    expect(points).toHaveLength(3);
    expect(points[2].t).toBe(1795000000.25);
    expect(points[2].util).toBe(37);
    expect(points[2].mem).toBeCloseTo(12.1 / 79.6);
    expect(history.get('MIG-bbbb2222')![1]).toEqual({
      t: 1795000000.25,
      util: null,
      mem: 1 / 9.75
    });
  });
  it('skips a sample it already has', () => {
    const history: History = new Map();
    appendSnapshot(history, snapshot(), 150);
    appendSnapshot(history, snapshot(), 150);
    appendSnapshot(history, snapshot({ timestamp: 1 }), 150);
    expect(history.get('GPU-aaaa1111')).toHaveLength(1);
  });
  it('keeps the newest points only', () => {
    const history: History = new Map();
    for (let t = 1; t <= 5; t++) {
      appendSnapshot(history, snapshot({ timestamp: t }), 3);
    }
    expect(history.get('GPU-aaaa1111')!.map(p => p.t)).toEqual([3, 4, 5]);
  });
  it('forgets GPUs the server no longer has', () => {
    const history = historyOf(HISTORY);
    appendSnapshot(history, snapshot({ gpus: [MIG_GPU] }), 150);
    expect([...history.keys()]).toEqual(['MIG-bbbb2222']);
  });
});
