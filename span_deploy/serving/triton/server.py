"""Find, start and stop a real ``tritonserver`` (loopback only) for a model repository.

Where the server comes from, in order: ``$SPAN_TRITONSERVER`` (the binary; its backends in
``../backends``), the ``nvidia-pytriton`` wheel (``pip install 'span-deploy[triton]'``: a server
with the Python backend; its shared libraries are in ``nvidia_pytriton.libs``), then
``tritonserver`` on PATH / ``/opt/tritonserver`` (NVIDIA's container).

The Python backend's stub links ``libpython3.X.so`` of this interpreter's minor version: the
server gets this interpreter's own shared library first on LD_LIBRARY_PATH when it has one (else the
system's is used). The stub ignores PYTHONPATH, so the server is started with ``SPAN_DEPLOY_SITE`` (this interpreter's site-packages and
the folder holding span_deploy); each generated ``model.py`` adds those with ``site.addsitedir``
(``.pth`` files, editable installs included) before importing span_deploy.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import site
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ...errors import BackendError

INSTALL_HINT = ("no tritonserver found; install one with `pip install 'span-deploy[triton]'` (the nvidia-pytriton "
                "wheel ships a CPU/GPU server with the Python backend) or run inside NVIDIA's "
                "tritonserver container (nvcr.io/nvidia/tritonserver), or set SPAN_TRITONSERVER to the binary")


@dataclass(frozen=True)
class TritonInstall:
    binary: Path
    backends: Path              # folder with python/ (and whatever else this build ships)
    libs: Path | None           # extra LD_LIBRARY_PATH entry (the pytriton wheel's bundled libraries)
    stubs: Path | None          # pytriton: python_backend_stubs/<X.Y>/triton_python_backend_stub

    def has_backend(self, name: str) -> bool:
        return (self.backends / name).is_dir()


def find_tritonserver() -> TritonInstall | None:
    env = os.environ.get("SPAN_TRITONSERVER")
    if env:
        b = Path(env)
        return TritonInstall(b, b.resolve().parent.parent / "backends", None, None) if b.is_file() else None
    spec = importlib.util.find_spec("pytriton")
    if spec is not None and spec.origin:
        root = Path(spec.origin).parent / "tritonserver"
        if (root / "bin" / "tritonserver").is_file():
            return TritonInstall(root / "bin" / "tritonserver", root / "backends",
                                 Path(spec.origin).parent.parent / "nvidia_pytriton.libs",
                                 root / "python_backend_stubs")
    on_path = shutil.which("tritonserver") or ("/opt/tritonserver/bin/tritonserver"
                                               if Path("/opt/tritonserver/bin/tritonserver").is_file() else None)
    if on_path:
        b = Path(on_path).resolve()
        return TritonInstall(b, b.parent.parent / "backends", None, None)
    return None


def require_tritonserver() -> TritonInstall:
    t = find_tritonserver()
    if t is None or not t.binary.is_file():
        raise BackendError(INSTALL_HINT)
    return t


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stub_site_paths() -> list[str]:
    """What the backend stub must add to sys.path: this interpreter's site-packages (venv) and
    the folder that holds span_deploy (a plain checkout)."""
    pkg_parent = str(Path(__file__).resolve().parents[3])
    paths = [*site.getsitepackages(), site.getusersitepackages(), pkg_parent]
    return list(dict.fromkeys(p for p in paths if Path(p).is_dir()))


def prepare_backends(t: TritonInstall, workdir: Path) -> Path:
    """The backend directory to run with. The pytriton wheel ships one stub per Python version:
    copy its python backend with the stub of this interpreter's version (as pytriton does)."""
    if t.stubs is None:
        return t.backends
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    stub = t.stubs / version / "triton_python_backend_stub"
    if not stub.is_file():
        raise BackendError(f"this tritonserver has no Python-backend stub for Python {version} "
                           f"(have: {', '.join(sorted(p.name for p in t.stubs.iterdir()))})")
    out = workdir / "backends"
    shutil.copytree(t.backends, out, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(stub, out / "python" / "triton_python_backend_stub")
    return out


def libpython_dir() -> str | None:
    """The folder of this interpreter's libpython3.X.so, when it was built shared (pyenv, python.org)."""
    import sysconfig

    libdir, lib = sysconfig.get_config_var("LIBDIR"), sysconfig.get_config_var("LDLIBRARY")
    if sysconfig.get_config_var("Py_ENABLE_SHARED") and libdir and lib and (Path(libdir) / lib).is_file():
        return str(libdir)
    return None


def check_libpython() -> None:
    """The stub cannot start without a libpython3.X.so: say so before the server fails obscurely."""
    import ctypes.util

    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    if libpython_dir() is None and ctypes.util.find_library(f"python{version}") is None:
        raise BackendError(f"Triton's Python backend needs libpython{version}.so (this interpreter is static); "
                           f"install it (e.g. apt-get install libpython{version}) or use a shared-library Python")


def server_env(t: TritonInstall) -> dict[str, str]:
    env = os.environ.copy()
    libs = str(t.libs) if t.libs is not None and t.libs.is_dir() else None
    ld = [libpython_dir(), env.get("LD_LIBRARY_PATH"), libs]
    env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in ld if p)
    env["SPAN_DEPLOY_SITE"] = os.pathsep.join(stub_site_paths())
    return env


