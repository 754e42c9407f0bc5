"""The Ray a sweep runs on: a private local instance on loopback unless an address is given.

What Ray 2.60 does that this module works around:

- Bind address. Every Ray process binds its ports to 127.0.0.1 when the node's IP is a loopback
  address and to all interfaces otherwise (`dashboard/agent.py`, `dashboard/head.py`,
  `autoscaler/v2/monitor.py`; the GCS, raylet and workers, C++, behave the same, which
  tests/tune/test_private_ray_loopback.py checks). On Linux, `ray.init(_node_ip_address=
  "127.0.0.1")` cannot ask for loopback: `services.resolve_ip_for_localhost` turns a loopback
  address into the machine's routable one, and so does the default `get_node_ip_address`, unless
  `ray_constants.ENABLE_RAY_CLUSTER` is off (`RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`, the macOS and
  Windows default). `_loopback_node` switches it off while the private instance starts.
- Token file. A new local instance turns token authentication on unless RAY_AUTH_MODE says
  otherwise and writes a missing `~/.ray/auth_token` with a plain `open(path, "w")`, readable by
  everyone under the usual umask (`_private/authentication/authentication_token_setup.py`).
  `guard_token_file` writes it first, 0600.
- Joining. `ray.init(address=...)` retries an address where no GCS answers for minutes
  (`node.Node._init_gcs_client`: 20 tries of up to ~40 s); `_check_reachable` gives up after
  CONNECT_TIMEOUT_S without an answer from a gRPC server there, and ray.init gets GCS_TRIES.
- Losing the cluster. A driver whose GCS is gone is ended by Ray's core worker about a minute
  later with exit code 1, or Tune returns trials that never reported; `fit_or_lost` watches the
  GCS and turns either into one ConfigError line.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import signal
import socket
import stat
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from robustmm.errors import ConfigError, SweepStopped

LOOPBACK = "127.0.0.1"
CLUSTER_SWITCH = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"  # read by ray._private.ray_constants
CONNECT_TIMEOUT_S = 10.0  # for the GCS of --address to answer (see probe)
GCS_TRIES = "2"  # ray.init's GCS connection tries (up to ~40 s each) once a gRPC server answered
WATCH_EVERY_S = 2.0  # how often a running sweep checks that the cluster's GCS answers
LOST_AFTER_S = 10.0  # the GCS unanswered this long: the cluster is gone
GIVE_UP_S = 10.0  # then the driver ends itself: Tune is mostly stuck in a call to the gone GCS by then


def connect_ray(address: str | None = None, num_cpus: int | None = None) -> str:
    """The Ray a sweep runs on: the cluster at `address` when one is given (`--address`, else
    RAY_ADDRESS, which `ray job submit` sets; `auto` finds one started on this machine), else a
    private local instance of its own on 127.0.0.1, never another user's Ray found on the
    machine. Returns a line saying which."""
    import ray

    if ray.is_initialized():
        return "using the Ray instance already running in this process"
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address is None or address == "local":
        guard_token_file()
        with _loopback_node():
            ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
        cpus = ray.cluster_resources().get("CPU", 0)
        return f"started a private local Ray instance on {LOOPBACK} ({cpus:g} CPUs)"
    _check_reachable(address)
    try:
        with _env({"RAY_gcs_server_port_wait_time_s": os.environ.get("RAY_gcs_server_port_wait_time_s", GCS_TRIES)}):
            ray.init(address=address, log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError, ray.exceptions.AuthenticationError) as e:
        raise ConfigError(
            f"cannot join the Ray cluster at {address!r} ({_first_line(e)}); give the head's GCS port and, for a "
            "cluster with token authentication, set RAY_AUTH_MODE=token and its token (~/.ray/auth_token) here; "
            "or drop --address (and RAY_ADDRESS) to run on a private local instance"
        ) from e
    return f"joined the Ray cluster at {ray.get_runtime_context().gcs_address}"


def _first_line(e: BaseException) -> str:
    return str(e).splitlines()[0] if str(e) else type(e).__name__


@contextlib.contextmanager
def _env(values: dict[str, str]) -> Iterator[None]:
    """os.environ with `values` set, as it was afterwards."""
    before = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextlib.contextmanager
def _loopback_node() -> Iterator[None]:
    """A Ray started inside takes 127.0.0.1 as its node IP, so all its processes bind there:
    this process reads the switch from ray_constants (imported long before), the processes
    ray.init starts (GCS, raylet, agents, and through the raylet every worker) from the
    environment they inherit."""
    from ray._private import ray_constants

    before = ray_constants.ENABLE_RAY_CLUSTER
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        with _env({CLUSTER_SWITCH: "0"}):
            yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = before


def token_file() -> Path | None:
    """The token file a new local Ray reads or writes, or None when it uses none: token auth
    off (RAY_AUTH_MODE other than token), or the token given in RAY_AUTH_TOKEN."""
    mode = os.environ.get("RAY_AUTH_MODE")
    if (mode is not None and mode.lower() != "token") or os.environ.get("RAY_AUTH_TOKEN"):
        return None
    if os.environ.get("RAY_AUTH_TOKEN_PATH"):
        return Path(os.environ["RAY_AUTH_TOKEN_PATH"]).expanduser()
    return Path.home() / ".ray" / "auth_token"


def guard_token_file() -> Path | None:
    """Make the token file a new local Ray uses readable by its owner only: write a missing
    default one ourselves, 0600 from its creation, in a 0700 ~/.ray (Ray would write it 0644);
    take group and other access off one found with them. Returns the file, if any."""
    path = token_file()
    if path is None:
        return None
    if not path.exists() and "RAY_AUTH_TOKEN_PATH" not in os.environ:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another driver wrote it meanwhile
            pass
        else:
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(32))  # what Ray's generate_new_authentication_token makes
    try:
        info = path.stat()
        if info.st_uid == os.getuid() and stat.S_IMODE(info.st_mode) & 0o077:
            path.chmod(stat.S_IMODE(info.st_mode) & 0o700)
    except OSError:  # RAY_AUTH_TOKEN_PATH names a missing file: Ray says so itself
        pass
    return path


def _gcs_endpoint(address: str) -> tuple[str, int]:
    """(host, port) that ray.init(address) connects to first."""
    from ray._private.services import canonicalize_bootstrap_address

    if address.startswith("ray://"):  # Ray Client: its server's port, 10001 by default
        host, _, port = address.removeprefix("ray://").partition("/")[0].rpartition(":")
        return (host, int(port)) if host and port.isdigit() else (address.removeprefix("ray://"), 10001)
    try:
        resolved = canonicalize_bootstrap_address(address)  # `auto`: the last `ray start` here
    except (ConnectionError, ValueError) as e:
        raise ConfigError(
            f"--address {address!r}: {_first_line(e)}; give the head's host:port, or drop --address (and "
            "RAY_ADDRESS) to run on a private local instance"
        ) from e
    if resolved is None:
        raise ConfigError(f"--address {address!r} names no cluster; give the head's host:port")
    host, _, port = resolved.rpartition(":")
    return host.strip("[]"), int(port)


# an HTTP/2 client's first bytes: the connection preface and an empty SETTINGS frame
H2_HELLO = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"


def probe(host: str, port: int, timeout: float) -> str:
    """What answers at host:port within `timeout` seconds: "grpc", an HTTP/2 server (Ray's GCS
    and its Ray Client server are gRPC servers), which sends its SETTINGS frame; "other", a
    connection opened but no such answer came (another service, or a proxy that accepts every
    connection); "", no connection. With RAY_USE_TLS an open port is all that is checked."""
    deadline = time.monotonic() + timeout
    try:
        conn = socket.create_connection((host, port), timeout=timeout)
    except OSError:
        return ""
    with conn:
        if os.environ.get("RAY_USE_TLS", "0").lower() in ("1", "true"):
            return "grpc"
        head = b""
        try:
            conn.settimeout(max(0.05, deadline - time.monotonic()))
            conn.sendall(H2_HELLO)
            while len(head) < 9:
                chunk = conn.recv(9 - len(head))
                if not chunk:
                    break
                head += chunk
        except OSError:
            pass
    return "grpc" if len(head) == 9 and head[3] == 0x04 else "other"  # byte 3: the frame type, 4 SETTINGS


def _check_reachable(address: str, timeout: float = CONNECT_TIMEOUT_S) -> str:
    """host:port of `address`'s GCS, where a gRPC server must answer within `timeout` seconds
    (ray.init would retry for minutes)."""
    host, port = _gcs_endpoint(address)
    shown = f"{host}:{port}"
    found = probe(host, port, timeout)
    if found != "grpc":
        said = "" if shown == address else f" ({shown})"
        what = "nothing answered" if not found else "a connection opened, but no Ray GCS (a gRPC server) answered"
        raise ConfigError(
            f"cannot reach the Ray cluster at {address!r}{said}: {what} within {timeout:g} s; start the head "
            "there (`ray start --head`) or give its GCS port in --address (and RAY_ADDRESS), or drop both to run "
            "on a private local instance"
        )
    return shown


def gcs_address() -> str:
    """host:port of the GCS of the Ray this process is connected to."""
    import ray

    return ray.get_runtime_context().gcs_address


def cluster_alive(address: str, within: float = LOST_AFTER_S) -> bool:
    """The GCS at `address` (host:port) answers (see probe) at least once within `within` s."""
    host, _, port = address.rpartition(":")
    deadline = time.monotonic() + within
    while True:
        if probe(host.strip("[]"), int(port), timeout=min(WATCH_EVERY_S, within)) == "grpc":
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))


def lost_message(address: str) -> str:
    return (
        f"lost the Ray cluster at {address} (its GCS stopped answering); trials that did not finish keep their "
        "last checkpoints: start the cluster again and run the same command plus --resume"
    )


class _Watch(threading.Thread):
    """Checks every WATCH_EVERY_S that the GCS answers. After LOST_AFTER_S without an answer it
    asks Tune to stop (SIGUSR1, which Tune's run loop handles like a first Ctrl-C: it ends the
    loop and saves the experiment), and if the driver is still alive GIVE_UP_S later it ends it
    with exit code 2 itself (Ray's core worker would end it with code 1 soon after)."""

    def __init__(self, address: str) -> None:
        super().__init__(name="robustmm-ray-watch", daemon=True)
        self.address = address
        self.lost = threading.Event()  # the watch found the GCS gone
        self.reported = threading.Event()  # the driver raised the lost-cluster error, which says it
        self.done = threading.Event()  # the fit ended with the cluster alive
        self._wake = threading.Event()

    def finish(self, lost: bool) -> None:
        (self.reported if lost else self.done).set()
        self._wake.set()

    def run(self) -> None:
        host, _, port = self.address.rpartition(":")
        down_since: float | None = None
        while not self._wake.wait(WATCH_EVERY_S):
            if probe(host.strip("[]"), int(port), timeout=WATCH_EVERY_S) == "grpc":
                down_since = None
                continue
            down_since = down_since or time.monotonic()
            if time.monotonic() - down_since >= LOST_AFTER_S:
                self.lost.set()
                self._stop_tune()
                break
        if self.done.is_set() or self.done.wait(GIVE_UP_S):
            return
        if not self.reported.is_set():
            print(f"robustmm: error: {lost_message(self.address)}", file=sys.stderr, flush=True)
        os._exit(2)

    @staticmethod
    def _stop_tune() -> None:
        """Tune's graceful stop, where its handler is installed (tune/tune.py, _setup_signal_catching);
        never SIGUSR1's default action, which kills the process."""
        if signal.getsignal(signal.SIGUSR1) in (signal.SIG_DFL, signal.SIG_IGN, None):
            return
        logging.getLogger("ray.tune.tune").setLevel(logging.ERROR)  # its "Ctrl+C received" warning
        os.kill(os.getpid(), signal.SIGUSR1)


def fit_or_lost(tuner: Any) -> Any:
    """tuner.fit(), watched: a Ray cluster lost on the way raises one ConfigError saying so
    (and how to go on) instead of whatever Tune or Ray would raise or return without it."""
    address = gcs_address()
    watch = _Watch(address)
    watch.start()
    try:
        grid = tuner.fit()
    except BaseException as e:
        lost = watch.lost.is_set() or not cluster_alive(address)
        watch.finish(lost)  # once lost, the watch stays: a Ray shutdown hung on the gone GCS still ends
        if lost:
            raise SweepStopped(lost_message(address)) from e
        raise
    lost = watch.lost.is_set() or not cluster_alive(address)
    watch.finish(lost)
    if lost:
        raise SweepStopped(lost_message(address))
    return grid


def check_resources(cpu: float, gpu: float) -> None:
    """Refuse a per-trial request the cluster cannot meet."""
    import ray

    have = ray.cluster_resources()
    if gpu > 0 and have.get("GPU", 0) < gpu:
        raise ConfigError(
            f"resources.gpu={gpu:g} per trial, but the Ray cluster has {have.get('GPU', 0):g} GPUs; "
            "set resources.gpu: 0 to run on CPUs"
        )
    if have.get("CPU", 0) < cpu:
        raise ConfigError(f"resources.cpu={cpu:g} per trial, but the Ray cluster has {have.get('CPU', 0):g} CPUs")
