"""Budgets, the ledger, the admin service and GPU-idle culling with a real hub, engine and browser.

Each test runs a real jupyterhub process (tests/hub_config.py) with the gpu-docker
spawner in "runtime-env" mode, so containers start and hold declared GPUs by label.
The admin service runs as the hub's managed service; its utilisation source is a JSON
file the test writes (this machine has no GPU to sample).
"""

import json
import os
import re
import signal
import socket
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import requests

from gpuspawner.testing.browser import chromium, hub_page
from gpuspawner.testing.databases import fresh_postgres_database
from gpuspawner.testing.hubprocess import free_port, is_stopped, wait_for
from gpuspawner.usage.ledger import Ledger

pytestmark = pytest.mark.docker
SERVICE = "/services/gpu-admin/"
SCREENSHOTS = Path(__file__).resolve().parent.parent / "test-output"


def held_gpu(docker_client, user, server=""):
    (container,) = [
        c
        for c in docker_client.containers.list(filters={"label": "gpuspawner.user=" + user})
        if c.labels.get("gpuspawner.server") == server
    ]
    return container.labels["gpuspawner.gpus"]


def service_hub(hub_factory, tmp_path, **overrides):
    settings = dict(
        gpu_mode="runtime-env",
        usage_db_url="sqlite:///%s" % (tmp_path / "usage.sqlite"),
        admin_service_port=free_port(),
        admin_users=["boss"],
        gpu_hour_budget_groups={"students": 10, "staff": None},
        gpu_quota_groups={"staff": 4},
    )
    settings.update(overrides)
    hub = hub_factory(**settings)
    wait_for(
        lambda: hub.session.get(hub.url + SERVICE + "api/inventory", timeout=10).status_code == 200,
        what="the admin service",
    )
    return hub


