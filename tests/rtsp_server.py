"""A small RTSP 1.0 relay for tests (RFC 2326; the stream description is SDP, RFC 4566), on 127.0.0.1.

ffmpeg publishes to it: OPTIONS, ANNOUNCE with the SDP, SETUP of each track with an interleaved TCP
transport in record mode, RECORD, then RTP and RTCP packets as `$`-framed data on the same connection.
The component plays from it: OPTIONS, DESCRIBE (the publisher's SDP), SETUP of each track, PLAY,
GET_PARAMETER or OPTIONS as keep-alives, TEARDOWN. Every packet the publisher sends is copied to every
player of that path, on the channel the player chose for that track.

Only what the tests need: RTP inside the RTSP TCP connection (UDP is answered 461 Unsupported Transport),
one publisher per path, no authentication, no PAUSE. When a publisher goes away its players are
disconnected, as a real relay does, and DESCRIBE answers 404 until a publisher records on the path again.
With `drop_players=False` they stay connected and get nothing more: a stream gone silent, as behind a
dead link.
"""

from __future__ import annotations

import contextlib
import secrets
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit

from .mqtt_broker import free_port

PUBLIC = "OPTIONS, DESCRIBE, ANNOUNCE, SETUP, PLAY, RECORD, GET_PARAMETER, TEARDOWN"
REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    415: "Unsupported Media Type",
    454: "Session Not Found",
    455: "Method Not Valid in This State",
    459: "Aggregate Operation Not Allowed",
    461: "Unsupported Transport",
    501: "Not Implemented",
    505: "RTSP Version not supported",
    551: "Option not supported",
}
SESSION_TIMEOUT_S = 60
SEND_TIMEOUT_S = 5.0
MAX_HEAD_BYTES = 64 * 1024


@dataclass
class Request:
    method: str
    url: str
    headers: dict[str, str]  # names in lower case
    body: bytes = b""


