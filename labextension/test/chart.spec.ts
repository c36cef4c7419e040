import { IPoint } from '../src/history';
import { HEIGHT, polyline, WIDTH } from '../src/widgets/chart';

const points: IPoint[] = [
  { t: 100, util: 0, mem: 0.5 },
  { t: 130, util: 50, mem: null },
  { t: 160, util: 100, mem: 1.5 }
];

describe('polyline', () => {
  it('spreads the points over the width and puts 1 at the top', () => {
    const util = polyline(points, p => (p.util === null ? null : p.util / 100), 100, 60);
    expect(util).toBe(`0.0,${HEIGHT}.0 ${WIDTH / 2}.0,${HEIGHT / 2}.0 ${WIDTH}.0,0.0`);
  });
  it('leaves out points without a value and clamps the rest', () => {
    expect(polyline(points, p => p.mem, 100, 60)).toBe(`0.0,${HEIGHT / 2}.0 ${WIDTH}.0,0.0`);
    expect(polyline([{ t: 1, util: null, mem: -0.2 }], p => p.mem, 1, 0)).toBe(
      `${WIDTH}.0,${HEIGHT}.0`
    );
  });
  it('draws nothing without values', () => {
    expect(polyline([], p => p.mem, 0, 0)).toBe('');
    expect(polyline(points, () => null, 100, 60)).toBe('');
  });
});
