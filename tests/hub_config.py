"""The hub the integration tests run as a real process; settings come from the environment."""

import json
import os

c = get_config()  # noqa: F821

settings = json.loads(os.environ["GPUSPAWNER_TEST_SETTINGS"])

# ports, database, login and the tests' API token: tests/hub_base_config.py
load_subconfig("hub_base_config.py", os.path.dirname(__file__))  # noqa: F821
c.JupyterHub.spawner_class = settings.get("spawner", "gpu-docker")

# the baseline for benchmarks: plain DockerSpawner on the same image and limits
c.DockerSpawner.image = settings["images"]["demo"]["image"]
c.DockerSpawner.remove = True
c.DockerSpawner.prefix = settings["prefix"]
c.DockerSpawner.mem_limit = "2G"
c.DockerSpawner.cpu_limit = 1.0
c.DockerSpawner.pull_policy = "never"

c.GPUDockerSpawner.images = settings["images"]
c.GPUDockerSpawner.pull_policy = settings.get("pull_policy", "never")
c.GPUDockerSpawner.pull_timeout = settings.get("pull_timeout", 900)
c.GPUDockerSpawner.driver_cuda_version = settings.get("driver_cuda_version", "")
c.GPUDockerSpawner.inventory = settings["gpus"]
c.GPUDockerSpawner.gpu_mode = settings.get("gpu_mode", "device-request")
c.GPUDockerSpawner.gpu_quota = settings.get("gpu_quota", 1)
c.GPUDockerSpawner.gpu_quota_groups = settings.get("gpu_quota_groups", {})
c.GPUDockerSpawner.prefix = settings["prefix"]
c.GPUDockerSpawner.workspace_volume_template = settings["prefix"] + "-workspace-{username}"
c.GPUDockerSpawner.user_environment = settings.get("user_environment", {})
c.GPUDockerSpawner.profiles = settings.get("profiles", {})  # course profiles (off: {})
c.GPUDockerSpawner.secrets_keys = settings.get("secrets_keys", [])  # users' secrets (off: [])
c.GPUDockerSpawner.mem_limit = "2G"
c.GPUDockerSpawner.cpu_limit = 1.0
c.Spawner.start_timeout = 120
c.Spawner.http_timeout = 60

# usage ledger, GPU-hour budgets and the admin service (defaults: no budget, no service)
if "usage_db_url" in settings:
    c.GPUDockerSpawner.usage_db_url = settings["usage_db_url"]
c.GPUDockerSpawner.gpu_hour_budget = settings.get("gpu_hour_budget")
c.GPUDockerSpawner.gpu_hour_budget_groups = settings.get("gpu_hour_budget_groups", {})
c.GPUDockerSpawner.budget_grace_period = settings.get("budget_grace_period", 600)
c.GPUDockerSpawner.gpu_max_age = settings.get("gpu_max_age", 0)
c.GPUDockerSpawner.gpu_queue_timeout = settings.get("gpu_queue_timeout", 0)  # the fair queue
c.GPUDockerSpawner.shared_gpus = settings.get("shared_gpus", {})  # GPU UUID or type -> servers
c.GPUDockerSpawner.shared_gpu_mode = settings.get("shared_gpu_mode", "time-sliced")
c.GPUDockerSpawner.gpu_idle_timeout = settings.get("gpu_idle_timeout", 0)
c.GPUDockerSpawner.gpu_utilisation_source = settings.get("gpu_utilisation_source", "nvml")
if settings.get("gpu_resync_interval"):
    c.GPUDockerSpawner.gpu_resync_interval = settings["gpu_resync_interval"]
c.GPUDockerSpawner.gpu_reservations = settings.get("gpu_reservations", [])  # class reservations
c.GPUDockerSpawner.gpu_reservation_lead = settings.get("gpu_reservation_lead", 3600)
c.Authenticator.admin_users = set(settings.get("admin_users", []))
c.JupyterHub.load_roles.extend(settings.get("extra_roles", []))  # e.g. a delegated admin scope
if "admin_service_port" in settings:
    from gpuspawner.service import add_admin_service

    add_admin_service(
        c,
        port=settings["admin_service_port"],
        check_interval=settings.get("admin_check_interval", 30),
        log_file=settings.get("admin_service_log"),
    )
    # on a simulated GPU host (tests/gpuhost) the service reads NVML through the same library
    c.JupyterHub.services[-1]["environment"].update(settings.get("service_environment", {}))
if "ssh_port" in settings:
    from gpuspawner.ssh import add_ssh_service

    add_ssh_service(
        c,
        port=settings["ssh_port"],
        listen_host="127.0.0.1",
        host_key_path=os.path.join(settings["workdir"], "ssh_host_key"),
    )
# admin extras for the locks tests (tests/test_hub_security.py); "callable": evaluated per spawn
if "extra_host_config" in settings:
    extra = settings["extra_host_config"]
    c.GPUDockerSpawner.extra_host_config = (
        (lambda spawner: extra) if settings.get("callable") else extra
    )
c.GPUDockerSpawner.allow_unsafe_host_config = settings.get("allow_unsafe_host_config", False)
# what the runnable config ends with: the start-up check, which logs what the host offers
if settings.get("check_config"):
    import copy

    from gpuspawner.config import check_config

    checked = copy.deepcopy(c)
    del checked.DockerSpawner["image"]  # the baseline's, which names a container (needs a user)
    check_config(checked)
