"""Pull events from the engine folded into progress lines, and pull errors into sentences (pure)."""

import pytest

from gpuspawner.docker.pull import (
    PullFailed,
    PullProgress,
    PullTimedOut,
    classify_pull_error,
    format_size,
    pull_refusal,
    registry_of,
    timeout_refusal,
)

# recorded from Docker 20.10 pulling a 481 MB image (one 158 MB layer) from a local registry
ONE_LAYER = [
    {"status": "Pulling from gpst-measure/singleuser", "id": "flat"},
    {"status": "Pulling fs layer", "progressDetail": {}, "id": "d1e810fcb3a4"},
    {
        "status": "Downloading",
        "progressDetail": {"current": 552960, "total": 158443882},
        "id": "d1e810fcb3a4",
    },
    {
        "status": "Downloading",
        "progressDetail": {"current": 80000000, "total": 158443882},
        "id": "d1e810fcb3a4",
    },
    {"status": "Download complete", "progressDetail": {}, "id": "d1e810fcb3a4"},
    {
        "status": "Extracting",
        "progressDetail": {"current": 557056, "total": 158443882},
        "id": "d1e810fcb3a4",
    },
    {
        "status": "Extracting",
        "progressDetail": {"current": 120000000, "total": 158443882},
        "id": "d1e810fcb3a4",
    },
    {"status": "Pull complete", "progressDetail": {}, "id": "d1e810fcb3a4"},
    {"status": "Digest: sha256:0cee98c0cb5f694ad717131ce09b54373225ac944b76ef4c1c4c8e3650ab5481"},
    {"status": "Status: Downloaded newer image for 127.0.0.1:5000/gpst-measure/singleuser:flat"},
]


def fold(events, key="demo"):
    progress, lines, fractions = PullProgress(), [], []
    for event in events:
        progress.update(event)
        lines.append(progress.message(key))
        fractions.append(progress.fraction())
    return progress, lines, fractions


def test_one_layer_pull_reads_as_download_then_unpacking():
    progress, lines, fractions = fold(ONE_LAYER)
    assert lines == [
        "pulling demo: asking the registry",
        "pulling demo: starting (1 layers)",
        "pulling demo: 0 / 158 MB",
        "pulling demo: 80 / 158 MB",
        "pulling demo: unpacking 0 / 158 MB",
        "pulling demo: unpacking 0 / 158 MB",
        "pulling demo: unpacking 120 / 158 MB",
        "pulling demo: unpacking 158 / 158 MB",
        "pulling demo: unpacking 158 / 158 MB",
        "pulling demo: unpacking 158 / 158 MB",
    ]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert fractions[4] == pytest.approx(0.5)
    assert progress.summary("demo", 21.3) == "Pulled demo (158 MB) in 21 s"


def test_gigabytes_and_layers_still_to_size():
    progress = PullProgress()
    events = [
        {"status": "Pulling fs layer", "id": "a"},
        {"status": "Pulling fs layer", "id": "b"},
        {"status": "Pulling fs layer", "id": "c"},
        {"status": "Already exists", "id": "base"},
        {"status": "Waiting", "id": "c"},
        {
            "status": "Downloading",
            "progressDetail": {"current": 1_200_000_000, "total": 4_000_000_000},
            "id": "a",
        },
        {
            "status": "Downloading",
            "progressDetail": {"current": 10, "total": 2_100_000_000},
            "id": "b",
        },
    ]
    for event in events:
        progress.update(event)
    assert (
        progress.message("pytorch-2.9")
        == "pulling pytorch-2.9: 1.2 / 6.1 GB (1 more layer to size)"
    )
    assert 0 < progress.fraction() < 0.1
    progress.update({"status": "Download complete", "id": "c"})  # a tiny layer, never sized
    assert progress.message("pytorch-2.9") == "pulling pytorch-2.9: 1.2 / 6.1 GB"
    for layer in ("a", "b"):
        progress.update({"status": "Download complete", "id": layer})
    progress.update(
        {
            "status": "Extracting",
            "progressDetail": {"current": 2_300_000_000, "total": 4_000_000_000},
            "id": "a",
        }
    )
    assert progress.message("pytorch-2.9") == "pulling pytorch-2.9: unpacking 2.3 / 6.1 GB"
    assert progress.fraction() == pytest.approx((6.1 + 2.3) / 12.2)


def test_every_layer_already_here():
    progress, lines, _ = fold(
        [
            {"status": "Pulling from org/x", "id": "1.0"},
            {"status": "Already exists", "id": "a"},
            {"status": "Already exists", "id": "b"},
            {"status": "Digest: sha256:ab"},
            {"status": "Status: Image is up to date for org/x:1.0"},
        ]
    )
    assert lines[-1] == "pulling demo: every layer is already on this host"
    assert progress.fraction() == 1.0
    assert progress.summary("demo", 0.2) == "Image demo was already on this host"


