"""Users' secrets with a real hub, its admin service and real Docker containers.

A user stores secrets on their page (the form, with the hub's XSRF token) and through the
JSON API (with a token); their server's container has them in its environment (read with
``docker exec``), another user's does not; no label, log or ledger table carries a value;
other users and admins get 403; a hub started with a wrong key stops with the reason and
the stored secrets still decrypt with the right one.
"""

import re
import sqlite3
import subprocess
from pathlib import Path

import pytest
import requests
from cryptography.fernet import Fernet

from gpuspawner.testing.browser import chromium, hub_page
from gpuspawner.testing.hubprocess import Hub, free_port, hub_settings, wait_for
from gpuspawner.usage.secrets import DISABLED_SENTENCE, SecretStore

pytestmark = pytest.mark.docker
SERVICE = "/services/gpu-admin/"
SCREENSHOTS = Path(__file__).resolve().parent.parent / "test-output"
KEY = Fernet.generate_key().decode()
HF_TOKEN = "hf_" + Fernet.generate_key().decode()[:30]  # this run's own value
WANDB = "wandb-" + Fernet.generate_key().decode()[:24]


def secrets_hub(hub_factory, tmp_path, **overrides):
    settings = dict(
        usage_db_url="sqlite:///%s" % (tmp_path / "usage.sqlite"),
        admin_service_port=free_port(),
        admin_service_log=str(tmp_path / "service.log"),
        admin_users=["boss"],
        secrets_keys=[KEY],
        check_config=True,
    )
    settings.update(overrides)
    hub = hub_factory(**settings)
    wait_for(
        lambda: hub.session.get(hub.url + SERVICE + "api/inventory", timeout=10).status_code == 200,
        what="the admin service",
    )
    return hub


def container_of(docker_client, user: str):
    (container,) = docker_client.containers.list(filters={"label": "gpuspawner.user=" + user})
    return container


def printenv(container, name: str) -> tuple[int, str]:
    result = subprocess.run(
        ["docker", "exec", container.id, "printenv", name], capture_output=True, text=True
    )
    return result.returncode, result.stdout.strip()


def xsrf_of(page: str) -> str:
    return re.search(r'name="_xsrf" value="([^"]+)"', page).group(1)


def as_token(hub, token: str, method: str, path: str, **kwargs) -> requests.Response:
    return requests.request(
        method, hub.url + SERVICE + path, headers={"Authorization": "token " + token},
        timeout=30, **kwargs,
    )  # fmt: skip


def test_a_users_secrets_reach_only_their_server_and_nowhere_else(
    hub_factory, docker_client, tmp_path
):
    hub = secrets_hub(hub_factory, tmp_path)
    for user in ("ann", "bob", "boss"):
        hub.create_user(user)

    # ann's page: the form, with the hub's XSRF token
    ann = hub.login("ann")
    page = ann.get(hub.url + SERVICE + "users/ann", timeout=30)
    assert page.status_code == 200 and "Your secrets" in page.text
    assert "You have no secrets." in page.text
    form = {"_xsrf": xsrf_of(page.text), "action": "set", "name": "HF_TOKEN", "value": HF_TOKEN}
    saved = ann.post(hub.url + SERVICE + "users/ann/secrets", data=form, timeout=30)
    assert saved.status_code == 200 and saved.url.endswith("users/ann?secret=added#secrets")
    assert "<code>HF_TOKEN</code>" in saved.text and HF_TOKEN not in saved.text
    assert "…" + HF_TOKEN[-2:] in saved.text  # only a hint of the value
    # the same form without the XSRF token is refused, and changes nothing
    forged = ann.post(
        hub.url + SERVICE + "users/ann/secrets",
        data={"action": "set", "name": "HF_TOKEN", "value": "forged"},
        allow_redirects=False,
        timeout=30,
    )
    assert forged.status_code == 403
    # bad input: a sentence and 400
    bad = ann.post(
        hub.url + SERVICE + "users/ann/secrets",
        data={**form, "name": "LD_PRELOAD"},
        allow_redirects=False,
        timeout=30,
    )
    assert bad.status_code == 400
    assert "LD_PRELOAD is set by the hub or the system and cannot be a secret." in bad.text

    # the JSON API, with ann's token
    ann_token = hub.user_token("ann")
    put = as_token(hub, ann_token, "PUT", "api/users/ann/secrets/WANDB_API_KEY",
                   json={"value": WANDB})  # fmt: skip
    assert put.status_code == 201 and put.json()["hint"] == "…" + WANDB[-2:]
    assert as_token(hub, ann_token, "PUT", "api/users/ann/secrets/TEMP", json={"value": "x"}).ok
    assert as_token(hub, ann_token, "DELETE", "api/users/ann/secrets/TEMP").status_code == 204
    assert as_token(hub, ann_token, "DELETE", "api/users/ann/secrets/TEMP").status_code == 404
    listing = as_token(hub, ann_token, "GET", "api/users/ann/secrets").json()
    assert listing["enabled"] is True
    assert [s["name"] for s in listing["secrets"]] == ["HF_TOKEN", "WANDB_API_KEY"]
    assert HF_TOKEN not in str(listing) and WANDB not in str(listing)
    refused = as_token(hub, ann_token, "PUT", "api/users/ann/secrets/1BAD", json={"value": "x"})
    assert refused.status_code == 400 and "is not an environment variable name" in refused.text

    # nobody else: another user, an admin, the hub's own service token
    bob_token, boss_token = hub.user_token("bob"), hub.user_token("boss")
    for token in (bob_token, boss_token, hub.settings["token"]):
        for method, path, body in (
            ("GET", "api/users/ann/secrets", None),
            ("PUT", "api/users/ann/secrets/HF_TOKEN", {"value": "stolen"}),
            ("DELETE", "api/users/ann/secrets/HF_TOKEN", None),
        ):
            response = as_token(hub, token, method, path, json=body)
            assert response.status_code == 403, (method, path, response.status_code)
    boss = hub.login("boss")
    for path in ("", "users/ann", "api/usage", "api/inventory"):
        shown = boss.get(hub.url + SERVICE + path, timeout=30).text
        assert HF_TOKEN not in shown and WANDB not in shown and "WANDB_API_KEY" not in shown

    # spawn: ann's container has them, bob's has none
    assert hub.spawn("ann").status_code in (201, 202)
    assert hub.spawn("bob").status_code in (201, 202)
    hub.wait_ready("ann")
    hub.wait_ready("bob")
    ann_container, bob_container = (
        container_of(docker_client, "ann"),
        container_of(docker_client, "bob"),
    )
    assert printenv(ann_container, "HF_TOKEN") == (0, HF_TOKEN)
    assert printenv(ann_container, "WANDB_API_KEY") == (0, WANDB)
    assert printenv(bob_container, "HF_TOKEN")[0] == 1  # not set
    assert printenv(bob_container, "WANDB_API_KEY")[0] == 1
    ann_container.reload()
    labels = str(ann_container.labels) + str(ann_container.attrs["Config"]["Labels"])
    assert HF_TOKEN not in labels and WANDB not in labels
    assert HF_TOKEN not in str(ann_container.image.attrs)

    # no log and no ledger table carries a value
    hub.stop_server("ann")
    hub.stop_server("bob")
    for log in (hub.log_path, tmp_path / "service.log"):
        text = log.read_text(errors="replace")
        assert HF_TOKEN not in text and WANDB not in text, log
    database = sqlite3.connect(tmp_path / "usage.sqlite")
    tables = [r[0] for r in database.execute("SELECT name FROM sqlite_master WHERE type='table'")]
    assert "gpuspawner_secrets" in tables and "gpu_intervals" in tables
    for table in tables:
        dump = str(database.execute('SELECT * FROM "%s"' % table).fetchall())
        assert HF_TOKEN not in dump and WANDB not in dump, table
    database.close()


