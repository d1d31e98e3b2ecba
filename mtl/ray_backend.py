"""Joining a Ray cluster (or starting a local Ray instance) for ``backend: ray``.

Ray is an optional dependency (``pip install 'mtl[ray]'``); this module imports it only when a command
asks for the Ray backend. ``connect`` is idempotent: the first call joins or starts, later ones reuse.

Where it connects (``RayConfig.address``, else the ``RAY_ADDRESS`` environment variable):

* nothing set: a Ray instance started for this process on this machine (``num_cpus`` CPUs);
* ``auto``: the cluster started on this machine with ``ray start --head``;
* ``HOST:PORT`` (the head's GCS port, 6379 by default) or ``ray://HOST:10001`` (Ray Client).

An address that does not answer is an error naming it, after a 5-second TCP check, instead of Ray's own
minute-long retry loop.

Example:
    >>> parse_address("ray://head.example:10001")
    ('head.example', 10001)
    >>> parse_address("10.0.0.5") is None  # no port: left to Ray
    True
"""

from __future__ import annotations

import logging
import os
import socket
from typing import Any

from mtl.config import RayConfig
from mtl.types import MtlError

_CHECK_TIMEOUT_S = 5.0


def require_ray() -> Any:
    """The ``ray`` module, or an error saying how to install it."""
    try:
        import ray
    except ImportError:
        raise MtlError("backend=ray needs Ray: pip install 'mtl[ray]' (or pip install 'ray[data]')") from None
    return ray


def parse_address(address: str) -> tuple[str, int] | None:
    """``(host, port)`` of a cluster address, or None when it names no port (``auto``, a bare host)."""
    rest = address.split("://", 1)[-1]
    host, sep, port = rest.rpartition(":")
    if not sep or not port.isdigit():
        return None
    return host.strip("[]"), int(port)


def cluster_address(cfg: RayConfig) -> str | None:
    """The address ``connect`` uses: ``cfg.address``, else ``RAY_ADDRESS``, else None (start locally)."""
    return cfg.address or os.environ.get("RAY_ADDRESS") or None


def check_reachable(address: str, timeout: float = _CHECK_TIMEOUT_S) -> None:
    """Raise an error naming ``address`` when nothing accepts a TCP connection at its host and port."""
    hp = parse_address(address)
    if hp is None:
        return
    try:
        with socket.create_connection(hp, timeout=timeout):
            pass
    except OSError as e:
        raise MtlError(
            f"the Ray cluster at {address!r} cannot be reached ({type(e).__name__}: {e}); check that "
            "`ray start --head` runs there and the port is open, or leave ray.address and RAY_ADDRESS "
            "unset to start a Ray instance on this machine"
        ) from None


def connect(cfg: RayConfig) -> Any:
    """Join the cluster ``cfg`` names (or start a local instance) unless Ray is already initialised in
    this process; returns the ``ray`` module."""
    ray = require_ray()
    if ray.is_initialized():
        return ray
    address = cluster_address(cfg)
    if address:
        check_reachable(address)
    kwargs: dict[str, Any] = {
        "include_dashboard": False,
        "logging_level": logging.WARNING,
        "configure_logging": True,
    }
    if not address:
        kwargs["num_cpus"] = cfg.num_cpus
    try:
        ray.init(address=address, **kwargs)
    except (ConnectionError, TimeoutError, RuntimeError) as e:
        where = f"the Ray cluster at {address!r}" if address else "a local Ray instance"
        raise MtlError(f"could not connect to {where}: {type(e).__name__}: {e}") from e
    from ray.data import DataContext

    ctx = DataContext.get_current()
    ctx.enable_progress_bars = False  # mtl prints its own progress; Ray's bars interleave with it
    # a job stopped by an error dumps every operator's statistics at warning level: mtl names the error
    logging.getLogger("ray.data").setLevel(logging.ERROR)
    return ray


def cluster_resources() -> dict[str, float]:
    """The connected cluster's total resources (``CPU``, ``GPU``, ...)."""
    ray = require_ray()
    return {k: float(v) for k, v in ray.cluster_resources().items()}


def default_workers(cfg: RayConfig) -> int:
    """``cfg.workers``, else the cluster's CPUs (at least 1)."""
    if cfg.workers:
        return int(cfg.workers)
    return max(1, int(cluster_resources().get("CPU", 1)))


def gpus_per_actor(cfg: RayConfig) -> float:
    """``cfg.gpus_per_actor``, else 1 when the cluster has a GPU, else 0."""
    if cfg.gpus_per_actor is not None:
        return float(cfg.gpus_per_actor)
    return 1.0 if cluster_resources().get("GPU", 0) >= 1 else 0.0


__all__ = [
    "check_reachable",
    "cluster_address",
    "cluster_resources",
    "connect",
    "default_workers",
    "gpus_per_actor",
    "parse_address",
    "require_ray",
]
