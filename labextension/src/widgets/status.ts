import { Widget } from '@lumino/widgets';

import { clockText, statusText, statusTitle, statusWithDeadline } from '../format';
import { gpuIcon } from '../icon';
import { GpuModel } from '../model';
import { h } from './dom';

/** The status bar item: "GPU 37% · 12.1/79.6 GiB" or "No GPU"; a click opens the panel. */
export class GpuStatusItem extends Widget {
  constructor(model: GpuModel, onActivate: () => void) {
    super();
    this._model = model;
    this.addClass('jp-gpuspawner-status');
    this.node.setAttribute('role', 'button');
    this.node.setAttribute('tabindex', '0');
    const icon = h('span', 'jp-gpuspawner-status-icon');
    gpuIcon.element({ container: icon, stylesheet: 'statusBar' });
    this._text = h('span', 'jp-gpuspawner-status-text');
    this.node.append(icon, this._text);
    this.node.addEventListener('click', onActivate);
    this.node.addEventListener('keydown', event => {
      if (event.key === 'Enter' || event.key === ' ') {
        event.preventDefault();
        onActivate();
      }
    });
    model.changed.connect(this._update, this);
    this._update();
  }

  private _update(): void {
    const { snapshot, error } = this._model;
    const deadline = this._model.deadline();
    const text = statusWithDeadline(snapshot, error, deadline);
    this._text.textContent = text;
    let title = statusTitle(snapshot, error);
    if (deadline) {
      title +=
        `\nThis server stops at ${clockText(deadline.at)}. ${deadline.reason ?? ''}`.trimEnd();
    }
    this.node.title = title;
    this.node.setAttribute('aria-label', `${text}. Show the GPU panel.`);
    this.toggleClass('jp-mod-nogpu', statusText(snapshot, error) === 'No GPU');
    const lost = snapshot?.gpus.some(g => g.lost) ?? false;
    const hidden = Boolean(snapshot?.allocated_not_visible);
    this.toggleClass('jp-mod-warning', Boolean(deadline?.near) || lost || hidden);
  }

  private _model: GpuModel;
  private _text: HTMLElement;
}
