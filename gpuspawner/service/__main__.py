"""Run the admin service (the hub starts it: see gpuspawner.service.add_admin_service)."""

import asyncio
import logging
import os
from urllib.parse import urlparse

from ..policy.budget import period_bounds
from ..usage.ledger import Ledger
from . import AdminSettings
from .app import make_app
from .service_metrics import ServiceMetrics
from .watcher import HubClient, Watcher

log = logging.getLogger("gpuspawner.service")


class ServiceState:
    """What the handlers share: settings, ledger, metrics and the watcher."""

    def __init__(self, settings: AdminSettings):
        self.settings = settings
        self.ledger = Ledger(settings.usage_db_url)
        self.metrics = ServiceMetrics()
        hub = HubClient(os.environ["JUPYTERHUB_API_URL"], os.environ["JUPYTERHUB_API_TOKEN"])
        self.watcher = Watcher(settings, self.ledger, hub, self.metrics)

    def period(self, now):
        return period_bounds(now, self.settings.reset_schedule)


async def main() -> None:
    logging.basicConfig(
        level=logging.INFO, format="[%(levelname)1.1s %(asctime)s %(name)s] %(message)s"
    )
    state = ServiceState(AdminSettings.from_environment())
    url = urlparse(os.environ.get("JUPYTERHUB_SERVICE_URL", "http://127.0.0.1:10101"))
    make_app(state).listen(url.port, url.hostname)
    log.info(
        "GPU admin service on %s (ledger %s, checks every %.0f s)",
        url.geturl(),
        state.ledger.engine.url.render_as_string(hide_password=True),
        state.settings.check_interval,
    )
    await state.watcher.run_forever()


if __name__ == "__main__":
    asyncio.run(main())
