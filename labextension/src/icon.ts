import { LabIcon } from '@jupyterlab/ui-components';

const GPU_SVG = `<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16" viewBox="0 0 24 24">
  <g class="jp-icon3" fill="#616161">
    <path d="M2 6h18a2 2 0 0 1 2 2v8a2 2 0 0 1-2 2h-1v2h-2v-2H7v2H5v-2H4v3H2V6zm2 2v8h16V8H4z"/>
    <path d="M7 10h3v4H7zM12 10h6v1.5h-6zM12 12.5h6V14h-6z"/>
  </g>
</svg>`;

const CHECK_SVG = `<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16" viewBox="0 0 24 24">
  <g class="jp-icon3" fill="#616161">
    <path d="M2 6h14v2H4v8h12v2H2V6z"/>
    <path d="M22.3 9.7 15 17l-4.3-4.3 1.4-1.4 2.9 2.9 5.9-5.9z"/>
  </g>
</svg>`;

export const gpuIcon = new LabIcon({ name: 'gpuspawner:gpu', svgstr: GPU_SVG });
export const verifyIcon = new LabIcon({ name: 'gpuspawner:verify', svgstr: CHECK_SVG });
