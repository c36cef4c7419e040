import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

import { IRoutes } from './api';

/**
 * GET one of the gpuspawner server extension's JSON routes under the server's
 * base URL (so it works behind the hub's /user/<name>/ prefix), with the
 * application's server settings (``app.serviceManager.serverSettings``).
 * The answer's type is the route's in the shared schema (see ./api).
 */
export async function requestAPI<R extends keyof IRoutes>(
  settings: ServerConnection.ISettings,
  route: R,
  init: RequestInit = {}
): Promise<IRoutes[R]> {
  const url = URLExt.join(settings.baseUrl, 'gpuspawner', route);
  let response: Response;
  try {
    response = await ServerConnection.makeRequest(url, init, settings);
  } catch (error) {
    throw new ServerConnection.NetworkError(error as TypeError);
  }
  const text = await response.text();
  let data: any = text;
  if (text.length > 0) {
    try {
      data = JSON.parse(text);
    } catch {
      // not JSON: keep the text
    }
  }
  if (!response.ok) {
    throw new ServerConnection.ResponseError(response, data?.message ?? text);
  }
  return data as IRoutes[R];
}
