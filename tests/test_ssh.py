"""SSH into one's own server (gpuspawner.ssh) with Debian's OpenSSH client against a real hub.

The hub runs the SSH service as a managed service (tests/hub_config.py: add_ssh_service);
the client passes the user's hub API token as its password through SSH_ASKPASS.
"""

import json
import shutil
import socket
import subprocess
import time
import zlib

import pytest

from gpuspawner.ssh import SETTINGS_ENV, SSHSettings, add_ssh_service, public_hub_url
from gpuspawner.testing.hubprocess import free_port

pytestmark = pytest.mark.docker


def ssh_client() -> str:
    path = shutil.which("ssh")
    if path is None:
        pytest.fail("needs the OpenSSH client (apt-get install openssh-client)")
    return path


class SSH:
    """Debian's ssh client, pointed at the hub's SSH service."""

    def __init__(self, port: int, workdir):
        self.port = port
        self.known_hosts = workdir / "known_hosts"
        self.askpass = workdir / "askpass.sh"
        self.askpass.write_text('#!/bin/sh\nprintf "%s\\n" "$GPST_SSH_PASSWORD"\n')
        self.askpass.chmod(0o700)

    def __call__(self, login, token, *command, options=(), stdin="", timeout=90):
        args, env = self.command(login, token, command, options)
        return subprocess.run(args, input=stdin, capture_output=True, text=True, env=env,
                              timeout=timeout)

    def popen(self, login, token, *command, options=()):
        args, env = self.command(login, token, command, options)
        return subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, env=env)

    def command(self, login, token, command, options):
        """The client reads an ~/.ssh/config like the README's (the login name quoted, as a
        name with spaces or quotes needs; on the command line OpenSSH refuses such names)."""
        config = self.known_hosts.with_name("config-%d" % zlib.crc32(login.encode()))
        config.write_text(
            "Host gpuhub\n  HostName 127.0.0.1\n  Port %d\n  User \"%s\"\n"
            "  PreferredAuthentications password\n  PubkeyAuthentication no\n"
            "  UserKnownHostsFile %s\n  StrictHostKeyChecking accept-new\n"
            "  NumberOfPasswordPrompts 1\n  ConnectTimeout 20\n"
            % (self.port, login, self.known_hosts)
        )
        args = [ssh_client(), "-F", str(config), *options, "gpuhub", *command]
        env = {"PATH": "/usr/bin:/bin", "HOME": str(self.known_hosts.parent),
               "SSH_ASKPASS": str(self.askpass), "SSH_ASKPASS_REQUIRE": "force",
               "GPST_SSH_PASSWORD": token}
        return args, env


def wait_for_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as connection:
                if connection.recv(4).startswith(b"SSH-"):
                    return
        except OSError:
            time.sleep(0.3)
    raise AssertionError("the SSH service did not listen on %d" % port)


@pytest.fixture
def ssh_hub(hub_factory, tmp_path):
    port = free_port()
    hub = hub_factory(ssh_port=port)
    wait_for_port(port)
    return hub, SSH(port, tmp_path)


def container_of(docker_client, user, server=""):
    (container,) = [
        c for c in docker_client.containers.list(filters={"label": "gpuspawner.user=" + user})
        if c.labels.get("gpuspawner.server", "") == server
    ]
    return container


