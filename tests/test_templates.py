"""The spawn form and the admin page come from jinja2 templates an admin can override (pure)."""

import asyncio
import types
from datetime import datetime, timedelta, timezone

from gpuspawner.lifecycle.base import Availability
from gpuspawner.lifecycle.form import render_options_form
from gpuspawner.policy.catalog import parse_catalog
from gpuspawner.policy.quota import GpuLimit
from gpuspawner.service.page import render_page

CATALOG = parse_catalog(
    {
        "pt": {"image": "org/pt:2.9", "display_name": "PyTorch <2.9>", "cuda": "12.8"},
        "cpu": {"image": "org/cpu:1.0"},
    }
)


def spawner(
    template_paths=(),
    availability=None,
    budget=(None, False),
    server="",
    no_gpus=None,
    notes=None,
    problems=None,
    user=None,
):
    async def gpu_availability():
        return availability

    async def budget_status():
        return budget

    problems = problems or {}
    return types.SimpleNamespace(
        gpu_availability=gpu_availability,
        gpus_unavailable_reason=lambda: no_gpus,
        user_quota=GpuLimit(2, "group 'staff'"),
        max_gpus_per_server=8,
        accounting=types.SimpleNamespace(budget_status=budget_status),
        catalog=CATALOG,
        user_groups=[],
        default_image="",
        offered_images=lambda: [i for i in CATALOG if i.key not in problems],
        image_problem=lambda image: problems.get(image.key),
        image_note=lambda image: (notes or {}).get(image.key, ""),
        server_name=server,
        template_paths=list(template_paths),
        user=user or types.SimpleNamespace(name="ann", id=1),
        shared=SHARED,
    )


SHARED = object()


def form(**kwargs) -> str:
    return asyncio.run(render_options_form(spawner(**kwargs)))


def test_the_packaged_form_offers_images_and_what_the_user_may_take():
    html = form(availability=Availability(1, 8, 1, "1 GPU on server 'a' (GPU-a)"), server="train")
    assert (
        '<option value="pt" selected>PyTorch &lt;2.9&gt; - CUDA 12.8</option>\n<option value="cpu">'
        in html
    )
    assert (
        '<option value="0" selected>0 GPUs</option>\n<option value="1">1 GPU</option></select>'
        in html
    )
    assert '<option value="2">' not in html  # 1 of the quota of 2 is held
    assert (
        '<label for="gpuspawner-gpus" class="form-label">GPUs for server &#x27;train&#x27;</label>'
        in html
    )
    assert '<p class="mb-1">Your limit: 2 GPUs at once (group &#x27;staff&#x27;).</p>' in html
    assert (
        '<p class="mb-1">'
        "1 of 8 GPUs free on this hub. You hold 1 GPU on server &#x27;a&#x27; (GPU-a).</p>" in html
    )


def test_a_spent_budget_offers_no_gpu():
    html = form(budget=("GPU-hours left this week: 0 of 1 GPU-hour", True))
    assert '<option value="0" selected>0 GPUs</option></select>' in html
    assert '<p class="mb-1">GPU-hours left this week: 0 of 1 GPU-hour</p>' in html


def test_an_admin_template_replaces_the_form_and_values_stay_escaped(tmp_path):
    (tmp_path / "spawn_form.html").write_text(
        "<h2>Pick for {{ server_label }}</h2>{% for image in images %}[{{ image.display_name }}]"
        "{% endfor %}{% for line in status_lines %}<em>{{ line }}</em>{% endfor %}"
    )
    html = form(template_paths=[str(tmp_path)], server="<b>")
    assert html.startswith(
        "<h2>Pick for server &#x27;&lt;b&gt;&#x27;</h2>[PyTorch &lt;2.9&gt;][cpu]"
    )
    assert "<em>Your limit: 2 GPUs at once (group &#x27;staff&#x27;).</em>" in html


NOW = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)


def page_data(users=()):
    period = {
        "start": (NOW - timedelta(days=1)).isoformat(),
        "end": (NOW + timedelta(days=6)).isoformat(),
    }
    inventory = [
        {
            "uuid": "GPU-a",
            "name": "A100",
            "user": "ann",
            "server": "train",
            "since": (NOW - timedelta(minutes=3)).isoformat(),
            "lost": False,
        },
        {
            "uuid": "GPU-b",
            "name": "A100",
            "user": None,
            "server": None,
            "since": None,
            "lost": True,
        },
    ]
    return {
        "inventory": inventory,
        "usage": {"period": period, "groups": [], "users": list(users)},
        "daily": {"days": ["2026-11-30", "2026-12-01"], "groups": {"students": [0.5, 1.0]}},
        "utilisation": {"GPU-a": 37.0},
    }


