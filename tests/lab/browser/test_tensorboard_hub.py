"""TensorBoard through the hub: jupyter-server-proxy in the single-user image, in Chromium
(the browser fixture of this folder's conftest), against a real hub and Docker engine.

The image's launcher card starts TensorBoard on /home/jovyan/work/runs behind the server's own
login (/user/<name>/tensorboard/); another user's browser session is refused.
"""

from urllib.parse import urldefrag

import pytest

from gpuspawner.testing.browser import hub_page

pytestmark = [pytest.mark.docker, pytest.mark.browser]

# what torch.utils.tensorboard.SummaryWriter.add_scalar writes, with TensorBoard's own writer
WRITE_SCALARS = """
import time
from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.summary.writer.event_file_writer import EventFileWriter
writer = EventFileWriter("/home/jovyan/work/runs/first-run")
for step in range(20):
    value = summary_pb2.Summary.Value(tag="train/loss", simple_value=1.0 / (step + 1))
    summary = summary_pb2.Summary(value=[value])
    event = event_pb2.Event(wall_time=time.time(), step=step, summary=summary)
    writer.add_event(event)
writer.close()
print("written")
"""


def test_tensorboard_from_the_launcher_through_the_hub_and_403_for_others(
    hub_factory, docker_client, browser, output_dir
):
    hub = hub_factory()
    hub.create_user("tbuser")
    hub.create_user("tbother")
    assert hub.spawn("tbuser").status_code in (201, 202)
    hub.wait_ready("tbuser")
    (container,) = docker_client.containers.list(filters={"label": "gpuspawner.user=tbuser"})
    written = container.exec_run(["python", "-c", WRITE_SCALARS], user="1000")
    assert written.exit_code == 0 and b"written" in written.output, written.output

    context, page = hub_page(browser, hub, "tbuser")
    try:
        page.goto(hub.url + "/user/tbuser/lab")
        card = page.locator(".jp-LauncherCard", has_text="TensorBoard")
        card.wait_for()
        with context.expect_page() as opened:
            card.click()
        tensorboard = opened.value
        tensorboard.set_default_timeout(90_000)
        tensorboard.wait_for_load_state()
        # TensorBoard's own page may add its client-side route ("#timeseries") once loaded
        assert urldefrag(tensorboard.url).url == hub.url + "/user/tbuser/tensorboard/", (
            tensorboard.url
        )
        # the scalar card of the event written above, as TensorBoard draws it
        tensorboard.get_by_text("train/loss").first.wait_for()
        tensorboard.get_by_text("first-run").first.wait_for()
        tensorboard.screenshot(path=str(output_dir / "tensorboard-through-the-hub.png"))
        # TensorBoard's own data API answers through the same path, with the same login
        runs = tensorboard.request.get(hub.url + "/user/tbuser/tensorboard/data/runs")
        assert runs.status == 200 and runs.json() == ["first-run"], runs.text()
        # any other web tool the user starts on a port is at /user/<name>/proxy/<port>/
        container.exec_run(["tensorboard", "--logdir", "/home/jovyan/work/runs", "--port",
                            "6007", "--host", "127.0.0.1"], user="1000", detach=True)
        other = hub.url + "/user/tbuser/proxy/6007/data/runs"
        for _ in range(60):
            runs = tensorboard.request.get(other)
            if runs.status == 200:
                break
            tensorboard.wait_for_timeout(1000)
        assert runs.status == 200 and runs.json() == ["first-run"], runs.text()
    finally:
        context.close()

    # another user's session reaches the hub's refusal, not tbuser's TensorBoard
    context, page = hub_page(browser, hub, "tbother")
    try:
        for path in ("/user/tbuser/tensorboard/", "/user/tbuser/tensorboard/data/runs",
                     "/user/tbuser/proxy/6007/data/runs"):
            response = page.goto(hub.url + path)
            assert response.status == 403, (path, response.status)
            assert "first-run" not in page.content()
    finally:
        context.close()
    # and nobody without a session: sent to the hub's login
    anonymous = browser.new_context()
    try:
        page = anonymous.new_page()
        page.goto(hub.url + "/user/tbuser/tensorboard/")
        assert "/hub/login" in page.url, page.url
    finally:
        anonymous.close()
