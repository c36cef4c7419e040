"""Run the admin service (the hub starts it: see gpuspawner.service.add_admin_service).

The hub stops its services with SIGINT (then SIGTERM): either ends the service cleanly, and
so does the hub's death (a hub killed with SIGKILL leaves its services running otherwise, and
its restart could not take the service's port).
"""

import asyncio
import ipaddress
import logging
import os
import signal
from urllib.parse import urlparse

from ..policy.budget import period_bounds
from ..usage.adjustments import adjustments_of
from ..usage.ledger import Ledger
from . import LOG_ENV, AdminSettings
from .app import make_app
from .engine import EngineView
from .service_metrics import ServiceMetrics
from .watcher import HubClient, Watcher

log = logging.getLogger("gpuspawner.service")
PARENT_CHECK_SECONDS = 1.0  # how often the service looks whether the hub still runs


class ServiceState:
    """What the handlers share: settings, ledger, the backend, metrics and the watcher."""

    def __init__(self, settings: AdminSettings):
        self.settings = settings
        self.ledger = Ledger(settings.usage_db_url)
        self.adjustments = adjustments_of(self.ledger)  # its table created or upgraded now
        self.metrics = ServiceMetrics()
        self.engine = EngineView.from_settings(settings)
        hub = HubClient(os.environ["JUPYTERHUB_API_URL"], os.environ["JUPYTERHUB_API_TOKEN"])
        self.watcher = Watcher(settings, self.ledger, hub, self.metrics, self.engine)

    def period(self, now):
        return period_bounds(now, self.settings.reset_schedule)

    def close(self) -> None:
        self.ledger.dispose()


async def hub_gone(parent: int) -> str:
    """Return once the process that started this one (the hub) has ended."""
    while os.getppid() == parent:
        await asyncio.sleep(PARENT_CHECK_SECONDS)
    return "the hub process (pid %d) ended" % parent


def listen_address(host: str) -> str:
    """Where to listen for the service's URL: its host when that is an address (127.0.0.1),
    every interface when it is a name (a Kubernetes Service such as "hub" in front of the
    hub's pod, which the proxy's pod reaches)."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return "localhost" if host == "localhost" else ""
    return host


def log_to_file(path: str) -> None:
    """Send this process's output (logging, and anything Python prints) to ``path``."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    for stream in (1, 2):
        os.dup2(fd, stream)
    os.close(fd)


async def main() -> None:
    if os.environ.get(LOG_ENV):
        log_to_file(os.environ[LOG_ENV])
    logging.basicConfig(
        level=logging.INFO, format="[%(levelname)1.1s %(asctime)s %(name)s] %(message)s"
    )
    parent = os.getppid()
    loop = asyncio.get_running_loop()
    stop = loop.create_future()

    def on_signal(signum: int) -> None:
        if not stop.done():
            stop.set_result("signal %s" % signal.Signals(signum).name)

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal, signum)
    state = ServiceState(AdminSettings.from_environment())
    url = urlparse(os.environ.get("JUPYTERHUB_SERVICE_URL", "http://127.0.0.1:10101"))
    server = make_app(state).listen(url.port or 80, listen_address(url.hostname or ""))
    log.info(
        "GPU admin service on %s (ledger %s, checks every %.0f s)",
        url.geturl(),
        state.ledger.engine.url.render_as_string(hide_password=True),
        state.settings.check_interval,
    )
    watcher = asyncio.ensure_future(state.watcher.run_forever())
    orphaned = asyncio.ensure_future(hub_gone(parent))
    done, _ = await asyncio.wait([stop, watcher, orphaned], return_when=asyncio.FIRST_COMPLETED)
    reason = next(iter(done)).result()
    log.info("GPU admin service stopping: %s", reason)
    server.stop()
    for task in (watcher, orphaned):
        task.cancel()
    await asyncio.gather(watcher, orphaned, return_exceptions=True)
    await server.close_all_connections()
    state.close()
    log.info("GPU admin service stopped")


if __name__ == "__main__":
    asyncio.run(main())
