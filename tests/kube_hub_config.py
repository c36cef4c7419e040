"""The Kubernetes hub the real-node tests run as a process (tests/test_kube_node.py).

KubeGPUSpawner against the test control plane (gpuspawner.testing.kube_cluster) and its real node
(tests/kube_node.py); settings come from the environment, as in tests/hub_config.py.
"""

import json
import os

c = get_config()  # noqa: F821

settings = json.loads(os.environ["GPUSPAWNER_TEST_SETTINGS"])

# the Kubernetes client reads $KUBECONFIG when it is imported, which may have happened already
from kubernetes_asyncio.config import kube_config  # noqa: E402

os.environ["KUBECONFIG"] = kube_config.KUBE_CONFIG_DEFAULT_LOCATION = settings["kubeconfig"]

c.JupyterHub.spawner_class = "gpu-kubernetes"
c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = settings["port"]
# pods reach the hub on the node's bridge gateway; the hub and proxy reach pods on their IPs
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

c.KubeGPUSpawner.namespace = settings["namespace"]
c.KubeGPUSpawner.images = settings["images"]
c.KubeGPUSpawner.gpu_profiles = settings.get("gpu_profiles", {})
c.KubeGPUSpawner.gpu_quota = settings.get("gpu_quota", 1)
c.KubeGPUSpawner.image_pull_policy = "Never"  # the node's containerd has the images already
c.KubeGPUSpawner.storage_class = settings["storage_class"]
c.KubeGPUSpawner.storage_capacity = "1Gi"
c.KubeGPUSpawner.cpu_guarantee = 0.05
c.KubeGPUSpawner.mem_guarantee = "64M"
c.KubeGPUSpawner.mem_limit = "2G"
c.KubeGPUSpawner.gpu_wait_timeout = 60
c.KubeGPUSpawner.k8s_api_request_timeout = 10
c.KubeGPUSpawner.usage_db_url = settings["usage_db_url"]
c.Spawner.start_timeout = 120
c.Spawner.http_timeout = 90
