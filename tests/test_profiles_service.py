"""A course profile's maximum age and GPU-idle timeout, enforced by the admin service's
watcher for the servers of that profile (a real ledger, sqlite; the hub's REST API as the
watcher reads it)."""

from datetime import timedelta

from gpuspawner.policy.inventory import Gpu
from gpuspawner.service import AdminSettings
from gpuspawner.service.engine import EngineView
from gpuspawner.service.service_metrics import ServiceMetrics
from gpuspawner.service.watcher import Watcher
from gpuspawner.usage.ledger import Ledger, now_utc


class Hub:
    """Three ready servers as the hub's API lists them, with the options they started with."""

    def __init__(self):
        self.stopped = []

    async def users(self):
        servers = {
            "lab": {"ready": True, "user_options": {"profile": "lab"}},
            "project": {"ready": True, "user_options": {"profile": "project"}},
            "plain": {"ready": True, "user_options": {}},
        }
        return [{"name": "ann", "groups": ["students"], "servers": servers}]

    async def stop_server(self, user, server):
        self.stopped.append((user, server))


def watcher_for(tmp_path, started_minutes_ago: float, utilisation: str, **settings):
    ledger = Ledger("sqlite:///%s" % (tmp_path / "usage.sqlite"))
    begin = now_utc() - timedelta(minutes=started_minutes_ago)
    for server, uuid in (("lab", "GPU-l"), ("project", "GPU-p"), ("plain", "GPU-x")):
        ledger.open("ann", server, [Gpu(uuid, "Tesla T4")], begin)
    (tmp_path / "util.json").write_text(utilisation)
    admin = AdminSettings(
        usage_db_url=ledger.url,
        gpu_utilisation_source="file:%s" % (tmp_path / "util.json"),
        **settings,
    )
    hub = Hub()
    return Watcher(admin, ledger, hub, ServiceMetrics(), EngineView(None)), hub, ledger


async def test_a_profiles_maximum_age_stops_only_its_servers(tmp_path):
    watcher, hub, ledger = watcher_for(
        tmp_path, 90, "{}",
        gpu_max_age=4 * 3600, profile_limits={"lab": {"gpu_max_age": 3600.0}},
    )  # fmt: skip
    await watcher.check()
    assert hub.stopped == [("ann", "lab")]  # 90 min: past the lab's hour, not the 4 h
    notices = ledger.notices(now_utc() - timedelta(days=1), "max-age")
    assert notices[0]["message"] == (
        "Stopped ann's server 'lab': it held GPUs for 90 min, the maximum is 60 min"
        " (gpu_max_age of profile 'lab')."
    )
    ledger.dispose()


async def test_a_profile_without_a_maximum_age_where_the_spawner_has_one(tmp_path):
    watcher, hub, ledger = watcher_for(
        tmp_path, 90, "{}", gpu_max_age=3600, profile_limits={"project": {"gpu_max_age": 0}}
    )
    await watcher.check()
    assert hub.stopped == [("ann", "lab"), ("ann", "plain")]  # the project's 0: none
    ledger.dispose()


async def test_a_profiles_idle_timeout(tmp_path):
    idle = '{"GPU-l": 0, "GPU-p": 0, "GPU-x": 0}'
    watcher, hub, ledger = watcher_for(
        tmp_path, 5, idle, profile_limits={"lab": {"gpu_idle_timeout": 60.0}}
    )
    await watcher.check(now_utc() - timedelta(minutes=2))  # idle since then
    await watcher.check()
    assert hub.stopped == [("ann", "lab")]  # the others have no idle timeout
    ledger.dispose()
