"""What every test hub shares, whatever its backend: loaded first by tests/hub_config.py
(Docker) and tests/kube_hub_config.py (Kubernetes) with ``load_subconfig``.

Ports, the database and the working folder come from $GPUSPAWNER_TEST_SETTINGS (JSON), which
gpuspawner.testing.hubprocess.Hub writes for each hub it starts.
"""

import json
import os

c = get_config()  # noqa: F821

settings = json.loads(os.environ["GPUSPAWNER_TEST_SETTINGS"])

c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = settings["port"]
c.JupyterHub.hub_ip = c.JupyterHub.hub_connect_ip = settings["hub_ip"]
c.JupyterHub.hub_port = settings["hub_port"]
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:%d" % settings["proxy_api_port"]
c.JupyterHub.db_url = settings["db_url"]
c.JupyterHub.cookie_secret_file = os.path.join(settings["workdir"], "cookie_secret")
c.ConfigurableHTTPProxy.pid_file = os.path.join(settings["workdir"], "proxy.pid")
c.JupyterHub.log_level = "DEBUG"
c.JupyterHub.tornado_settings = {"slow_spawn_timeout": settings.get("slow_spawn_timeout", 10)}

c.JupyterHub.authenticator_class = "dummy"
c.Authenticator.allow_all = True
c.JupyterHub.allow_named_servers = True
c.JupyterHub.named_server_limit_per_user = 5
c.JupyterHub.services = [{"name": "tests", "api_token": settings["token"]}]
c.JupyterHub.load_roles = [{"name": "admin", "services": ["tests"]}]
