"""Course profiles: parsed and checked at start, picked through the user options (pure)."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gpuspawner.errors import ConfigError, OptionsError
from gpuspawner.policy.catalog import parse_catalog
from gpuspawner.policy.options import SpawnChoice, options_from_form, parse_user_options
from gpuspawner.policy.profiles import (
    Profile,
    ProfileVolume,
    parse_profiles,
    parse_size,
    profile_limits,
    profiles_for,
    refuse_host_paths,
)

CATALOG = parse_catalog(
    {
        "pytorch-2.9": {"image": "org/pt:2.9", "cuda": "12.8"},
        "pytorch-2.8": {"image": "org/pt:2.8"},
        "staff-only": {"image": "org/staff:1", "groups": ["staff"]},
    }
)

COURSE = {
    "cs231n-lab": {
        "display_name": "CS231n lab",
        "description": "A shared T4 slot for the lab sessions.",
        "image": "pytorch-2.9",
        "shared": True,
        "gpu_type": "T4",
        "cpu_limit": 2,
        "mem_limit": "8G",
        "shm_size": "1G",
        "volumes": [
            {"source": "cs231n-data", "path": "/data/cs231n"},
            {"source": "cs231n-scratch-{group}", "path": "/scratch", "read_only": False},
        ],
        "environment": {"COURSE": "cs231n"},
        "gpu_max_age": 3 * 3600,
        "gpu_idle_timeout": 1800,
        "groups": ["cs231n", "cs231n-ta"],
    },
    "cs231n-project": {
        "image": "pytorch-2.9",
        "gpus": 1,
        "gpu_type": "A100",
        "groups": ["cs231n-projects"],
    },
    "mig": {"mig": "1g.10gb"},
    "cpu": {"image": "pytorch-2.8", "description": "No GPU."},
}


def parse(entries=COURSE, max_gpus=None):
    return parse_profiles(entries, CATALOG, max_gpus=max_gpus)


PROFILES = parse()


def by_key(key) -> Profile:
    return next(p for p in PROFILES if p.key == key)


def test_course_profiles_parsed_in_order():
    assert [p.key for p in PROFILES] == ["cs231n-lab", "cs231n-project", "mig", "cpu"]
    lab = by_key("cs231n-lab")
    assert lab == Profile(
        key="cs231n-lab",
        display_name="CS231n lab",
        description="A shared T4 slot for the lab sessions.",
        image="pytorch-2.9",
        gpus=1,
        gpu_type="T4",
        shared=True,
        cpu_limit=2.0,
        mem_limit=8 * 1024**3,
        shm_size=1024**3,
        volumes=(
            ProfileVolume("cs231n-data", "/data/cs231n", True),
            ProfileVolume("cs231n-scratch-{group}", "/scratch", False),
        ),
        environment={"COURSE": "cs231n"},
        gpu_max_age=10800.0,
        gpu_idle_timeout=1800.0,
        groups=("cs231n", "cs231n-ta"),
    )
    assert by_key("cpu").display_name == "cpu"  # the key when no display name
    assert by_key("cpu").gpus == 0 and by_key("cpu").cpu_limit is None
    assert by_key("mig").gpus == 1 and by_key("mig").choice_gpu_type == "1g.10gb"


def test_kind_text():
    assert by_key("cs231n-lab").kind_text() == "a slot of a shared T4"
    assert by_key("cs231n-project").kind_text() == "1 A100"
    assert by_key("mig").kind_text() == "a MIG 1g.10gb slice"
    assert by_key("cpu").kind_text() == "no GPU"
    assert parse({"two": {"gpus": 2}})[0].kind_text() == "2 GPUs"
    assert parse({"one": {"gpus": 1}})[0].kind_text() == "1 GPU"
    assert parse({"a": {"gpus": 2, "gpu_type": "A100"}})[0].kind_text() == "2 A100 GPUs"


def test_groups_and_scratch_volume_per_group():
    lab = by_key("cs231n-lab")
    assert lab.allowed_for(["cs231n"]) and lab.allowed_for(["x", "cs231n-ta"])
    assert not lab.allowed_for(["cs231n-projects"]) and not lab.allowed_for([])
    assert by_key("cpu").allowed_for([])  # no groups: everyone
    assert [p.key for p in profiles_for(PROFILES, ["cs231n"])] == ["cs231n-lab", "mig", "cpu"]
    # the first of the profile's groups (as written) the user is in, whatever the user's order
    assert lab.scratch_group(["cs231n-ta", "cs231n"]) == "cs231n"
    assert lab.mounts_for(["cs231n-ta"]) == (
        ProfileVolume("cs231n-data", "/data/cs231n", True),
        ProfileVolume("cs231n-scratch-cs231n-ta", "/scratch", False),
    )


def test_limits_for_the_admin_service():
    assert profile_limits(PROFILES) == {
        "cs231n-lab": {"gpu_max_age": 10800.0, "gpu_idle_timeout": 1800.0}
    }
    assert profile_limits(parse({"p": {"gpu_max_age": 0}})) == {"p": {"gpu_max_age": 0.0}}


@pytest.mark.parametrize(
    "value, expected",
    [
        ("8G", 8 * 1024**3),
        ("8g", 8 * 1024**3),
        ("8Gi", 8 * 1024**3),
        ("8GB", 8 * 1024**3),
        ("512M", 512 * 1024**2),
        ("1.5g", int(1.5 * 1024**3)),
        ("1024k", 1024**2),
        ("2T", 2 * 1024**4),
        ("1000", 1000),
        (1000, 1000),
        (None, None),
    ],
)
def test_sizes(value, expected):
    assert parse_size("p", "mem_limit", value) == expected


@pytest.mark.parametrize("value", ["8X", "", "-1G", "G", "8 G B", True, 0, -5, "0", [8]])
def test_bad_sizes(value):
    with pytest.raises(ConfigError, match="p: 'mem_limit' must be"):
        parse_size("p", "mem_limit", value)


@pytest.mark.parametrize(
    "entries, words",
    [
        ([], "profiles must be a dict of profile key to profile settings."),
        ({"Bad Key": {}}, "profiles['Bad Key']: a profile key must be 1-63 lower-case"),
        ({"p": "pytorch"}, "profiles['p'] must be a dict of the profile's settings."),
        (
            {"p": {"imgae": "pytorch-2.9"}},
            "profiles['p'] has unknown field(s) 'imgae'; the fields are: cpu_limit,",
        ),
        (
            {"p": {"image": "nope"}},
            "profiles['p']: image 'nope' is not a key of the image catalog (images); the keys"
            " are: pytorch-2.8, pytorch-2.9, staff-only.",
        ),
        ({"p": {"image": "org/pt:2.9"}}, "is not a key of the image catalog"),
        ({"p": {"image": 3}}, "profiles['p']: 'image' must be text, not 3."),
        ({"p": {"display_name": ["x"]}}, "'display_name' must be text"),
        ({"p": {"gpus": -1}}, "profiles['p']: 'gpus' must be a whole number, 0 or more, not -1."),
        ({"p": {"gpus": 1.5}}, "'gpus' must be a whole number"),
        ({"p": {"gpus": True}}, "'gpus' must be a whole number"),
        ({"p": {"gpus": "1"}}, "'gpus' must be a whole number"),
        ({"p": {"shared": "yes"}}, "profiles['p']: 'shared' must be true or false, not 'yes'."),
        ({"p": {"shared": True, "gpus": 2}}, "profiles['p']: a shared profile holds 1 slot, not 2"),
        ({"p": {"shared": True, "gpus": 0}}, "a shared profile holds 1 slot, not 0"),
        ({"p": {"mig": "1g.10gb", "gpus": 2}}, "profiles['p']: a MIG profile holds 1 slice, not 2"),
        ({"p": {"mig": "big"}}, "profiles['p']: 'mig' must be a MIG profile such as '1g.10gb'"),
        ({"p": {"mig": "1g.10gb", "shared": True}}, "either 'shared' or a 'mig' slice"),
        ({"p": {"mig": "1g.10gb", "gpu_type": "A100"}}, "give 'mig' or 'gpu_type', not both"),
        ({"p": {"gpu_type": "A100"}}, "profiles['p']: 'gpu_type' 'A100' needs 'gpus'"),
        ({"p": {"cpu_limit": 0}}, "profiles['p']: 'cpu_limit' must be a number of cores"),
        ({"p": {"cpu_limit": -1}}, "'cpu_limit' must be a number of cores"),
        ({"p": {"cpu_limit": "2"}}, "'cpu_limit' must be a number of cores"),
        ({"p": {"cpu_limit": True}}, "'cpu_limit' must be a number of cores"),
        ({"p": {"mem_limit": "lots"}}, "profiles['p']: 'mem_limit' must be a size such as '8G'"),
        ({"p": {"shm_size": "-1g"}}, "profiles['p']: 'shm_size' must be a size"),
        ({"p": {"gpu_max_age": -1}}, "profiles['p']: 'gpu_max_age' must be a number of seconds"),
        ({"p": {"gpu_idle_timeout": "1h"}}, "'gpu_idle_timeout' must be a number of seconds"),
        ({"p": {"environment": {"A B": "x"}}}, "profiles['p']: 'environment' must map variable"),
        ({"p": {"environment": {"A": 1}}}, "'environment' must map variable names"),
        ({"p": {"environment": ["A=1"]}}, "'environment' must map variable names"),
        ({"p": {"groups": "cs231n"}}, "profiles['p']: 'groups' must be a list of group names."),
        ({"p": {"groups": [""]}}, "'groups' must be a list of group names"),
        ({"p": {"volumes": "data:/data"}}, "profiles['p']: 'volumes' must be a list of"),
        ({"p": {"volumes": {"source": "d", "path": "/d"}}}, "'volumes' must be a list"),
        ({"p": {"volumes": ["data:/data"]}}, "profiles['p']['volumes'][0] must be a dict such as"),
        (
            {"p": {"volumes": [{"source": "d", "path": "/d", "mode": "ro"}]}},
            "profiles['p']['volumes'][0] has unknown field(s) 'mode'",
        ),
        ({"p": {"volumes": [{"path": "/d"}]}}, "profiles['p']['volumes'][0] needs a 'source'"),
        ({"p": {"volumes": [{"source": "", "path": "/d"}]}}, "needs a 'source'"),
        (
            {"p": {"volumes": [{"source": "a b", "path": "/d"}]}},
            "source 'a b' is neither a volume name",
        ),
        ({"p": {"volumes": [{"source": "d:x", "path": "/d"}]}}, "is neither a volume name"),
        ({"p": {"volumes": [{"source": "d-{user}", "path": "/d"}]}}, "is neither a volume name"),
        (
            {"p": {"volumes": [{"source": "d", "path": "data"}]}},
            "profiles['p']['volumes'][0]: 'path' must be an absolute path",
        ),
        ({"p": {"volumes": [{"source": "d", "path": "/d:rw"}]}}, "'path' must be an absolute"),
        ({"p": {"volumes": [{"source": "d", "path": "/d/../etc"}]}}, "'path' must be an abs"),
        ({"p": {"volumes": [{"source": "d"}]}}, "'path' must be an absolute path"),
        ({"p": {"volumes": [{"source": "d", "path": "/etc/"}]}}, "cannot be mounted at /etc."),
        ({"p": {"volumes": [{"source": "d", "path": "/"}]}}, "cannot be mounted at /."),
        ({"p": {"volumes": [{"source": "d", "path": "/dev/shm"}]}}, "cannot be mounted at"),
        (
            {"p": {"volumes": [{"source": "d", "path": "/d", "read_only": "yes"}]}},
            "'read_only' must be true or false, not 'yes'.",
        ),
        (
            {"p": {"volumes": [{"source": "scratch", "path": "/s", "read_only": False}]}},
            "profiles['p']['volumes'][0]: a writable volume must be per group: put {group}",
        ),
        (
            {"p": {"volumes": [{"source": "s-{group}", "path": "/s", "read_only": False}]}},
            "profiles['p']: a volume named per {group} needs the profile's 'groups'",
        ),
        (
            {"p": {"volumes": [{"source": "a", "path": "/d"}, {"source": "b", "path": "/d/"}]}},
            "profiles['p']: two volumes are mounted at /d.",
        ),
        (
            {"p": {"image": "staff-only", "groups": ["students"]}},
            "profiles['p']: none of its groups (students) may start its image 'staff-only'",
        ),
    ],
)
def test_bad_profiles_refused_with_sentence(entries, words):
    with pytest.raises(ConfigError) as error:
        parse(entries)
    assert words in str(error.value)


def test_more_gpus_than_a_server_may_have():
    with pytest.raises(ConfigError, match=r"profiles\['p'\]: 9 GPUs is more than max_gpus_per"):
        parse({"p": {"gpus": 9}}, max_gpus=8)
    assert parse({"p": {"gpus": 8}}, max_gpus=8)[0].gpus == 8


def test_volume_sources():
    profiles = parse(
        {
            "p": {
                "volumes": [
                    {"source": "/srv/datasets/imagenet", "path": "/data/imagenet/"},
                    {"source": "/srv/scratch/{group}", "path": "/scratch", "read_only": False},
                ],
                "groups": ["g"],
            }
        }
    )
    data, scratch = profiles[0].volumes
    assert data == ProfileVolume("/srv/datasets/imagenet", "/data/imagenet", True)
    assert data.is_host_path and not data.per_group
    assert scratch.per_group and scratch.source_for("g") == "/srv/scratch/g"
    with pytest.raises(ConfigError, match="is a host path; on KubeGPUSpawner a volume's source"):
        refuse_host_paths(profiles, "KubeGPUSpawner")
    refuse_host_paths(PROFILES, "KubeGPUSpawner")  # claims only: accepted


def test_staff_image_for_a_staff_profile():
    profile = parse({"p": {"image": "staff-only", "groups": ["staff", "x"]}})[0]
    assert profile.image == "staff-only"


# --- picking a profile through the user options ---


def pick(options, groups=("cs231n",), profiles=PROFILES):
    return parse_user_options(options, CATALOG, groups, max_gpus=4, profiles=profiles)


def test_profile_decides_image_and_gpus():
    lab = by_key("cs231n-lab")
    assert pick({"profile": "cs231n-lab"}) == SpawnChoice(
        CATALOG[0], 1, gpu_type="T4", shared=True, profile=lab
    )
    project = pick({"profile": "cs231n-project"}, groups=["cs231n-projects"])
    assert (project.gpu_count, project.gpu_type, project.shared) == (1, "A100", False)
    mig = pick({"profile": "mig"})
    assert (mig.gpu_count, mig.gpu_type, mig.shared) == (1, "1g.10gb", False)
    cpu = pick({"profile": "cpu"})
    assert (cpu.image.key, cpu.gpu_count, cpu.profile.key) == ("pytorch-2.8", 0, "cpu")


def test_no_profile_given_is_the_first_allowed():
    assert pick({}).profile.key == "cs231n-lab"
    assert pick(None).profile.key == "cs231n-lab"
    assert pick({"profile": ""}, groups=[]).profile.key == "mig"


def test_profile_without_image_gets_the_default_image():
    profiles = parse({"any": {}})
    choice = parse_user_options(
        {}, CATALOG, [], max_gpus=4, default_image="pytorch-2.8", profiles=profiles
    )
    assert choice.image.key == "pytorch-2.8"


def test_options_that_agree_with_the_profile_are_accepted():
    choice = pick({"profile": "cs231n-lab", "image": "pytorch-2.9", "gpus": 1, "shared": True})
    assert choice.profile.key == "cs231n-lab"
    assert pick({"profile": "cpu", "gpus": 0, "shared": False}).gpu_count == 0


@pytest.mark.parametrize(
    "options, groups, words",
    [
        (
            {"profile": "nope"},
            ["cs231n"],
            "There is no profile 'nope' on this hub; choose one of: cs231n-lab, mig, cpu.",
        ),
        (
            {"profile": "cs231n-project"},
            ["cs231n"],
            "The profile 'cs231n-project' is not available to your groups.",
        ),
        ({"profile": 3}, ["cs231n"], "The profile must be given by its name, such as 'cs231n-lab'"),
        (
            {"profile": "cs231n-lab", "image": "pytorch-2.8"},
            ["cs231n"],
            "The profile 'cs231n-lab' starts the image pytorch-2.9, not 'pytorch-2.8': pick"
            " another profile for another image.",
        ),
        (
            {"profile": "cs231n-lab", "gpus": 2},
            ["cs231n"],
            "The profile 'cs231n-lab' gives a slot of a shared T4, not 2 GPUs",
        ),
        ({"profile": "cpu", "gpus": 1}, [], "The profile 'cpu' gives no GPU, not 1 GPU"),
        ({"profile": "cpu", "gpus": True}, [], "gives no GPU, not True GPUs"),
        (
            {"profile": "cpu", "shared": True},
            [],
            "The profile 'cpu' gives no GPU: \"shared\": True does not apply",
        ),
        ({"image": "pytorch-2.8"}, ["cs231n"], "starts the image pytorch-2.9, not 'pytorch-2.8'"),
        ({"gpus": 3}, ["cs231n"], "gives a slot of a shared T4, not 3 GPUs"),
        (
            {"profile": "cpu", "cmd": "bash"},
            [],
            "Unknown spawn option(s) 'cmd'; the options are: profile.",
        ),
        ([1], [], 'Spawn options must be a JSON object such as {"profile": ...}.'),
    ],
)
def test_what_the_profile_does_not_allow_is_refused(options, groups, words):
    with pytest.raises(OptionsError) as error:
        pick(options, groups=groups)
    assert words in str(error.value)


def test_no_profile_for_the_user():
    profiles = parse({"p": {"groups": ["staff"]}})
    with pytest.raises(OptionsError, match="No profile of this hub is available to your groups"):
        pick({}, groups=[], profiles=profiles)


def test_profile_image_the_user_may_not_start():
    # an admin's profile for a group whose members are not all allowed the image
    profiles = parse({"p": {"image": "staff-only", "groups": ["staff", "students"]}})
    with pytest.raises(OptionsError, match="The image of the profile 'p' is not available"):
        pick({"profile": "p"}, groups=["students"], profiles=profiles)


def test_profile_option_on_a_hub_without_profiles():
    with pytest.raises(OptionsError) as error:
        pick({"profile": "cs231n-lab"}, profiles=())
    assert str(error.value) == "This hub has no profiles; the options are: gpus, image, shared."


def test_form_posts_the_profile():
    assert options_from_form({"profile": ["cs231n-lab"], "_xsrf": ["x"]}) == {
        "profile": "cs231n-lab"
    }


@given(
    st.dictionaries(
        st.sampled_from(["profile", "image", "gpus", "shared", "other"]),
        st.one_of(
            st.sampled_from([p.key for p in PROFILES] + ["pytorch-2.9", "pytorch-2.8"]),
            st.integers(-2, 5),
            st.booleans(),
            st.none(),
            st.text(max_size=4),
        ),
        max_size=4,
    ),
    st.lists(st.sampled_from(["cs231n", "cs231n-projects", "staff", "x"]), max_size=3),
)
def test_any_options_give_an_allowed_profile_or_a_sentence(options, groups):
    """Whatever the API is sent: a choice the user's groups allow, as the profile says, or
    an OptionsError (a 400 with its sentence), never another exception."""
    try:
        choice = pick(options, groups=groups)
    except OptionsError as e:
        assert str(e).endswith(".")
        return
    profile = choice.profile
    assert profile.allowed_for(groups)
    assert choice.gpu_count == profile.gpus and choice.shared == profile.shared
    assert choice.image.allowed_for(groups)
    assert (profile.image or choice.image.key) == choice.image.key


# --- a running server's profile in its saved state (the hub restarts, the service reads it) ---


def test_a_running_servers_profile_survives_a_hub_restart():
    import types

    from gpuspawner.lifecycle.profiles import ProfileSettings

    class Engine:  # the engine spawner's part of the state
        def get_state(self):
            return {"container_id": "c1"}

        def load_state(self, state):
            pass

        def clear_state(self):
            pass

    class Spawner(ProfileSettings, Engine):
        choice = None
        user_options: dict = {}

    running = Spawner()
    running.choice = types.SimpleNamespace(profile=by_key("cs231n-lab"))
    state = running.get_state()
    assert state == {"container_id": "c1", "profile": "cs231n-lab"}

    # after a restart: no choice, the stored options dropped the GPU profile
    restarted = Spawner()
    restarted.user_options = {}
    restarted.load_state(state)
    assert restarted.user_options == {"profile": "cs231n-lab"}  # what the hub's API shows
    assert restarted.get_state() == state  # and saved again as it was
    restarted.clear_state()
    assert restarted.get_state() == {"container_id": "c1"}


def test_a_gpu_profile_is_not_remembered_for_the_next_spawn():
    import types

    from gpuspawner.lifecycle.base import apply_gpu_options

    def spawner(options):
        return types.SimpleNamespace(
            choose=lambda o: pick(o), orm_spawner=types.SimpleNamespace(user_options=options)
        )

    lab = spawner({"profile": "cs231n-lab", "image": "pytorch-2.9"})
    apply_gpu_options(lab, lab.orm_spawner.user_options)
    assert lab.choice.profile.key == "cs231n-lab" and lab.image == "org/pt:2.9"
    assert lab.orm_spawner.user_options == {}  # a later spawn without options: no GPU kept
    cpu = spawner({"profile": "cpu", "gpus": 0})
    apply_gpu_options(cpu, cpu.orm_spawner.user_options)
    assert cpu.orm_spawner.user_options == {"profile": "cpu"}
