#!/usr/bin/env bash
# Install the gpuspawner single-user server into an image's root filesystem.
#
# Shared by images/Dockerfile (the real PyTorch-CUDA image) and images/build-offline.sh
# (the offline Debian image the tests spawn), so both run the same steps. Run as root
# inside the target root filesystem (a Dockerfile RUN, or chroot). Safe to run again on
# an image that already went through it: existing user, venv and packages are reused.
#
# Options (each also read from the environment variable named in brackets):
#   --python PY        base interpreter for the venv [SINGLEUSER_PYTHON]
#                      (default: python3 on PATH, e.g. /opt/conda/bin/python3 in the
#                      PyTorch images, /usr/bin/python3 on Debian)
#   --venv DIR         venv to create or reuse [SINGLEUSER_VENV] (default /opt/venv)
#   --requirements F   requirements file [SINGLEUSER_REQUIREMENTS]
#                      (default: requirements-singleuser.txt beside this script)
#   --wheelhouse DIR   local wheels [SINGLEUSER_WHEELHOUSE]; pip then runs with
#                      --no-index --find-links DIR (fully offline)
#   --online|--offline use the package index, or not [SINGLEUSER_ONLINE=1|0]
#                      (default: offline when a wheelhouse is given, online otherwise)
#   --gpuspawner SPEC  the project's package [SINGLEUSER_GPUSPAWNER]: a wheel file or a
#                      source directory, "auto" (default: the gpuspawner-*.whl in the
#                      wheelhouse, if there is one) or "none"
#   --no-compiler      skip the C/C++ compiler and Python headers [SINGLEUSER_COMPILER=0]
#                      (default: install them with apt-get when missing; torch.compile
#                      needs them at run time)
#
# Result: user jovyan (uid 1000, primary group users/100, home /home/jovyan), workspace
# /home/jovyan/work owned by 1000:100, the venv with jupyterhub-singleuser, the default
# environment in /etc/gpuspawner/singleuser.env (for ENV lines; login shells get it from
# /etc/profile.d/gpuspawner-singleuser.sh), /usr/local/bin/singleuser-healthcheck, gcc,
# g++ and the Python headers (for torch.compile), and jupyter-server-proxy with a
# TensorBoard launcher entry on /home/jovyan/work/runs (served at /user/<name>/tensorboard/).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

PYTHON="${SINGLEUSER_PYTHON:-}"
VENV="${SINGLEUSER_VENV:-/opt/venv}"
REQUIREMENTS="${SINGLEUSER_REQUIREMENTS:-$here/requirements-singleuser.txt}"
WHEELHOUSE="${SINGLEUSER_WHEELHOUSE:-}"
ONLINE="${SINGLEUSER_ONLINE:-}"
GPUSPAWNER="${SINGLEUSER_GPUSPAWNER:-auto}"
COMPILER="${SINGLEUSER_COMPILER:-1}"

NB_USER=jovyan
NB_UID=1000
NB_GID=100          # the "users" group, as in the Jupyter docker-stacks images
NB_HOME=/home/jovyan
WORKSPACE=$NB_HOME/work

while [ $# -gt 0 ]; do
    case "$1" in
        --python) PYTHON="$2"; shift 2 ;;
        --venv) VENV="$2"; shift 2 ;;
        --requirements) REQUIREMENTS="$2"; shift 2 ;;
        --wheelhouse) WHEELHOUSE="$2"; shift 2 ;;
        --online) ONLINE=1; shift ;;
        --offline) ONLINE=0; shift ;;
        --gpuspawner) GPUSPAWNER="$2"; shift 2 ;;
        --no-compiler) COMPILER=0; shift ;;
        -h|--help) sed -n '2,33p' "$0"; exit 0 ;;
        *) echo "install-singleuser: unknown argument: $1" >&2; exit 2 ;;
    esac
done

log() { echo "install-singleuser: $*"; }

