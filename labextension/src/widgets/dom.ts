/** Create an element with a class and text; text goes through textContent, never HTML. */
export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  className?: string,
  text?: string
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  if (className) {
    node.className = className;
  }
  if (text !== undefined) {
    node.textContent = text;
  }
  return node;
}

/** A horizontal bar with role="meter" and a text value beside it. */
export function meter(label: string, fraction: number | null, valueText: string): HTMLElement {
  const row = h('div', 'jp-gpuspawner-meter');
  row.appendChild(h('span', 'jp-gpuspawner-meter-label', label));
  const track = h('div', 'jp-gpuspawner-meter-track');
  track.setAttribute('role', 'meter');
  track.setAttribute('aria-label', label);
  track.setAttribute('aria-valuemin', '0');
  track.setAttribute('aria-valuemax', '100');
  track.setAttribute('aria-valuetext', valueText);
  const fill = h('div', 'jp-gpuspawner-meter-fill');
  if (fraction !== null) {
    const percent = Math.max(0, Math.min(100, fraction * 100));
    track.setAttribute('aria-valuenow', percent.toFixed(0));
    fill.style.width = `${percent}%`;
    if (percent >= 90) {
      fill.classList.add('jp-mod-high');
    }
  } else {
    track.classList.add('jp-mod-unknown');
  }
  track.appendChild(fill);
  row.appendChild(track);
  row.appendChild(h('span', 'jp-gpuspawner-meter-value', valueText));
  return row;
}
