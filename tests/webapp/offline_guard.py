"""Imported first by an app under test: refuses, and writes down, every connection to a host
other than this machine (IPv4/IPv6 sockets and name look-ups), so a test can assert that the
app contacted no outside host."""

from __future__ import annotations

import ipaddress
import os
import socket

LOG_VARIABLE = "DERAIN_TEST_NETWORK_LOG"
_LOCAL_NAMES = {None, "", "localhost", "localhost.localdomain"}


def _is_local(host) -> bool:
    if isinstance(host, bytes):
        host = host.decode()
    if host in _LOCAL_NAMES:
        return True
    try:
        address = ipaddress.ip_address(str(host).split("%")[0])
    except ValueError:
        return False  # a name other than localhost's: resolving it would ask a DNS server
    return address.is_loopback or address.is_unspecified


def install() -> None:
    """Patches `socket` so that outside hosts raise OSError and are appended to the file named
    by $DERAIN_TEST_NETWORK_LOG."""
    log = os.environ[LOG_VARIABLE]
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex
    real_getaddrinfo = socket.getaddrinfo

    def refuse(target) -> OSError:
        with open(log, "a") as file:
            file.write(f"{target}\n")
        return OSError(f"the test forbids contacting {target}")

    def connect(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6) and not _is_local(address[0]):
            raise refuse(address)
        return real_connect(self, address)

    def connect_ex(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6) and not _is_local(address[0]):
            raise refuse(address)
        return real_connect_ex(self, address)

    def getaddrinfo(host, *args, **kwargs):
        if not _is_local(host):
            raise socket.gaierror(str(refuse(host)))
        return real_getaddrinfo(host, *args, **kwargs)

    socket.socket.connect = connect
    socket.socket.connect_ex = connect_ex
    socket.getaddrinfo = getaddrinfo
