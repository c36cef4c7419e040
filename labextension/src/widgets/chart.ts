import { IPoint } from '../history';

const SVG_NS = 'http://www.w3.org/2000/svg';
/** The chart's SVG coordinate box (it is stretched to the card's width). */
export const WIDTH = 300;
export const HEIGHT = 60;

/**
 * An SVG polyline's ``points`` for ``value`` (a fraction, clamped to 0..1) of each point:
 * time ``t0`` at the left edge, ``t0 + span`` at the right (everything at the right edge when
 * ``span`` is 0), 1 at the top; points without a value are left out.
 */
export function polyline(
  points: IPoint[],
  value: (p: IPoint) => number | null,
  t0: number,
  span: number
): string {
  const coords: string[] = [];
  for (const point of points) {
    const v = value(point);
    if (v === null) {
      continue;
    }
    const x = span > 0 ? ((point.t - t0) / span) * WIDTH : WIDTH;
    const y = HEIGHT - Math.max(0, Math.min(1, v)) * HEIGHT;
    coords.push(`${x.toFixed(1)},${y.toFixed(1)}`);
  }
  return coords.join(' ');
}

/**
 * A small chart of utilisation and memory (both 0-100 %) over the recent
 * samples, as an SVG with role="img" and a text alternative.
 */
export function historyChart(points: IPoint[], label: string): HTMLElement {
  const figure = document.createElement('figure');
  figure.className = 'jp-gpuspawner-chart';
  const svg = document.createElementNS(SVG_NS, 'svg');
  svg.setAttribute('viewBox', `0 0 ${WIDTH} ${HEIGHT}`);
  svg.setAttribute('preserveAspectRatio', 'none');
  svg.setAttribute('role', 'img');
  const first = points[0];
  const last = points[points.length - 1];
  const span = first && last ? last.t - first.t : 0;
  const minutes = Math.max(1, Math.round(span / 60));
  svg.setAttribute('aria-label', `${label}: utilisation and memory over the last ${minutes} min`);
  for (const y of [0.25, 0.5, 0.75]) {
    const grid = document.createElementNS(SVG_NS, 'line');
    grid.setAttribute('x1', '0');
    grid.setAttribute('x2', String(WIDTH));
    grid.setAttribute('y1', String(HEIGHT * y));
    grid.setAttribute('y2', String(HEIGHT * y));
    grid.setAttribute('class', 'jp-gpuspawner-chart-grid');
    svg.appendChild(grid);
  }
  if (first) {
    const series: [string, (p: IPoint) => number | null][] = [
      ['jp-gpuspawner-chart-mem', p => p.mem],
      ['jp-gpuspawner-chart-util', p => (p.util === null ? null : p.util / 100)]
    ];
    for (const [className, value] of series) {
      const line = document.createElementNS(SVG_NS, 'polyline');
      line.setAttribute('points', polyline(points, value, first.t, span));
      line.setAttribute('class', className);
      line.setAttribute('vector-effect', 'non-scaling-stroke');
      svg.appendChild(line);
    }
  }
  figure.appendChild(svg);
  const caption = document.createElement('figcaption');
  const util = document.createElement('span');
  util.className = 'jp-gpuspawner-legend-util';
  util.textContent = 'utilisation';
  const mem = document.createElement('span');
  mem.className = 'jp-gpuspawner-legend-mem';
  mem.textContent = 'memory';
  const spanText = document.createElement('span');
  spanText.className = 'jp-gpuspawner-legend-span';
  spanText.textContent = span > 0 ? `last ${minutes} min` : 'collecting…';
  caption.append(util, mem, spanText);
  figure.appendChild(caption);
  return figure;
}
