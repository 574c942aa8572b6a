"""Which TCP sockets this process and its descendants listen on (Linux /proc, no psutil)."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

from deploy.federation import descendants


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    try:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    except OSError:
        pass
    return inodes


def _address(hex_address: str) -> str:
    """/proc/net/tcp's little-endian hex address as text."""
    raw = bytes.fromhex(hex_address)
    if len(raw) == 4:
        return str(ipaddress.IPv4Address(raw[::-1]))
    words = b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4))
    return str(ipaddress.IPv6Address(words))


def listening_sockets(root: int | None = None) -> list[tuple[int, str, str, int]]:
    """(pid, process name, address, port) of every TCP socket in LISTEN state held by `root`
    (default: this process) or its descendants."""
    pids = [root or os.getpid(), *descendants(root or os.getpid())]
    owner = {inode: pid for pid in pids for inode in _socket_inodes(pid)}
    found = []
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state != "0A" or inode not in owner:  # 0A: LISTEN
                continue
            address, port = local.split(":")
            pid = owner[inode]
            found.append((pid, _name(pid), _address(address), int(port, 16)))
    return found


def _name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "?"
