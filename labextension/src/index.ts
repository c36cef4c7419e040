import { ILayoutRestorer, JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { ICommandPalette, Notification } from '@jupyterlab/apputils';
import { ILauncher } from '@jupyterlab/launcher';
import { INotebookTracker } from '@jupyterlab/notebook';
import { ISettingRegistry } from '@jupyterlab/settingregistry';
import { IStatusBar } from '@jupyterlab/statusbar';

import { deadlineNotice, idleNotice } from './format';
import { verifyIcon } from './icon';
import { GpuModel } from './model';
import { insertVerifyCell } from './verify';
import { GpuPanel } from './widgets/panel';
import { GpuStatusItem } from './widgets/status';

const PLUGIN_ID = 'gpuspawner:plugin';

namespace CommandIDs {
  export const verifyCuda = 'gpuspawner:verify-cuda';
  export const showPanel = 'gpuspawner:show-panel';
}

/**
 * GPU status for this server: a status bar item, a left panel with a card
 * per GPU, and the "Verify CUDA" command (palette, notebook toolbar, launcher).
 */
const plugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description: 'GPU status, a GPU panel and a "Verify CUDA" command.',
  autoStart: true,
  optional: [
    ICommandPalette,
    ILauncher,
    ILayoutRestorer,
    INotebookTracker,
    ISettingRegistry,
    IStatusBar
  ],
  activate: async (
    app: JupyterFrontEnd,
    palette: ICommandPalette | null,
    launcher: ILauncher | null,
    restorer: ILayoutRestorer | null,
    tracker: INotebookTracker | null,
    settingRegistry: ISettingRegistry | null,
    statusBar: IStatusBar | null
  ) => {
    const model = new GpuModel({ serverSettings: app.serviceManager.serverSettings });
    let showStatusItem = true;

    app.commands.addCommand(CommandIDs.verifyCuda, {
      label: 'Verify CUDA',
      caption: 'Insert a cell that checks PyTorch, CUDA and every GPU, and run it',
      icon: verifyIcon,
      execute: async args => {
        try {
          await insertVerifyCell(app, tracker, Boolean(args?.newNotebook));
        } catch (error) {
          Notification.error(`Verify CUDA failed: ${(error as Error).message ?? error}`);
        }
      }
    });

    const panel = new GpuPanel(model, () => {
      void app.commands.execute(CommandIDs.verifyCuda);
    });
    app.shell.add(panel, 'left', { rank: 900 });
    restorer?.add(panel, 'gpuspawner-panel');

    app.commands.addCommand(CommandIDs.showPanel, {
      label: 'Show GPU Panel',
      caption: 'Show the GPUs of this server',
      execute: () => app.shell.activateById(panel.id)
    });

    palette?.addItem({ command: CommandIDs.verifyCuda, category: 'GPU' });
    palette?.addItem({ command: CommandIDs.showPanel, category: 'GPU' });
    launcher?.add({
      command: CommandIDs.verifyCuda,
      category: 'Other',
      rank: 50,
      args: { newNotebook: true }
    });

    if (statusBar) {
      const item = new GpuStatusItem(model, () => app.shell.activateById(panel.id));
      statusBar.registerStatusItem(PLUGIN_ID, {
        item,
        align: 'left',
        rank: 100,
        isActive: () => showStatusItem,
        activeStateChanged: model.changed
      });
    }

    // once per deadline, when its lead time is entered: a notification that stays
    let warnedFor: string | null = null;
    model.changed.connect(() => {
      const deadline = model.deadline();
      const key = model.snapshot?.deadline?.at ?? null;
      if (!deadline || !deadline.near || key === warnedFor) {
        return;
      }
      warnedFor = key;
      Notification.warning(deadlineNotice(deadline), {
        autoClose: false,
        actions: [
          {
            label: 'Show GPU panel',
            callback: () => app.shell.activateById(panel.id)
          }
        ]
      });
    });

    // the GPU-idle cull ahead: one notification per idle stretch, gone once the GPU is used
    let idleWarned: { since: number; id: string } | null = null;
    model.changed.connect(() => {
      const idle = model.snapshot?.idle ?? null;
      if (!idle || !idle.near) {
        if (idleWarned && (!idle || idle.since !== idleWarned.since)) {
          Notification.dismiss(idleWarned.id);
          idleWarned = null;
        }
        return;
      }
      const actions = [
        { label: 'Show GPU panel', callback: () => app.shell.activateById(panel.id) }
      ];
      if (idleWarned?.since === idle.since) {
        // the minutes left, kept current
        Notification.update({
          id: idleWarned.id,
          message: idleNotice(idle),
          type: 'warning',
          autoClose: false,
          actions
        });
        return;
      }
      if (idleWarned) {
        Notification.dismiss(idleWarned.id);
      }
      const id = Notification.warning(idleNotice(idle), { autoClose: false, actions });
      idleWarned = { since: idle.since, id };
    });

    if (settingRegistry) {
      const apply = (settings: ISettingRegistry.ISettings) => {
        model.deadlineWarningMinutes = settings.get('deadlineWarningMinutes').composite as number;
        model.refreshInterval = settings.get('refreshInterval').composite as number;
        showStatusItem = settings.get('showStatusItem').composite as boolean;
        void model.refresh();
      };
      try {
        const settings = await settingRegistry.load(PLUGIN_ID);
        apply(settings);
        settings.changed.connect(apply);
      } catch (reason) {
        console.warn('gpuspawner: could not load settings', reason);
      }
    }
  }
};

export default plugin;
