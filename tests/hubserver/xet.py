"""The Xet transport: token routes, the content-addressed store (CAS) and its read API.

How huggingface_hub 2.4 + hf_xet 1.8 talk to it (read in their sources, checked by running):

* Upload. The client alone decides to use Xet (hf_xet importable, ``HF_HUB_DISABLE_XET``
  unset): preupload carries nothing about it. hf_xet calls
  ``GET /api/{type}s/{repo}/xet-write-token/{rev}[?create_pr=1]`` with the Hub token and
  reads the JSON ``{"accessToken", "exp", "casUrl"}``. Here ``casUrl`` is
  ``local://<storage>/xet-cas``: hf_xet's local storage mode, in which the client itself
  writes xorbs (compressed chunk containers) and shards (file reconstructions: per file its
  segments, ``sha256`` in a metadata extension) into that folder. The NDJSON commit then
  names each file by sha256 and size only; the server finds the Xet hash by parsing the
  shards, as the Hub learns it from the shards it receives.
* Download. ``HEAD .../resolve/{rev}/{path}`` answers ``X-Xet-Hash``, ``X-Linked-Size`` and
  ``Link: <.../xet-read-token/{commit}>; rel="xet-auth"``. That route answers the same JSON
  plus ``X-Xet-Cas-Url``, ``X-Xet-Access-Token``, ``X-Xet-Token-Expiration`` headers (read by
  huggingface_hub; hf_xet reads the JSON). Its ``casUrl`` is this server's ``/_xet``: a
  small HTTP CAS with the Hub CAS's read API, ``GET /_xet/v1|v2/reconstructions/{hash}``
  (optional ``Range``; Bearer CAS token) returning terms and pre-signed
  ``/_xet/xorbs/{hash}?...&sig=`` URLs that hf_xet fetches with ``Range`` requests.

Why reads go over HTTP and not through ``local://``: (1) every xorb byte a client reads
passes here, so ``download_bytes_sent`` is measured, per repo (the CAS token names it), not
estimated; (2) hf_xet's local mode holds an exclusive lock (redb) on the folder while an
upload or download group is alive in a process: a second process opening it fails with
"Database already open", measured with hf_xet 1.8. Only uploading clients open the folder;
this server never does, it reads the xorb and shard files directly.

Plain HTTP reads of Xet files (``GET .../resolve`` with or without ``Range``, which
HfFileSystem and datasets' streaming use) go through a bridge, as the Hub's CAS bridge does:
the server runs hf_xet itself against its own ``/_xet`` with a "bridge" token; those
internal requests are neither logged, faulted nor counted (the resolve reply is).

Upload accounting: the folder is scanned (on a write-token request, a commit and a stats
read); new xorb and shard files are counted for the repo whose write token was issued last
(one shared CAS, as on the Hub; concurrent uploads to two repos would be mixed up).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import stat
import struct
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from .protocol import HubError, Reply, Request, json_reply, parse_range

if TYPE_CHECKING:
    from .hub import Hub

TOKEN_TTL = 3600
ENTRY = 48  # every shard record (file header/segment/verification/metadata, xorb entry)
BOOKEND = b"\xff" * 32
FLAG_VERIFICATION = 1 << 31
FLAG_METADATA_EXT = 1 << 30
CHUNK_HEADER = 8  # version u8, compressed length u24, scheme u8, uncompressed length u24
LZ4_FRAME_MAGIC = 0x184D2204


def merkle_hex(raw: bytes) -> str:
    """Xet's hex form of a 32-byte hash: four little-endian u64 words, each as 16 hex digits
    (``DataHash::hex`` in xet-core); file, xorb and sha256 fields all use it."""
    return "".join(f"{w:016x}" for w in struct.unpack("<4Q", raw))


@dataclass(frozen=True)
class Segment:
    """A run of chunks ``[start, end)`` of one xorb, ``unpacked`` bytes once decompressed."""

    xorb: str
    unpacked: int
    start: int
    end: int


@dataclass(frozen=True)
class XetFile:
    hash: str
    sha256: str | None
    segments: tuple[Segment, ...]

    @property
    def size(self) -> int:
        return sum(s.unpacked for s in self.segments)


@dataclass(frozen=True)
class Shard:
    files: list[XetFile]
    xorbs: list[str]  # xorbs described by this shard (new in that upload)


def parse_shard(data: bytes) -> Shard:
    """The file-info and xorb-info sections of a shard (``MDBShardInfo`` in xet-core):
    a 48-byte header, then records of 48 bytes each, sections closed by an all-ones hash;
    the footer (its size is in the header) gives the xorb section's offset."""
    if data[:14] != b"HFRepoMetaData":
        raise ValueError("not a Xet shard (bad header tag)")
    footer_size = struct.unpack_from("<Q", data, 40)[0]
    _version, file_offset, xorb_offset = struct.unpack_from("<QQQ", data, len(data) - footer_size)
    files, pos = [], file_offset
    while (head := data[pos:pos + 32]) != BOOKEND:
        flags, count = struct.unpack_from("<II", data, pos + 32)
        pos += ENTRY
        segments = []
        for _ in range(count):
            _xorb_flags, unpacked, start, end = struct.unpack_from("<IIII", data, pos + 32)
            segments.append(Segment(merkle_hex(data[pos:pos + 32]), unpacked, start, end))
            pos += ENTRY
        if flags & FLAG_VERIFICATION:
            pos += ENTRY * count
        sha256 = None
        if flags & FLAG_METADATA_EXT:
            sha256 = merkle_hex(data[pos:pos + 32])
            pos += ENTRY
        files.append(XetFile(merkle_hex(head), sha256, tuple(segments)))
    xorbs, pos = [], xorb_offset
    while (head := data[pos:pos + 32]) != BOOKEND:
        count = struct.unpack_from("<I", data, pos + 36)[0]
        xorbs.append(merkle_hex(head))
        pos += ENTRY * (1 + count)
    return Shard(files, xorbs)