def test_a_token_opens_the_users_own_container_default_and_named(ssh_hub, docker_client):
    hub, ssh = ssh_hub
    hub.create_user("sshuser")
    for server in ("", "train"):
        assert hub.spawn("sshuser", server).status_code in (201, 202)
    hub.wait_ready("sshuser")
    hub.wait_ready("sshuser", "train")
    token = hub.user_token("sshuser")

    result = ssh(
        "sshuser", token, "id -u; id -g; pwd; hostname; cat /proc/1/cmdline | tr '\\0' ' '"
    )
    assert result.returncode == 0, result.stderr
    uid, gid, cwd, hostname, pid1 = result.stdout.splitlines()
    assert (uid, gid, cwd) == ("1000", "100", "/home/jovyan/work")
    assert hostname == container_of(docker_client, "sshuser").attrs["Config"]["Hostname"]
    assert "jupyterhub-singleuser" in pid1

    # the workspace is the user's volume: a file written over SSH is there for the server
    result = ssh("sshuser", token, "echo written-over-ssh > /home/jovyan/work/ssh.txt")
    assert result.returncode == 0, result.stderr
    seen = container_of(docker_client, "sshuser").exec_run(["cat", "/home/jovyan/work/ssh.txt"])
    assert seen.output.decode().strip() == "written-over-ssh"

    # exit status, stdin and output bytes as they are (no pty asked for)
    assert ssh("sshuser", token, "exit 7").returncode == 7
    shouted = ssh("sshuser", token, "tr a-z A-Z", stdin="line one\nline two\n")
    assert shouted.returncode == 0 and shouted.stdout == "LINE ONE\nLINE TWO\n", shouted

    # a script on stdin to a shell, as VS Code Remote-SSH starts its server
    script = ssh("sshuser", token, "bash", stdin="cd /tmp\necho in-$(pwd)\nexit 3\n")
    assert (script.returncode, script.stdout) == (3, "in-/tmp\n"), script

    # the named server: its own container
    result = ssh("sshuser/train", token, "echo $JUPYTERHUB_SERVER_NAME; hostname")
    assert result.returncode == 0, result.stderr
    name, hostname = result.stdout.split()
    assert name == "train"
    assert hostname == container_of(docker_client, "sshuser", "train").attrs["Config"]["Hostname"]

    # an interactive shell on a pty
    shell = ssh("sshuser/train", token, options=("-tt",), stdin="echo $((6*7))-$(id -un)\nexit\n")
    assert "42-jovyan" in shell.stdout, shell


def test_a_user_name_with_any_characters(ssh_hub):
    hub, ssh = ssh_hub
    name = "émile o'k+1"
    hub.create_user(name)
    assert hub.spawn(name, "gpu-run").status_code in (201, 202)
    hub.wait_ready(name, "gpu-run")
    result = ssh(name + "/gpu-run", hub.user_token(name),
                 "echo \"$JUPYTERHUB_USER|$JUPYTERHUB_SERVER_NAME\"")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "%s|gpu-run\n" % name


def test_wrong_token_other_users_token_and_no_server_are_refused(ssh_hub):
    hub, ssh = ssh_hub
    for name in ("alice", "bob", "carol"):
        hub.create_user(name)
    for name in ("alice", "bob"):
        assert hub.spawn(name).status_code in (201, 202)
        hub.wait_ready(name)
    alice, bob, carol = (hub.user_token(name) for name in ("alice", "bob", "carol"))

    refusals = [
        ("alice", "0" * 32, "must be a valid JupyterHub API token of alice"),
        ("alice", bob, "this token belongs to another user, not to alice"),
        ("alice/train", bob, "this token belongs to another user, not to alice"),
        ("carol", carol, "carol has no running server. Start it at %s/hub/home" % hub.url),
        ("alice/train", alice, "alice has no running server named 'train'"),
    ]
    for login, token, message in refusals:
        result = ssh(login, token, "id")
        assert result.returncode == 255, (login, result)
        assert message in result.stderr, (login, result.stderr)
        assert "Permission denied" in result.stderr
        assert result.stdout == ""