@dataclass
class Response:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    def encode(self, cseq: str | None) -> bytes:
        lines = [f"RTSP/1.0 {self.status} {REASONS[self.status]}"]
        if cseq is not None:
            lines.append(f"CSeq: {cseq}")
        lines.append("Server: gg-edge-classifier-test-relay")
        lines += [f"{name}: {value}" for name, value in self.headers.items()]
        if self.body:
            lines.append(f"Content-Length: {len(self.body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + self.body


class Connection:
    """One client's TCP connection: its buffered reads, its writes (replies and relayed packets are
    written under one lock so they never interleave), and the RTSP session on it."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        sock.settimeout(SEND_TIMEOUT_S)  # a player that stops reading is dropped instead of stalling all
        self.lock = threading.Lock()
        self.buffer = bytearray()
        self.closed = False
        self.session: str | None = None
        self.stream: Stream | None = None
        self.channels: dict[int, tuple[int, int]] = {}  # track -> (RTP channel, RTCP channel)
        self.playing = False

    def fill(self) -> bool:
        """Reads more bytes into the buffer; False at end of stream or once closed."""
        while not self.closed:
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue  # nothing to read yet: only sends give up on a timeout
            except OSError:
                return False
            if not data:
                return False
            self.buffer += data
            return True
        return False

    def take(self, count: int) -> bytes | None:
        while len(self.buffer) < count:
            if not self.fill():
                return None
        data = bytes(self.buffer[:count])
        del self.buffer[:count]
        return data

    def take_head(self) -> bytes | None:
        """The request line and headers, up to and without the blank line."""
        while (end := self.buffer.find(b"\r\n\r\n")) < 0:
            if len(self.buffer) > MAX_HEAD_BYTES or not self.fill():
                return None
        head = bytes(self.buffer[:end])
        del self.buffer[: end + 4]
        return head

    def send(self, data: bytes) -> bool:
        with self.lock:
            if self.closed:
                return False
            try:
                self.sock.sendall(data)
            except OSError:
                self.close_socket()
                return False
        return True

    def close_socket(self) -> None:
        """Shuts the socket down, which also wakes this connection's thread from its read."""
        self.closed = True
        with contextlib.suppress(OSError):  # not connected any more
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


@dataclass
class Stream:
    """A published path: the publisher's SDP, the control URL of each track (media section), and which
    of the publisher's channels carry which track's RTP (0) and RTCP (1)."""

    path: str
    sdp: bytes
    controls: list[str]
    publisher: Connection
    channels: dict[int, tuple[int, int]] = field(default_factory=dict)  # channel -> (track, 0 or 1)
    recording: bool = False
    players: set[Connection] = field(default_factory=set)


def media_controls(sdp: str) -> list[str]:
    """The a=control value of each media (m=) section, "" for one without."""
    controls: list[str] = []
    for line in sdp.splitlines():
        if line.startswith("m="):
            controls.append("")
        elif line.startswith("a=control:") and controls:
            controls[-1] = line.removeprefix("a=control:").strip()
    return controls


def interleaved_transport(header: str) -> tuple[tuple[int, int] | None, bool] | None:
    """From a Transport header (alternatives separated by commas), the first RTP/AVP/TCP one as
    (its interleaved channel pair or None, record mode); None when only UDP is offered."""
    for spec in header.split(","):
        parts = [part.strip() for part in spec.split(";")]
        if parts[0].upper() != "RTP/AVP/TCP":
            continue
        channels: tuple[int, int] | None = None
        record = False
        for part in parts[1:]:
            name, _, value = part.partition("=")
            value = value.strip('"')
            if name.lower() == "interleaved":
                low, _, high = value.partition("-")
                channels = (int(low), int(high or int(low) + 1))
            elif name.lower() == "mode":
                record = value.lower() == "record"
        return channels, record
    return None


class RtspRelay:
    """Publishers and players on 127.0.0.1:port; start() serves on a thread, stop() closes everything."""

    def __init__(self, port: int | None = None, *, drop_players: bool = True) -> None:
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.drop_players = drop_players
        self._lock = threading.Condition()
        self._streams: dict[str, Stream] = {}
        self._connections: set[Connection] = set()
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()
        self._listener: socket.socket | None = None

    def url(self, path: str) -> str:
        return f"rtsp://{self.host}:{self.port}/{path.strip('/')}"

    def start(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, self.port))
        listener.listen(16)
        listener.settimeout(0.2)  # the accept loop looks at the stop flag this often
        self._listener = listener
        self._spawn(self._accept, "rtsp-relay-accept")

    def stop(self) -> None:
        """Closes the listener and every connection, and joins every thread."""
        self._stopping.set()
        if self._threads:
            self._threads[0].join(10.0)  # the accept loop: no new connections after this
        if self._listener is not None:
            self._listener.close()
        with self._lock:
            connections = list(self._connections)
            self._streams.clear()
            self._lock.notify_all()
        for connection in connections:
            connection.close_socket()
        for thread in self._threads:
            thread.join(10.0)

    def wait_for_publisher(self, path: str, timeout: float) -> bool:
        """True once a publisher records on path (within timeout)."""
        with self._lock:
            return self._lock.wait_for(lambda: self._recording(path.strip("/")) is not None, timeout)

    def players(self, path: str) -> int:
        """How many players are playing the stream on path now."""
        with self._lock:
            stream = self._recording(path.strip("/"))
            return 0 if stream is None else sum(player.playing for player in stream.players)

    # -- connections ------------------------------------------------------------------------------------

    def _spawn(self, target: Callable[..., None], name: str, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        assert self._listener is not None
        while not self._stopping.is_set():
            try:
                sock, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            connection = Connection(sock)
            with self._lock:
                if self._stopping.is_set():
                    connection.close_socket()
                    return
                self._connections.add(connection)
            self._spawn(self._serve, "rtsp-relay-connection", connection)

    def _serve(self, connection: Connection) -> None:
        try:
            while True:
                if not connection.buffer and not connection.fill():
                    return
                if connection.buffer[:1] in (b"\r", b"\n"):  # tolerated between messages
                    del connection.buffer[:1]
                elif connection.buffer[:1] == b"$":  # $, channel, 16-bit length, then one RTP/RTCP packet
                    header = connection.take(4)
                    payload = None if header is None else connection.take(int.from_bytes(header[2:], "big"))
                    if header is None or payload is None:
                        return
                    self._relay(connection, header[1], payload)
                elif not self._answer(connection):
                    return
        finally:
            self._drop(connection)

    def _answer(self, connection: Connection) -> bool:
        """Reads one request and replies; False when the connection is over."""
        head = connection.take_head()
        if head is None:
            return False
        request_line, *header_lines = head.decode("utf-8", "replace").split("\r\n")
        headers = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = headers.get("content-length", "0")
        body = connection.take(int(length)) if length.isdigit() else None
        if body is None:
            return False
        parts = request_line.split(" ")
        cseq = headers.get("cseq")
        if len(parts) != 3 or cseq is None:
            response = Response(400)
        elif parts[2] != "RTSP/1.0":
            response = Response(505)
        elif "require" in headers:  # no option extensions here
            response = Response(551, {"Unsupported": headers["require"]})
        else:
            request = Request(parts[0].upper(), parts[1], headers, body)
            try:
                response = self._handle(connection, request)
            except ValueError:  # a header we could not read, such as interleaved=x-y
                response = Response(400)
            if connection.session is not None and response.status in (200, 461):
                response.headers["Session"] = f"{connection.session};timeout={SESSION_TIMEOUT_S}"
        if not connection.send(response.encode(cseq)):
            return False
        if len(parts) == 3 and parts[0].upper() == "PLAY" and response.status == 200:
            with self._lock:  # packets flow only after the PLAY reply has been written
                connection.playing = True
        return True

    def _drop(self, connection: Connection) -> None:
        with self._lock:
            self._connections.discard(connection)
            stream = connection.stream
            players: list[Connection] = []
            if stream is not None and stream.publisher is connection:
                if self._streams.get(stream.path) is stream:
                    del self._streams[stream.path]
                players = list(stream.players) if self.drop_players else []
            elif stream is not None:
                stream.players.discard(connection)
        for player in players:  # the stream is gone: its players find out at once, as from a real relay
            player.close_socket()
        connection.close_socket()

    def _relay(self, connection: Connection, channel: int, payload: bytes) -> None:
        """Copies one packet from a recording publisher to the players; drops a player's own RTCP."""
        with self._lock:
            stream = connection.stream
            if stream is None or stream.publisher is not connection or not stream.recording:
                return
            track, kind = stream.channels.get(channel, (-1, 0))
            targets = [
                (player, player.channels[track][kind])
                for player in stream.players
                if player.playing and track in player.channels
            ]
        length = len(payload).to_bytes(2, "big")
        for player, player_channel in targets:
            player.send(b"$" + bytes([player_channel]) + length + payload)

    # -- methods ----------------------------------------------------------------------------------------

    def _handle(self, connection: Connection, request: Request) -> Response:
        session = request.headers.get("session", "").split(";")[0].strip()
        if session and session != connection.session:
            return Response(454)
        if request.method == "OPTIONS":
            return Response(200, {"Public": PUBLIC})
        if request.method == "GET_PARAMETER":
            return Response(200)  # a keep-alive; no parameters to report
        handler = {
            "ANNOUNCE": self._announce,
            "DESCRIBE": self._describe,
            "SETUP": self._setup,
            "PLAY": self._play,
            "RECORD": self._record,
            "TEARDOWN": self._teardown,
        }.get(request.method)
        if handler is None:
            return Response(501, {"Public": PUBLIC})
        with self._lock:
            return handler(connection, request)

    def _path(self, url: str) -> str:
        return urlsplit(url).path.strip("/")

    def _recording(self, path: str) -> Stream | None:
        stream = self._streams.get(path)
        return stream if stream is not None and stream.recording else None

    def _announce(self, connection: Connection, request: Request) -> Response:
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/sdp":
            return Response(415)
        path = self._path(request.url)
        if path in self._streams or connection.stream is not None:
            return Response(455)  # the path has a publisher already, or this connection is busy
        sdp = request.body
        connection.stream = Stream(path, sdp, media_controls(sdp.decode("utf-8", "replace")), connection)
        self._streams[path] = connection.stream
        return Response(200)

    def _describe(self, connection: Connection, request: Request) -> Response:
        path = self._path(request.url)
        stream = self._recording(path)
        if stream is None:
            return Response(404)
        headers = {"Content-Type": "application/sdp", "Content-Base": f"{self.url(path)}/"}
        return Response(200, headers, stream.sdp)

    def _track(self, stream: Stream, url: str) -> int | None:
        """The track a SETUP URL names, by its control URL relative to the stream's Content-Base."""
        path = self._path(url)
        base = f"{self.url(stream.path)}/"
        for track, control in enumerate(stream.controls):
            if self._path(urljoin(base, control)) == path:
                return track
        return 0 if path == stream.path and len(stream.controls) == 1 else None

    def _setup(self, connection: Connection, request: Request) -> Response:
        transport = interleaved_transport(request.headers.get("transport", ""))
        if transport is None:
            return Response(461)  # UDP: RTP goes inside this TCP connection here
        channels, record = transport
        stream = connection.stream
        if stream is None:  # a player's first SETUP picks the stream: the longest published prefix
            path = self._path(request.url)
            published = [s for s in self._streams.values() if s.recording]
            matches = [s for s in published if path_in_stream(path, s)]
            stream = max(matches, key=lambda s: len(s.path), default=None)
            if stream is None:
                return Response(404)
        elif not path_in_stream(self._path(request.url), stream):
            return Response(459)  # one stream per session
        publisher = stream.publisher is connection
        if record != publisher or (publisher and stream.recording) or connection.playing:
            return Response(455)
        track = self._track(stream, request.url)
        if track is None:
            return Response(404)
        if channels is None:  # the client left the channels to us: the next free pair
            used = [channel for pair in connection.channels.values() for channel in pair]
            low = max(used, default=-1) + 1
            channels = (low + low % 2, low + low % 2 + 1)
        if publisher:
            stream.channels[channels[0]] = (track, 0)
            stream.channels[channels[1]] = (track, 1)
        else:
            stream.players.add(connection)
        connection.stream = stream
        connection.channels[track] = channels
        connection.session = connection.session or secrets.token_hex(8)
        mode = ";mode=record" if record else ""
        return Response(
            200, {"Transport": f"RTP/AVP/TCP;unicast;interleaved={channels[0]}-{channels[1]}{mode}"}
        )

    def _play(self, connection: Connection, request: Request) -> Response:
        if connection.session is None:
            return Response(454)
        stream = connection.stream
        if stream is None or stream.publisher is connection or not connection.channels:
            return Response(455)
        return Response(200, {"Range": "npt=now-"})

    def _record(self, connection: Connection, request: Request) -> Response:
        if connection.session is None:
            return Response(454)
        stream = connection.stream
        if stream is None or stream.publisher is not connection or not stream.channels:
            return Response(455)
        stream.recording = True
        self._lock.notify_all()
        return Response(200)

    def _teardown(self, connection: Connection, request: Request) -> Response:
        if connection.session is None:
            return Response(454)
        stream = connection.stream
        if stream is not None and stream.publisher is connection:
            if self._streams.get(stream.path) is stream:
                del self._streams[stream.path]
            for player in stream.players if self.drop_players else ():
                player.close_socket()
        elif stream is not None:
            stream.players.discard(connection)
        connection.stream = None
        connection.channels = {}
        connection.playing = False
        connection.session = None
        return Response(200)


def path_in_stream(path: str, stream: Stream) -> bool:
    return path == stream.path or path.startswith(f"{stream.path}/")
