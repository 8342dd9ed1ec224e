"""The listening sockets of a daemon's doors (feedback, api, smtp): bound once by `run
--processes` for every child to serve, or by the daemon itself when it runs alone."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

from dispatcher.config import Config
from dispatcher.errors import ConfigError

__all__ = ["Listen", "bind", "env_name", "listeners", "open_socket"]


@dataclass(frozen=True, slots=True)
class Listen:
    """One door's address, named as its config section is (`feedback`, `api`, `smtp`; `smtps`
    is the SMTP door's implicit-TLS port)."""

    name: str
    host: str
    port: int


def listeners(cfg: Config) -> list[Listen]:
    """The doors this configuration serves."""
    out: list[Listen] = []
    if cfg.feedback.enabled:
        out.append(Listen("feedback", cfg.feedback.listen_host, cfg.feedback.listen_port))
    if cfg.api.enabled:
        out.append(Listen("api", cfg.api.listen_host, cfg.api.listen_port))
    if cfg.smtp.enabled:
        out.append(Listen("smtp", cfg.smtp.listen_host, cfg.smtp.listen_port))
        if cfg.smtp.implicit_tls_port is not None:
            out.append(Listen("smtps", cfg.smtp.listen_host, cfg.smtp.implicit_tls_port))
    return out


def env_name(name: str) -> str:
    """The variable a child of `run --processes` finds the inherited socket's fd in."""
    return f"DISPATCHER_{name.upper()}_SOCKET_FD"


def bind(door: Listen) -> socket.socket:
    """A listening socket for `door` (ConfigError naming the section if the address is taken)."""
    try:
        family, _, _, _, addr = socket.getaddrinfo(
            door.host, door.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        return socket.create_server((addr[0], door.port), family=family, backlog=1024)
    except OSError as exc:
        raise ConfigError(
            f"{door.name}: cannot listen on {door.host}:{door.port}: {exc.strerror or exc}"
        ) from None


def open_socket(door: Listen) -> tuple[socket.socket, bool]:
    """The socket the parent bound for this process (and True), or a new one (and False)."""
    inherited = os.environ.get(env_name(door.name))
    if inherited:
        return socket.socket(fileno=int(inherited)), True
    return bind(door), False
