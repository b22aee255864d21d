"""Process-group set-up and teardown: gloo on CPU, NCCL on GPU, every collective with a timeout.

Two launchers, one contract (the torchrun environment: RANK, WORLD_SIZE, LOCAL_RANK,
LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT):
- tpplan's own runner binds the rendezvous socket itself (port 0, so never a port clash) and
  passes it to rank 0 as TPPLAN_STORE_FD; rank 0 serves the TCPStore on it.
- under torchrun the group forms through torchrun's own env:// rendezvous; tpplan's messages go
  to the same store under a fresh random prefix, so a restarted group never reads an earlier
  attempt's keys.
Rendezvous is on 127.0.0.1 unless the user names an address; gloo is then told to use loopback too.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import socket
import uuid
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist

STORE_CONNECT_S = 300  # ranks of a loaded machine may take this long to import torch and connect


def _seconds(s: float) -> datetime.timedelta:
    return datetime.timedelta(seconds=s)


def _env_int(name: str, default: int | None = None) -> int:
    value = os.environ.get(name)
    if value is None:
        if default is None:
            raise RuntimeError(f"{name} is not set: run through `tpplan sweep` or torchrun")
        return default
    return int(value)


def under_torchrun() -> bool:
    return "TORCHELASTIC_RUN_ID" in os.environ


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(socket.gethostbyname(host)).is_loopback
    except (OSError, ValueError):
        return False


def _loopback_ifname() -> str | None:
    return next((name for _, name in socket.if_nameindex() if name.startswith("lo")), None)


@dataclass
class World:
    """This rank's view of the process group, and a store for messages outside collectives."""

    rank: int
    size: int
    local_rank: int
    local_size: int
    backend: str
    device: torch.device
    timeout_s: float
    store: Any
    _groups: dict[tuple[int, ...], Any] = field(default_factory=dict)

    def group(self, ranks: list[int]) -> Any:
        """The process group of `ranks` (created once, by every rank in the same order, then reused)."""
        key = tuple(ranks)
        if key not in self._groups:
            self._groups[key] = dist.new_group(list(ranks), timeout=_seconds(self.timeout_s))
        return self._groups[key]

    def put(self, key: str, value: str) -> None:
        self.store.set(key, value)

    def get(self, key: str, wait_s: float) -> str:
        """The value at `key`, waiting up to `wait_s` for some rank to put it (TimeoutError after)."""
        self.store.wait([key], _seconds(wait_s))
        return self.store.get(key).decode()

    def store_barrier(self, key: str, ranks: int, *, wait_s: float) -> None:
        """A barrier through the store, for phases longer than a collective's timeout (building, idling)."""
        if self.store.add(key, 1) == ranks:
            self.store.set(f"{key}/open", "1")
        self.store.wait([f"{key}/open"], _seconds(wait_s))


def init(backend: str, timeout_s: float) -> World:
    """Join the process group described by the environment."""
    rank, size = _env_int("RANK"), _env_int("WORLD_SIZE")
    local_rank, local_size = _env_int("LOCAL_RANK", rank), _env_int("LOCAL_WORLD_SIZE", size)
    host, port = os.environ.get("MASTER_ADDR", "127.0.0.1"), _env_int("MASTER_PORT")
    if backend == "gloo" and "GLOO_SOCKET_IFNAME" not in os.environ and _is_loopback(host):
        ifname = _loopback_ifname()
        if ifname:
            os.environ["GLOO_SOCKET_IFNAME"] = ifname
    if backend == "nccl":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    timeout = _seconds(timeout_s)
    connect = _seconds(STORE_CONNECT_S)
    fd = os.environ.get("TPPLAN_STORE_FD")
    if under_torchrun():
        # torchrun's own rendezvous for the group; then a namespace of our own keys that no earlier
        # attempt (a torchrun restart) can have written to: rank 0 draws it, a broadcast shares it
        dist.init_process_group(backend, init_method="env://", rank=rank, world_size=size, timeout=timeout)
        token = [uuid.uuid4().hex if rank == 0 else None]
        dist.broadcast_object_list(token, src=0)
        store = dist.PrefixStore(f"tpplan/{token[0]}", dist.TCPStore(host, port, size, False, connect))
    else:
        if fd is not None:
            store = dist.TCPStore(host, port, size, True, connect, master_listen_fd=int(fd))
        else:
            store = dist.TCPStore(host, port, size, False, connect)
        dist.init_process_group(backend, store=store, rank=rank, world_size=size, timeout=timeout)
    return World(rank, size, local_rank, local_size, backend, device, timeout_s, store)


def teardown() -> None:
    """Destroy the process group if there is one; never raises (it runs on the way out of faults too)."""
    try:
        if dist.is_initialized():
            dist.destroy_process_group()
    except Exception:
        pass
