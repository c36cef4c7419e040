import { Message } from '@lumino/messaging';
import { Widget } from '@lumino/widgets';

import { clockText, gib, IDeadline, leftText, memoryText, noGpuText } from '../format';
import { gpuIcon } from '../icon';
import { GpuModel } from '../model';
import { IGpu, ISnapshot } from '../api';
import { historyChart } from './chart';
import { h, meter } from './dom';

/** The left-area panel: a card per GPU of this server, or why it has none. */
export class GpuPanel extends Widget {
  constructor(model: GpuModel, onVerify: () => void) {
    super();
    this._model = model;
    this.id = 'gpuspawner-panel';
    this.title.icon = gpuIcon;
    this.title.caption = 'GPUs of this server';
    this.addClass('jp-gpuspawner-panel');
    this.node.setAttribute('role', 'region');
    this.node.setAttribute('aria-label', 'GPU status');

    const header = h('header', 'jp-gpuspawner-header');
    header.appendChild(h('h2', 'jp-gpuspawner-title', 'GPUs'));
    const verify = h('button', 'jp-mod-styled jp-mod-accept jp-gpuspawner-verify', 'Verify CUDA');
    verify.title = 'Insert a cell that checks PyTorch, CUDA and every GPU, and run it';
    verify.addEventListener('click', onVerify);
    header.appendChild(verify);
    this._driver = h('p', 'jp-gpuspawner-driver');
    this._body = h('div', 'jp-gpuspawner-body');
    this.node.append(header, this._driver, this._body);
    model.changed.connect(this._render, this);
    this._render();
  }

  protected onAfterShow(msg: Message): void {
    super.onAfterShow(msg);
    void this._model.refresh();
  }

  private _render(): void {
    const { snapshot, error } = this._model;
    this._body.replaceChildren();
    if (error) {
      const box = h('div', 'jp-gpuspawner-error');
      box.setAttribute('role', 'alert');
      box.textContent = `Cannot read GPU status from the server: ${error}`;
      this._body.appendChild(box);
    }
    if (!snapshot) {
      if (!error) {
        this._body.appendChild(h('p', 'jp-gpuspawner-muted', 'Asking the server…'));
      }
      this._driver.textContent = '';
      return;
    }
    this._driver.textContent = snapshot.driver
      ? `NVIDIA driver ${snapshot.driver.version} · CUDA ${snapshot.driver.cuda}`
      : '';
    const deadline = this._model.deadline();
    if (deadline) {
      this._body.appendChild(this._deadline(deadline));
    }
    if (snapshot.budget || snapshot.usage_url) {
      this._body.appendChild(this._usage(snapshot));
    }
    if (!snapshot.available || snapshot.gpus.length === 0) {
      this._body.appendChild(this._noGpu(snapshot));
      return;
    }
    for (const gpu of snapshot.gpus) {
      this._body.appendChild(this._card(gpu));
    }
  }

  private _deadline(deadline: IDeadline): HTMLElement {
    const box = h('div', 'jp-gpuspawner-deadline');
    box.setAttribute('role', deadline.near ? 'alert' : 'note');
    box.setAttribute('aria-label', 'Server stop time');
    box.classList.toggle('jp-mod-warning', deadline.near);
    box.appendChild(
      h(
        'h3',
        'jp-gpuspawner-deadline-title',
        `This server stops at ${clockText(deadline.at)} (${leftText(deadline.left)})`
      )
    );
    if (deadline.reason) {
      box.appendChild(h('p', '', deadline.reason));
    }
    box.appendChild(
      h(
        'p',
        'jp-gpuspawner-muted',
        'The hub then stops it and gives its GPUs back; your workspace is kept. ' +
          'Save your notebooks and checkpoints before then.'
      )
    );
    return box;
  }

  private _usage(snapshot: ISnapshot): HTMLElement {
    const box = h('div', 'jp-gpuspawner-usage');
    box.setAttribute('role', 'note');
    box.setAttribute('aria-label', 'GPU-hour budget');
    if (snapshot.budget) {
      box.appendChild(h('p', 'jp-gpuspawner-usage-line', snapshot.budget.text));
    }
    if (snapshot.usage_url) {
      const link = h('a', 'jp-gpuspawner-usage-link', 'My GPU usage');
      link.href = snapshot.usage_url;
      link.target = '_blank';
      link.rel = 'noopener';
      box.appendChild(link);
    }
    return box;
  }