def test_nothing_runs_on_the_hub_host(ssh_hub, tmp_path):
    hub, ssh = ssh_hub
    hub.create_user("dave")
    assert hub.spawn("dave").status_code in (201, 202)
    hub.wait_ready("dave")
    token = hub.user_token("dave")
    marker = tmp_path / "only-on-the-hub-host"
    marker.write_text("x")

    result = ssh("dave", token, "test -e %s && echo HUB-HOST || echo container" % marker)
    assert result.stdout.strip() == "container", result
    assert socket.gethostname() not in ssh("dave", token, "hostname").stdout.split()
    # forwarding (ssh -W/-L/-D, as VS Code Remote-SSH uses) leaves from inside the container:
    # its loopback has the user's own server on 8888, and not the hub's port
    request = "GET /user/dave/api HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n"
    forward = ssh("dave", token, options=("-W", "127.0.0.1:8888"), stdin=request)
    assert forward.stdout.startswith("HTTP/1.1 200"), forward
    headers, body = forward.stdout.split("\n\n", 1)  # text mode reads \r\n as \n
    assert '"version"' in body, forward
    hub_port = ssh("dave", token, options=("-W", "127.0.0.1:%d" % hub.settings["port"]),
                   stdin=request)
    assert hub_port.stdout == "", hub_port  # nothing listens there inside the container
    sftp = ssh("dave", token, "sftp", options=("-s",))
    assert sftp.returncode == 255 and "subsystem request failed" in sftp.stderr, sftp
    # no SFTP or other subsystems, and no login without a token at all
    empty = ssh("dave", "", "id")
    assert empty.returncode == 255 and "Permission denied" in empty.stderr


COUNT_SLEEPERS = """
import glob
count = 0
for path in glob.glob("/proc/[0-9]*/cmdline"):
    try:
        count += open(path, "rb").read() == b"sleep\\x004321\\x00"
    except OSError:
        pass
print(count)
"""


def test_a_dropped_connection_ends_its_terminal(ssh_hub, docker_client):
    hub, ssh = ssh_hub
    hub.create_user("erin")
    assert hub.spawn("erin").status_code in (201, 202)
    hub.wait_ready("erin")
    token = hub.user_token("erin")
    container = container_of(docker_client, "erin")

    def sleepers():
        found = container.exec_run(["python", "-c", COUNT_SLEEPERS])
        assert found.exit_code == 0, found.output
        return int(found.output)

    client = ssh.popen("erin", token, options=("-tt",))
    client.stdin.write(b"sleep 4321\n")
    client.stdin.flush()
    deadline = time.monotonic() + 30
    while not sleepers() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert sleepers(), "the shell did not start the command"
    client.kill()  # the laptop goes away mid-command
    client.wait()
    deadline = time.monotonic() + 30
    while sleepers() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not sleepers(), "the terminal outlived its SSH connection"
    terminals = hub.through_proxy("GET", "erin", "api/terminals", token)
    assert terminals.status_code == 200 and terminals.json() == [], terminals.text


def test_add_ssh_service_reads_the_hubs_public_address():
    from traitlets.config import Config

    c = Config()
    c.JupyterHub.ip = "0.0.0.0"
    c.JupyterHub.port = 8443
    c.JupyterHub.base_url = "/jhub/"
    assert public_hub_url(c) == "http://127.0.0.1:8443/jhub/"
    c.JupyterHub.bind_url = "http://0.0.0.0:9000/x"
    assert public_hub_url(c) == "http://127.0.0.1:9000/x/"
    c.JupyterHub.public_url = "https://hub.example.org/"
    assert public_hub_url(c) == "https://hub.example.org/"

    add_ssh_service(c, port=2222, host_key_path="/srv/hub/ssh_host_key")
    (service,) = c.JupyterHub.services.get_value([])
    settings = SSHSettings(**json.loads(service["environment"][SETTINGS_ENV]))
    assert settings == SSHSettings(
        "https://hub.example.org/", "/srv/hub/ssh_host_key", "0.0.0.0", 2222
    )
    (role,) = c.JupyterHub.load_roles.get_value([])
    assert role["services"] == ["ssh"] and role["scopes"] == ["read:users:name", "read:servers"]
    for port in (0, 70000, "22", True):
        with pytest.raises(ValueError, match="port must be a TCP port number from 1 to 65535"):
            add_ssh_service(Config(), port=port)
    with pytest.raises(ValueError, match="hub_url must be the hub's public http"):
        add_ssh_service(Config(), hub_url="hub.example.org")