[ "$(id -u)" = 0 ] || { echo "install-singleuser: must run as root" >&2; exit 1; }
[ -f "$REQUIREMENTS" ] || { echo "install-singleuser: no requirements file $REQUIREMENTS" >&2; exit 1; }

# --- the user and the workspace -------------------------------------------------------
getent group "$NB_GID" >/dev/null || groupadd -g "$NB_GID" users
existing="$(getent passwd "$NB_UID" | cut -d: -f1 || true)"
if [ -z "$existing" ]; then
    useradd --create-home --home-dir "$NB_HOME" --uid "$NB_UID" --gid "$NB_GID" \
        --shell /bin/bash "$NB_USER"
elif [ "$existing" != "$NB_USER" ]; then
    # e.g. "ubuntu" in Ubuntu 24.04 based images: take over its uid
    log "renaming user $existing (uid $NB_UID) to $NB_USER"
    usermod --login "$NB_USER" --home "$NB_HOME" --move-home --gid "$NB_GID" \
        --shell /bin/bash "$existing"
fi
# The hub mounts the persistent volume on the workspace. An empty named volume takes
# the ownership of the image's directory, so it must belong to the user here.
mkdir -p "$NB_HOME" "$WORKSPACE"
chown "$NB_UID:$NB_GID" "$NB_HOME" "$WORKSPACE"
chmod 0755 "$NB_HOME"
chmod 0775 "$WORKSPACE"

# --- the venv -----------------------------------------------------------------------
if [ -x "$VENV/bin/python" ]; then
    log "reusing venv $VENV"
else
    if [ -z "$PYTHON" ]; then
        PYTHON="$(command -v python3 || true)"
        [ -n "$PYTHON" ] || { echo "install-singleuser: no python3 found" >&2; exit 1; }
    fi
    venv_args=()
    # The PyTorch images ship torch (and CUDA libraries) in their base python: let the
    # venv see them instead of installing a second torch.
    if "$PYTHON" -c 'import torch' >/dev/null 2>&1; then
        venv_args+=(--system-site-packages)
    fi
    log "creating venv $VENV from $PYTHON ${venv_args[*]:-}"
    "$PYTHON" -m venv "${venv_args[@]}" "$VENV"
fi

# --- compilers for torch.compile ----------------------------------------------------
# Triton (torch.compile's GPU backend) builds its launcher at run time with $CC, else gcc,
# else clang, and Python.h from the include folder of the interpreter's sysconfig scheme;
# TorchInductor's CPU backend compiles C++ with g++. The PyTorch runtime images have no
# compiler ("Failed to find C compiler"), so install them here, with the image's apt.
python_include() {
    "$VENV/bin/python" - <<'EOF'
import sysconfig
scheme = sysconfig.get_default_scheme()
print(sysconfig.get_paths(scheme="posix_prefix" if scheme == "posix_local" else scheme)["include"])
EOF
}
if [ "$COMPILER" = 1 ]; then
    missing=()
    command -v gcc >/dev/null || missing+=(gcc libc6-dev)
    command -v g++ >/dev/null || missing+=(g++)
    include="$(python_include)"
    [ -f "$include/Python.h" ] || missing+=(python3-dev)
    if [ ${#missing[@]} -gt 0 ]; then
        command -v apt-get >/dev/null || {
            echo "install-singleuser: torch.compile needs ${missing[*]} and there is no apt-get;" \
                "install them first or pass --no-compiler" >&2; exit 1; }
        log "apt-get install ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
        rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb
    fi
    [ -f "$include/Python.h" ] || {
        echo "install-singleuser: no Python.h in $include (the venv's base python has no" \
            "headers); torch.compile cannot build its launcher" >&2; exit 1; }
    log "compilers: $(gcc --version | head -n 1); Python headers in $include"
fi

# --- packages -----------------------------------------------------------------------
pip_args=(--no-cache-dir --disable-pip-version-check --no-input --progress-bar off)
if [ -n "$WHEELHOUSE" ]; then
    [ -d "$WHEELHOUSE" ] || { echo "install-singleuser: no wheelhouse $WHEELHOUSE" >&2; exit 1; }
    pip_args+=(--find-links "$WHEELHOUSE")
    ONLINE="${ONLINE:-0}"
fi
[ "${ONLINE:-1}" = 1 ] || pip_args+=(--no-index)
targets=(-r "$REQUIREMENTS")
case "$GPUSPAWNER" in
    none|"") ;;
    auto)
        if [ -n "$WHEELHOUSE" ]; then
            wheel="$(ls -1 "$WHEELHOUSE"/gpuspawner-*.whl 2>/dev/null | sort -V | tail -n 1 || true)"
            [ -z "$wheel" ] || targets+=("${wheel}[lab]")
        fi
        ;;
    *)
        [ -e "$GPUSPAWNER" ] || { echo "install-singleuser: no such path $GPUSPAWNER" >&2; exit 1; }
        targets+=("${GPUSPAWNER}[lab]")
        ;;
