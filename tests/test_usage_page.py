"""A user's usage page: the pure values (daily GPU-hours, what runs now, the budget line)
and the rendered HTML, without a hub (tests/test_usage_hub.py runs it behind a real hub)."""

from datetime import datetime, timedelta, timezone

from gpuspawner.policy.budget import Budget, Interval
from gpuspawner.service import AdminSettings
from gpuspawner.service.report import usage_report
from gpuspawner.service.userpage import (
    Section,
    daily_hours,
    running_servers,
    user_page_context,
    user_report,
)
from gpuspawner.templating import render
from gpuspawner.usage.adjustments import Adjustment, in_force

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=timezone.utc)  # a Thursday
WEEK = datetime(2026, 11, 23, tzinfo=timezone.utc)
A100 = "NVIDIA A100-SXM4-80GB"


def settings(**overrides):
    values = dict(gpu_hour_budget_groups={"students": 10}, gpu_hour_weights={"A100": 2.0},
                  budget_grace_period=600, gpu_idle_timeout=1800)  # fmt: skip
    values.update(overrides)
    return AdminSettings(**values)


def test_daily_hours_split_at_midnight_weighted_and_open_up_to_now():
    intervals = [
        Interval("ann", "", "GPU-a", A100, datetime(2026, 11, 24, 23, tzinfo=timezone.utc),
                 datetime(2026, 11, 25, 1, tzinfo=timezone.utc)),
        Interval("ann", "", "GPU-t", "Tesla T4", NOW - timedelta(hours=3)),
    ]  # fmt: skip
    daily = daily_hours(intervals, settings(), NOW, days=4)
    assert daily["days"] == ["2026-11-23", "2026-11-24", "2026-11-25", "2026-11-26"]
    assert daily["hours"] == [0, 2.0, 2.0, 3.0]


def test_daily_hours_use_the_budget_time_zone():
    berlin = settings(budget_timezone="Europe/Berlin")
    start = datetime(2026, 11, 25, 23, 30, tzinfo=timezone.utc)
    intervals = [Interval("ann", "", "GPU-t", "T4", start, start + timedelta(hours=1))]
    # 00:30-01:30 in Berlin: all on the 26th there, half on each UTC day
    assert daily_hours(intervals, berlin, NOW, days=2)["hours"] == [0, 1.0]
    assert daily_hours(intervals, settings(), NOW, days=2)["hours"] == [0.5, 0.5]


def test_running_servers_deadline_from_all_gpus_and_the_idle_cull():
    held = [Interval("ann", "train", "GPU-a", A100, NOW - timedelta(hours=1)),
            Interval("ann", "", "GPU-t", "T4", NOW - timedelta(minutes=30))]  # fmt: skip
    idle_since = {"": NOW - timedelta(minutes=25)}
    servers = running_servers(held, settings(), 6.0, Budget(10, "group 'students'"), NOW,
                              idle_since)  # fmt: skip
    assert [s["server"] for s in servers] == ["", "train"]
    # 4 GPU-hours left at 3 GPU-hours per hour (A100 x2 + T4): spent in 80 min, +10 min grace
    expected = (NOW + timedelta(minutes=90)).isoformat(timespec="seconds")
    assert [s["deadline"] for s in servers] == [expected, expected]
    assert servers[0]["idle_stop_at"] == (NOW + timedelta(minutes=5)).isoformat(timespec="seconds")
    assert servers[1]["idle_since"] is None and servers[1]["idle_stop_at"] is None
    assert servers[1]["gpus"] == [A100] and servers[1]["since"] == "2026-11-26T11:00:00+00:00"


def report_for(user="ann", adjustments=(), held=()):
    s = settings()
    force = in_force(adjustments, WEEK)
    period = [Interval(user, "", "GPU-t", "T4", WEEK + timedelta(hours=1),
                       WEEK + timedelta(hours=3, minutes=30)), *held]  # fmt: skip
    (row,) = usage_report(s, period, {user: ["students"]}, NOW, {user: force})["users"]
    return user_report(user, row, s, (WEEK, WEEK + timedelta(days=7)),
                       [i for i in period if i.end is None], period, list(adjustments), NOW)


def test_user_report_with_a_top_up():
    top_up = Adjustment("ann", "top-up", 5, "thesis deadline", "boss", NOW - timedelta(hours=1),
                        WEEK)  # fmt: skip
    report = report_for(adjustments=[top_up])
    assert report["used_hours"] == 2.5 and report["budget_hours"] == 15
    assert report["left_hours"] == 12.5 and not report["spent"]
    assert report["line"] == (
        "GPU-hours left this week: 12.5 of 15 GPU-hours (group 'students' + 5 GPU-hours"
        " top-up); resets on Monday 30 November 2026 at 00:00 UTC."
    )
    assert report["adjustments"][0]["reason"] == "thesis deadline"
    assert report["period"]["end"] == "2026-11-30T00:00:00+00:00"


