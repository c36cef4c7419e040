"""A terminal of a user's server, over the server's own terminal API behind the hub's proxy.

The same API JupyterLab's terminals use (jupyter-server-terminals): ``POST api/terminals``
creates one, ``terminals/websocket/NAME`` carries terminado's JSON messages
(``["stdin", text]``, ``["set_size", rows, cols, 0, 0]`` one way, ``["stdout", text]``
and ``["disconnect", ...]`` the other), ``DELETE api/terminals/NAME`` ends it. Requests
carry the user's own token, so the user's server decides, as it does for a browser.

One command (``ssh host CMD``) runs in a fresh terminal between two markers that carry a
nonce and the exit status; ExecOutput finds them in the terminal's output.
"""

import asyncio
import base64
import json
import re
import secrets
from urllib.parse import urlsplit

from tornado.httpclient import AsyncHTTPClient, HTTPRequest
from tornado.websocket import websocket_connect

# a canonical-mode tty line holds 4095 bytes; the command travels base64-encoded in one
MAX_COMMAND_BYTES = 2800


class TerminalError(Exception):
    """The user's server would not give a terminal; the message is for the SSH client."""


def exec_line(command: str, nonce: str, echo: bool) -> str:
    """The line typed into a fresh bash terminal to run ``command`` once and report its exit
    status. The markers are written with printf's octal escapes, so the line's own echo
    never matches them. Without ``echo`` (no pty asked for) the tty stops echoing input and
    translating newlines, and the command reads its input from a pipe, not the tty (so
    ``ssh host bash < script`` runs a script, not an interactive shell)."""
    encoded = base64.b64encode(command.encode()).decode()
    setup, stdin = ("", "") if echo else ("stty -echo -onlcr 2>/dev/null; ", " < <(exec cat)")
    return (
        " %sprintf '\\036gpst-%s-b\\036'; bash -c \"$(printf %%s %s | base64 -d)\"%s; "
        "printf '\\036gpst-%s-e%%d\\036' $?; exit\r" % (setup, nonce, encoded, stdin, nonce)
    )


class ExecOutput:
    """Pass on what a command wrote between the begin and end markers; keep its exit status."""

    def __init__(self, nonce: str):
        self.begin = "\x1egpst-%s-b\x1e" % nonce
        self.end = re.compile("\x1egpst-%s-e([0-9]+)\x1e" % re.escape(nonce))
        self.longest_end = len(self.begin) + 3  # the end marker adds the status's digits
        self.started = False
        self.exit_status: int | None = None
        self.pending = ""

    def feed(self, text: str) -> str:
        if self.exit_status is not None:
            return ""
        self.pending += text
        if not self.started:
            at = self.pending.find(self.begin)
            if at < 0:
                self.pending = self.pending[-(len(self.begin) - 1):]
                return ""
            self.started = True
            self.pending = self.pending[at + len(self.begin):]
        found = self.end.search(self.pending)
        if found:
            out, self.pending = self.pending[: found.start()], ""
            self.exit_status = int(found.group(1))
            return out
        cut = self.pending.rfind("\x1e")
        if cut >= 0 and len(self.pending) - cut < self.longest_end:
            out, self.pending = self.pending[:cut], self.pending[cut:]  # maybe a marker's start
        else:
            out, self.pending = self.pending, ""
        return out


def new_nonce() -> str:
    return secrets.token_hex(8)


class ServerTerminal:
    """One terminal in the server at ``path`` (e.g. /user/alice/) behind the proxy at hub_url."""

    def __init__(self, hub_url: str, path: str, token: str, timeout: float = 30):
        parts = urlsplit(hub_url)
        self.http_base = "%s://%s" % (parts.scheme, parts.netloc)
        self.ws_base = "%s://%s" % ("wss" if parts.scheme == "https" else "ws", parts.netloc)
        self.path = path if path.endswith("/") else path + "/"
        self.headers = {"Authorization": "token " + token}
        self.timeout = timeout
        self.name: str | None = None
        self.socket = None

    async def _request(self, method: str, path: str, body: str | None = None):
        request = HTTPRequest(
            self.http_base + self.path + path, method=method, headers=self.headers, body=body,
            request_timeout=self.timeout, follow_redirects=False,
        )
        return await AsyncHTTPClient().fetch(request, raise_error=False)

    async def open(self, rows: int = 24, cols: int = 80) -> None:
        response = await self._request("POST", "api/terminals", body="{}")
        if response.code in (302, 401, 403):
            raise TerminalError(
                "Refused: the server does not accept this token (HTTP %d); a token needs "
                "access to your server (the access:servers scope)." % response.code
            )
        if response.code != 200:
            raise TerminalError(
                "The server did not open a terminal (HTTP %d); are terminals enabled?"
                % response.code
            )
        self.name = json.loads(response.body)["name"]
        request = HTTPRequest(
            self.ws_base + self.path + "terminals/websocket/" + self.name, headers=self.headers,
            request_timeout=self.timeout,
        )
        self.socket = await websocket_connect(request, max_message_size=16 * 1024 * 1024)
        await self.set_size(rows, cols)

    async def send(self, text: str) -> None:
        await self.socket.write_message(json.dumps(["stdin", text]))

    async def set_size(self, rows: int, cols: int) -> None:
        await self.socket.write_message(json.dumps(["set_size", rows or 24, cols or 80, 0, 0]))

    async def output(self):
        """The terminal's output as text, until its shell ends or the socket closes."""
        while True:
            message = await self.socket.read_message()
            if message is None:
                return
            kind, *args = json.loads(message)
            if kind == "stdout":
                yield args[0]
            elif kind == "disconnect":
                return

    async def close(self) -> None:
        if self.socket is not None:
            self.socket.close()
            self.socket = None
        if self.name is not None:
            name, self.name = self.name, None
            try:
                await self._request("DELETE", "api/terminals/" + name)
            except Exception:  # the server may be gone already; the terminal went with it
                pass


async def run_in_terminal(terminal: ServerTerminal, command: str | None, echo: bool, write, pump,
                          closed):
    """Relay one opened terminal: a shell (``command`` None) until it ends, or one command
    until its end marker; ``write(text)`` takes the output, ``pump(started)`` feeds input once
    ``started`` is set, and the client's channel closing (``closed``, awaitable) ends it early.
    Returns the exit status (0 for a shell; 255 if the terminal or the client went away
    before a command reported one)."""
    started = asyncio.Event()
    exec_output = None
    if command is None:
        started.set()
    else:
        nonce = new_nonce()
        exec_output = ExecOutput(nonce)
        await terminal.send(exec_line(command, nonce, echo=echo))

    async def relay_output() -> int:
        async for text in terminal.output():
            if exec_output is not None:
                text = exec_output.feed(text)
                if exec_output.started:
                    started.set()
            if text:
                write(text)
            if exec_output is not None and exec_output.exit_status is not None:
                return exec_output.exit_status
        return 0 if exec_output is None else 255

    output = asyncio.ensure_future(relay_output())
    feeding = asyncio.ensure_future(pump(started))
    gone = asyncio.ensure_future(closed)
    waiting = {output, feeding, gone}
    try:
        while True:
            done, waiting = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            if output in done:
                return output.result()
            if gone in done:
                return 255
            feeding.result()  # the input ended (or failed: raise it); wait for the output
    finally:
        for task in (output, feeding, gone):
            task.cancel()
