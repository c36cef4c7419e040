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

# ports, database, login and the tests' API token: tests/hub_base_config.py
load_subconfig("hub_base_config.py", os.path.dirname(__file__))  # noqa: F821
c.JupyterHub.spawner_class = "gpu-kubernetes"
# settings["hub_ip"] is the real node's bridge gateway: pods reach the hub there, and the
# hub and proxy reach pods on their IPs

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
