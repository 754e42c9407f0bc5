"""The Ray cluster launcher configs in infra/: valid for Ray's own schema, and the security policy holds.

Validation is what `ray up` does before it contacts any cloud: `prepare_config` (merge with the
provider's defaults.yaml, merge setup commands, build the local provider's node type, fill per-type
min/max workers) followed by `validate_config` (Ray's JSON schema `ray-schema.json` plus its
consistency checks). The provider bootstrap that talks to AWS is not run, so no network is needed.
"""

from __future__ import annotations

import copy
import re
import shlex
from pathlib import Path

import jsonschema
import pytest
import yaml
from ray._raylet import AuthenticationMode
from ray.autoscaler._private.util import prepare_config, validate_config

INFRA = Path(__file__).resolve().parent.parent / "infra"
CONFIGS = ["cluster.yaml", "cluster-local.yaml"]
PROJECT_MOUNT = "~/robustmm"
VALID_AUTH_MODES = {name.lower() for name in dir(AuthenticationMode) if name.isupper()}


def load(name: str) -> dict:
    return yaml.safe_load((INFRA / name).read_text())


def prepared(raw: dict) -> dict:
    """The config as `ray up` validates it (without the cloud bootstrap)."""
    config = prepare_config(copy.deepcopy(raw))
    validate_config(config)
    return config


def shell_parts(command: str) -> list[list[str]]:
    """Split one shell command line into its simple commands (on ; && ||), each as tokens."""
    return [shlex.split(part) for part in re.split(r";|&&|\|\|", command) if part.strip()]


def ray_start_commands(config: dict) -> list[tuple[str, str]]:
    """(list name, command) for every command of the start lists that runs `ray start`."""
    found = []
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        for command in config[key]:
            if any(tokens[:2] == ["ray", "start"] for tokens in shell_parts(command)):
                found.append((key, command))
    return found


def ray_start_tokens(command: str) -> list[str]:
    return next(tokens for tokens in shell_parts(command) if tokens[:2] == ["ray", "start"])


def flag_values(tokens: list[str], flag: str) -> list[str]:
    values = []
    for i, token in enumerate(tokens):
        if token == flag and i + 1 < len(tokens):
            values.append(tokens[i + 1])
        elif token.startswith(flag + "="):
            values.append(token.split("=", 1)[1])
    return values


@pytest.fixture(params=CONFIGS)
def name(request) -> str:
    return request.param


def test_valid_for_ray_schema(name):
    config = prepared(load(name))
    assert config["cluster_name"] == "robustmm"
    assert config["head_node_type"] in config["available_node_types"]


def test_dashboard_bound_to_localhost_on_head(name):
    config = prepared(load(name))
    heads = [cmd for key, cmd in ray_start_commands(config) if key == "head_start_ray_commands"]
    assert heads, "no `ray start` in head_start_ray_commands"
    for command in heads:
        tokens = ray_start_tokens(command)
        assert "--head" in tokens, command
        assert flag_values(tokens, "--dashboard-host") == ["127.0.0.1"], command
    for _, command in ray_start_commands(config):
        assert "0.0.0.0" not in command, command


def test_auth_mode_set_for_every_ray_start(name):
    raw = load(name)
    config = prepared(raw)
    starts = ray_start_commands(config)
    assert {key for key, _ in starts} == {"head_start_ray_commands", "worker_start_ray_commands"}
    for _, command in starts:
        # Each command runs in its own shell, so the mode must be set on the `ray start` line itself.
        before_start = command.split("ray start", 1)[0]
        modes = re.findall(r"\bRAY_AUTH_MODE=(\w+)", before_start)
        assert modes, f"RAY_AUTH_MODE not set before ray start: {command}"
        assert modes[-1] in VALID_AUTH_MODES, modes[-1]
        if modes[-1] == "token":
            # Every node needs the cluster's token to join it.
            assert "~/.ray/auth_token" in raw["file_mounts"]


def test_head_runs_no_trials(name):
    config = prepared(load(name))
    head = config["available_node_types"][config["head_node_type"]]
    if config["provider"]["type"] == "local":
        # The local provider builds its node type itself; the head's resources come from ray start.
        for command in config["head_start_ray_commands"]:
            if "ray start" in command:
                tokens = ray_start_tokens(command)
                assert flag_values(tokens, "--num-cpus") == ["0"], command
                assert flag_values(tokens, "--num-gpus") == ["0"], command
    else:
        assert head["resources"].get("CPU") == 0
        assert head["resources"].get("GPU", 0) == 0
        workers = [t for key, t in config["available_node_types"].items() if key != config["head_node_type"]]
        assert workers and all(t["resources"].get("GPU", 0) >= 1 for t in workers)
        assert all(t["max_workers"] >= 1 for t in workers)


def test_project_mounted_and_installed(name):
    raw = load(name)
    config = prepared(raw)
    assert raw["file_mounts"].get(PROJECT_MOUNT) == "."
    for key in ("head_setup_commands", "worker_setup_commands"):  # setup_commands merged in
        installs = [
            tokens
            for command in config[key]
            for tokens in shell_parts(command)
            if len(tokens) >= 2 and tokens[0].endswith("pip") and tokens[1] == "install"
        ]
        assert any(flag_values(t, "-e") == [PROJECT_MOUNT] for t in installs), config[key]


def test_aws_security_group_opens_only_ssh_from_a_set_cidr():
    config = prepared(load("cluster.yaml"))
    rules = config["provider"]["security_group"]["IpPermissions"]
    assert rules
    for rule in rules:
        assert (rule["FromPort"], rule["ToPort"], rule["IpProtocol"]) == (22, 22, "tcp"), rule
        assert rule.get("IpRanges") and not rule.get("Ipv6Ranges") and not rule.get("UserIdGroupPairs"), rule
        for ip_range in rule["IpRanges"]:
            assert ip_range["CidrIp"] != "0.0.0.0/0", rule
    for node_type in config["available_node_types"].values():
        assert "SecurityGroupIds" not in node_type["node_config"]


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(lambda c: c.update(head_ports=[8265]), id="unknown-top-level-key"),
        pytest.param(lambda c: c.update(idle_timeout_minutes="ten"), id="wrong-type"),
        pytest.param(lambda c: c["auth"].update(ssh_usr="ubuntu"), id="typo-in-auth"),
        pytest.param(lambda c: c.update(rsync_exclude=".venv"), id="string-for-list"),
    ],
)
def test_broken_config_fails_validation(name, mutate):
    raw = load(name)
    prepared(raw)  # the original passes
    mutate(raw)
    with pytest.raises(jsonschema.ValidationError):
        prepared(raw)


def test_broken_node_type_fails_validation():
    raw = load("cluster.yaml")
    worker = next(k for k in raw["available_node_types"] if k != raw["head_node_type"])
    raw["available_node_types"][worker]["node_confg"] = raw["available_node_types"][worker].pop("node_config")
    with pytest.raises(jsonschema.ValidationError):
        prepared(raw)