def render_user(report, viewer="ann", sections=()):
    context = user_page_context(report, viewer, "/services/gpu-admin/", NOW)
    return render("user.html", (), sections=list(sections), is_admin=viewer != report["user"],
                  **context)  # fmt: skip


def test_the_page_shows_budget_running_servers_chart_changes_and_csv(tmp_path):
    top_up = Adjustment("ann", "top-up", 5, "thesis <deadline>", "boss", NOW, WEEK)
    held = [Interval("ann", "train", "GPU-a", A100, NOW - timedelta(hours=1))]
    page = render_user(report_for(adjustments=[top_up], held=held))
    assert "<h1>My GPU usage</h1>" in page
    assert "GPU-hours left this week: 10.5 of 15 GPU-hours" in page
    assert "<td>train</td><td>%s</td>" % A100 in page
    assert 'aria-label="My GPU-hours per day"' in page and "<rect" in page
    assert "thesis &lt;deadline&gt;" in page and "+5 GPU-hours this period" in page
    assert 'href="/services/gpu-admin/users/ann/ledger.csv"' in page
    assert "dashboard" not in page


def test_an_admin_sees_whose_page_and_extra_sections_follow(tmp_path):
    (tmp_path / "extra.html").write_text("<p>{{ section.context.text }}</p>")
    from gpuspawner.templating import environment

    page = render(
        "user.html", (str(tmp_path),), is_admin=True,
        sections=[Section("secrets", "My secrets", "extra.html", {"text": "HF_TOKEN <set>"})],
        **user_page_context(report_for(), "boss", "/services/gpu-admin/", NOW),
    )  # fmt: skip
    environment.cache_clear()
    assert "<h1>GPU usage of ann</h1>" in page and ">dashboard</a>" in page
    assert '<section id="secrets"><h2>My secrets</h2>' in page
    assert "<p>HF_TOKEN &lt;set&gt;</p>" in page


def test_a_user_name_is_quoted_in_links():
    page = render_user(report_for(user="a&b c"), viewer="a&b c")
    assert 'href="/services/gpu-admin/users/a%26b%20c/ledger.csv"' in page


def test_the_dashboard_links_users_to_their_pages_and_has_the_adjustment_form():
    from gpuspawner.service.page import render_page

    usage = {"period": {"start": WEEK.isoformat(), "end": (WEEK + timedelta(days=7)).isoformat()},
             "groups": [], "users": [{"user": "a b&c", "group": "x", "used_hours": 1,
                                      "budget_hours": None, "spent": False, "gpu_servers": []}]}
    made = Adjustment("a b&c", "quota", 2, "thesis <runs>", "boss", NOW)
    data = {"inventory": [], "usage": usage, "daily": {"days": [], "groups": {}},
            "utilisation": {}, "adjustments": [made], "xsrf": "the-token"}  # fmt: skip
    page = render_page(data, [], settings(), "boss", "/services/gpu-admin/", NOW)
    assert '<a href="/services/gpu-admin/users/a%20b%26c"' in page
    assert '<input type="hidden" name="_xsrf" value="the-token">' in page
    assert '<form action="/services/gpu-admin/adjustments" method="post"' in page
    assert ("<td>a b&amp;c</td><td>quota 2 GPUs at once</td><td>thesis &lt;runs&gt;</td>"
            "<td>boss</td>") in page  # fmt: skip


def test_a_servers_own_limits_count_over_the_spawners():
    """A course profile's gpu_max_age / gpu_idle_timeout (as the watcher knows them)."""
    held = [Interval("ann", "lab", "GPU-t", "T4", NOW - timedelta(hours=1))]
    limits = {"lab": {"gpu_max_age": 2 * 3600, "gpu_idle_timeout": 600}}
    (server,) = running_servers(held, settings(), 0, Budget(None, "x"), NOW,
                                {"lab": NOW - timedelta(minutes=4)}, limits)  # fmt: skip
    assert server["deadline"] == (NOW + timedelta(hours=1)).isoformat(timespec="seconds")
    assert server["deadline_reason"] == "GPU servers stop after 2 h."
    assert server["idle_stop_at"] == (NOW + timedelta(minutes=6)).isoformat(timespec="seconds")
    (plain,) = running_servers(held, settings(), 0, Budget(None, "x"), NOW,
                               {"lab": NOW - timedelta(minutes=4)})  # fmt: skip
    assert plain["deadline"] is None
    assert plain["idle_stop_at"] == (NOW + timedelta(minutes=26)).isoformat(timespec="seconds")
