"""An IpcServer in a child process, for tests that measure its memory or limit its file descriptors.

``python -m tests.ipc_server_process SOCKET [--nofile N]`` prints one JSON line ``{"svcuid": ...}`` once it
serves (component ``com.example.Probe``, may publish to ``probe/#``), then serves until stdin closes and
prints a last JSON line with its peak RSS (``vm_hwm_kib``) and connection counts.
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import sys
from pathlib import Path

from gglocal.iotcore import StdoutIotCore
from gglocal.server import IpcServer
from tests.gglocal_builds import publish_access

ACCESS = publish_access("probe/#")


def vm_hwm_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("socket", type=Path)
    parser.add_argument("--nofile", type=int, help="soft RLIMIT_NOFILE for this process")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    if args.nofile:
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (args.nofile, hard))
    server = IpcServer(args.socket, iot=StdoutIotCore(sys.stderr))  # stdout is for the JSON lines
    server.start()
    svcuid = server.register_component("com.example.Probe", ACCESS)
    print(json.dumps({"svcuid": svcuid, "vm_hwm_kib": vm_hwm_kib()}), flush=True)
    sys.stdin.read()
    stats = {"vm_hwm_kib": vm_hwm_kib(), "published": getattr(server.iot, "published", None)}
    server.stop()
    print(json.dumps(stats), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