def test_admin_service_auth_api_csv_metrics_and_page(hub_factory, docker_client, tmp_path):
    hub = service_hub(hub_factory, tmp_path)
    hub.create_user("ann", groups=("students",))
    hub.create_user("sam", groups=("staff",))
    hub.create_user("boss")
    assert hub.spawn("ann", "train", {"gpus": 1}).status_code in (201, 202)
    assert hub.spawn("sam", options={"gpus": 2}).status_code in (201, 202)
    hub.wait_ready("ann", "train")
    hub.wait_ready("sam")
    ann_gpu = held_gpu(docker_client, "ann", "train")

    # anonymous: sent to the hub's login; a normal user: 403 (the home page is their own
    # usage); an admin (or an admin token): 200
    anonymous = requests.get(hub.url + SERVICE, allow_redirects=False, timeout=30)
    assert anonymous.status_code == 302 and "/hub/" in anonymous.headers["Location"]
    ann_token = hub.user_token("ann")
    for path in ("api/usage", "api/ledger.csv", "metrics", "api/inventory", "api/adjustments"):
        forbidden = requests.get(
            hub.url + SERVICE + path, headers={"Authorization": "token " + ann_token}, timeout=30
        )
        assert forbidden.status_code == 403, (path, forbidden.status_code)
    own = hub.login("ann").get(hub.url + SERVICE, timeout=30)
    assert own.status_code == 200 and "<h1>My GPU usage</h1>" in own.text
    assert "GPU inventory" not in own.text
    admin_page = hub.login("boss").get(hub.url + SERVICE, timeout=30)
    # other test hubs may share this engine: count only this test's holdings
    assert admin_page.status_code == 200 and re.search(
        r"GPU inventory: \d of 8 held", admin_page.text
    )
    assert "<td>%s</td><td>ann</td><td>train</td>" % "NVIDIA A100-SXM4-80GB" in admin_page.text

    inventory = hub.session.get(hub.url + SERVICE + "api/inventory", timeout=30).json()
    assert len(inventory) == 8
    (ann_row,) = [gpu for gpu in inventory if gpu["uuid"] == ann_gpu]
    assert (ann_row["user"], ann_row["server"], ann_row["name"]) == (
        "ann",
        "train",
        "NVIDIA A100-SXM4-80GB",
    )
    assert datetime.fromisoformat(ann_row["since"]) > datetime.now(timezone.utc) - timedelta(
        minutes=5
    )
    assert sum(1 for gpu in inventory if gpu["user"] == "sam") == 2

    time.sleep(1)
    usage = hub.session.get(hub.url + SERVICE + "api/usage", timeout=30).json()
    users = {u["user"]: u for u in usage["users"]}
    assert users["ann"]["group"] == "students" and users["ann"]["budget_hours"] == 10
    assert 0 < users["ann"]["used_hours"] < 0.1 and users["ann"]["gpu_servers"] == ["train"]
    assert users["sam"]["budget_hours"] is None and users["sam"]["gpus_held"] == 2
    groups = {g["group"]: g for g in usage["groups"]}
    assert groups["staff"]["unlimited_users"] == 1 and groups["students"]["budget_hours"] == 10
    daily = hub.session.get(hub.url + SERVICE + "api/daily", timeout=30).json()
    assert len(daily["days"]) == 14 and daily["groups"]["staff"][-1] > 0

    hub.stop_server("ann", "train")
    today = datetime.now(timezone.utc).date().isoformat()
    csv_text = hub.session.get(
        hub.url + SERVICE + "api/ledger.csv", params={"start": today, "end": today}, timeout=30
    )
    assert csv_text.headers["Content-Type"].startswith("text/csv")
    rows = csv_text.text.splitlines()
    assert rows[0] == "user,server,gpu_uuid,gpu_name,start,end,hours_in_range,end_reason"
    (ann_csv,) = [r for r in rows if r.startswith("ann,")]
    assert ann_csv.startswith("ann,train,%s,NVIDIA A100-SXM4-80GB," % ann_gpu) and ann_csv.endswith(
        ",stopped"
    )
    assert len([r for r in rows if r.startswith("sam,")]) == 2
    bad = hub.session.get(
        hub.url + SERVICE + "api/ledger.csv", params={"start": "last week"}, timeout=30
    )
    assert bad.status_code == 400

    # the hub's own /hub/metrics: GPUs by type and state, allocations by group
    hub_metrics = hub.session.get(hub.url + "/hub/metrics", timeout=30).text
    counts = {
        state: float(value)
        for state, value in re.findall(
            r'gpuspawner_gpus\{gpu_type="NVIDIA A100-SXM4-80GB",state="(\w+)"\} ([0-9.]+)',
            hub_metrics,
        )
    }
    assert counts["allocated"] + counts["free"] == 8 and counts["allocated"] >= 2
    assert 'gpuspawner_gpu_allocations_total{group="students"} 1.0' in hub_metrics
    assert 'gpuspawner_gpu_allocations_total{group="staff"} 2.0' in hub_metrics
    service_metrics = hub.session.get(hub.url + SERVICE + "metrics", timeout=30).text
    assert "gpuspawner_budget_used_gpu_hours" in service_metrics

    screenshot_dashboard(hub)


def screenshot_dashboard(hub, name: str = "gpu-admin-dashboard.png"):
    """The page an admin sees, in Chromium, saved for a person to look at."""
    with chromium() as browser:
        _, page = hub_page(browser, hub, "boss", SERVICE)
        assert page.get_by_role("heading", name="GPU usage").is_visible()
        assert page.get_by_role("heading", name=re.compile("GPU inventory")).is_visible()
        assert page.get_by_role("img", name="GPU-hours per day and group").is_visible()
        assert page.get_by_role("button", name="Download CSV").is_visible()
        SCREENSHOTS.mkdir(exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / name), full_page=True)


