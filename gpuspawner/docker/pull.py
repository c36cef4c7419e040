"""Image pulls through the engine's streaming API, told as progress messages.

The Docker engine streams one JSON event per layer step while it pulls::

    {"status": "Pulling fs layer", "id": "d1e810fcb3a4"}
    {"status": "Downloading", "id": "d1e810fcb3a4",
     "progressDetail": {"current": 552960, "total": 158443882}}
    {"status": "Extracting", "id": "d1e810fcb3a4",
     "progressDetail": {"current": 557056, "total": 158443882}}
    {"status": "Pull complete", "id": "d1e810fcb3a4"}
    {"error": "...", "errorDetail": {"message": "..."}}

:class:`PullProgress` folds them into one state and one line for the spawn's progress
bar ("pulling pytorch-2.9: 1.2 / 6.1 GB", then "pulling pytorch-2.9: unpacking 2.3 / 6.1 GB";
sizes are the compressed layers the registry sends). :func:`pull_refusal` turns an
engine's pull error into a sentence. Both are pure; :func:`pull_with_progress` is the
thin runner that reads the stream in its own thread (so a long pull never holds up the
hub's other engine calls) and gives up after a timeout.
"""

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

KB, MB, GB = 1000, 1000**2, 1000**3
MISSING_MARKERS = ("manifest unknown", "not found", "repository does not exist", "no such image")
UNREACHABLE_MARKERS = (
    "connection refused",
    "no such host",
    "dial tcp",
    "i/o timeout",
    "network is unreachable",
    "tls handshake timeout",
    "server gave http response to https client",
    "context deadline exceeded",
    "client.timeout",
    "connection reset",
)
DENIED_MARKERS = ("unauthorized", "authentication required", "denied", "forbidden")


class PullFailed(Exception):
    """The engine reported an error in the pull's stream; ``str(error)`` is its text."""


class PullTimedOut(Exception):
    """The pull did not finish in time; ``progress`` is how far it got."""

    def __init__(self, progress: "PullProgress", timeout: float):
        super().__init__("the pull did not finish in %g s" % timeout)
        self.progress = progress
        self.timeout = timeout


@dataclass
class Layer:
    """One layer as the engine reports it; sizes are compressed bytes."""

    total: int | None = None
    downloaded: int = 0
    extracted: int = 0
    fetched: bool = False  # downloaded (its size may never have been said)
    done: bool = False
    present: bool = False  # "Already exists": nothing to fetch