def test_the_admin_page_from_its_template(tmp_path):
    settings = types.SimpleNamespace(gpu_hour_weights={"A100": 2.0}, template_paths=[])
    notices = [{"at": NOW, "message": "ann's <budget> is spent"}]
    html = render_page(page_data(), notices, settings, "boss", "/services/gpu-admin/", NOW)
    assert "<h2>GPU inventory: 1 of 2 held</h2>" in html
    assert (
        "<td>A100</td><td>ann</td><td>train</td><td>01 Dec 11:57 UTC (3 min ago)</td><td>37%</td>"
        in html
    )
    assert '<td><span class="lost">lost</span></td>' in html
    assert '<tr><td colspan="6">No users yet.</td></tr>' in html
    assert "<title>students 2026-12-01: 1 GPU-hour</title>" in html
    assert "<li><time>01 Dec 12:00</time> ann&#x27;s &lt;budget&gt; is spent</li>" in html
    assert "Weights: A100 x2." in html
    (tmp_path / "admin.html").write_text(
        "{{ viewer }} sees {{ held }} held; {{ chart.columns|length }} days"
    )
    settings.template_paths = [str(tmp_path)]
    assert render_page(page_data(), [], settings, "b<ss", "/", NOW) == "b&lt;ss sees 1 held; 2 days"


def test_selects_are_bootstrap_selects_with_their_arrow():
    html = form()
    assert html.count('class="form-select"') == 2 and "form-control" not in html


def test_a_hub_without_gpus_says_so_plainly_and_offers_none():
    html = form(
        availability=Availability(0, 0, 0, "no GPU"),
        no_gpus="This hub has no GPUs: servers run on the CPU only.",
        budget=("GPU-hours left this week: 10 of 10 GPU-hours", False),
    )
    assert '<p class="mb-1">This hub has no GPUs: servers run on the CPU only.</p>' in html
    assert "0 of 0" not in html and "GPU-hours" not in html and "Your limit" not in html
    assert '<option value="0" selected>0 GPUs</option></select>' in html


def test_each_image_says_what_this_host_has_of_it_and_why_one_is_not_offered():
    html = form(
        notes={"pt": "not on this host yet: the first start pulls it from docker.io"},
        problems={"cpu": "The image org/cpu:1.0 of 'cpu' cannot be pulled."},
    )
    assert (
        '<option value="pt" selected>PyTorch &lt;2.9&gt; - CUDA 12.8 - not on this host yet:'
        " the first start pulls it from docker.io</option>" in html
    )
    assert 'value="cpu"' not in html
    assert (
        '<p class="mb-1">'
        "cpu is not offered: The image org/cpu:1.0 of &#x27;cpu&#x27; cannot be pulled.</p>"
        in (html)
    )


def test_a_refused_post_is_rendered_again_for_its_server_with_its_choices():
    from gpuspawner.lifecycle.form import remember_form, spawn_failed

    user = types.SimpleNamespace(name="ann", id=7)
    named = spawner(server="train", user=user)
    remember_form(named, {"image": ["cpu"], "gpus": ["1"]})
    spawn_failed(named)
    # JupyterHub renders the form again through the user's default server's spawner
    html = asyncio.run(render_options_form(spawner(user=user)))
    assert (
        '<label for="gpuspawner-gpus" class="form-label">GPUs for server &#x27;train&#x27;' in html
    )
    assert '<option value="cpu" selected>' in html and '<option value="1" selected>' in html
    # once: the next form is the default server's, with the defaults
    html = asyncio.run(render_options_form(spawner(user=user)))
    assert "GPUs for the default server" in html and '<option value="pt" selected>' in html
    # a post whose spawn did not fail is not rendered again
    remember_form(named, {"image": ["cpu"], "gpus": ["1"]})
    html = asyncio.run(render_options_form(spawner(user=user)))
    assert "GPUs for the default server" in html


def profile_form(groups, availability=None, budget=(None, False), inventory=None):
    from gpuspawner.policy.profiles import parse_profiles, profiles_for

    profiles = parse_profiles(
        {
            "lab": {
                "display_name": "Lab <session>",
                "description": "For the weekly labs.",
                "image": "pt",
                "shared": True,
                "gpu_type": "T4",
                "cpu_limit": 2,
                "mem_limit": "8G",
                "groups": ["students"],
            },
            "project": {"image": "pt", "gpus": 2, "gpu_type": "A100", "groups": ["projects"]},
            "cpu": {"image": "cpu", "shm_size": "512M"},
        },
        CATALOG,
    )
    stub = spawner(availability=availability, budget=budget)
    stub.user_groups = list(groups)
    stub.profile_set = profiles
    stub.offered_profiles = lambda: profiles_for(profiles, groups)
    if inventory is not None:
        stub.pool = types.SimpleNamespace(inventory=inventory)
    return asyncio.run(render_options_form(stub))


