"""A real JupyterHub process with the gpu-docker spawner, driven through its REST API."""

import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import requests

# the repository's tests/hub_config.py (the harness runs from a checkout)
CONFIG = Path(__file__).resolve().parents[2] / "tests" / "hub_config.py"
# the GPUs test hubs declare (this machine has none); their UUIDs are this test run's own,
# since a hub counts every container on the engine that holds one (another run's too)
RUN_ID = secrets.token_hex(4)
FAKE_GPUS = [
    {
        "uuid": "GPU-%s-%04d-4000-8000-000000000000" % (RUN_ID, i),
        "name": "NVIDIA A100-SXM4-80GB",
        "memory_mib": 81920,
    }
    for i in range(8)
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def hub_settings(workdir: Path, hub_ip: str, **settings) -> dict:
    """What tests/hub_base_config.py reads for a new hub in ``workdir`` (free ports, a sqlite
    database there, a fresh API token, the address servers reach the hub at), plus ``settings``
    for the backend's config file."""
    return {
        "port": free_port(),
        "hub_port": free_port(),
        "proxy_api_port": free_port(),
        "hub_ip": hub_ip,
        "db_url": "sqlite:///%s" % (workdir / "jupyterhub.sqlite"),
        "workdir": str(workdir),
        "token": secrets.token_hex(16),
        **settings,
    }


def wait_for(condition, timeout: float = 60, what: str = "condition", every: float = 0.5):
    """``condition()``'s first true value, asked every ``every`` seconds; AssertionError
    naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise AssertionError("timed out waiting for " + what)


def is_stopped(hub: "Hub", user: str, server: str = "") -> bool:
    """The hub has the server neither ready nor pending (or has no such server)."""
    model = hub.server_model(user, server)
    return model is None or (not model.get("ready") and not model.get("pending"))


class Hub:
    """One hub: start, kill -9, restart on the same database, call its API."""

    def __init__(self, workdir: Path, settings: dict, config: Path = CONFIG):
        self.workdir = workdir
        self.config = config
        self.settings = settings
        self.url = "http://127.0.0.1:%d" % settings["port"]
        self.process: subprocess.Popen | None = None
        self.session = requests.Session()
        self.session.headers["Authorization"] = "token " + settings["token"]
        self.log_path = workdir / "hub.log"

    def start(self, timeout: float = 60) -> "Hub":
        env = dict(os.environ, GPUSPAWNER_TEST_SETTINGS=json.dumps(self.settings))
        log = open(self.log_path, "a")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "jupyterhub", "-f", str(self.config)],
            cwd=self.workdir,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("hub exited at start:\n" + self.log_tail())
            try:
                if self.session.get(self.url + "/hub/api/", timeout=2).status_code == 200:
                    return self
            except requests.ConnectionError:
                pass
            time.sleep(0.3)
        raise RuntimeError("hub did not answer in %ds:\n%s" % (timeout, self.log_tail()))

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def kill9(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    # --- REST API ---

    def api(self, method: str, path: str, **kwargs) -> requests.Response:
        return self.session.request(method, self.url + "/hub/api" + path, timeout=120, **kwargs)

    def create_user(self, name: str, groups: tuple[str, ...] = ()) -> None:
        response = self.api("POST", "/users/" + quote(name, safe=""))
        assert response.status_code in (201, 409), response.text
        for group in groups:
            self.api("POST", "/groups/" + quote(group, safe=""))
            response = self.api(
                "POST", "/groups/%s/users" % quote(group, safe=""), json={"users": [name]}
            )
            assert response.status_code == 200, response.text

    def server_path(self, user: str, server: str = "") -> str:
        path = "/users/%s/server" % quote(user, safe="")
        return path + "s/" + quote(server, safe="") if server else path

    def spawn(self, user: str, server: str = "", options=None) -> requests.Response:
        body = None if options is None else {"user_options": options}
        return self.api("POST", self.server_path(user, server), json=body)

    def server_model(self, user: str, server: str = "") -> dict | None:
        model = self.api("GET", "/users/" + quote(user, safe="")).json()
        return model.get("servers", {}).get(server)

    def wait_ready(self, user: str, server: str = "", timeout: float = 90) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            model = self.server_model(user, server)
            if model and model.get("ready"):
                return model
            if model is None:
                raise AssertionError("server %s/%s is gone:\n%s" % (user, server, self.log_tail()))
            time.sleep(0.3)
        raise AssertionError("server %s/%s not ready:\n%s" % (user, server, self.log_tail()))

    def stop_server(self, user: str, server: str = "", timeout: float = 60) -> None:
        response = self.api("DELETE", self.server_path(user, server))
        assert response.status_code in (202, 204), response.text
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            model = self.server_model(user, server)
            if model is None or (not model.get("ready") and not model.get("pending")):
                return
            time.sleep(0.3)
        raise AssertionError("server %s/%s did not stop" % (user, server))

    def login(self, user: str) -> requests.Session:
        """A browser-like session of ``user`` (the demo login takes any password)."""
        browser = requests.Session()
        page = browser.get(self.url + "/hub/login", timeout=30)
        xsrf = re.search(r'name="_xsrf" value="([^"]+)"', page.text).group(1)
        response = browser.post(
            self.url + "/hub/login",
            data={"username": user, "password": "x", "_xsrf": xsrf},
            timeout=30,
        )
        assert response.status_code == 200, response.status_code
        return browser

    def spawn_form(self, browser: requests.Session, user: str, server: str = "") -> str:
        path = (
            "/hub/spawn/" + quote(user, safe="") + ("/" + quote(server, safe="") if server else "")
        )
        return browser.get(self.url + path, timeout=60).text

    def user_token(self, user: str) -> str:
        response = self.api(
            "POST", "/users/%s/tokens" % quote(user, safe=""), json={"note": "tests"}
        )
        assert response.status_code == 201, response.text
        return response.json()["token"]

    def through_proxy(
        self, method: str, user: str, path: str, token: str, server: str = "", **kwargs
    ):
        """Call the user's server the way a browser does: through the hub's proxy."""
        prefix = "/user/%s/%s" % (
            quote(user, safe=""),
            quote(server, safe="") + "/" if server else "",
        )
        headers = {"Authorization": "token " + token}
        return requests.request(
            method, self.url + prefix + path.lstrip("/"), headers=headers, timeout=30, **kwargs
        )