def test_an_error_event_ends_the_pull():
    progress = PullProgress()
    with pytest.raises(PullFailed, match="unexpected EOF"):
        progress.update({"errorDetail": {"message": "unexpected EOF"}, "error": "unexpected EOF"})
    with pytest.raises(PullFailed, match="disk full"):
        progress.update({"error": "disk full"})


@pytest.mark.parametrize(
    "current, total, text",
    [
        (1_234_000_000, 6_100_000_000, "1.2 / 6.1 GB"),
        (0, 1_000_000_000, "0.0 / 1.0 GB"),
        (52_500_000, 158_443_882, "52 / 158 MB"),
        (400_000, 3_200_000, "0.4 / 3.2 MB"),
        (0, 0, "0.0 / 0.0 MB"),
    ],
)
def test_sizes(current, total, text):
    assert format_size(current, total) == text


@pytest.mark.parametrize(
    "image, registry",
    [
        ("127.0.0.1:5000/gpst/images:test", "127.0.0.1:5000"),
        ("registry.example.org/team/x:1", "registry.example.org"),
        ("localhost/x:1", "localhost"),
        ("pytorch/pytorch:2.9.1-cuda12.8-cudnn9-runtime", "docker.io"),
        ("ubuntu:24.04", "docker.io"),
        ("ghcr.io/org/x@sha256:abc", "ghcr.io"),
    ],
)
def test_registry_of(image, registry):
    assert registry_of(image) == registry


# what Docker 20.10 said here, and what registries are known to say
ERRORS = [
    (
        "manifest for 127.0.0.1:5000/gpst/images:nope not found: manifest unknown: manifest"
        " unknown",
        "missing",
    ),
    (
        "pull access denied for nosuch/image, repository does not exist or may require 'docker"
        " login':"
        " denied: requested access to the resource is denied",
        "missing",
    ),
    (
        'Get "http://127.0.0.1:5999/v2/": dial tcp 127.0.0.1:5999: connect: connection refused',
        "unreachable",
    ),
    (
        'Get "https://registry.invalid/v2/": dial tcp: lookup registry.invalid: no such host',
        "unreachable",
    ),
    ('Get "https://10.0.0.1/v2/": net/http: TLS handshake timeout', "unreachable"),
    (
        'Get "https://10.0.0.1:5000/v2/": http: server gave HTTP response to HTTPS client',
        "unreachable",
    ),
    ("unauthorized: authentication required", "denied"),
    ("failed to register layer: no space left on device", "other"),
]


@pytest.mark.parametrize("text, kind", ERRORS)
def test_pull_errors_are_classified(text, kind):
    assert classify_pull_error(text) == kind


def test_refusal_sentences():
    missing = pull_refusal("127.0.0.1:5000/gpst/images:nope", "Demo", ERRORS[0][0])
    assert missing == (
        "The image 127.0.0.1:5000/gpst/images:nope of 'Demo' is not in the registry 127.0.0.1:5000"
        " (no such tag or repository), so it cannot be pulled. Ask an admin to push it or to fix"
        " the"
        " catalog. (Docker said: %s.)" % ERRORS[0][0]
    )
    unreachable = pull_refusal("127.0.0.1:5999/x/y:1", "Demo", ERRORS[2][0])
    assert unreachable.startswith(
        "The registry 127.0.0.1:5999 could not be reached, so the image 127.0.0.1:5999/x/y:1 of"
        " 'Demo'"
        " cannot be pulled right now. Try again later, or ask an admin."
    )
    assert "lacks the credentials" in pull_refusal("r.example/x:1", "X", ERRORS[6][0])
    assert pull_refusal("x:1", "X", "no space left on device.") == (
        "Pulling the image x:1 of 'X' failed. Ask an admin. (Docker said: no space left on device.)"
    )


def test_timeout_sentence_says_how_far_it_got():
    progress = PullProgress()
    progress.update(
        {
            "status": "Downloading",
            "progressDetail": {"current": 1_200_000_000, "total": 6_100_000_000},
            "id": "a",
        }
    )
    text = timeout_refusal("org/x:1", "PyTorch 2.9", PullTimedOut(progress, 900), "pytorch-2.9")
    assert text == (
        "Pulling the image org/x:1 of 'PyTorch 2.9' did not finish within 900 s (pulling"
        " pytorch-2.9:"
        " 1.2 / 6.1 GB when it stopped). Try again later, or ask an admin to pre-pull the catalog's"
        " images (python -m gpuspawner.prepull)."
    )


