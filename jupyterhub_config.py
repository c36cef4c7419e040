"""The runnable default hub: gpuspawner's Docker backend, sqlite, a demo login.

Start it with `bash scripts/run-hub.sh` (which builds a single-user image if needed
and sets the variables read below), or `jupyterhub -f jupyterhub_config.py`.

Settings read from the environment (all optional; README "Run a hub" lists them too):
  GPUSPAWNER_DEMO_IMAGE       the single-user image for the "demo" catalog entry
  GPUSPAWNER_OFFLINE          1: that image is the CPU-only one without PyTorch that
                              run-hub.sh builds where no registry is reachable; the catalog
                              then offers only it (the PyTorch images cannot be pulled)
  GPUSPAWNER_DEMO_PASSWORD    the users' shared password (default: gpu-demo, 8+ characters)
  GPUSPAWNER_ADMIN_PASSWORD   the password of the user "admin" (32+ characters; no admin without it)
  GPUSPAWNER_HUB_CONNECT_IP   where containers reach the hub (default: docker0's 172.17.0.1)
  GPUSPAWNER_PORT             the public port on 127.0.0.1 (default: 8000)
  GPUSPAWNER_GPUS             a comma-separated list of GPU UUIDs to hand out, for hubs
                              that cannot see the GPUs through NVML (default: discover)
"""

import os

c = get_config()  # noqa: F821 (provided by JupyterHub)

c.JupyterHub.spawner_class = "gpu-docker"
c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = int(os.environ.get("GPUSPAWNER_PORT", "8000"))
# containers reach the hub on the docker0 bridge; nothing else needs to
hub_address = os.environ.get("GPUSPAWNER_HUB_CONNECT_IP", "172.17.0.1")
c.JupyterHub.hub_ip = c.JupyterHub.hub_connect_ip = hub_address
c.JupyterHub.db_url = "sqlite:///jupyterhub.sqlite"

# demo login: any user name with the shared password; "admin" logs in with the admin password
c.JupyterHub.authenticator_class = "shared-password"
c.SharedPasswordAuthenticator.user_password = os.environ.get("GPUSPAWNER_DEMO_PASSWORD", "gpu-demo")
if os.environ.get("GPUSPAWNER_ADMIN_PASSWORD"):
    c.SharedPasswordAuthenticator.admin_password = os.environ["GPUSPAWNER_ADMIN_PASSWORD"]
    c.Authenticator.admin_users = {"admin"}
c.Authenticator.allow_all = True


# groups come with the login: every demo user is in "students", the admin in "staff", so the
# quotas and budgets below are what a newcomer sees (with your own authenticator, its groups
# or JupyterHub.load_groups take this place; the authenticator then owns group membership)
def demo_groups(authenticator, handler, auth_model):
    auth_model["groups"] = ["staff"] if auth_model.get("admin") else ["students"]
    return auth_model


c.Authenticator.manage_groups = True
c.Authenticator.post_auth_hook = demo_groups

# the catalog: users pick one of these by key; tags are pinned. Each is images/Dockerfile
# on the official PyTorch runtime image named in its description (README "Images");
# "cuda" is checked against the host's driver (an image the driver cannot run is hidden).
images = {
    "pytorch-2.9": {
        "display_name": "PyTorch 2.9",
        "image": "gpuspawner/pytorch-notebook:2.9.1-cuda12.8",
        "cuda": "12.8",
        "description": "pytorch/pytorch:2.9.1-cuda12.8-cudnn9-runtime + JupyterLab",
    },
    "pytorch-2.8": {
        "display_name": "PyTorch 2.8",
        "image": "gpuspawner/pytorch-notebook:2.8.0-cuda12.8",
        "cuda": "12.8",
        "description": "pytorch/pytorch:2.8.0-cuda12.8-cudnn9-runtime + JupyterLab",
    },
}
demo_image = os.environ.get("GPUSPAWNER_DEMO_IMAGE")
if demo_image and os.environ.get("GPUSPAWNER_OFFLINE") == "1":
    # what scripts/run-hub.sh built on a machine without a registry: the only image that can
    # start here (the form shows display names)
    images = {
        "demo": {
            "display_name": "CPU only, without PyTorch: for trying the hub",
            "image": demo_image,
            "description": "JupyterLab, the GPU panel and the workspace on Debian; no PyTorch",
        }
    }
elif demo_image:
    # the image scripts/run-hub.sh built or found, first in the form
    same = [key for key, image in images.items() if image["image"] == demo_image]
    first = {key: images[key] for key in same} or {
        "demo": {"display_name": "Demo image (%s)" % demo_image, "image": demo_image}
    }
    images = {**first, **{key: image for key, image in images.items() if key not in first}}
c.GPUDockerSpawner.images = images
c.GPUDockerSpawner.pull_policy = "ifnotpresent"
# a pull may take this long on top of start_timeout (python -m gpuspawner.prepull avoids it)
c.GPUDockerSpawner.pull_timeout = 900

# quotas: one GPU per student at a time, four for staff (the most generous group wins)
c.GPUDockerSpawner.gpu_quota = 1
c.GPUDockerSpawner.gpu_quota_groups = {"staff": 4}
# budgets: 10 GPU-hours a week for students, none for staff (README "Quotas and budgets")
c.GPUDockerSpawner.gpu_hour_budget_groups = {"students": 10, "staff": None}
c.GPUDockerSpawner.budget_period = "week"
if os.environ.get("GPUSPAWNER_GPUS"):
    declared = os.environ["GPUSPAWNER_GPUS"].split(",")
    c.GPUDockerSpawner.inventory = [{"uuid": uuid.strip()} for uuid in declared]

# PyTorch needs: shared memory for DataLoader workers, limits per server
c.GPUDockerSpawner.shm_size = "2g"
c.GPUDockerSpawner.mem_limit = "16G"
c.GPUDockerSpawner.cpu_limit = 4.0

c.JupyterHub.allow_named_servers = True
c.JupyterHub.named_server_limit_per_user = 4

# stop at start, with the reason, on a catalog, quota or inventory mistake
from gpuspawner.config import check_config  # noqa: E402

check_config(c)

# the admin dashboard at /services/gpu-admin/ (admins only) and the loop enforcing budgets
from gpuspawner.service import add_admin_service  # noqa: E402

add_admin_service(c)