def test_a_wrong_key_stops_the_hub_and_loses_nothing_and_no_key_turns_secrets_off(
    hub_factory, docker_client, tmp_path, bridge_gateway, test_image
):
    url = "sqlite:///%s" % (tmp_path / "usage.sqlite")
    store = SecretStore(url, [KEY])
    store.set("ann", "HF_TOKEN", HF_TOKEN)
    store.dispose()

    wrong = Fernet.generate_key().decode()
    workdir = tmp_path / "wrong"
    workdir.mkdir()
    settings = hub_settings(
        workdir, bridge_gateway, images=test_image, gpus=[], prefix="gpst-wrongkey",
        usage_db_url=url, secrets_keys=[wrong], check_config=True,
    )  # fmt: skip
    with pytest.raises(RuntimeError) as error:
        Hub(workdir, settings).start()
    assert (
        "secrets_keys cannot decrypt 1 stored secret(s) (of ann) in sqlite:///%s. Put back the"
        " key they were stored with" % (tmp_path / "usage.sqlite")
    ) in str(error.value)
    assert wrong not in str(error.value) and HF_TOKEN not in str(error.value)
    after = SecretStore(url, [KEY])
    assert after.values("ann") == {"HF_TOKEN": HF_TOKEN}  # nothing overwritten
    after.dispose()

    # no key: the page says secrets are off, and the spawn works without them
    hub = secrets_hub(hub_factory, tmp_path, usage_db_url=url, secrets_keys=[])
    hub.create_user("ann")
    page = hub.login("ann").get(hub.url + SERVICE + "users/ann", timeout=30)
    assert page.status_code == 200 and DISABLED_SENTENCE in page.text
    assert hub.spawn("ann").status_code in (201, 202)
    hub.wait_ready("ann")
    assert printenv(container_of(docker_client, "ann"), "HF_TOKEN")[0] == 1


@pytest.mark.browser
def test_the_secrets_form_in_a_browser(hub_factory, tmp_path):
    """What a person sees: save a secret with the page's form in Chromium, then delete it."""
    hub = secrets_hub(hub_factory, tmp_path)
    hub.create_user("ann")
    with chromium() as browser:
        _, page = hub_page(browser, hub, "ann", SERVICE + "users/ann")
        section = page.locator("section#secrets")
        assert section.get_by_text("You have no secrets.").is_visible()
        section.get_by_label("Name").fill("HF_TOKEN")
        section.get_by_label("Value").fill(HF_TOKEN)
        section.get_by_role("button", name="Save secret").click()
        page.wait_for_load_state()
        assert page.get_by_role("status").inner_text() == (
            "Secret saved. Servers you start from now on get it."
        )
        table = page.get_by_role("table", name="Your secrets")
        assert table.get_by_role("cell", name="HF_TOKEN", exact=True).is_visible()
        assert HF_TOKEN not in page.content()
        SCREENSHOTS.mkdir(exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "your-secrets.png"), full_page=True)
        page.get_by_role("button", name="Delete HF_TOKEN").click()
        page.wait_for_load_state()
        assert page.get_by_role("status").inner_text().startswith("Secret deleted.")
    store = SecretStore("sqlite:///%s" % (tmp_path / "usage.sqlite"), [KEY])
    assert store.values("ann") == {}
    store.dispose()