@pytest.mark.parametrize(
    "policy, start_timeout",
    [("ifnotpresent", 420), ("always", 420), ("IfNotPresent", 420), ("never", 120), ("skip", 120)],
)
def test_pull_timeout_is_added_to_start_timeout_when_the_spawner_may_pull(policy, start_timeout):
    import types

    from traitlets.config import Config

    from gpuspawner.docker import GPUDockerSpawner

    config = Config()
    config.GPUDockerSpawner.images = {"demo": {"image": "org/x:1"}}
    config.GPUDockerSpawner.inventory = []
    config.GPUDockerSpawner.pull_policy = policy
    config.GPUDockerSpawner.pull_timeout = 300
    config.Spawner.start_timeout = 120
    spawner = GPUDockerSpawner(
        user=types.SimpleNamespace(name="ana", groups=[], url="/user/ana/"),
        orm_spawner=types.SimpleNamespace(name="", user_options={}, server=None),
        hub=types.SimpleNamespace(
            public_host="", api_url="http://127.0.0.1:8081/hub/api", base_url="/hub/"
        ),
        config=config,
    )
    assert spawner.start_timeout == start_timeout


def test_prepull_reads_the_hubs_settings_as_traitlets_does(tmp_path, capsys):
    from traitlets.config import Config

    from gpuspawner.docker.prepull import hub_spawner, main

    config = Config()
    config.Spawner.pull_timeout = 30  # a parent class's section applies ...
    config.DockerSpawner.client_kwargs = {"version": "1.41"}
    config.GPUDockerSpawner.images = {"demo": {"image": "org/demo:1.0"}}
    config.GPUDockerSpawner.inventory = []
    spawner = hub_spawner(config)
    assert [image.key for image in spawner.catalog] == ["demo"]
    assert spawner.pull_timeout == 30 and spawner.client_kwargs == {"version": "1.41"}
    config.GPUDockerSpawner.pull_timeout = 60  # ... and the spawner's own section wins
    assert hub_spawner(config).pull_timeout == 60
    bad = tmp_path / "jupyterhub_config.py"
    bad.write_text(
        "c = get_config()\nc.GPUDockerSpawner.images = {'demo': {'image': 'org/demo:latest'}}\n"
    )
    assert main(["-f", str(bad)]) == 2
    assert "is not pinned" in capsys.readouterr().err


# --- what the form says of each image (docker/host.py, pure) ---

from gpuspawner.docker.host import image_status  # noqa: E402


def status(present=False, policy="ifnotpresent", error=None, image="org/pt:2.9"):
    return image_status(
        "pt", "PyTorch", image, present=present, pull_policy=policy, registry_error=error
    )


def test_an_image_on_this_host_is_offered_as_such():
    assert status(present=True) == image_status(
        "pt", "PyTorch", "org/pt:2.9", present=True, pull_policy="never"
    )
    assert status(present=True).note == "on this host" and status(present=True).startable


def test_an_image_the_registry_has_is_pulled_at_its_first_start():
    found = status(image="registry.example.org:5000/pt:2.9")
    assert found.startable and not found.present
    assert (
        found.note
        == "not on this host yet: the first start pulls it from registry.example.org:5000"
    )


@pytest.mark.parametrize(
    "error, why",
    [
        (
            'Get "https://registry-1.docker.io/v2/": dial tcp: lookup registry-1.docker.io: no such'
            " host",
            "the registry docker.io cannot be reached from here",
        ),
        ("manifest unknown: manifest unknown", "the registry docker.io does not have it"),
        (
            "unauthorized: authentication required",
            "this host lacks the credentials for the registry docker.io",
        ),
    ],
)
def test_an_image_that_cannot_be_pulled_from_here_is_not_offered(error, why):
    found = status(error=error)
    assert not found.startable and found.note == "not on this host, and " + why
    assert found.problem.startswith(
        "The image org/pt:2.9 of 'PyTorch' is not on this Docker host and cannot be pulled: " + why
    )
    assert found.problem.endswith("Ask an admin to pull or build it.")


def test_an_image_missing_where_the_hub_never_pulls_is_not_offered():
    for policy in ("never", "skip"):
        found = status(policy=policy)
        assert not found.startable and found.note == "not on this host"
        assert "this hub does not pull images (pull_policy %r)" % policy in found.problem


def test_another_registry_answer_lets_the_pull_say_what():
    found = status(error="received unexpected HTTP status: 500 Internal Server Error")
    assert found.startable
    assert found.note == "not on this host yet: the first start tries to pull it from docker.io"