def test_spent_budget_warns_stops_after_grace_and_refuses_gpu_spawns(
    hub_factory, docker_client, tmp_path
):
    # 0.0005 GPU-hours is 1.8 s of one GPU: spent almost at once
    hub = service_hub(
        hub_factory,
        tmp_path,
        gpu_hour_budget_groups={"students": 0.0005},
        budget_grace_period=2,
        admin_check_interval=1,
    )
    hub.create_user("ann", groups=("students",))
    assert hub.spawn("ann", options={"gpus": 1}).status_code in (201, 202)
    hub.wait_ready("ann")
    wait_for(lambda: is_stopped(hub, "ann"), timeout=40, what="the service to stop ann's server")

    ledger = Ledger(hub.settings["usage_db_url"])
    kinds = [n["kind"] for n in ledger.notices()]
    assert kinds == ["budget-warning", "budget-spent"]
    (row,) = ledger.rows(user="ann")
    assert row.end_reason == "budget-spent" and row.ended is not None
    ledger.dispose()

    refused = hub.spawn("ann", options={"gpus": 1})
    assert refused.status_code == 403
    message = refused.json()["message"]
    assert re.fullmatch(
        r"Your GPU-hour budget is spent: you have used [0-9.]+ GPU-hours? of 0 GPU-hours this week"
        r" \(group 'students'\)\. It resets on Monday \d+ \w+ \d{4} at 00:00 UTC\."
        r" Until then, start servers with 0 GPUs\.",
        message,
    ), message
    form = hub.spawn_form(hub.login("ann"), "ann")
    assert "GPU-hours left this week: 0 of 0 GPU-hours (group &#x27;students&#x27;)" in form
    assert '<option value="1">' not in form  # the form offers 0 GPUs only
    assert hub.spawn("ann", options={"gpus": 0}).status_code in (201, 202)  # CPU-only still starts
    hub.wait_ready("ann")
    assert (
        'gpuspawner_spawn_refusals_total{reason="budget"} 1.0'
        in hub.session.get(hub.url + "/hub/metrics").text
    )


def test_idle_gpu_server_is_culled_and_a_busy_one_is_not(hub_factory, docker_client, tmp_path):
    utilisation = tmp_path / "utilisation.json"
    utilisation.write_text("{}")
    hub = service_hub(
        hub_factory,
        tmp_path,
        gpu_idle_timeout=4,
        admin_check_interval=1,
        gpu_utilisation_source="file:%s" % utilisation,
    )
    for user in ("idle", "busy", "cpu"):
        hub.create_user(user, groups=("students",))
    for user, gpus in (("idle", 1), ("busy", 1), ("cpu", 0)):
        assert hub.spawn(user, options={"gpus": gpus}).status_code in (201, 202)
    for user in ("idle", "busy", "cpu"):
        hub.wait_ready(user)
    # the busy server's GPU trains at 90%; its browser tab is closed (no HTTP activity at all)
    utilisation.write_text(
        json.dumps({held_gpu(docker_client, "idle"): 1, held_gpu(docker_client, "busy"): 90})
    )
    started = time.monotonic()
    wait_for(lambda: is_stopped(hub, "idle"), timeout=40, what="the idle GPU server to be culled")
    assert time.monotonic() - started >= 3  # not before the timeout
    time.sleep(3)
    assert hub.server_model("busy")["ready"] and hub.server_model("cpu")["ready"]
    # the servers are told of the idle cull (JupyterLab warns before it); the busy one's page
    # shows no idle time
    (busy,) = docker_client.containers.list(filters={"label": "gpuspawner.user=busy"})
    env = dict(e.split("=", 1) for e in busy.attrs["Config"]["Env"])
    assert (env["GPUSPAWNER_GPU_IDLE_TIMEOUT"], env["GPUSPAWNER_GPU_IDLE_WARNING"]) == ("4", "300")
    busy_usage = hub.session.get(hub.url + SERVICE + "api/users/busy", timeout=30).json()
    assert [s["idle_since"] for s in busy_usage["servers"]] == [None]
    ledger = Ledger(hub.settings["usage_db_url"])
    (notice,) = ledger.notices(kind="gpu-idle")
    assert notice["user"] == "idle" and "below 5% utilisation for 4 s" in notice["message"]
    assert [r.end_reason for r in ledger.rows(user="idle")] == ["gpu-idle"]
    ledger.dispose()
    assert (
        "Stopped idle&#x27;s server &#x27;&#x27;"
        in hub.session.get(hub.url + SERVICE, timeout=30).text
    )