@dataclass
class XorbIndex:
    """Where each chunk of a xorb file starts (``offsets``, one more for the end of the last
    chunk) and its uncompressed length; read from the chunk headers, stopping at the footer
    (whose "XETBLOB" tag is no chunk header version)."""

    offsets: list[int] = field(default_factory=list)
    unpacked: list[int] = field(default_factory=list)
    schemes: list[int] = field(default_factory=list)

    @classmethod
    def read(cls, path: Path) -> XorbIndex:
        index, pos = cls(), 0
        with path.open("rb") as f:
            while len(head := f.read(CHUNK_HEADER)) == CHUNK_HEADER and head[0] == 0:
                compressed = int.from_bytes(head[1:4], "little")
                index.offsets.append(pos)
                index.schemes.append(head[4])
                index.unpacked.append(int.from_bytes(head[5:8], "little"))
                pos += CHUNK_HEADER + compressed
                f.seek(pos)
        index.offsets.append(pos)
        return index


@dataclass
class Scan:
    """New files found in the CAS folder since the previous scan."""

    xorbs: list[tuple[str, int]] = field(default_factory=list)  # (hash, bytes)
    shards: list[tuple[str, int]] = field(default_factory=list)  # (hash, bytes)
    files: list[XetFile] = field(default_factory=list)  # files new to the CAS


