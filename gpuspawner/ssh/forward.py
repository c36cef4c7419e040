"""TCP forwarding (``ssh -L``, ``-D``, ``-W``; VS Code Remote-SSH reaches its server so) from
inside the user's server: a small relay runs in a terminal there, connects to the
destination and carries the bytes base64-encoded, one line per chunk, both ways. The
connection leaves from the user's container or pod, with its network, never from the hub.
"""

import base64
import binascii
import logging
import shlex

from tornado.websocket import WebSocketClosedError

from .login import Target
from .terminal import ServerTerminal, TerminalError, run_in_terminal

log = logging.getLogger("gpuspawner.ssh")

# base64 of one chunk fits in one line of a canonical-mode tty (4095 bytes)
CHUNK = 2048

RELAY = r"""
import base64, socket, sys, threading
try:
    peer = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=30)
except OSError:
    sys.exit(1)
peer.settimeout(None)
def upstream():
    for line in sys.stdin:
        if line.strip():
            peer.sendall(base64.b64decode(line))
    peer.shutdown(socket.SHUT_WR)
threading.Thread(target=upstream, daemon=True).start()
while True:
    data = peer.recv(%d)
    if not data:
        break
    sys.stdout.write(base64.b64encode(data).decode() + "\n")
    sys.stdout.flush()
""" % CHUNK


def relay_command(host: str, port: int) -> str:
    return "exec python3 -c %s %s %d" % (shlex.quote(RELAY), shlex.quote(host), port)


class Base64Lines:
    """The relay's output lines back to bytes (a line may arrive in pieces)."""

    def __init__(self):
        self.pending = ""

    def feed(self, text: str) -> bytes:
        self.pending += text
        *lines, self.pending = self.pending.split("\n")
        data = []
        for line in lines:
            try:
                data.append(base64.b64decode(line.strip(), validate=True))
            except binascii.Error:  # not the relay's: a stray line of the terminal
                log.debug("forwarding: skipped a line that is not base64")
        return b"".join(data)


async def forward_connection(reader, writer, hub_url: str, target: Target, token: str,
                             host: str, port: int) -> None:
    """Carry one forwarded SSH channel to host:port as seen from the user's server."""
    terminal = ServerTerminal(hub_url, target.path, token)
    lines = Base64Lines()

    def write(text: str) -> None:
        data = lines.feed(text)
        if data:
            writer.write(data)

    async def pump(started):
        await started.wait()
        while True:
            data = await reader.read(CHUNK)
            if not data:
                await terminal.send("\x04")  # end of input: the relay shuts its write side
                return
            await terminal.send(base64.b64encode(data).decode() + "\n")

    try:
        await terminal.open(24, 200)
        status = await run_in_terminal(terminal, relay_command(host, port), echo=False,
                                       write=write, pump=pump,
                                       closed=writer.channel.wait_closed())
        if status:
            log.info("forwarding from %s to %s:%d ended with status %d",
                     target.describe(), host, port, status)
    except (TerminalError, OSError, WebSocketClosedError) as error:
        log.warning("forwarding from %s to %s:%d: %s", target.describe(), host, port, error)
    finally:
        await terminal.close()
        writer.close()