@pytest.mark.postgres
def test_hub_killed_ledger_recovers_on_postgres(hub_factory, docker_client):
    url, drop = fresh_postgres_database()
    try:
        hub = hub_factory(
            gpu_mode="runtime-env", usage_db_url=url, gpu_quota=1, gpu_resync_interval=1
        )
        for user in ("kay", "lou"):
            hub.create_user(user)
            assert hub.spawn(user, options={"gpus": 1}).status_code in (201, 202)
            hub.wait_ready(user)
        time.sleep(11)  # older than the reconcile grace, and seen by a few resyncs
        # the spawn form of a new server lists the engine, which refreshes last_seen
        # (the default server's form would only redirect to the running server)
        assert "GPUs free on this hub" in hub.spawn_form(hub.login("kay"), "kay", "another")
        seen_at = datetime.now(timezone.utc)
        hub.kill9()
        killed_at = datetime.now(timezone.utc)
        (lou,) = docker_client.containers.list(filters={"label": "gpuspawner.user=lou"})
        lou.kill()  # lou's container dies while no hub is watching
        time.sleep(2)
        hub.start()
        hub.spawn_form(hub.login("kay"), "kay")  # the first listing after the restart reconciles
        ledger = Ledger(url)
        mine = [
            r for r in ledger.rows() if r.user in ("kay", "lou")
        ]  # the engine may hold others' too
        assert sorted(r.user for r in mine) == ["kay", "lou"]  # nothing counted twice
        rows = {r.user: r for r in mine}
        assert rows["kay"].ended is None
        lou_end = rows["lou"].ended.replace(tzinfo=timezone.utc)
        assert rows["lou"].end_reason == "gone"
        lou_start = rows["lou"].started.replace(tzinfo=timezone.utc)
        # ended at its last sighting before the kill, not at its start nor at the restart
        assert lou_start + timedelta(seconds=10) < lou_end <= killed_at
        assert seen_at - lou_end < timedelta(seconds=5)
        hub.stop_server("kay")
        (kay,) = ledger.rows(user="kay")
        assert kay.end_reason == "stopped" and kay.ended is not None
        ledger.dispose()
    finally:
        drop()


def port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL])
def test_the_admin_service_stops_cleanly_with_its_hub(hub_factory, tmp_path, signum):
    """SIGTERM or SIGINT (Ctrl-C) to the hub: the hub stops its service, which ends without a
    traceback. SIGKILL: the orphaned service ends by itself (a restarted hub needs its port)."""
    log = tmp_path / "service.log"
    hub = service_hub(hub_factory, tmp_path, admin_service_log=str(log), admin_check_interval=1)
    port = hub.settings["admin_service_port"]
    time.sleep(2)  # a pass or two of the watcher
    hub.process.send_signal(signum)
    hub.process.wait(30)
    if signum == signal.SIGKILL:
        # the hub could not stop its proxy: stop it here
        os.kill(int((Path(hub.settings["workdir"]) / "proxy.pid").read_text()), signal.SIGTERM)
    wait_for(lambda: not port_open(port), timeout=20, what="the service to let go of its port")
    text = wait_for(
        lambda: "GPU admin service stopped" in log.read_text() and log.read_text(),
        timeout=10,
        what="the service's last line",
    )
    assert "GPU admin service on " in text
    assert "Traceback" not in text, text
    if signum == signal.SIGKILL:
        assert "stopping: the hub process (pid %d) ended" % hub.process.pid in text
    else:
        assert "stopping: signal SIGINT" in text  # the hub interrupts its services first


