"""The SSH service process (``python -m gpuspawner.ssh``, started by the hub).

Authentication asks the hub; every session is a terminal of the user's own server
(gpuspawner.ssh.terminal). The service never starts a process of its own, so nobody gets
a shell on the hub host.
"""

import asyncio
import codecs
import json
import logging
import os
from urllib.parse import quote

import asyncssh
from tornado.httpclient import AsyncHTTPClient, HTTPRequest
from tornado.websocket import WebSocketClosedError

from . import SSHSettings
from .forward import forward_connection
from .login import Refused, requested_server, running_target, token_owner
from .terminal import MAX_COMMAND_BYTES, ServerTerminal, TerminalError, run_in_terminal

log = logging.getLogger("gpuspawner.ssh")


class Hub:
    """The hub's REST API, as this service (JUPYTERHUB_API_URL, JUPYTERHUB_API_TOKEN)."""

    def __init__(self, api_url: str, token: str, timeout: float = 30):
        self.api_url = api_url.rstrip("/")
        self.token = token
        self.timeout = timeout

    async def get(self, path: str, token: str | None = None) -> tuple[int, dict | None]:
        request = HTTPRequest(
            self.api_url + path, headers={"Authorization": "token " + (token or self.token)},
            request_timeout=self.timeout,
        )
        response = await AsyncHTTPClient().fetch(request, raise_error=False)
        if response.code == 599:  # no answer at all
            log.warning("hub API %s: %s", path, response.error)
            return 599, None
        try:
            return response.code, json.loads(response.body)
        except (TypeError, ValueError):
            return response.code, None


class HubAuthServer(asyncssh.SSHServer):
    """One connection: password authentication with a hub API token."""

    def __init__(self, settings: SSHSettings, hub: Hub):
        self.settings = settings
        self.hub = hub
        self.connection = None
        self.target = self.token = None

    def connection_made(self, connection):
        self.connection = connection

    def begin_auth(self, username: str) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return True

    async def validate_password(self, username: str, password: str) -> bool:
        hub_url = self.settings.hub_url
        try:
            status, model = await self.hub.get("/user", token=password)
            owner = token_owner(status, model, username, hub_url)
            server = requested_server(username, owner)
            status, user_model = await self.hub.get("/users/" + quote(owner, safe=""))
            target = running_target(owner, server, status, user_model, hub_url)
        except Refused as refusal:
            log.info("SSH login as %r refused: %s", username, refusal.message)
            self.connection.send_auth_banner(refusal.message + "\r\n")
            return False
        log.info("SSH login to %s", target.describe())
        self.target, self.token = target, password
        self.connection.set_extra_info(gpuspawner_target=target, gpuspawner_token=password)
        return True

    def connection_requested(self, dest_host: str, dest_port: int, orig_host: str, orig_port: int):
        """``ssh -L``/``-D``/``-W``: the connection is made from inside the user's server (a
        relay in one of its terminals), never from the hub host."""
        log.info("SSH forwarding from %s to %s:%d", self.target.describe(), dest_host, dest_port)

        async def handler(reader, writer):
            await forward_connection(reader, writer, self.settings.hub_url, self.target,
                                     self.token, dest_host, dest_port)

        return handler


async def _pump_stdin(process, terminal: ServerTerminal, started: asyncio.Event) -> None:
    """The client's input into the terminal (after the command started, for one command)."""
    await started.wait()
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    while True:
        try:
            data = await process.stdin.read(65536)
        except asyncssh.TerminalSizeChanged as change:
            await terminal.set_size(change.height, change.width)
            continue
        except (asyncssh.BreakReceived, asyncssh.SignalReceived):
            await terminal.send("\x03")
            continue
        if not data:
            await terminal.send(decoder.decode(b"", final=True) + "\x04")  # end of input: ^D
            return
        text = decoder.decode(data)
        if text:
            await terminal.send(text)


async def run_session(process, settings: SSHSettings) -> None:
    """One SSH channel: a shell (``ssh host``) or one command (``ssh host CMD``)."""
    target = process.get_extra_info("gpuspawner_target")
    command = process.command
    if command is not None and len(command.encode()) > MAX_COMMAND_BYTES:
        process.stderr.write(b"The command is longer than %d bytes; put it in a script in your "
                             b"workspace and run that.\r\n" % MAX_COMMAND_BYTES)
        process.exit(2)
        return
    cols, rows, _, _ = process.get_terminal_size()
    token = process.get_extra_info("gpuspawner_token")
    terminal = ServerTerminal(settings.hub_url, target.path, token)
    try:
        await terminal.open(rows or 24, cols or 80)
        status = await run_in_terminal(
            terminal, command, echo=process.get_terminal_type() is not None,
            write=lambda text: process.stdout.write(text.encode()),
            pump=lambda started: _pump_stdin(process, terminal, started),
            closed=process.channel.wait_closed(),
        )
    except TerminalError as error:
        process.stderr.write(str(error).encode() + b"\r\n")
        status = 1
    except (OSError, asyncio.TimeoutError, WebSocketClosedError) as error:
        log.warning("terminal of %s: %s", target.describe(), error)
        process.stderr.write(b"The connection to your server was lost.\r\n")
        status = 255
    finally:
        await terminal.close()
    process.exit(status)


def load_host_key(path: str):
    """The service's host key, created (ed25519, mode 0600) on first start."""
    if not os.path.exists(path):
        key = asyncssh.generate_private_key("ssh-ed25519")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key.export_private_key())
        log.info("created SSH host key %s", path)
    return asyncssh.read_private_key(path)


async def serve(settings: SSHSettings, hub: Hub):
    def server_factory():
        return HubAuthServer(settings, hub)

    def process_factory(process):
        return run_session(process, settings)

    server = await asyncssh.create_server(
        server_factory, settings.listen_host, settings.port,
        server_host_keys=[load_host_key(settings.host_key_path)],
        process_factory=process_factory, encoding=None, line_editor=False,
        allow_scp=False, agent_forwarding=False, x11_forwarding=False,
        login_timeout=settings.login_timeout,
    )
    log.info("SSH into users' servers on %s:%d (servers reached at %s)",
             settings.listen_host, settings.port, settings.hub_url)
    return server


def main() -> None:
    logging.basicConfig(
        level=logging.INFO, format="[%(levelname)1.1s %(asctime)s %(name)s] %(message)s"
    )
    logging.getLogger("asyncssh").setLevel(logging.WARNING)
    settings = SSHSettings.from_environment()
    hub = Hub(os.environ["JUPYTERHUB_API_URL"], os.environ["JUPYTERHUB_API_TOKEN"])
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    loop.run_until_complete(serve(settings, hub))
    loop.run_forever()
