import { ServerConnection } from '@jupyterlab/services';
import { IDisposable } from '@lumino/disposable';
import { Poll } from '@lumino/polling';
import { ISignal, Signal } from '@lumino/signaling';

import { deadlineOf, IDeadline } from './format';
import { appendSnapshot, History, historyOf, IPoint } from './history';
import { ISnapshot } from './api';
import { requestAPI } from './request';

/** How often to ask when the server has no GPU: its state will not change soon. */
const NO_GPU_INTERVAL = 30 * 1000;
/** The longest wait between two polls while the server does not answer. */
const MAX_BACKOFF = 60 * 1000;

/**
 * The GPU state of this server, polled from the server extension's cached
 * snapshot. Polls back off while the server fails and stand by while the
 * browser tab is hidden.
 */
export class GpuModel implements IDisposable {
  constructor(options: GpuModel.IOptions) {
    this._serverSettings = options.serverSettings;
    this._interval = options.refreshInterval ?? 2000;
    this._historyLength = options.historyLength ?? 150;
    this._poll = new Poll({
      auto: true,
      factory: () => this._refresh(),
      frequency: { interval: this._interval, backoff: true, max: MAX_BACKOFF },
      name: 'gpuspawner:GpuModel',
      standby: 'when-hidden'
    });
  }

  /** Emitted after every poll, successful or not. */
  get changed(): ISignal<this, void> {
    return this._changed;
  }

  /** The latest snapshot, or null before the first answer. */
  get snapshot(): ISnapshot | null {
    return this._snapshot;
  }

  /** Why the last poll failed, or null when it worked. */
  get error(): string | null {
    return this._error;
  }

  /** Recent points per GPU UUID, oldest first. */
  history(uuid: string): IPoint[] {
    return this._history.get(uuid) ?? [];
  }

  /** Milliseconds between two polls while the server has GPUs. */
  get refreshInterval(): number {
    return this._interval;
  }
  set refreshInterval(value: number) {
    if (value === this._interval) {
      return;
    }
    this._interval = value;
    this._setFrequency();
  }

  /** Minutes before the hub's deadline at which to warn (setting ``deadlineWarningMinutes``). */
  deadlineWarningMinutes = 15;

  /** The hub's deadline for this server as of now, or null. */
  deadline(now: number = Date.now()): IDeadline | null {
    return deadlineOf(this._snapshot, now, this.deadlineWarningMinutes * 60 * 1000);
  }

  /** Poll now (e.g. when the panel is shown). */
  refresh(): Promise<void> {
    return this._poll.refresh();
  }

  get isDisposed(): boolean {
    return this._poll.isDisposed;
  }

  dispose(): void {
    if (this.isDisposed) {
      return;
    }
    this._poll.dispose();
    Signal.clearData(this);
  }

  private async _refresh(): Promise<void> {
    try {
      if (!this._historyLoaded) {
        this._history = historyOf(await requestAPI(this._serverSettings, 'api/history'));
        this._historyLoaded = true;
      }
      const snapshot = await requestAPI(this._serverSettings, 'api/gpus');
      this._snapshot = snapshot;
      this._error = null;
      appendSnapshot(this._history, snapshot, this._historyLength);
      this._setFrequency();
    } catch (reason) {
      this._error = reason instanceof Error ? reason.message : String(reason);
      this._changed.emit();
      throw reason; // the poll backs off
    }
    this._changed.emit();
  }

  private _setFrequency(): void {
    const interval =
      this._snapshot && !this._snapshot.available
        ? Math.max(this._interval, NO_GPU_INTERVAL)
        : this._interval;
    const current = this._poll.frequency;
    if (current.interval !== interval) {
      this._poll.frequency = { ...current, interval };
    }
  }

  private _serverSettings: ServerConnection.ISettings;
  private _interval: number;
  private _historyLength: number;
  private _historyLoaded = false;
  private _poll: Poll;
  private _snapshot: ISnapshot | null = null;
  private _error: string | null = null;
  private _history: History = new Map();
  private _changed = new Signal<this, void>(this);
}

export namespace GpuModel {
  export interface IOptions {
    /** Where the server is and how to ask it: the application's ``serviceManager.serverSettings``. */
    serverSettings: ServerConnection.ISettings;
    /** Milliseconds between two polls (default 2000). */
    refreshInterval?: number;
    /** Points of history kept per GPU (default 150). */
    historyLength?: number;
  }
}