def test_each_user_sees_only_their_own_usage_and_admins_adjust_limits(
    hub_factory, docker_client, tmp_path
):
    """The usage page behind the real hub: listed on the hub's home page for every user, a
    user's own data only (403 for another's), the user's CSV; an admin's adjustments from
    the dashboard's form (refused without the XSRF token) and the JSON API, shown on the
    user's page and used by the next spawn."""
    hub = service_hub(hub_factory, tmp_path, gpu_quota=1)
    for name, groups in (("ann", ("students",)), ("bob", ("students",)), ("boss", ())):
        hub.create_user(name, groups=groups)
    assert hub.spawn("ann", options={"gpus": 1}).status_code in (201, 202)
    assert hub.spawn("bob", options={"gpus": 1}).status_code in (201, 202)
    hub.wait_ready("ann")
    hub.wait_ready("bob")

    ann = hub.login("ann")
    home = ann.get(hub.url + "/hub/home", timeout=30).text
    assert 'href="%s"' % SERVICE in home  # the hub's Services menu lists it for every user
    page = ann.get(hub.url + SERVICE + "users/ann", timeout=30)
    assert page.status_code == 200
    assert re.search(r"GPU-hours left this week: [0-9.]+ of 10 GPU-hours \(group &#x27;students",
                     page.text), page.text  # fmt: skip
    assert "<td>default</td><td>NVIDIA A100-SXM4-80GB</td>" in page.text
    assert 'aria-label="My GPU-hours per day"' in page.text
    for other in ("users/bob", "users/bob/ledger.csv", "api/users/bob"):
        refused = ann.get(hub.url + SERVICE + other, timeout=30)
        assert refused.status_code == 403, (other, refused.status_code)
        assert "You may see only your own GPU usage." in refused.text
    csv_rows = ann.get(hub.url + SERVICE + "users/ann/ledger.csv", timeout=30).text.splitlines()
    assert csv_rows[0].startswith("user,server,gpu_uuid") and len(csv_rows) == 2
    assert csv_rows[1].startswith("ann,,")
    ann_token = hub.user_token("ann")
    mine = requests.get(hub.url + SERVICE + "api/users/ann", timeout=30,
                        headers={"Authorization": "token " + ann_token}).json()  # fmt: skip
    assert mine["budget_hours"] == 10 and [s["server"] for s in mine["servers"]] == [""]
    assert mine["servers"][0]["deadline"] is not None  # the budget, spent at this rate
    assert requests.post(
        hub.url + SERVICE + "api/adjustments", timeout=30,
        headers={"Authorization": "token " + ann_token},
        json={"user": "ann", "kind": "top-up", "value": 100, "reason": "mine"},
    ).status_code == 403  # fmt: skip
    # an admin may view anyone's page
    boss = hub.login("boss")
    assert "<h1>GPU usage of ann</h1>" in boss.get(hub.url + SERVICE + "users/ann").text

    # a second GPU is over ann's quota of 1
    refused = hub.spawn("ann", "second", {"gpus": 1})
    assert refused.status_code == 403
    assert "your limit is 1 GPU at once (the default for every user)" in refused.json()["message"]

    # the dashboard's form: refused without the XSRF token, accepted with it
    fields = {"user": "ann", "kind": "quota", "value": "2", "reason": "thesis runs"}
    no_token = boss.post(hub.url + SERVICE + "adjustments", data=fields, allow_redirects=False)
    assert no_token.status_code == 403
    assert hub.session.get(hub.url + SERVICE + "api/adjustments").json() == []
    dashboard = boss.get(hub.url + SERVICE, timeout=30).text
    xsrf = re.search(r'name="_xsrf" value="([^"]+)"', dashboard).group(1)
    done = boss.post(hub.url + SERVICE + "adjustments", data=dict(fields, _xsrf=xsrf),
                     allow_redirects=False)  # fmt: skip
    assert done.status_code == 303, done.text
    # the JSON API (an admin token): a top-up, and bad input answered with a sentence
    api = hub.url + SERVICE + "api/adjustments"
    topped = hub.session.post(api, json={"user": "ann", "kind": "top-up", "value": 5,
                                         "reason": "deadline"})  # fmt: skip
    assert topped.status_code == 201 and topped.json()["by"] == "tests"
    bad = hub.session.post(api, json={"user": "ann", "kind": "top-up", "value": "lots",
                                      "reason": "x"})  # fmt: skip
    assert bad.status_code == 400 and "The value must be a number, not 'lots'." in bad.text
    assert hub.session.post(api, data="{").status_code == 400
    assert hub.session.post(api, json={"user": "nobody", "kind": "quota", "value": 1,
                                       "reason": "x"}).status_code == 400  # fmt: skip
    made = hub.session.get(api, params={"user": "ann"}).json()
    assert [(a["kind"], a["value"], a["by"], a["reason"]) for a in made] == [
        ("quota", 2, "boss", "thesis runs"), ("top-up", 5, "tests", "deadline"),
    ]  # fmt: skip

    # at once: the next spawn gets the quota of 2, the page and the API the budget of 15
    assert hub.spawn("ann", "second", {"gpus": 1}).status_code in (201, 202)
    hub.wait_ready("ann", "second")
    page = ann.get(hub.url + SERVICE, timeout=30).text
    assert "of 15 GPU-hours (group &#x27;students&#x27; + 5 GPU-hours top-up)" in page
    assert "<td>quota 2 GPUs at once</td><td>thesis runs</td><td>boss</td>" in page
    users = {u["user"]: u for u in hub.session.get(hub.url + SERVICE + "api/usage").json()["users"]}
    assert users["ann"]["budget_hours"] == 15 and users["bob"]["budget_hours"] == 10
    # the server's environment carries the budget at start and the page's path
    (container,) = [
        c for c in docker_client.containers.list(filters={"label": "gpuspawner.user=ann"})
        if c.labels.get("gpuspawner.server") == "second"
    ]  # fmt: skip
    env = dict(e.split("=", 1) for e in container.attrs["Config"]["Env"])
    assert env["GPUSPAWNER_USAGE_URL"] == SERVICE + "users/ann"
    assert float(env["GPUSPAWNER_BUDGET_HOURS"]) == 15
    assert env["GPUSPAWNER_BUDGET_PERIOD"] == "week"
    screenshot_user_page(hub)


