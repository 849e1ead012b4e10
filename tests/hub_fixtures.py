"""Pytest fixtures that run the local Hub stand-in (the ``hubserver`` package) and point the
real ``huggingface_hub`` / ``datasets`` clients at it.

Register with ``pytest_plugins = ["hub_fixtures"]`` in the root conftest (``tests/`` on
``sys.path``), or take the fixtures into a test module: ``hub_env = hub_fixtures.hub_env``.

Transports
----------
``hub_env`` leaves the clients as every user with hf_xet installed has them: uploads and
downloads go over **Xet** (huggingface_hub 2.4 decides that alone, from ``hf_xet`` being
importable and ``HF_HUB_DISABLE_XET`` unset). ``hub_env_lfs`` sets ``HF_HUB_DISABLE_XET=1``
for the legacy **LFS** transfer. Both talk to the same ``hub_server``, which speaks both.

Why patch module attributes instead of only setting environment variables
--------------------------------------------------------------------------
Both libraries copy ``HF_ENDPOINT`` (and the cache, offline and Xet switches) into module
constants at import time, and pytest imports them long before a fixture runs. Environment
variables alone therefore only reach *subprocesses*. The fixtures do both:

* they set the environment variables, so child processes (a CLI under test, started with
  ``env=hub_env.subprocess_env()``) see the server: the most robust way to run client code;
* they monkeypatch the import-time copies that the client code paths read at call time, so
  the same clients work in-process. The list was established by reading huggingface_hub 2.4
  and datasets 5.2 (``constants.py``, ``utils/_http.py``, ``datasets/config.py``) and is
  checked by ``test_hubserver.py``. Should an upgrade add another import-time copy, prefer
  running that code in a subprocess over growing this list blindly. hf_xet reads its cache
  location (``HF_HOME``/``HF_XET_CACHE``) from the environment each time it opens a session.
"""

from __future__ import annotations

import os
import secrets
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from hubserver import HubServer

# huggingface_hub's LFS upload passes a file object as `data=` to httpx2, which warns. It is
# the library's own call (lfs.py, _upload_single_part), harmless, and fatal under
# `filterwarnings = error`: hub_env ignores it; a test without hub_env can use this filter.
_HTTPX2_UPLOAD_MESSAGE = r"Use 'content=<\.\.\.>' to upload raw bytes"
HTTPX2_UPLOAD_WARNING = f"ignore:{_HTTPX2_UPLOAD_MESSAGE}:DeprecationWarning"


@dataclass
class HubEnv:
    url: str
    token: str
    xet: bool  # False: HF_HUB_DISABLE_XET=1, the LFS transfer
    hf_home: Path
    datasets_cache: Path
    env: dict[str, str]  # the variables set for this test

    def subprocess_env(self, **extra: str) -> dict[str, str]:
        """A complete environment for a child process talking to the server."""
        return {**os.environ, **self.env, **extra}


