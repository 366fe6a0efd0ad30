"""The shim on its own, exec'd as kubelet does, with no node plugin behind it."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from devstack.harness.attributes import go_json
from devstack.harness.shim import run_shim
from tests.flexvolume.kubelet import CLIENT_SECRET, MOUNT_DIR, kubelet_options


def test_init_reports_success_and_no_attach_without_a_daemon(nowhere: Path, log_file: Path) -> None:
    result = run_shim(["init"], socket=nowhere, log=log_file)
    assert result.reply == {"status": "Success", "capabilities": {"attach": False}}


@pytest.mark.parametrize(
    "args",
    [
        ["attach", go_json(kubelet_options()), "node-1"],
        ["detach", "secrets", "node-1"],
        ["waitforattach", "/dev/sdc", go_json(kubelet_options())],
        ["isattached", go_json(kubelet_options()), "node-1"],
        ["mountdevice", "/var/lib/kubelet/plugins/x", "/dev/sdc", go_json(kubelet_options())],
        ["unmountdevice", "/var/lib/kubelet/plugins/x"],
        ["getvolumename", go_json(kubelet_options())],
        ["expandvolume", go_json(kubelet_options()), "2Gi", "1Gi"],
        ["expandfs", go_json(kubelet_options()), MOUNT_DIR, "2Gi", "1Gi"],
    ],
    ids=lambda args: args[0],
)
def test_calls_it_does_not_implement_are_not_supported(
    args: list[str], nowhere: Path, log_file: Path
) -> None:
    result = run_shim(args, socket=nowhere, log=log_file)
    assert result.status == "Not supported"
    assert args[0] in result.message
    assert CLIENT_SECRET not in result.message


def test_no_call_at_all_is_not_supported(nowhere: Path, log_file: Path) -> None:
    assert run_shim([], socket=nowhere, log=log_file).status == "Not supported"


@pytest.mark.parametrize("call", ["mount", "unmount"])
def test_daemon_down_fails_saying_the_node_plugin_is_not_reachable(
    call: str, nowhere: Path, log_file: Path
) -> None:
    args = [call, MOUNT_DIR] + ([go_json(kubelet_options())] if call == "mount" else [])
    result = run_shim(args, socket=nowhere, log=log_file)
    assert result.status == "Failure"
    assert f"not reachable at {nowhere}" in result.message
    assert "kubelet will retry" in result.message


def test_stale_socket_with_nobody_listening_counts_as_daemon_down(
    short_dir: Path, log_file: Path
) -> None:
    stale = short_dir / "stale.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.bind(str(stale))  # bound, never listening: what a crashed daemon leaves behind
    result = run_shim(["mount", MOUNT_DIR, go_json(kubelet_options())], socket=stale, log=log_file)
    assert result.status == "Failure"
    assert f"not reachable at {stale}" in result.message


def test_truncated_json_fails_naming_the_problem_not_the_content(
    nowhere: Path, log_file: Path
) -> None:
    text = go_json(kubelet_options())[:-20]
    result = run_shim(["mount", MOUNT_DIR, text], socket=nowhere, log=log_file)
    assert result.status == "Failure"
    assert "not valid JSON" in result.message
    assert "column" in result.message
    encoded_secret = kubelet_options()["kubernetes.io/secret/clientsecret"]
    assert encoded_secret not in result.message
    assert "kv-demo" not in result.message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('["keyvaultname", "kv-demo"]', "must be a JSON object, got list"),
        ('{"keyvaultname": "kv-demo", "nmiport": 2579}', 'option "nmiport" must be a string'),
        ("", "not valid JSON"),
    ],
)
def test_options_that_are_not_an_object_of_strings_fail(
    text: str, expected: str, nowhere: Path, log_file: Path
) -> None:
    result = run_shim(["mount", MOUNT_DIR, text], socket=nowhere, log=log_file)
    assert result.status == "Failure"
    assert expected in result.message


def test_mount_without_options_fails(nowhere: Path, log_file: Path) -> None:
    result = run_shim(["mount", MOUNT_DIR], socket=nowhere, log=log_file)
    assert result.status == "Failure"
    assert "<json-options>" in result.message


@pytest.mark.parametrize("call", ["mount", "unmount"])
def test_relative_mount_dir_fails(call: str, nowhere: Path, log_file: Path) -> None:
    args = [call, "pods/x/volumes/azure~kv/secrets", go_json(kubelet_options())]
    result = run_shim(args[: 3 if call == "mount" else 2], socket=nowhere, log=log_file)
    assert result.status == "Failure"
    assert "absolute path" in result.message


def test_log_names_call_dir_pod_and_option_keys_but_no_values(
    nowhere: Path, log_file: Path
) -> None:
    options = kubelet_options()
    run_shim(["mount", MOUNT_DIR, go_json(options)], socket=nowhere, log=log_file)
    run_shim(["unmount", MOUNT_DIR], socket=nowhere, log=log_file)
    lines = log_file.read_text().splitlines()
    assert len(lines) == 2
    mount, unmount = (json.loads(line) for line in lines)
    assert mount["call"] == "mount"
    assert mount["dir"] == MOUNT_DIR
    assert mount["pod"] == "default/nginx-flex-kv"
    assert mount["option_keys"] == sorted(options)
    assert mount["status"] == "Failure"
    assert unmount["call"] == "unmount"
    assert unmount["dir"] == MOUNT_DIR
    text = log_file.read_text()
    for key, value in options.items():
        # (the pod uid and volume name are part of the mount dir, the pod's name is logged)
        if value and value not in MOUNT_DIR and value not in mount["pod"]:
            assert value not in text, f"the value of {key} is in the log"
    assert CLIENT_SECRET not in text


@pytest.mark.parametrize("where", ["missing-dir/flex.log", "a-directory"])
def test_an_unwritable_log_never_fails_the_call(where: str, short_dir: Path, nowhere: Path) -> None:
    (short_dir / "a-directory").mkdir()
    result = run_shim(["init"], socket=nowhere, log=short_dir / where)
    assert result.status == "Success"
    result = run_shim(["unmount", MOUNT_DIR], socket=nowhere, log=short_dir / where)
    assert "not reachable" in result.message


def test_logging_can_be_turned_off(nowhere: Path, short_dir: Path) -> None:
    assert run_shim(["init"], socket=nowhere, log="").status == "Success"
    assert sorted(p.name for p in short_dir.iterdir()) == []