  private _noGpu(snapshot: ISnapshot): HTMLElement {
    const text = noGpuText(snapshot);
    const box = h('div', 'jp-gpuspawner-nogpu');
    box.setAttribute('role', 'status');
    box.classList.toggle('jp-mod-warning', snapshot.allocated_not_visible !== null);
    box.appendChild(h('h3', 'jp-gpuspawner-nogpu-title', text.title));
    box.appendChild(h('p', '', text.reason));
    box.appendChild(h('p', 'jp-gpuspawner-muted', text.hint));
    return box;
  }

  private _card(gpu: IGpu): HTMLElement {
    const card = h('section', 'jp-gpuspawner-card');
    const label = !gpu.mig_parent_uuid
      ? `GPU ${gpu.index}: ${gpu.name}`
      : gpu.name.includes('MIG')
        ? gpu.name
        : `MIG ${gpu.name}`;
    card.setAttribute('aria-label', label);
    card.appendChild(h('h3', 'jp-gpuspawner-card-title', gpu.lost ? `${label} – lost` : label));
    card.appendChild(h('div', 'jp-gpuspawner-uuid', gpu.uuid));
    if (gpu.lost) {
      // nothing can be read from it: its history until then, and what happened
      card.classList.add('jp-mod-lost');
      card.appendChild(historyChart(this._model.history(gpu.uuid), label));
      card.appendChild(this._errors(gpu));
      return card;
    }

    const util = gpu.utilization;
    card.appendChild(
      meter(
        'Utilisation',
        util ? util.gpu / 100 : null,
        util ? `${util.gpu}%` : gpu.mig_parent_uuid ? 'n/a on MIG' : 'n/a'
      )
    );
    const { used, total } = gpu.memory;
    card.appendChild(
      meter('Memory', used !== null && total ? used / total : null, memoryText(gpu))
    );

    const facts = h('dl', 'jp-gpuspawner-facts');
    const whole = gpu.whole_gpu_fields.length > 0 ? ' (whole GPU)' : '';
    const power =
      gpu.power_w === null
        ? 'n/a'
        : `${gpu.power_w.toFixed(0)}${gpu.power_limit_w ? ` / ${gpu.power_limit_w.toFixed(0)}` : ''} W`;
    const temperature = gpu.temperature_c === null ? 'n/a' : `${gpu.temperature_c} °C`;
    for (const [term, value] of [
      ['Temperature', temperature + (gpu.temperature_c === null ? '' : whole)],
      ['Power', power + (gpu.power_w === null ? '' : whole)]
    ]) {
      facts.append(h('dt', '', term), h('dd', '', value));
    }
    card.appendChild(facts);

    card.appendChild(historyChart(this._model.history(gpu.uuid), label));
    card.appendChild(this._processes(gpu));
    if (Object.keys(gpu.errors).length > 0) {
      card.appendChild(this._errors(gpu));
    }
    return card;
  }

  private _errors(gpu: IGpu): HTMLElement {
    const list = h('ul', 'jp-gpuspawner-errors');
    list.setAttribute('role', 'alert');
    for (const [field, message] of Object.entries(gpu.errors)) {
      list.appendChild(h('li', '', field === 'gpu' ? message : `${field}: ${message}`));
    }
    return list;
  }

  private _processes(gpu: IGpu): HTMLElement {
    const box = h('div', 'jp-gpuspawner-processes');
    box.appendChild(h('h4', '', 'Processes'));
    if (gpu.processes.length > 0) {
      const table = h('table');
      table.setAttribute('aria-label', `Your processes on ${gpu.name}`);
      const head = h('tr');
      head.append(h('th', '', 'PID'), h('th', '', 'Name'), h('th', '', 'Memory'));
      table.appendChild(head);
      for (const proc of gpu.processes) {
        const row = h('tr');
        row.append(
          h('td', '', String(proc.pid)),
          h('td', '', proc.name ?? '?'),
          h('td', '', proc.used_memory === null ? 'n/a' : `${gib(proc.used_memory)} GiB`)
        );
        table.appendChild(row);
      }
      box.appendChild(table);
    }
    const others = gpu.other_processes;
    if (others.count > 0) {
      const memory = others.used_memory === null ? '' : `, ${gib(others.used_memory)} GiB`;
      const noun = others.count === 1 ? 'process' : 'processes';
      box.appendChild(
        h(
          'p',
          'jp-gpuspawner-muted',
          `${others.count} ${noun}${memory}. ${gpu.process_note ?? ''}`.trim()
        )
      );
    } else if (gpu.processes.length === 0) {
      box.appendChild(h('p', 'jp-gpuspawner-muted', 'No process is using this GPU.'));
    }
    return box;
  }

  private _model: GpuModel;
  private _driver: HTMLElement;
  private _body: HTMLElement;
}
