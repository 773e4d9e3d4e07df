"""A container engine on the command line: podman or docker, with the flags
this kind of machine needs, and the `debian:bookworm-slim` base image.

What a root VM with Debian's podman 4.3 needs (measured; docs/containers.md):
the `runc` runtime (Debian's crun 1.8 refuses hybrid cgroup set-ups),
ulimits within the host's hard limits (podman's defaults ask for more and
`setrlimit` fails), `--format docker` for builds (OCI images drop
HEALTHCHECK) and `--ignorefile` (podman 4 does not read
`<Dockerfile>.dockerignore` by itself). Docker needs none of these.

>>> limits = ulimit_flags()
>>> limits[0], limits[2]
('--ulimit', '--ulimit')
"""

import os
import resource
import shutil
import subprocess

BASE_IMAGE = "debian:bookworm-slim"
BASE_REGISTRY_NAME = "docker.io/library/debian:bookworm-slim"
# Debian packages that run containers as root with podman and make the base
# image (catatonit: podman's --init).
APT_PACKAGES = ("podman", "runc", "catatonit", "iptables", "debootstrap")


class Unavailable(Exception):
    """Containers cannot run on this machine (the reason is the message): an
    environment fact, not a failure of the images."""


def last_line(text):
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def ulimit_flags(nofile=1048576, nproc=32768):
    """`--ulimit` flags for open files and processes, each capped at this
    process's hard limit (podman asks for more by default)."""
    flags = []
    for name, kind, wanted in (
        ("nofile", resource.RLIMIT_NOFILE, nofile),
        ("nproc", resource.RLIMIT_NPROC, nproc),
    ):
        hard = resource.getrlimit(kind)[1]
        value = wanted if hard == resource.RLIM_INFINITY else min(hard, wanted)
        flags += ["--ulimit", f"{name}={value}:{value}"]
    return flags


class Engine:
    """One engine's command line (`podman` or `docker`)."""

    def __init__(self, name):
        if name not in ("podman", "docker"):
            raise ValueError(f"Invalid engine {name!r}: expected 'podman' or 'docker'.")
        self.name = name
        self.podman = name == "podman"
        # podman: runc where it is installed (crun 1.8 fails on hybrid cgroups).
        self.global_flags = ["--runtime", "runc"] if self.podman and shutil.which("runc") else []
        self.limits = ulimit_flags() if self.podman else []

    def command(self, *args):
        return [self.name, *self.global_flags, *map(str, args)]

    def __call__(self, *args, check=True, timeout=None, capture=True):
        """Runs `ENGINE ARGS`; returns the CompletedProcess (text). With
        `check`, a non-zero exit raises RuntimeError with the last line of
        its error output."""
        done = subprocess.run(
            self.command(*args),
            capture_output=capture,
            text=True,
            timeout=timeout,
            env=dict(os.environ, DOCKER_BUILDKIT="1"),
        )
        if check and done.returncode != 0:
            raise RuntimeError(
                f"{self.name} {args[0]} exited {done.returncode}: {last_line(done.stderr)}"
            )
        return done

    def build_command(self, dockerfile, ignorefile, target, tag, context):
        flags = ["--format", "docker", "--pull=never", "--ignorefile", ignorefile, *self.limits]
        return self.command(
            "build",
            *(flags if self.podman else []),
            "-f",
            dockerfile,
            "--target",
            target,
            "-t",
            tag,
            context,
        )

    def image_exists(self, tag):
        return self("image", "inspect", tag, check=False).returncode == 0

    def image_size(self, tag):
        """Bytes of the image (all layers, uncompressed)."""
        return int(self("image", "inspect", "--format", "{{.Size}}", tag).stdout.strip())

    def inspect(self, name, template):
        return self("inspect", "--format", template, name).stdout.strip()


def find_engine(wanted="auto"):
    """The first engine that answers (`podman`, then `docker` with a
    running daemon); raises Unavailable saying why none does."""
    names = ("podman", "docker") if wanted == "auto" else (wanted,)
    reasons = []
    for name in names:
        if shutil.which(name) is None:
            reasons.append(f"{name} is not installed")
            continue
        engine = Engine(name)
        done = engine("info", check=False, timeout=120)
        if done.returncode == 0:
            return engine
        reasons.append(f"`{name} info` failed: {last_line(done.stderr)}")
    raise Unavailable("no container engine answers: " + "; ".join(reasons))


def install_packages(packages=APT_PACKAGES):
    """apt-get installs `packages` (root on Debian/Ubuntu only); raises
    Unavailable when that cannot be done here."""
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise Unavailable(
            f"cannot install {' '.join(packages)}: needs root and apt-get "
            "(install a container engine, or run as root on Debian)"
        )
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for command in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages],
    ):
        done = subprocess.run(command, capture_output=True, text=True, env=env)
        if done.returncode != 0:
            raise Unavailable(
                f"`{' '.join(command[:2])}` failed ({done.returncode}): {last_line(done.stderr)}"
            )


def ensure_base(engine, make_script, tag=BASE_IMAGE):
    """Makes `tag` available: already there ("present"), pulled from the
    registry ("pulled"), else made with debootstrap by `make_script`
    ("made", only when no registry answers). Raises Unavailable when none
    works for a reason of this machine."""
    if engine.image_exists(tag):
        return "present"
    pulled = engine("pull", BASE_REGISTRY_NAME, check=False, timeout=600)
    if pulled.returncode == 0:
        if tag != BASE_REGISTRY_NAME:
            engine("tag", BASE_REGISTRY_NAME, tag)
        return "pulled"
    why = f"pulling {BASE_REGISTRY_NAME} failed ({last_line(pulled.stderr)})"
    if os.geteuid() != 0 or shutil.which("debootstrap") is None:
        raise Unavailable(f"{why}, and debootstrap needs root and the debootstrap package")
    done = subprocess.run(
        [str(make_script), engine.name, tag], capture_output=True, text=True, timeout=1800
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"{why}; {make_script} exited {done.returncode}: {last_line(done.stderr)}"
        )
    return "made"


def can_run(engine, image=BASE_IMAGE):
    """Raises Unavailable when no container starts here (e.g. no cgroups,
    no permission to create namespaces)."""
    done = engine("run", "--rm", *engine.limits, image, "true", check=False, timeout=300)
    if done.returncode != 0:
        raise Unavailable(f"a container cannot start here: {last_line(done.stderr)}")
