"""Can this host's NVIDIA driver run an image built for a given CUDA version? (pure)

The rule, in order:

1. Unknown driver (no NVML, nothing configured) or an image without a ``cuda`` field:
   no opinion, the image is offered.
2. The driver's own word comes first: NVML reports the newest CUDA version the driver
   supports (``nvmlSystemGetCudaDriverVersion``, the "CUDA Version" of nvidia-smi).
   An image whose CUDA is not newer than that runs.
3. Drivers are backward compatible across majors: a 12.x driver runs 11.x images.
4. Newer major than the driver: refused (CUDA 12 images need a 12.x driver; the
   forward-compatibility package of data-center GPUs is not assumed).
5. Same major, newer minor (a 12.8 image on a driver that reports 12.2): CUDA's
   minor-version compatibility lets every 11.1+ / 12.x / 13.x runtime run on any driver
   of the same major from that major's first release driver on (Linux: 11.x from
   450.80.02, 12.x from 525.60.13, 13.x from 580.65.06). PyTorch's wheels ship compiled
   kernels for the GPUs they support, so they run this way; what does not is code that
   JIT-compiles PTX from the newer toolkit, or that calls APIs newer than the driver.
   ``strict`` mode refuses these images instead. A major missing from the table above
   is treated strictly. When only the CUDA version is known (configured, no driver
   version), a driver of that major is assumed to meet its major's minimum.

Everything here is pure; ``check_image_cuda`` returns a sentence or None.
"""

import re
from dataclasses import dataclass

CUDA_PATTERN = re.compile(r"^(\d+)\.(\d+)$")
DRIVER_PATTERN = re.compile(r"^\d+(\.\d+){0,2}$")
MODES = ("minor-version", "strict")

#: The oldest Linux driver of each CUDA major that supports minor-version compatibility.
MINOR_VERSION_MINIMUM_DRIVER = {
    11: "450.80.02",
    12: "525.60.13",
    13: "580.65.06",
}


@dataclass(frozen=True)
class DriverCuda:
    """What the host's driver supports: its version (may be unknown) and its CUDA version."""

    cuda: tuple[int, int]
    version: str = ""

    def describe(self) -> str:
        if self.version:
            return "this server's driver %s supports CUDA up to %s" % (
                self.version,
                format_cuda(self.cuda),
            )
        return "this server's driver supports CUDA up to %s" % format_cuda(self.cuda)


def parse_cuda(text: str) -> tuple[int, int]:
    """'12.8' -> (12, 8); ValueError with a sentence otherwise."""
    match = CUDA_PATTERN.match(text.strip()) if isinstance(text, str) else None
    if not match:
        raise ValueError("a CUDA version looks like '12.8', not %r" % (text,))
    return int(match.group(1)), int(match.group(2))


def format_cuda(version: tuple[int, int]) -> str:
    return "%d.%d" % version


def driver_tuple(version: str) -> tuple[int, ...]:
    """'535.104.05' -> (535, 104, 5); ValueError for anything else."""
    if not isinstance(version, str) or not DRIVER_PATTERN.match(version.strip()):
        raise ValueError("a driver version looks like '535.104.05', not %r" % (version,))
    return tuple(int(part) for part in version.strip().split("."))


def compatible(
    image_cuda: tuple[int, int], driver: DriverCuda, mode: str = "minor-version"
) -> bool:
    """Whether ``driver`` runs an image built for ``image_cuda`` (the module doc's rule)."""
    if mode not in MODES:
        raise ValueError(
            "the CUDA compatibility mode is one of %s, not %r" % (", ".join(MODES), mode)
        )
    if image_cuda <= driver.cuda:
        return True  # rules 2 and 3: not newer than the driver's own CUDA version
    major = image_cuda[0]
    if mode == "strict" or major != driver.cuda[0] or major not in MINOR_VERSION_MINIMUM_DRIVER:
        return False
    if not driver.version:
        return True
    return driver_tuple(driver.version) >= driver_tuple(MINOR_VERSION_MINIMUM_DRIVER[major])


def check_image_cuda(
    key: str, image_cuda: str, driver: DriverCuda | None, mode: str = "minor-version"
) -> str | None:
    """Why image ``key`` (built for ``image_cuda``) cannot run on ``driver``.

    None when it can, or when the driver or the image's CUDA version is unknown.
    """
    if driver is None or not image_cuda:
        return None
    needed = parse_cuda(image_cuda)
    if compatible(needed, driver, mode):
        return None
    major = needed[0]
    minimum = MINOR_VERSION_MINIMUM_DRIVER.get(major)
    if mode == "minor-version" and minimum and major == driver.cuda[0]:
        fix = "a driver %s or newer" % minimum
    else:
        fix = "a driver that supports CUDA %s" % format_cuda(needed)
    said = driver.describe()
    return "%s%s; image '%s' needs CUDA %s. Pick another image, or ask an admin for %s." % (
        said[0].upper(),
        said[1:],
        key,
        format_cuda(needed),
        fix,
    )
