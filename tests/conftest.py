import ipaddress
import os
import socket

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.pop("MSCRS_ALLOW_DOWNLOADS", None)  # the library must work offline in every test

# -- hypothesis: deterministic in CI (same examples every run), no example database written into the repo ---
try:
    from hypothesis import HealthCheck, settings

    settings.register_profile("ci", derandomize=True, database=None, deadline=None, max_examples=60,
                              suppress_health_check=[HealthCheck.too_slow])
    settings.register_profile("dev", max_examples=200, deadline=None)
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
except ImportError:  # pragma: no cover -- hypothesis is in requirements.lock; tests that need it import it
    pass


# -- network guard: any socket that is not loopback (or a Unix socket) fails, in the whole suite ----------
class NetworkBlocked(RuntimeError):
    """A test tried to reach a non-loopback address (the suite runs offline)."""


BLOCKED: list = []  # every refused address, for tests that assert nothing tried
_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex
_real_create_connection = socket.create_connection


def _is_loopback(sock_family, address) -> bool:
    if sock_family == getattr(socket, "AF_UNIX", object()):
        return True
    if not isinstance(address, tuple) or not address:
        return False
    host = address[0]
    if isinstance(host, bytes):
        host = host.decode()
    if host in ("localhost", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False  # a host name other than localhost would need DNS: refused


def _check(family, address) -> None:
    if not _is_loopback(family, address):
        BLOCKED.append(address)
        raise NetworkBlocked(f"test suite is offline: connection to {address!r} refused (only loopback allowed)")


def _guarded_connect(self, address):
    _check(self.family, address)
    return _real_connect(self, address)


def _guarded_connect_ex(self, address):
    _check(self.family, address)
    return _real_connect_ex(self, address)


def _guarded_create_connection(address, *args, **kwargs):
    _check(socket.AF_INET, address)
    return _real_create_connection(address, *args, **kwargs)


@pytest.fixture(autouse=True, scope="session")
def _offline_sockets():
    mp = pytest.MonkeyPatch()
    mp.setattr(socket.socket, "connect", _guarded_connect)
    mp.setattr(socket.socket, "connect_ex", _guarded_connect_ex)
    mp.setattr(socket, "create_connection", _guarded_create_connection)
    yield BLOCKED
    mp.undo()


@pytest.fixture(scope="session")
def inspired():
    from mscrs_core.data import load_dataset
    return load_dataset("inspired")


@pytest.fixture(scope="session")
def redial():
    from mscrs_core.data import load_dataset
    return load_dataset("redial")
