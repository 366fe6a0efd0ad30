"""`make demo`: the whole product on one machine, told as a story, in well under a minute.

Starts the devstack and the node plugin, registers the plugin the way kubelet's plugin watcher
does, mounts the seed `azure/kv` FlexVolume pod through the real shim and a CSI inline volume
through gRPC, shows the files, rotates a secret, then unmounts and stops everything.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import grpc

from devstack.client import Devstack
from devstack.harness.world import TENANT
from driver.csi.proto import csi_pb2, csi_pb2_grpc
from driver.csi.proto import pluginregistration_pb2 as reg_pb2
from driver.csi.proto import pluginregistration_pb2_grpc as reg_grpc
from driver.mounts import mount_points, private_mount_namespace

REPO = Path(__file__).resolve().parent.parent
SHIM = REPO / "flexvolume" / "azure~kv" / "kv"
DRIVER = "kv.csi.azure.com"


def say(text: str = "") -> None:
    print(text, flush=True)


def step(n: int, text: str) -> None:
    say(f"\n== {n}. {text}")


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"demo: timed out waiting for {what}")
        time.sleep(0.05)


def show(mount: Path, pod_path: str) -> None:
    where = "tmpfs" if mount_points().get(str(mount)) == "tmpfs" else "directory"
    say(f"   {pod_path} (a {where} on the node at {mount}):")
    data_dir = mount / "..data"  # what the pod's paths resolve to
    for entry in sorted(p for p in data_dir.rglob("*") if p.is_file()):
        data = entry.read_bytes()
        mode = oct(entry.stat().st_mode & 0o777)
        try:
            first = data.decode().splitlines()[0] if data else ""
        except UnicodeDecodeError:  # the azure/kv driver's DER certificate, say
            first = f"(binary: {data[:8].hex()}...)"
        name = entry.relative_to(data_dir).as_posix()
        say(f"     {name:<15} {len(data):>5} bytes  {mode}  {first[:40]}")


def main() -> int:
    started = time.monotonic()
    mode = "tmpfs" if private_mount_namespace() else "dir"
    work = Path(tempfile.mkdtemp(prefix="kv-demo-"))
    node = work / "node"
    stack: Devstack | None = None
    daemon: subprocess.Popen[bytes] | None = None
    try:
        step(1, "Start the devstack: Key Vault, Entra ID/IMDS and NMI stand-ins on 127.0.0.1")
        stack = Devstack.start(work / "devstack")
        say(f"   vault testkv at {stack.vault_url('testkv')}, NMI on 127.0.0.1:{stack.nmi_port}")
        say(f"   tenant {stack.tenant_id}; pod identity for default/nginx-flex-kv-podid")

        step(2, f"Start the node plugin (kv-csi-driver, mount mode: {mode})")
        if mode == "dir":
            say("   (not root in a private mount namespace: plain directories stand in for tmpfs)")
        csi_sock = node / "plugins" / DRIVER / "csi.sock"
        registry = node / "plugins_registry"
        flex_sock = node / "run" / "flex.sock"
        registry.mkdir(parents=True)
        log = (work / "driver.log").open("wb")
        daemon = subprocess.Popen(
            [
                sys.executable, "-m", "driver",
                "--endpoint", f"unix://{csi_sock}",
                "--nodeid", "demo-node",
                "--state-dir", str(node / "run" / "kv-driver"),
                "--mount-mode", mode,
                "--cloud-config", stack.cloud_config,
                "--flexvolume-socket", str(flex_sock),
                "--flexvolume-pod-source", "kubelet-options",  # the demo has no API server
                "--registration-dir", str(registry),
                "--kubelet-registration-path", f"/var/lib/kubelet/plugins/{DRIVER}/csi.sock",
                "--rotation-poll-interval", "2s",
            ],
            stdout=log,
            stderr=log,
        )  # fmt: skip
        wait_for(lambda: (registry / f"{DRIVER}-reg.sock").exists(), 20, "the plugin")
        say(f"   serving CSI on {csi_sock}, FlexVolume bridge on {flex_sock}")

        step(3, "kubelet's plugin watcher finds the registration socket")
        reg_sock = registry / f"{DRIVER}-reg.sock"
        with grpc.insecure_channel(f"unix://{reg_sock}") as channel:
            info = reg_grpc.RegistrationStub(channel).GetInfo(reg_pb2.InfoRequest(), timeout=5)
            say(
                f"   GetInfo: type={info.type} name={info.name} versions={list(info.supported_versions)}"
            )
            say(f"   endpoint to dial: {info.endpoint} (here: {csi_sock})")
            with grpc.insecure_channel(f"unix://{csi_sock}") as csi:
                node_info = csi_pb2_grpc.NodeStub(csi).NodeGetInfo(csi_pb2.NodeGetInfoRequest())
            say(f"   NodeGetInfo: node_id={node_info.node_id}")
            reg_grpc.RegistrationStub(channel).NotifyRegistrationStatus(
                reg_pb2.RegistrationStatus(plugin_registered=True), timeout=5
            )
            say("   NotifyRegistrationStatus(registered=true): the plugin is registered")

        step(4, "The seed FlexVolume pod nginx-flex-kv-podid: kubelet execs azure~kv/kv mount")
        flex_uid = str(uuid.uuid4())
        flex_dir = node / "pods" / flex_uid / "volumes" / "azure~kv" / "test"
        flex_dir.mkdir(parents=True)
        options = {
            "usepodidentity": "true",
            "keyvaultname": "testkv",
            "keyvaultobjectnames": "secret1;key1;cert1",
            "keyvaultobjecttypes": "secret;key;cert",
            "keyvaultobjectversions": "",
            "resourcegroup": "rg",
            "subscriptionid": "00000000-0000-0000-0000-000000000000",
            "tenantid": TENANT,
            "nmiport": str(stack.nmi_port),  # the devstack's NMI is not on 2579
            "kubernetes.io/pod.name": "nginx-flex-kv-podid",
            "kubernetes.io/pod.namespace": "default",
            "kubernetes.io/pod.uid": flex_uid,
            "kubernetes.io/readwrite": "ro",
        }
        env = {"PATH": os.environ.get("PATH", ""), "KV_FLEX_SOCKET": str(flex_sock),
               "KV_FLEX_LOG": str(work / "flexvolume.log")}  # fmt: skip
        shim = [sys.executable, "-I", "-S", str(SHIM)]
        reply = subprocess.run([*shim, "init"], env=env, capture_output=True, check=True)
        say(f"   kv init  -> {reply.stdout.decode().strip()}")
        reply = subprocess.run(
            [*shim, "mount", str(flex_dir), json.dumps(options)],
            env=env, capture_output=True, check=False,
        )  # fmt: skip
        say(f"   kv mount -> {reply.stdout.decode().strip()}")
        if b'"Success"' not in reply.stdout:
            raise SystemExit("demo: the FlexVolume mount failed")
        show(flex_dir, "/kvmnt")

        step(5, "A CSI inline volume for nginx-csi-kv-podid: kubelet calls NodePublishVolume")
        csi_target = (
            node / "pods" / str(uuid.uuid4()) / "volumes" / "kubernetes.io~csi" / "kv" / "mount"
        )
        csi_target.parent.mkdir(parents=True)
        objects = (
            "array:\n"
            "  - |\n    objectName: secret1\n    objectType: secret\n    objectAlias: db-password\n"
            '    filePermission: "0600"\n'
            "  - |\n    objectName: pfx-cert\n    objectType: secret\n    objectAlias: tls/bundle.pem\n"
        )
        with grpc.insecure_channel(f"unix://{csi_sock}") as channel:
            csi_pb2_grpc.NodeStub(channel).NodePublishVolume(
                csi_pb2.NodePublishVolumeRequest(
                    volume_id="csi-demo-volume",
                    target_path=str(csi_target),
                    readonly=True,
                    volume_capability=csi_pb2.VolumeCapability(
                        mount=csi_pb2.VolumeCapability.MountVolume(),
                        access_mode=csi_pb2.VolumeCapability.AccessMode(
                            mode=csi_pb2.VolumeCapability.AccessMode.SINGLE_NODE_READER_ONLY
                        ),
                    ),
                    volume_context={
                        "usePodIdentity": "true",
                        "nmiport": str(stack.nmi_port),
                        "keyvaultName": "testkv",
                        "tenantId": TENANT,
                        "objects": objects,
                        "csi.storage.k8s.io/pod.name": "nginx-csi-kv-podid",
                        "csi.storage.k8s.io/pod.namespace": "default",
                        "csi.storage.k8s.io/ephemeral": "true",
                    },
                ),
                timeout=30,
            )
        say("   NodePublishVolume -> OK")
        show(csi_target, "/mnt/secrets")
        say("   tls/bundle.pem: private key, then the chain leaf -> intermediate -> root")

        step(6, "Rotate: a new version of secret1 is set in the vault")
        cli = [
            sys.executable,
            "-m",
            "devstack",
            "secret",
            "set",
            "--state-dir",
            str(stack.state_dir),
        ]
        out = subprocess.run([*cli, "testkv", "secret1", "rotated-value-2"],
                             capture_output=True, check=True)  # fmt: skip
        say(
            f"   kv-devstack secret set testkv secret1 ... -> version {out.stdout.decode().strip()}"
        )
        t0 = time.monotonic()
        wait_for(lambda: (flex_dir / "secret1").read_bytes() == b"rotated-value-2", 15, "rotation")
        wait_for(
            lambda: (csi_target / "db-password").read_bytes() == b"rotated-value-2", 15, "rotation"
        )
        say(f"   both pods see the new value after {time.monotonic() - t0:.1f}s (poll interval 2s)")
        show(flex_dir, "/kvmnt")

        step(7, "Unmount both volumes and stop")
        reply = subprocess.run(
            [*shim, "unmount", str(flex_dir)], env=env, capture_output=True, check=False
        )
        say(f"   kv unmount -> {reply.stdout.decode().strip()}")
        with grpc.insecure_channel(f"unix://{csi_sock}") as channel:
            csi_pb2_grpc.NodeStub(channel).NodeUnpublishVolume(
                csi_pb2.NodeUnpublishVolumeRequest(
                    volume_id="csi-demo-volume", target_path=str(csi_target)
                )
            )
        say("   NodeUnpublishVolume -> OK")
        left = [p for p in (flex_dir, csi_target) if p.exists()]
        say(f"   left behind: {left or 'nothing'}")
        daemon.send_signal(signal.SIGTERM)
        say(f"   kv-csi-driver exited with {daemon.wait(15)}")
        daemon = None
        say(f"\nDemo finished in {time.monotonic() - started:.1f}s. Logs: {work}/driver.log")
        return 0 if not left else 1
    finally:
        if daemon is not None:
            daemon.kill()
            daemon.wait()
        if stack is not None:
            stack.stop()
        if mode == "tmpfs":
            for point in mount_points():
                if point.startswith(str(node)):
                    subprocess.run(["umount", "-l", point], check=False)
        shutil.rmtree(work / "devstack", ignore_errors=True)
        shutil.rmtree(node, ignore_errors=True)


if __name__ == "__main__":
    if "--cluster" in sys.argv[1:]:
        from devstack.cluster.demo import main as cluster_demo

        sys.exit(cluster_demo())
    sys.exit(main())
