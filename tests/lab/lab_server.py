"""A real JupyterLab process with gpuspawner's server and lab extensions, isolated in a tmp dir.

The extension is enabled by the repository's own jupyter-config file and the
prebuilt labextension (``gpuspawner/labextension``, built by
``scripts/setup-lab.sh``) is put on JUPYTER_PATH, so this works the same
whether gpuspawner is installed editable, from a wheel, or not at all.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from lab_helpers import GPU_VARIABLES

REPO = Path(__file__).resolve().parents[2]
LABEXTENSION = REPO / "gpuspawner" / "labextension"
SERVER_CONFIG = REPO / "jupyter-config" / "server-config" / "gpuspawner.json"


@dataclass
class LabServer:
    url: str  # ends with the base_url, e.g. http://127.0.0.1:PORT/user/tester/
    token: str
    process: subprocess.Popen
    root: Path
    log: Path

    def get(self, path: str, token: bool = True) -> tuple[int, bytes]:
        return self.request("GET", path, token=token)

    def request(self, method: str, path: str, body: bytes | None = None,
                token: bool = True) -> tuple[int, bytes]:
        request = urllib.request.Request(self.url + path, data=body, method=method)
        if body is not None:
            request.add_header("Content-Type", "application/json")
        if token:
            request.add_header("Authorization", "token %s" % self.token)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


def labextension_built() -> bool:
    return (LABEXTENSION / "package.json").is_file()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def start_lab(tmp: Path, env: dict[str, str] | None = None, base_url: str = "/user/tester/",
              timeout: float = 60.0) -> LabServer:
    """Start ``jupyter lab`` on a free loopback port; wait until it answers."""
    data, config, root = tmp / "data", tmp / "config", tmp / "notebooks"
    root.mkdir(parents=True, exist_ok=True)
    (data / "labextensions").mkdir(parents=True, exist_ok=True)
    link = data / "labextensions" / "gpuspawner"
    if not link.exists():
        link.symlink_to(LABEXTENSION, target_is_directory=True)
    (config / "jupyter_server_config.d").mkdir(parents=True, exist_ok=True)
    shutil.copy(SERVER_CONFIG, config / "jupyter_server_config.d" / "gpuspawner.json")
    settings = config / "lab" / "user-settings" / "@jupyterlab"
    # no news or update toasts over the page
    _write_json(settings / "apputils-extension" / "notification.jupyterlab-settings",
                {"fetchNews": "false", "checkForUpdates": False})

    token = secrets.token_hex(16)
    port = _free_port()
    process_env = {k: v for k, v in os.environ.items() if k not in GPU_VARIABLES}
    process_env.update(
        JUPYTER_PATH=str(data),
        JUPYTER_CONFIG_DIR=str(config),
        JUPYTER_DATA_DIR=str(tmp / "userdata"),
        JUPYTER_RUNTIME_DIR=str(tmp / "runtime"),
        IPYTHONDIR=str(tmp / "ipython"),
        JUPYTER_PLATFORM_DIRS="1",
        # test the working tree's gpuspawner, however it is installed
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    )
    process_env.update(env or {})
    log = tmp / "jupyterlab.log"
    command = [
        sys.executable, "-m", "jupyterlab",
        "--no-browser",
        "--allow-root",
        "--ip=127.0.0.1",
        "--port=%d" % port,
        "--ServerApp.port_retries=0",
        "--IdentityProvider.token=%s" % token,
        "--ServerApp.base_url=%s" % base_url,
        "--ServerApp.root_dir=%s" % root,
        "--LabApp.expose_app_in_browser=True",
        "--GpuSampler.interval=1.0",
    ]
    with open(log, "wb") as out:
        process = subprocess.Popen(command, env=process_env, stdout=out, stderr=subprocess.STDOUT,
                                   cwd=root)
    server = LabServer("http://127.0.0.1:%d%s" % (port, base_url), token, process, root, log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("jupyter lab exited:\n%s" % log.read_text()[-4000:])
        try:
            status, _ = server.get("api/status")
            if status == 200:
                return server
        except OSError:
            pass
        time.sleep(0.3)
    server.stop()
    raise RuntimeError(
        "jupyter lab did not answer in %.0f s:\n%s" % (timeout, log.read_text()[-4000:])
    )
