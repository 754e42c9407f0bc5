"""The private local Ray of a sweep without an address: every port of every one of its processes
listens on loopback only, and the token file of its token authentication is its owner's alone.

One instance (Ray's default token authentication on, HOME a temporary folder) serves both tests.
"""

from __future__ import annotations

import ipaddress
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from sweep_helpers import REPO, first_line, sweep_env

pytestmark = [
    pytest.mark.slow,  # starts a Ray instance
    pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads sockets from /proc (Linux)"),
]

# `import ray` first, as the sweep runner does before connect_ray
PROBE = """
import json, os, sys
import ray
from robustmm.tune.ray_connect import connect_ray

line = connect_ray(num_cpus=1)

@ray.remote
def pid():
    return os.getpid()

worker = ray.get(pid.remote())  # a worker is up as well as the GCS, raylet and agents
print(json.dumps({"line": line, "worker": worker, "gcs": ray.get_runtime_context().gcs_address}), flush=True)
sys.stdin.read()  # up while the test looks
ray.shutdown()
"""


def _tree(root: int) -> set[int]:
    """`root` and every process descended from it."""
    parent: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat_line = (entry / "stat").read_text()
            except OSError:
                continue
            parent[int(entry.name)] = int(stat_line.rpartition(")")[2].split()[1])
    found, todo = {root}, [root]
    while todo:
        p = todo.pop()
        kids = [c for c, pp in parent.items() if pp == p and c not in found]
        found.update(kids)
        todo.extend(kids)
    return found


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    try:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[len("socket:[") : -1])
    except OSError:
        pass
    return inodes


def _address(hex_addr: str) -> str:
    """An address of /proc/net/{tcp,udp}[6] (host byte order per 32-bit word) as text."""
    raw = bytes.fromhex(hex_addr)
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    return str(ipaddress.ip_address(words))


def _bound(pids: set[int]) -> list[tuple[int, str, str, int]]:
    """(pid, protocol, address, port) of every listening TCP socket and bound UDP socket of `pids`."""
    found = []
    for pid in pids:
        inodes = _socket_inodes(pid)
        for proto in ("tcp", "tcp6", "udp", "udp6"):
            try:
                rows = Path(f"/proc/{pid}/net/{proto}").read_text().splitlines()[1:]
            except OSError:
                continue
            for row in rows:
                cols = row.split()
                local, state, inode = cols[1], cols[3], cols[9]
                if inode not in inodes or (proto.startswith("tcp") and state != "0A"):  # 0A: LISTEN
                    continue
                host, port = local.split(":")
                if int(port, 16):
                    found.append((pid, proto, _address(host), int(port, 16)))
    return sorted(set(found))


def _loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    return ip.is_loopback or (ip.version == 6 and ip.ipv4_mapped is not None and ip.ipv4_mapped.is_loopback)


@pytest.fixture(scope="module")
def private_ray(tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    env = sweep_env()
    env["HOME"] = str(home)
    for var in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"):
        env.pop(var, None)  # Ray's defaults: token authentication on, a new token file
    probe = subprocess.Popen(
        [sys.executable, "-c", PROBE], cwd=REPO, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        info = json.loads(first_line(probe, 180, "the private Ray to run a task"))
        yield info, probe.pid, home, _bound(_tree(probe.pid))
    finally:
        try:
            probe.communicate("", timeout=120)
        except subprocess.TimeoutExpired:
            probe.kill()
            probe.communicate()


def test_every_port_of_the_private_ray_is_on_loopback(private_ray):
    info, driver, _, sockets = private_ray
    assert info["gcs"].startswith("127.0.0.1:"), info
    assert "on 127.0.0.1" in info["line"]
    pids = {pid for pid, *_ in sockets}
    # the driver itself, the GCS, the raylet and the worker at least all have ports
    assert driver in pids and info["worker"] in pids and len(pids) >= 4, sockets
    exposed = [s for s in sockets if not _loopback(s[2])]
    assert not exposed, f"listening beyond loopback: {exposed}"


def test_the_private_rays_token_file_is_its_owners_alone(private_ray):
    _, _, home, _ = private_ray
    token = home / ".ray" / "auth_token"
    assert token.is_file() and len(token.read_text().strip()) == 64
    assert stat.S_IMODE(token.stat().st_mode) == 0o600
    assert stat.S_IMODE(token.parent.stat().st_mode) == 0o700