def format_size(current: int, total: int) -> str:
    """'1.2 / 6.1 GB', '52 / 158 MB', '0.4 / 3.2 MB': both in the unit of ``total``."""
    if total >= GB:
        return "%.1f / %.1f GB" % (current / GB, total / GB)
    if total >= 10 * MB:
        return "%d / %d MB" % (current // MB, total // MB)
    return "%.1f / %.1f MB" % (current / MB, total / MB)


def format_total(total: int) -> str:
    """'6.1 GB', '158 MB', '0.4 MB'."""
    return format_size(total, total).split(" / ", 1)[1]


class PullProgress:
    """The state of one pull, folded from the engine's events."""

    def __init__(self) -> None:
        self.layers: dict[str, Layer] = {}
        self.finished = False

    def update(self, event: dict) -> None:
        """Fold in one event; raise PullFailed for an error event."""
        if event.get("error") or event.get("errorDetail"):
            detail = event.get("errorDetail") or {}
            raise PullFailed(detail.get("message") or event.get("error") or "unknown error")
        status = event.get("status") or ""
        layer_id = event.get("id")
        if status.startswith("Status: "):
            self.finished = True
        if not layer_id or status.startswith("Pulling from"):
            return  # "Pulling from" carries the tag as its id; Digest/Status lines carry none
        layer = self.layers.setdefault(layer_id, Layer())
        detail = event.get("progressDetail") or {}
        if detail.get("total"):
            layer.total = int(detail["total"])
        if status == "Downloading":
            layer.downloaded = int(detail.get("current") or 0)
        elif status in ("Verifying Checksum", "Download complete"):
            layer.downloaded = layer.total or 0
            layer.fetched = True
        elif status == "Extracting":
            layer.downloaded = layer.total or 0
            layer.extracted = int(detail.get("current") or 0)
            layer.fetched = True
        elif status == "Pull complete":
            layer.downloaded = layer.extracted = layer.total or 0
            layer.fetched = layer.done = True
        elif status == "Already exists":
            layer.present = layer.fetched = layer.done = True

    # --- what it adds up to ---

    @property
    def to_fetch(self) -> list[Layer]:
        return [layer for layer in self.layers.values() if not layer.present]

    @property
    def total(self) -> int:
        return sum(layer.total or 0 for layer in self.to_fetch)

    @property
    def downloaded(self) -> int:
        return sum(min(layer.downloaded, layer.total or 0) for layer in self.to_fetch)

    @property
    def extracted(self) -> int:
        return sum(min(layer.extracted, layer.total or 0) for layer in self.to_fetch)

    @property
    def unsized(self) -> int:
        """Layers still to fetch whose size the engine has not said yet."""
        return sum(1 for layer in self.to_fetch if layer.total is None and not layer.fetched)

    @property
    def downloading(self) -> bool:
        return any(not layer.fetched for layer in self.to_fetch)

    def fraction(self) -> float:
        """0..1: downloading counts for the first half, unpacking for the second."""
        if self.finished or (self.layers and all(layer.done for layer in self.layers.values())):
            return 1.0
        layers = self.to_fetch
        if not layers:
            return 0.0
        if self.total == 0:
            return 0.5 * sum(layer.done for layer in layers) / len(layers)
        by_bytes = (self.downloaded + self.extracted) / (2 * self.total)
        sized = (len(layers) - self.unsized) / len(layers)  # unsized layers hold the bar back
        return min(1.0, by_bytes * sized)

    @property
    def phase(self) -> str:
        """'asking', 'present', 'starting', 'downloading' or 'unpacking'."""
        if not self.layers:
            return "asking"
        if not self.to_fetch:
            return "present"
        if self.total == 0:
            return "starting"
        return "downloading" if self.downloading else "unpacking"

    def message(self, key: str) -> str:
        """One line for the progress bar."""
        phase = self.phase
        if phase == "asking":
            return "pulling %s: asking the registry" % key
        if phase == "present":
            return "pulling %s: every layer is already on this host" % key
        if phase == "starting":
            return "pulling %s: starting (%d layers)" % (key, len(self.layers))
        if self.downloading:
            text = "pulling %s: %s" % (key, format_size(self.downloaded, self.total))
            if self.unsized:
                text += " (%d more layer%s to size)" % (
                    self.unsized,
                    "" if self.unsized == 1 else "s",
                )
            return text
        return "pulling %s: unpacking %s" % (key, format_size(self.extracted, self.total))

    def summary(self, key: str, seconds: float) -> str:
        """The last line, once the pull is done."""
        if not self.to_fetch:
            return "Image %s was already on this host" % key
        return "Pulled %s (%s) in %.0f s" % (key, format_total(self.total), seconds)


def registry_of(image: str) -> str:
    """The registry an image reference names: 'docker.io' when it names none."""
    first, _, rest = image.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return first
    return "docker.io"


def classify_pull_error(text: str) -> str:
    """'missing', 'unreachable', 'denied' or 'other' for an engine's pull error text."""
    lowered = text.lower()
    if any(marker in lowered for marker in UNREACHABLE_MARKERS):
        return "unreachable"
    if "pull access denied" in lowered or any(marker in lowered for marker in MISSING_MARKERS):
        return "missing"
    if any(marker in lowered for marker in DENIED_MARKERS):
        return "denied"
    return "other"


def pull_refusal(image: str, display_name: str, error_text: str) -> str:
    """The sentence a user sees when ``image`` could not be pulled."""
    registry = registry_of(image)
    said = error_text.strip().rstrip(".")
    kind = classify_pull_error(error_text)
    if kind == "missing":
        return (
            "The image %s of %r is not in the registry %s (no such tag or repository), so it"
            " cannot be pulled. Ask an admin to push it or to fix the catalog. (Docker said: %s.)"
            % (image, display_name, registry, said)
        )
    if kind == "unreachable":
        return (
            "The registry %s could not be reached, so the image %s of %r cannot be pulled"
            " right now. Try again later, or ask an admin. (Docker said: %s.)"
            % (registry, image, display_name, said)
        )
    if kind == "denied":
        return (
            "The registry %s refused to hand out the image %s of %r: this Docker host lacks"
            " the credentials for it. Ask an admin. (Docker said: %s.)"
            % (registry, image, display_name, said)
        )
    return "Pulling the image %s of %r failed. Ask an admin. (Docker said: %s.)" % (
        image,
        display_name,
        said,
    )


def timeout_refusal(image: str, display_name: str, error: PullTimedOut, key: str) -> str:
    """The sentence a user sees when the pull took longer than the pull timeout."""
    return (
        "Pulling the image %s of %r did not finish within %g s (%s when it stopped)."
        " Try again later, or ask an admin to pre-pull the catalog's images"
        " (python -m gpuspawner.prepull)."
        % (image, display_name, error.timeout, error.progress.message(key))
    )


async def pull_with_progress(
    client,
    image: str,
    *,
    timeout: float,
    report: Callable[[PullProgress], None],
    interval: float = 1.0,
) -> PullProgress:
    """Pull ``image`` with a docker ``APIClient``, calling ``report`` as it goes: when the pull
    enters a new phase (sizing, downloading, unpacking), else at most every ``interval`` s.

    Raises PullFailed (an error inside the stream), docker.errors.APIError (refused at
    once: unknown tag, unreachable registry) or PullTimedOut. The stream is read in a
    thread of its own; after a timeout it stops reading at the engine's next event and
    closes the stream, and the engine cancels the pull (Docker 20.10 does).
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue()
    stop = threading.Event()

    def send(kind, item):
        try:
            loop.call_soon_threadsafe(queue.put_nowait, (kind, item))
        except RuntimeError:  # the loop is gone (hub shutting down)
            stop.set()

    def read_stream():
        try:
            for event in client.pull(image, stream=True, decode=True):
                if stop.is_set():
                    return
                send("event", event)
        except Exception as e:  # handed to the coroutine, which raises it
            send("error", e)
            return
        send("end", None)

    threading.Thread(target=read_stream, name="pull %s" % image, daemon=True).start()
    progress = PullProgress()
    deadline = loop.time() + timeout
    last_report, last_phase = 0.0, "asking"  # the caller says it asked the registry
    try:
        while True:
            try:
                kind, item = await asyncio.wait_for(queue.get(), max(0.0, deadline - loop.time()))
            except asyncio.TimeoutError:
                raise PullTimedOut(progress, timeout) from None
            if kind == "end":
                return progress
            if kind == "error":
                raise item
            progress.update(item)
            now = time.monotonic()
            if progress.phase != last_phase or (
                last_phase != "asking" and now - last_report >= interval
            ):
                last_report, last_phase = now, progress.phase
                report(progress)
    finally:
        stop.set()