def _die_with_parent() -> None:
    """preexec_fn (Linux): the server gets SIGTERM when the process (thread) that started it dies,
    so a killed test run or CLI never leaves a tritonserver behind."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)   # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class TritonServer:
    """One tritonserver process on 127.0.0.1; a context manager (stopped on exit, even on errors).
    Start it from a thread that outlives it: on Linux the server is stopped when that thread ends."""

    def __init__(self, repository: str | os.PathLike, http_port: int | None = None, grpc_port: int | None = None,
                 log_path: str | os.PathLike | None = None, install: TritonInstall | None = None,
                 extra_args: tuple[str, ...] = ()):
        self.repository = Path(repository).resolve()
        if not (self.repository.is_dir() and any(self.repository.glob("*/config.pbtxt"))):
            raise BackendError(f"{self.repository} is not a model repository (no <model>/config.pbtxt); "
                               "write one with `span-deploy triton export`")
        self.install = install or require_tritonserver()
        self.http_port = http_port or free_port()
        self.grpc_port = grpc_port or free_port()
        self.extra_args = tuple(extra_args)
        self._tmp = tempfile.TemporaryDirectory(prefix="span-triton-")
        self.log_path = Path(log_path) if log_path else Path(self._tmp.name) / "tritonserver.log"
        self.proc: subprocess.Popen | None = None

    @property
    def http_url(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def command(self, backends: Path) -> list[str]:
        return [str(self.install.binary), f"--model-repository={self.repository}",
                f"--backend-directory={backends}", "--http-address=127.0.0.1", "--grpc-address=127.0.0.1",
                f"--http-port={self.http_port}", f"--grpc-port={self.grpc_port}", "--allow-metrics=false",
                "--exit-timeout-secs=10", *self.extra_args]

    def start(self, timeout: float = 120.0) -> TritonServer:
        backends = prepare_backends(self.install, Path(self._tmp.name))
        if self.install.stubs is not None:
            check_libpython()
        self._log = open(self.log_path, "wb")
        # its own session: a terminal's Ctrl-C reaches only us, and stop() drains it with SIGTERM
        self.proc = subprocess.Popen(self.command(backends), stdout=self._log, stderr=subprocess.STDOUT,
                                     env=server_env(self.install), stdin=subprocess.DEVNULL, start_new_session=True,
                                     preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None)
        try:
            self.wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join([line for line in text if not line.startswith(("|", "+"))][-lines:])

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.http_url}/v2/health/ready", timeout=2) as r:
                return r.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def wait_ready(self, timeout: float = 120.0) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc is not None and self.proc.poll() is not None:
                raise BackendError(f"tritonserver exited with code {self.proc.returncode} before it was ready:\n"
                                   f"{self.log_tail()}")
            if self.ready():
                return
            time.sleep(0.25)
        raise BackendError(f"tritonserver not ready after {timeout:.0f} s:\n{self.log_tail()}")

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM (Triton drains in-flight requests), then SIGKILL after ``timeout``."""
        p, self.proc = self.proc, None
        rc = None
        if p is not None:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
            rc = p.returncode
        if getattr(self, "_log", None) is not None:
            self._log.close()
            self._log = None
        return rc

    def close(self) -> None:
        self.stop()
        self._tmp.cleanup()

    def __enter__(self) -> TritonServer:
        return self if self.proc is not None else self.start()

    def __exit__(self, *exc) -> None:
        self.close()