class XetCas:
    """The CAS folder hf_xet writes in local mode (``<root>/xet/xorbs/{xorbs,shards}``), read
    without hf_xet: shards parsed into a file index, xorb chunk offsets from their headers."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.xorb_dir = self.root / "xet" / "xorbs" / "xorbs"
        self.shard_dir = self.root / "xet" / "xorbs" / "shards"
        self.files: dict[str, XetFile] = {}
        self.by_sha256: dict[str, XetFile] = {}
        self._seen_xorbs: set[str] = set()
        self._seen_shards: set[str] = set()
        self._indexes: dict[str, XorbIndex] = {}
        self._lock = threading.Lock()
        self.scan()  # what was there before this server started is nobody's upload

    @property
    def url(self) -> str:
        return f"local://{self.root}"

    def xorb_path(self, xorb: str) -> Path:
        return self.xorb_dir / f"default.{xorb}"

    def scan(self) -> Scan:
        """Index shards and xorbs that appeared since the last scan. hf_xet writes both
        atomically (temporary file, then rename), so a listed name is complete."""
        found = Scan()
        with self._lock:
            for path in sorted(self.xorb_dir.glob("default.*")) if self.xorb_dir.is_dir() else []:
                name = path.name.removeprefix("default.")
                if len(name) == 64 and name not in self._seen_xorbs:
                    self._seen_xorbs.add(name)
                    found.xorbs.append((name, path.stat().st_size))
            for path in sorted(self.shard_dir.glob("*.mdb")) if self.shard_dir.is_dir() else []:
                if path.stem in self._seen_shards:
                    continue
                data = path.read_bytes()
                shard = parse_shard(data)
                for xet_file in shard.files:
                    if xet_file.hash not in self.files:
                        found.files.append(xet_file)
                    self.files[xet_file.hash] = xet_file
                    if xet_file.sha256:
                        self.by_sha256[xet_file.sha256] = xet_file
                self._seen_shards.add(path.stem)
                found.shards.append((path.stem, len(data)))
        return found

    def find(self, sha256: str, size: int | None) -> XetFile | None:
        """The uploaded file with this content, if its shard was indexed by a scan."""
        found = self.by_sha256.get(sha256)
        return found if found is not None and size in (None, found.size) else None

    def index(self, xorb: str) -> XorbIndex:
        if xorb not in self._indexes:
            path = self.xorb_path(xorb)
            if not path.is_file():
                raise HubError(404, f"Xorb {xorb} is not in the CAS", "XorbNotFound")
            self._indexes[xorb] = XorbIndex.read(path)
        return self._indexes[xorb]

    def reconstruction(
        self, f: XetFile, start: int, end: int
    ) -> tuple[int, list[dict[str, Any]], dict[str, list[tuple[int, int, int, int]]]]:
        """Terms covering file bytes ``[start, end)`` and, per xorb, the merged
        ``(chunk start, chunk end, byte start, byte end)`` ranges to fetch (end-exclusive);
        plus the offset of ``start`` in the first term. Follows xet-core's
        ``compute_reconstruction_ranges`` (the reference CAS)."""
        segments, s_idx, done = f.segments, 0, 0
        while done + segments[s_idx].unpacked <= start:
            done += segments[s_idx].unpacked
            s_idx += 1
        first_term_start = done
        terms: list[dict[str, Any]] = []
        wanted: dict[str, list[list[int]]] = defaultdict(list)
        while s_idx < len(segments) and done < end:
            seg = segments[s_idx]
            index = self.index(seg.xorb)
            first, last, unpacked = seg.start, seg.end, seg.unpacked
            while done < start and first < last and done + index.unpacked[first] <= start:
                done += index.unpacked[first]
                first_term_start += index.unpacked[first]
                unpacked -= index.unpacked[first]
                first += 1
            while last > first and done + unpacked - index.unpacked[last - 1] >= end:
                unpacked -= index.unpacked[last - 1]
                last -= 1
            terms.append({"hash": seg.xorb, "unpacked_length": unpacked,
                          "range": {"start": first, "end": last}})
            wanted[seg.xorb].append([first, last, index.offsets[first], index.offsets[last]])
            done += unpacked
            s_idx += 1
        merged: dict[str, list[tuple[int, int, int, int]]] = {}
        for xorb, ranges in wanted.items():
            ranges.sort()
            out = [ranges[0]]
            for r in ranges[1:]:
                if r[0] <= out[-1][1]:
                    out[-1][1], out[-1][3] = max(out[-1][1], r[1]), max(out[-1][3], r[3])
                else:
                    out.append(r)
            merged[xorb] = [(a, b, c, d) for a, b, c, d in out]
        return start - first_term_start, terms, merged

    def corrupt(self, f: XetFile) -> None:
        """Change one byte of the stored content of ``f`` without changing its size: a data
        byte of its first raw chunk, or the first literal of an LZ4-compressed chunk (hf_xet
        checks no chunk hash when reading, so the damage reaches the reader)."""
        for seg in f.segments:
            index, path = self.index(seg.xorb), self.xorb_path(seg.xorb)
            path.chmod(path.stat().st_mode | stat.S_IWUSR)  # hf_xet may store it read-only
            for chunk in range(seg.start, seg.end):
                data_at = index.offsets[chunk] + CHUNK_HEADER
                with path.open("r+b") as xorb:
                    xorb.seek(data_at)
                    data = xorb.read(index.offsets[chunk + 1] - data_at)
                    spot = _mutable_byte(data, index.schemes[chunk])
                    if spot is not None:
                        xorb.seek(data_at + spot)
                        xorb.write(bytes([data[spot] ^ 0xFF]))
                        return
        raise ValueError(f"found no byte to corrupt in Xet file {f.hash}")


def _mutable_byte(data: bytes, scheme: int) -> int | None:
    """Offset of a byte that decodes to one output byte: any byte of a raw chunk; in an LZ4
    frame (``lz4_flex::frame``) the first byte of a stored block or the first literal of a
    compressed block."""
    if scheme == 0:
        return 0 if data else None
    if len(data) < 11 or struct.unpack_from("<I", data)[0] != LZ4_FRAME_MAGIC:
        return None
    flg = data[4]
    pos = 7 + (8 if flg & 0x08 else 0) + (4 if flg & 0x01 else 0)  # magic, FLG, BD, HC
    block_size = struct.unpack_from("<I", data, pos)[0]
    pos += 4
    if block_size & 0x80000000:  # stored uncompressed
        return pos if block_size & 0x7FFFFFFF else None
    literals = data[pos] >> 4
    pos += 1
    if literals == 15:
        while data[pos] == 255:
            pos += 1
        pos += 1
    return pos if literals else None


# -- tokens ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class CasGrant:
    """What a CAS token or a pre-signed xorb URL allows: ``role`` is "read", "write" or
    "bridge" (the server's own reads), for one repo until ``expires``."""

    role: str
    repo_type: str
    repo_id: str
    expires: int


class CasSigner:
    """HMAC-signed CAS tokens and xorb URLs (valid for this server process)."""

    def __init__(self) -> None:
        self._secret = os.urandom(32)

    def _sign(self, payload: str) -> str:
        return hmac.new(self._secret, payload.encode(), hashlib.sha256).hexdigest()

    def token(self, role: str, repo_type: str, repo_id: str) -> tuple[str, int]:
        expires = int(time.time()) + TOKEN_TTL
        payload = base64.urlsafe_b64encode(
            json.dumps([role, repo_type, repo_id, expires]).encode()).decode()
        return f"{payload}.{self._sign(payload)}", expires

    def grant(self, authorization: str | None) -> CasGrant:
        """The grant of a ``Bearer`` CAS token; 401 if missing, forged or expired."""
        scheme, _, token = (authorization or "").partition(" ")
        payload, _, sig = token.strip().partition(".")
        if scheme.lower() != "bearer" or not hmac.compare_digest(sig, self._sign(payload)):
            raise HubError(401, "Invalid or missing CAS access token")
        grant = CasGrant(*json.loads(base64.urlsafe_b64decode(payload)))
        if grant.expires < time.time():
            raise HubError(401, "CAS access token expired")
        return grant

    def xorb_query(self, grant: CasGrant, xorb: str) -> str:
        fields = [grant.role, grant.repo_type, grant.repo_id, str(grant.expires)]
        signed = dict(zip(("role", "repo_type", "repo_id", "expires"), fields, strict=True))
        return urlencode({**signed, "sig": self._sign(":".join([xorb, *fields]))})

    def xorb_grant(self, req: Request, xorb: str) -> CasGrant:
        """The grant of a pre-signed xorb URL; 403 (the client then asks for new URLs) if it
        is forged or expired, as storage answers for a bad pre-signed URL."""
        fields = [req.arg("role"), req.arg("repo_type"), req.arg("repo_id"), req.arg("expires")]
        if (not hmac.compare_digest(req.arg("sig"), self._sign(":".join([xorb, *fields])))
                or not fields[3].isdigit() or int(fields[3]) < time.time()):
            raise HubError(403, "Invalid or expired signature")
        return CasGrant(fields[0], fields[1], fields[2], int(fields[3]))


# -- routes -----------------------------------------------------------------------------------


def token_route(hub: Hub, req: Request, role: str) -> Reply:
    """``xet-write-token`` / ``xet-read-token``: JSON for hf_xet, headers for huggingface_hub."""
    if not hub.xet_enabled:
        raise HubError(404, "Xet storage is not enabled on this server")
    if role == "write":
        repo, _ = hub.writable_repo(req)
        with hub.store.lock:
            if req.flag("create_pr") or req.route.revision == "None":
                repo.resolve("main" if req.route.revision == "None" else req.route.revision or "")
            else:
                repo.writable_ref(req.route.revision)
        hub.collect_xet_uploads(next_writer=(repo.repo_type, repo.repo_id))
        cas_url = hub.cas.url
    else:
        repo = hub.readable_repo(req)
        with hub.store.lock:
            repo.resolve(req.route.revision or "main")
        cas_url = hub.cas_http_url
    token, expires = hub.signer.token(role, repo.repo_type, repo.repo_id)
    headers = {"X-Xet-Cas-Url": cas_url, "X-Xet-Access-Token": token,
               "X-Xet-Token-Expiration": str(expires)}
    return json_reply({"accessToken": token, "exp": expires, "casUrl": cas_url}, headers=headers)


def write_token(hub: Hub, req: Request) -> Reply:
    return token_route(hub, req, "write")


def read_token(hub: Hub, req: Request) -> Reply:
    return token_route(hub, req, "read")


def reconstruction(hub: Hub, req: Request) -> Reply:
    """``GET /_xet/{v1,v2}/reconstructions/{file hash}`` (optional ``Range``)."""
    grant = hub.signer.grant(req.headers.get("Authorization"))
    f = hub.cas.files.get(req.route.path)
    if f is None:
        hub.collect_xet_uploads()
        f = hub.cas.files.get(req.route.path)
    if f is None:
        raise HubError(404, f"File {req.route.path} is not in the CAS", "FileNotFound")
    rng = parse_range(req.headers.get("Range"), f.size) if f.size else None
    start, end = (rng[0], rng[1] + 1) if rng else (0, f.size)
    offset, terms, fetches = hub.cas.reconstruction(f, start, end) if f.size else (0, [], {})

    def url(xorb: str) -> str:
        return f"{hub.cas_http_url}/xorbs/{xorb}?{hub.signer.xorb_query(grant, xorb)}"

    if req.route.name == "cas_reconstruction_v1":
        fetch_info = {x: [{"range": {"start": a, "end": b}, "url": url(x),
                           "url_range": {"start": c, "end": d - 1}} for a, b, c, d in ranges]
                      for x, ranges in fetches.items()}
        return json_reply({"offset_into_first_range": offset, "terms": terms,
                           "fetch_info": fetch_info})
    # v2: one single-range fetch per merged range, so no multipart answer is ever needed.
    xorbs = {x: [{"url": url(x), "ranges": [{"chunks": {"start": a, "end": b},
                                             "bytes": {"start": c, "end": d - 1}}]}
                 for a, b, c, d in ranges] for x, ranges in fetches.items()}
    return json_reply({"offset_into_first_range": offset, "terms": terms, "xorbs": xorbs})


def xorb(hub: Hub, req: Request) -> Reply:
    """``GET /_xet/xorbs/{hash}?<signed>`` with a single ``Range``: raw xorb bytes, which the
    client decompresses. Bytes sent to clients count as ``download_bytes_sent`` (and
    ``xet_xorb_bytes_sent``) of the repo in the signature; the bridge's are internal."""
    grant = hub.signer.xorb_grant(req, req.route.path)
    path = hub.cas.xorb_path(req.route.path)
    if not path.is_file():
        raise HubError(404, f"Xorb {req.route.path} is not in the CAS")
    total = path.stat().st_size
    start, end = parse_range(req.headers.get("Range"), total) or (0, total - 1)
    headers = {"Content-Type": "application/octet-stream", "Accept-Ranges": "bytes",
               "Content-Range": f"bytes {start}-{end}/{total}"}
    counters = () if grant.role == "bridge" else ("download_bytes_sent", "xet_xorb_bytes_sent")
    req.route.repo_type, req.route.repo_id = grant.repo_type, grant.repo_id
    return Reply(206 if req.headers.get("Range") else 200, headers=headers, file=path,
                 start=start, length=end - start + 1, counters=counters)


def is_internal(hub: Hub, req: Request) -> bool:
    """A request of the server's own bridge (the Hub's internal traffic)."""
    try:
        if req.route.name == "cas_xorb":
            return hub.signer.xorb_grant(req, req.route.path).role == "bridge"
        if req.route.name.startswith("cas_reconstruction"):
            return hub.signer.grant(req.headers.get("Authorization")).role == "bridge"
    except (HubError, ValueError, TypeError):
        pass
    return False


# -- bridge: plain HTTP reads of Xet files ---------------------------------------------------


class XetBridge:
    """Serve byte ranges of a Xet file over plain HTTP: hf_xet, in this process, reads them
    from the server's own ``/_xet`` with a bridge token (hf_xet, not Python, decompresses)."""

    def __init__(self, hub: Hub) -> None:
        self._hub = hub
        self._session: Any = None
        self._lock = threading.Lock()

    def _get_session(self) -> Any:
        with self._lock:
            if self._session is None:
                import hf_xet

                self._session = hf_xet.XetSession()
            return self._session

    def stream(self, repo_type: str, repo_id: str, f: XetFile, start: int,
               end: int) -> Iterator[bytes]:
        """Bytes ``[start, end]`` (inclusive) of ``f``."""
        import hf_xet

        token, expires = self._hub.signer.token("bridge", repo_type, repo_id)
        group = self._get_session().new_download_stream_group(
            endpoint=self._hub.cas_http_url, token=token, token_expiry_unix_secs=expires)
        yield from group.download_stream(hf_xet.XetFileInfo(f.hash, f.size), start=start,
                                         end=end + 1)