esac
log "pip install ${targets[*]}"
# The pins in the requirements file also constrain gpuspawner's dependencies.
env -u PIP_FIND_LINKS -u PIP_NO_INDEX PIP_ROOT_USER_ACTION=ignore \
    "$VENV/bin/python" -m pip install "${pip_args[@]}" -c "$REQUIREMENTS" "${targets[@]}"
# A venv that sees a base python's packages (conda in the PyTorch images) inherits that
# environment's own inconsistencies: warn there, fail only on a venv of our own.
if ! "$VENV/bin/python" -m pip check; then
    if grep -qi '^include-system-site-packages *= *true' "$VENV/pyvenv.cfg"; then
        log "warning: pip check reports problems (system site packages included)"
    else
        echo "install-singleuser: pip check failed" >&2; exit 1
    fi
fi
[ -x "$VENV/bin/jupyterhub-singleuser" ] || {
    echo "install-singleuser: jupyterhub-singleuser missing from $VENV/bin" >&2; exit 1; }

# --- default environment ------------------------------------------------------------
# Caches live in the persistent workspace so downloads survive the container.
# Docker images set the same values with ENV (images/Dockerfile, build-offline.sh);
# login shells get them from profile.d.
mkdir -p /etc/gpuspawner
cat > /etc/gpuspawner/singleuser.env <<EOF
PATH=$VENV/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
PIP_CACHE_DIR=$WORKSPACE/.cache/pip
HF_HOME=$WORKSPACE/.cache/huggingface
TORCH_HOME=$WORKSPACE/.cache/torch
EOF
cat > /etc/profile.d/gpuspawner-singleuser.sh <<EOF
# gpuspawner single-user defaults; variables already set (e.g. by the spawner) win
case ":\$PATH:" in *":$VENV/bin:"*) ;; *) PATH="$VENV/bin:\$PATH" ;; esac
export PATH
export PIP_CACHE_DIR="\${PIP_CACHE_DIR:-$WORKSPACE/.cache/pip}"
export HF_HOME="\${HF_HOME:-$WORKSPACE/.cache/huggingface}"
export TORCH_HOME="\${TORCH_HOME:-$WORKSPACE/.cache/torch}"
EOF
chmod 0644 /etc/gpuspawner/singleuser.env /etc/profile.d/gpuspawner-singleuser.sh