@pytest.fixture
def hub_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubServer]:
    """A fresh server (Xet and LFS) on a free loopback port with its own storage. ``.url``,
    ``.token``, ``.faults``, ``.stats()``, ``.requests()``, ``.corrupt_file()``,
    ``.remove_file()``."""
    token = "hf_test_" + secrets.token_hex(16)
    server = HubServer(tmp_path_factory.mktemp("hub_storage"), tokens={token: "test-user"})
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _patch_clients(
    monkeypatch: pytest.MonkeyPatch, url: str, hf_home: Path, datasets_cache: Path, xet: bool
) -> None:
    from huggingface_hub import constants
    from huggingface_hub.utils import _http

    # The endpoint, and what was derived from it at import time.
    monkeypatch.setattr(constants, "ENDPOINT", url)
    # hf_hub_url() (hence datasets' hf_dataset_url) formats this template, not ENDPOINT.
    template = url + "/{repo_id}/resolve/{revision}/{filename}"
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", template)
    hosts = constants.HF_URL_HOSTS | {urlsplit(url).hostname}
    monkeypatch.setattr(constants, "HF_URL_HOSTS", hosts)
    monkeypatch.setattr(_http, "_HUB_ORIGINS", _http._HUB_ORIGINS | {_http._url_origin(url)})
    # Switches read into constants at import time.
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", not xet)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_TELEMETRY", True)
    # Caches and token file: never touch the developer's ~/.cache/huggingface.
    paths = {
        "HF_HOME": hf_home,
        "HF_HUB_CACHE": hf_home / "hub",
        "HUGGINGFACE_HUB_CACHE": hf_home / "hub",
        "HF_ASSETS_CACHE": hf_home / "assets",
        "HUGGINGFACE_ASSETS_CACHE": hf_home / "assets",
        "HF_XET_CACHE": hf_home / "xet",
        "HF_TOKEN_PATH": hf_home / "token",
        "HF_STORED_TOKENS_PATH": hf_home / "stored_tokens",
    }
    for name, value in paths.items():
        monkeypatch.setattr(constants, name, str(value))

    try:
        from datasets import config
    except ImportError:  # datasets is not needed for pure huggingface_hub tests
        return
    monkeypatch.setattr(config, "HF_ENDPOINT", url)
    template = url + "/datasets/{repo_id}/resolve/{revision}/{path}"
    monkeypatch.setattr(config, "HUB_DATASETS_URL", template)
    monkeypatch.setattr(config, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(config, "HF_DATASETS_OFFLINE", False)
    monkeypatch.setattr(config, "HF_CACHE_HOME", str(hf_home))
    monkeypatch.setattr(config, "HF_DATASETS_CACHE", datasets_cache)
    monkeypatch.setattr(config, "HF_MODULES_CACHE", hf_home / "modules")
    monkeypatch.setattr(config, "DOWNLOADED_DATASETS_PATH", datasets_cache / "downloads")
    extracted = datasets_cache / "downloads" / "extracted"
    monkeypatch.setattr(config, "EXTRACTED_DATASETS_PATH", extracted)


def _reset_client_state() -> None:
    """Forget pooled connections, cached filesystems and Xet tokens of another server."""
    from huggingface_hub import HfFileSystem, close_session
    from huggingface_hub.utils import _xet

    close_session()
    HfFileSystem.clear_instance_cache()
    _xet.XET_CONNECTION_INFO_CACHE.clear()


def _hub_env(hub_server: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
             xet: bool) -> Iterator[HubEnv]:
    hf_home, datasets_cache = tmp_path / "hf_home", tmp_path / "hf_datasets_cache"
    env = {
        "HF_ENDPOINT": hub_server.url,
        "HF_TOKEN": hub_server.token,
        "HF_HUB_DISABLE_XET": "0" if xet else "1",
        "HF_HUB_OFFLINE": "0",
        "HF_DATASETS_OFFLINE": "0",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HOME": str(hf_home),
        "HF_DATASETS_CACHE": str(datasets_cache),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    # Would take precedence over, or leak next to, the variables above.
    for name in ("HUGGING_FACE_HUB_TOKEN", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE",
                 "HF_TOKEN_PATH", "HF_XET_CACHE"):
        monkeypatch.delenv(name, raising=False)
    _patch_clients(monkeypatch, hub_server.url, hf_home, datasets_cache, xet)
    _reset_client_state()
    # pytest restores the warning filters after each test, so this stays local to the test.
    warnings.filterwarnings("ignore", _HTTPX2_UPLOAD_MESSAGE, DeprecationWarning, "httpx2")
    try:
        yield HubEnv(hub_server.url, hub_server.token, xet, hf_home, datasets_cache, env)
    finally:
        _reset_client_state()


@pytest.fixture
def hub_env(
    hub_server: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[HubEnv]:
    """Point huggingface_hub and datasets, in-process and in subprocesses, at ``hub_server``,
    with the Xet transport (the default of every client that has hf_xet)."""
    yield from _hub_env(hub_server, tmp_path, monkeypatch, xet=True)


@pytest.fixture
def hub_env_lfs(
    hub_server: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[HubEnv]:
    """As ``hub_env``, with ``HF_HUB_DISABLE_XET=1``: the legacy LFS transfer."""
    yield from _hub_env(hub_server, tmp_path, monkeypatch, xet=False)
