"""A redis-server with the project's configuration (ops/redis/trad.conf) and the ACL users
install_redis.sh writes: the administrator `default`, the application user `trad` and one
worker host's user, each with the rules the script holds (read from the script itself)."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from redis import Redis

from app.dev.servers import RedisServer
from tests.support import ROOT

APP_PASSWORD, ADMIN_PASSWORD = "app-secret-0123", "admin-secret-4567"
HOST_USER, HOST_PASSWORD = "trad_host_node2", "host-secret-89ab"  # a worker host's user, as add-user writes it
PASSWORDS = {"default": ADMIN_PASSWORD, "trad": APP_PASSWORD, HOST_USER: HOST_PASSWORD}


INSTALL_REDIS = ROOT / "ops/scripts/install_redis.sh"


def script_rules(variable: str) -> str:
    """The ACL rules install_redis.sh assigns to `variable` (APP_RULES, WORKER_HOST_RULES):
    a quoted string, or another such variable (`APP_RULES=$RQ_RULES`)."""
    match = re.search(rf"^{variable}=(?:'([^']+)'|\$(\w+))$", INSTALL_REDIS.read_text(), re.M)
    return match.group(1) or script_rules(match.group(2))


def project_config(port: int) -> str:
    lines = [
        line
        for line in (ROOT / "ops/redis/trad.conf").read_text().splitlines()
        if not line.startswith(("include ", "port "))
    ]
    lines += [
        f"port {port}",
        f"user default on >{ADMIN_PASSWORD} ~* &* +@all",
        f"user trad on >{APP_PASSWORD} {script_rules('APP_RULES')}",
        f"user {HOST_USER} on #{hashlib.sha256(HOST_PASSWORD.encode()).hexdigest()} "
        + script_rules("WORKER_HOST_RULES"),
    ]
    return "\n".join(lines) + "\n"


@dataclass
class AclRedis:
    server: RedisServer

    @property
    def port(self) -> int:
        return self.server.port

    def url(self, user: str) -> str:
        return f"redis://{user}:{PASSWORDS[user]}@127.0.0.1:{self.port}/0"

    def client(self, user: str) -> Redis:
        return Redis.from_url(self.url(user))

    def stop(self) -> None:
        self.server.stop()


def start_acl_redis(directory: Path) -> AclRedis:
    server = RedisServer(directory)
    server.config = project_config(server.port)
    server.start()
    return AclRedis(server)
