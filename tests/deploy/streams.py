"""Many progress streams through a deployed server's proxy at once: a small asyncio client, one
TLS connection per stream, run inside the server's network namespace
(`nsenter -t PID -n python -m tests.deploy.streams GROUPS`; TRAD_TOKEN, TRAD_CA the certificate
to trust, TRAD_PATH the progress path with ?follow=true).

GROUPS is a JSON list of {"source": address, "count": n, "headers": {...}}: each group's
streams are opened together from that source address, the groups one after the other. It
prints one JSON line with each group's statuses (and how many of its 200s sent a first progress
line), then, after a line (or the end) on stdin, reads every open stream to its end and prints
a second line: how many ended with each final status."""

from __future__ import annotations

import asyncio
import collections
import json
import os
import resource
import ssl
import sys

HOST = "localhost"  # the certificate's name; connections go to 127.0.0.1
PORT = int(os.environ.get("TRAD_PORT", "443"))  # TLS unless TRAD_CA is empty
OPENING_AT_ONCE = 200
END_DEADLINE_S = 120


class Stream:
    """One HTTP/1.1 response read line by line (chunked or not)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, chunked: bool) -> None:
        self.reader, self.writer, self.chunked = reader, writer, chunked
        self.buffer = b""
        self.ended = False

    async def _more(self) -> bool:
        if self.ended:
            return False
        if not self.chunked:
            data = await self.reader.read(65536)
        else:
            size = int((await self.reader.readline()).split(b";")[0].strip() or b"0", 16)
            data = await self.reader.readexactly(size) if size else b""
            await self.reader.readline()
        if not data:
            self.ended = True
            return False
        self.buffer += data
        return True

    async def line(self) -> bytes | None:
        while b"\n" not in self.buffer:
            if not await self._more():
                return None
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line

    def close(self) -> None:
        self.writer.close()


async def open_stream(
    ctx: ssl.SSLContext, source: str, path: str, headers: dict[str, str]
) -> tuple[str, Stream | None]:
    """The answer's status ("200", "429", … or "error: …") and, for a 200 that sent its first
    progress line, the open stream."""
    try:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", PORT, ssl=ctx, server_hostname=HOST if ctx else None, local_addr=(source, 0)
        )
    except OSError as exc:
        return f"error: {type(exc).__name__}", None
    try:
        lines = [f"GET {path} HTTP/1.1", f"Host: {HOST}", *(f"{k}: {v}" for k, v in headers.items())]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        head = await reader.readuntil(b"\r\n\r\n")
        status = head.split(b" ", 2)[1].decode()
        stream = Stream(reader, writer, b"transfer-encoding: chunked" in head.lower())
        if status != "200":
            writer.close()
            return status, None
        first = await stream.line()
        if first is None or "status" not in json.loads(first):
            writer.close()
            return "200 without a progress line", None
        return status, stream
    except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
        writer.close()
        return f"error: {type(exc).__name__}", None


async def last_status(stream: Stream) -> str:
    """The status in the stream's last line once it ends."""
    last = None
    while (line := await stream.line()) is not None:
        if line.strip():
            last = line
    stream.close()
    return json.loads(last)["status"] if last else "no line"


async def main(groups: list[dict]) -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    ca = os.environ.get("TRAD_CA")
    ctx = ssl.create_default_context(cafile=ca) if ca else None
    path = os.environ["TRAD_PATH"]
    auth = {"Authorization": f"Bearer {os.environ['TRAD_TOKEN']}"}
    gate = asyncio.Semaphore(OPENING_AT_ONCE)
    held: list[Stream] = []

    async def one(source: str, headers: dict[str, str]) -> str:
        async with gate:
            try:
                status, stream = await asyncio.wait_for(open_stream(ctx, source, path, {**auth, **headers}), 60)
            except TimeoutError:
                status, stream = "error: no answer within 60 s", None
        if stream is not None:
            held.append(stream)
        return status

    report = []
    for group in groups:
        statuses = await asyncio.gather(
            *(one(group["source"], group.get("headers", {})) for _ in range(group["count"]))
        )
        report.append({"source": group["source"], "statuses": dict(collections.Counter(statuses))})
    print(json.dumps({"opened": report, "held": len(held)}), flush=True)

    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    tasks = [asyncio.create_task(last_status(s)) for s in held]
    if tasks:
        await asyncio.wait(tasks, timeout=END_DEADLINE_S)
    ends = ["still open" if not t.done() else "error" if t.exception() else t.result() for t in tasks]
    print(json.dumps({"ended": dict(collections.Counter(ends))}), flush=True)


if __name__ == "__main__":
    asyncio.run(main(json.loads(sys.argv[1])))