# --- web tools through the hub, terminals -------------------------------------------
# jupyter-server-proxy starts TensorBoard on the first visit of /user/<name>/tensorboard/
# (behind the server's own login) and puts a TensorBoard card in the JupyterLab launcher.
# Terminals (in JupyterLab, and over SSH through the hub: gpuspawner.ssh) run bash with the
# server's environment (the default is "$SHELL or sh" as a login shell, whose /etc/profile
# resets PATH and so loses the venv and, in the PyTorch images, conda).
# Settings go in jupyter_server_config.json: the server reads jupyter_server_config.d/
# only for which extensions are enabled.
mkdir -p "$VENV/etc/jupyter" "$VENV/share/gpuspawner"
cat > "$VENV/share/gpuspawner/tensorboard.svg" <<'EOF'
<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24"><path fill="#f57c00"
d="M12 2 3 7v10l9 5 9-5V7l-9-5zm0 2.3 6.8 3.8L12 11.9 5.2 8.1 12 4.3zM5 9.8l6 3.4v6.6l-6-3.4V9.8z"/></svg>
EOF
"$VENV/bin/python" - "$VENV" "$WORKSPACE" <<'EOF'
import json, os, sys
venv, workspace = sys.argv[1:]
path = os.path.join(venv, "etc", "jupyter", "jupyter_server_config.json")
config = json.load(open(path)) if os.path.exists(path) else {}
config.setdefault("ServerProxy", {}).setdefault("servers", {})["tensorboard"] = {
    "command": [venv + "/bin/tensorboard", "--logdir", workspace + "/runs",
                "--host", "127.0.0.1", "--port", "{port}", "--reload_interval", "5"],
    "timeout": 60,
    "launcher_entry": {"title": "TensorBoard",
                       "icon_path": venv + "/share/gpuspawner/tensorboard.svg"},
}
config.setdefault("ServerApp", {}).setdefault("terminado_settings", {})["shell_command"] = [
    "/bin/bash"]
with open(path, "w") as f:
    json.dump(config, f, indent=2)
# JupyterLab asks no outside site for news or updates (its "Would you like to get notified
# about official Jupyter news?" toast): users' settings still win over these defaults
path = os.path.join(venv, "share", "jupyter", "lab", "settings", "overrides.json")
os.makedirs(os.path.dirname(path), exist_ok=True)
overrides = json.load(open(path)) if os.path.exists(path) else {}
overrides.setdefault("@jupyterlab/apputils-extension:notification", {}).update(
    {"fetchNews": "false", "checkForUpdates": False})
with open(path, "w") as f:
    json.dump(overrides, f, indent=2)
EOF
chmod 0644 "$VENV/etc/jupyter/jupyter_server_config.json" "$VENV/share/gpuspawner/tensorboard.svg" \
    "$VENV/share/jupyter/lab/settings/overrides.json"

# --- health check -------------------------------------------------------------------
# Asks the server's unauthenticated /api endpoint under the prefix the hub gave it.
cat > /usr/local/bin/singleuser-healthcheck <<EOF
#!$VENV/bin/python
import os, ssl, sys, urllib.parse, urllib.request
url = os.environ.get("JUPYTERHUB_SERVICE_URL") or "http://127.0.0.1:8888/"
u = urllib.parse.urlsplit(url)
host = "127.0.0.1" if u.hostname in (None, "", "0.0.0.0", "::") else u.hostname
netloc = host + (":%d" % u.port if u.port else "")
api = urllib.parse.urlunsplit((u.scheme, netloc, u.path.rstrip("/") + "/api", "", ""))
ctx = ssl._create_unverified_context() if u.scheme == "https" else None
try:
    with urllib.request.urlopen(api, timeout=5, context=ctx) as r:
        sys.exit(0 if r.status == 200 else 1)
except Exception as e:
    print(e, file=sys.stderr)
    sys.exit(1)
EOF
chmod 0755 /usr/local/bin/singleuser-healthcheck

# --- clean up -----------------------------------------------------------------------
rm -rf /root/.cache/pip "$NB_HOME/.cache" /tmp/pip-* 2>/dev/null || true
log "done: $("$VENV/bin/python" -c 'import jupyterhub, jupyterlab; print("jupyterhub", jupyterhub.__version__, "jupyterlab", jupyterlab.__version__)')"