def test_profiles_are_cards_of_the_users_groups_only():
    from gpuspawner.policy.inventory import Gpu

    html = profile_form(
        ["students"],
        availability=Availability(3, 4, 0, "no GPU", slots_free=5, slots_total=8),
        inventory=(Gpu("GPU-t4", "Tesla T4", shared_by=4), Gpu("GPU-a", "A100")),
    )
    assert '<legend class="form-label fs-6">Profile for the default server</legend>' in html
    assert (
        '<input class="form-check-input" type="radio" name="profile" value="lab"'
        ' id="gpuspawner-profile-lab" checked>' in html
    )
    assert '<span class="card-title fw-bold">Lab &lt;session&gt;</span>' in html
    assert (
        "<span class=\"card-text d-block small\" data-profile-kind>PyTorch &lt;2.9&gt;"
        " &middot; a slot of a shared T4 &middot; 2 CPUs, 8 GiB memory</span>" in html
    )
    assert "data-profile-free>5 of 8 shared slots free now.</span>" in html
    assert (
        "data-profile-note>The GPU is shared with up to 3 others; memory is not isolated"
        " and compute is time-sliced.</span>" in html
    )
    assert 'value="cpu"' in html and "cpu &middot; no GPU &middot; 512 MiB /dev/shm</span>" in html
    assert 'value="project"' not in html and "A100" not in html  # not the user's group
    assert 'name="image"' not in html and 'name="gpus"' not in html


def test_a_profile_the_user_cannot_take_now_is_disabled():
    html = profile_form(
        ["projects"], availability=Availability(1, 4, 0, "no GPU"), budget=("spent", False)
    )
    # 2 A100s asked, 1 free: the GPU-less profile is selected, the project one disabled
    assert 'value="project" id="gpuspawner-profile-project" disabled>' in html
    assert 'value="cpu" id="gpuspawner-profile-cpu" checked>' in html
    assert "data-profile-kind>PyTorch &lt;2.9&gt; &middot; 2 A100 GPUs</span>" in html
    assert "data-profile-free>1 of 4 GPUs free now.</span>" in html
    assert "Not available to you now" in html
    assert 'value="lab"' not in html


def test_cards_count_what_is_free_of_their_own_kind():
    from gpuspawner.policy.allocation import Holding
    from gpuspawner.policy.inventory import Gpu

    t4 = Gpu("GPU-t4", "Tesla T4", shared_by=4)
    a100s = (Gpu("GPU-a", "NVIDIA A100-SXM4-80GB"), Gpu("GPU-b", "NVIDIA A100-SXM4-80GB"))
    pool = types.SimpleNamespace(
        inventory=(t4, *a100s, Gpu("GPU-l4", "NVIDIA L4")),
        usable=lambda: (t4, *a100s, Gpu("GPU-l4", "NVIDIA L4")),
        holdings=[Holding("#1", "", (t4,)), Holding("#2", "", (a100s[0],))],
    )
    lab = profile_form(
        ["students"], availability=Availability(2, 3, 0, "no GPU", 3, 4), inventory=pool.inventory
    )
    assert "data-profile-free>3 of 4 shared slots free now." in lab  # no usable(): the hub's
    stub_html = profile_form_with_pool(["students", "projects"], pool)
    assert "data-profile-free>3 of 4 T4 shared slots free now.</span>" in stub_html
    # 1 A100 of 2 free, the project asks for 2: disabled, though 2 GPUs are free on the hub
    assert "data-profile-free>1 of 2 A100 GPUs free now.</span>" in stub_html
    assert 'value="project" id="gpuspawner-profile-project" disabled>' in stub_html


def profile_form_with_pool(groups, pool):
    from gpuspawner.policy.profiles import parse_profiles, profiles_for

    profiles = parse_profiles(
        {
            "lab": {"image": "pt", "shared": True, "gpu_type": "T4", "groups": ["students"]},
            "project": {"image": "pt", "gpus": 2, "gpu_type": "A100", "groups": ["projects"]},
        },
        CATALOG,
    )
    stub = spawner(availability=Availability(2, 3, 1, "1 GPU", 3, 4))
    stub.user_quota = GpuLimit(4, "group 'projects'")
    stub.user_groups = list(groups)
    stub.profile_set = profiles
    stub.offered_profiles = lambda: profiles_for(profiles, groups)
    stub.pool = pool
    return asyncio.run(render_options_form(stub))
