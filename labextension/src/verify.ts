import { JupyterFrontEnd } from '@jupyterlab/application';
import { INotebookTracker, NotebookActions, NotebookPanel } from '@jupyterlab/notebook';
import { ServerConnection } from '@jupyterlab/services';

import { requestAPI } from './request';

let cachedCode: string | null = null;

/** The "Verify CUDA" cell's code, served by the server extension (one source). */
export async function verifyCode(settings: ServerConnection.ISettings): Promise<string> {
  if (cachedCode === null) {
    const reply = await requestAPI(settings, 'api/verify-code');
    cachedCode = reply.code;
  }
  return cachedCode;
}

async function openNotebook(app: JupyterFrontEnd): Promise<NotebookPanel> {
  const kernelName = app.serviceManager.kernelspecs.specs?.default;
  const panel = (await app.commands.execute('notebook:create-new', {
    kernelName
  })) as NotebookPanel;
  return panel;
}

/**
 * Insert the verify cell below the active cell of the current notebook (or of
 * a new notebook) and run it. An empty active code cell is reused.
 */
export async function insertVerifyCell(
  app: JupyterFrontEnd,
  tracker: INotebookTracker | null,
  newNotebook = false
): Promise<void> {
  const code = await verifyCode(app.serviceManager.serverSettings);
  let panel = newNotebook || !tracker ? null : tracker.currentWidget;
  if (!panel) {
    panel = await openNotebook(app);
  }
  await panel.context.ready;
  app.shell.activateById(panel.id);
  const notebook = panel.content;
  const active = notebook.activeCell;
  const reusable =
    active !== null &&
    active !== undefined &&
    active.model.type === 'code' &&
    active.model.sharedModel.getSource().trim() === '';
  if (!reusable) {
    NotebookActions.insertBelow(notebook);
  }
  if (notebook.activeCell?.model.type !== 'code') {
    NotebookActions.changeCellType(notebook, 'code');
  }
  const cell = notebook.activeCell!;
  cell.model.sharedModel.setSource(code);
  // the code is long: show its verdict, keep the code one click away
  cell.inputHidden = true;
  await panel.sessionContext.ready;
  await NotebookActions.run(notebook, panel.sessionContext);
}