def screenshot_user_page(hub):
    """ann's page in Chromium, found from the hub's Services menu."""
    with chromium() as browser:
        _, page = hub_page(browser, hub, "ann", "/hub/home")
        page.get_by_role("button", name="Services").click()
        page.get_by_role("link", name="gpu-admin").click()
        page.wait_for_url("**" + SERVICE + "**")
        assert page.get_by_role("heading", name="My GPU usage").is_visible()
        assert page.get_by_role("img", name="My GPU-hours per day").is_visible()
        assert page.get_by_role("link", name="Download my ledger (CSV)").is_visible()
        SCREENSHOTS.mkdir(exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "gpu-my-usage.png"), full_page=True)


def test_a_role_with_the_admin_scope_makes_a_service_admin(hub_factory, tmp_path):
    """Delegation: the custom scope custom:gpuspawner:admin, granted by a role, opens the
    dashboard and the JSON API about everyone (in the browser's OAuth token too)."""
    hub = service_hub(hub_factory, tmp_path, extra_roles=[
        {"name": "gpu-deputies", "users": ["deputy"], "scopes": ["custom:gpuspawner:admin"]},
    ])  # fmt: skip
    hub.create_user("ann", groups=("students",))
    deputy = hub.login("deputy")
    dashboard = deputy.get(hub.url + SERVICE, timeout=30)
    assert dashboard.status_code == 200 and "GPU inventory" in dashboard.text
    assert deputy.get(hub.url + SERVICE + "users/ann", timeout=30).status_code == 200
    token = {"Authorization": "token " + hub.user_token("deputy")}
    assert requests.get(hub.url + SERVICE + "api/usage", headers=token, timeout=30).ok
    # without the role: the user's own page only
    ann = hub.login("ann")
    assert "GPU inventory" not in ann.get(hub.url + SERVICE, timeout=30).text
    assert ann.get(hub.url + SERVICE + "api/usage", timeout=30).status_code == 403
