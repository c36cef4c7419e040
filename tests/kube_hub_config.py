"""The Kubernetes hub the Kubernetes hub tests run as a process (tests/test_kube_node.py on the
real node, tests/test_kube_service.py and tests/test_max_age.py).

KubeGPUSpawner against the test control plane (gpuspawner.testing.kube_cluster), with kwok's
nodes or its real node (tests/kube_node.py); settings come from the environment, as in
tests/hub_config.py.
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
c.KubeGPUSpawner.gpu_quota_groups = settings.get("gpu_quota_groups", {})
c.KubeGPUSpawner.image_pull_policy = "Never"  # the node's containerd has the images already
c.KubeGPUSpawner.storage_pvc_ensure = settings.get("storage_pvc_ensure", True)
c.KubeGPUSpawner.storage_class = settings["storage_class"]
c.KubeGPUSpawner.storage_capacity = "1Gi"
c.KubeGPUSpawner.cpu_guarantee = 0.05
c.KubeGPUSpawner.mem_guarantee = "64M"
c.KubeGPUSpawner.mem_limit = "2G"
c.KubeGPUSpawner.gpu_wait_timeout = settings.get("gpu_wait_timeout", 60)
c.KubeGPUSpawner.k8s_api_request_timeout = 10
c.KubeGPUSpawner.usage_db_url = settings["usage_db_url"]
c.Spawner.start_timeout = settings.get("start_timeout", 120)
# on kwok's nodes a pod runs nothing: a long http_timeout keeps its server pending (and its
# GPUs held) for as long as a test looks at it
c.Spawner.http_timeout = settings.get("http_timeout", 90)

# GPU-hour budgets and the admin service (defaults: no budget, no service)
c.KubeGPUSpawner.gpu_hour_budget = settings.get("gpu_hour_budget")
c.KubeGPUSpawner.gpu_hour_budget_groups = settings.get("gpu_hour_budget_groups", {})
c.KubeGPUSpawner.budget_grace_period = settings.get("budget_grace_period", 600)
c.KubeGPUSpawner.gpu_max_age = settings.get("gpu_max_age", 0)
c.KubeGPUSpawner.gpu_hour_weights = settings.get("gpu_hour_weights", {})
c.Authenticator.admin_users = set(settings.get("admin_users", []))
if "admin_service_port" in settings:
    from gpuspawner.service import add_admin_service

    # no spawner_class: the service takes the hub's (gpu-kubernetes, above)
    add_admin_service(
        c,
        port=settings["admin_service_port"],
        check_interval=settings.get("admin_check_interval", 30),
        log_file=settings.get("admin_service_log"),
    )
