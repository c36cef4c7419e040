"""Course profiles end to end: a real hub process and the real Docker engine.

A profile is offered only to its groups (the form's cards, the API's 400); a profile's
dataset volume is mounted read-only (the user reads it, a write fails), its scratch volume
per group read-write, its limits and environment reach the container.
"""

import pytest

from test_docker_hub import container_of, env_of

pytestmark = pytest.mark.docker


def profiles(dataset: str, scratch: str) -> dict:
    return {
        "lab": {
            "display_name": "Course lab",
            "description": "The weekly lab sessions.",
            "image": "demo",
            "cpu_limit": 0.5,
            "mem_limit": "1G",
            "shm_size": "256M",
            "volumes": [
                {"source": dataset, "path": "/data/course"},
                {"source": scratch + "-{group}", "path": "/scratch", "read_only": False},
            ],
            "environment": {"COURSE": "cs101"},
            "groups": ["cs101"],
        },
        "staff-box": {
            "display_name": "Staff box",
            "image": "demo-second",
            "gpus": 1,
            "groups": ["staff"],
        },
    }


@pytest.fixture
def dataset(docker_client, test_image):
    """A named volume holding one file, written as root (the course's read-only dataset)."""
    name = "gpst-dataset-%s" % hex(id(docker_client))[-6:]
    volume = docker_client.volumes.create(name)
    docker_client.containers.run(
        test_image["demo"]["image"],
        ["sh", "-c", "echo 'cats and dogs' > /data/labels.txt"],
        user="0",
        volumes={name: {"bind": "/data", "mode": "rw"}},
        remove=True,
        entrypoint=[],
    )
    yield name
    volume.remove(force=True)


def test_profiles_only_for_their_groups_and_a_read_only_dataset(
    dataset, hub_factory, docker_client
):
    hub = hub_factory(profiles=profiles(dataset, hub_factory_prefix(docker_client)))
    hub.create_user("stu", groups=("cs101",))
    hub.create_user("outsider")

    # the form: cards of the user's groups only, no image or GPU select
    form = hub.spawn_form(hub.login("stu"), "stu")
    assert 'name="profile" value="lab"' in form and "Course lab" in form
    assert "Demo &middot; no GPU &middot; 0.5 CPUs, 1 GiB memory, 256 MiB /dev/shm" in form
    assert 'value="staff-box"' not in form and "Staff box" not in form
    assert 'name="image"' not in form and 'name="gpus"' not in form
    outsider_form = hub.spawn_form(hub.login("outsider"), "outsider")
    assert 'value="lab"' not in outsider_form and 'value="staff-box"' not in outsider_form

    # the API: a profile of another group, an image or GPUs the profile does not give
    refusals = [
        ("stu", {"profile": "staff-box"},
         "The profile 'staff-box' is not available to your groups."),
        (
            "stu",
            {"profile": "lab", "image": "demo-second"},
            "The profile 'lab' starts the image demo, not 'demo-second': pick another profile"
            " for another image.",
        ),
        ("stu", {"profile": "lab", "gpus": 1}, "The profile 'lab' gives no GPU, not 1 GPU:"
         " pick another profile for other GPUs."),
        ("stu", {"profile": "nope"}, "There is no profile 'nope' on this hub; choose one of: lab."),
        ("outsider", {}, "No profile of this hub is available to your groups; ask an admin."),
    ]  # fmt: skip
    for user, options, sentence in refusals:
        response = hub.spawn(user, options=options)
        assert response.status_code == 400, (options, response.text)
        assert response.json()["message"] == sentence
    assert not docker_client.containers.list(all=True, filters={"label": "gpuspawner.user=stu"})

    # the form's card posts {"profile": "lab"}
    browser = hub.login("stu")
    posted = browser.post(
        hub.url + "/hub/spawn/stu", data={"profile": "lab", "_xsrf": browser.cookies["_xsrf"]}
    )
    assert posted.status_code == 200, posted.text[-2000:]
    hub.wait_ready("stu")
    container = container_of(docker_client, "stu")
    env = env_of(container)
    assert env["COURSE"] == "cs101" and env["GPUSPAWNER_PROFILE"] == "lab"
    host = container.attrs["HostConfig"]
    assert host["NanoCpus"] == 500_000_000 and not host.get("CpuQuota")
    assert host["Memory"] == 1024**3 and host["ShmSize"] == 256 * 1024**2
    mounts = {m["Destination"]: m for m in container.attrs["Mounts"]}
    assert mounts["/data/course"]["Name"] == dataset and mounts["/data/course"]["RW"] is False
    assert mounts["/scratch"]["Name"].endswith("-cs101") and mounts["/scratch"]["RW"] is True

    # the user reads the dataset; writing to it fails
    read = container.exec_run("cat /data/course/labels.txt", user="1000")
    assert read.exit_code == 0 and read.output == b"cats and dogs\n"
    write = container.exec_run("sh -c 'echo x > /data/course/new.txt'", user="1000")
    assert write.exit_code != 0 and b"Read-only file system" in write.output
    write_root = container.exec_run("sh -c 'echo x > /data/course/new.txt'", user="0")
    assert write_root.exit_code != 0 and b"Read-only file system" in write_root.output
    # the group's scratch is the user's to write (created for them, owned by the server's user)
    scratch = container.exec_run("sh -c 'echo mine > /scratch/notes.txt && cat /scratch/notes.txt'")
    assert scratch.exit_code == 0 and scratch.output == b"mine\n", scratch.output
    labels = docker_client.volumes.get(mounts["/scratch"]["Name"]).attrs["Labels"]
    assert labels["gpuspawner.scratch"] == "lab"
    # the server's own user is still the unprivileged one
    assert container.exec_run("id -u").output.strip() == b"1000"


def hub_factory_prefix(docker_client) -> str:
    """A scratch volume name the test removes (the hub factory removes its prefix's)."""
    return "gpst-scratch-%s" % hex(id(docker_client))[-6:]


@pytest.fixture(autouse=True)
def _remove_scratch(docker_client):
    yield
    for volume in docker_client.volumes.list(filters={"name": hub_factory_prefix(docker_client)}):
        volume.remove(force=True)
