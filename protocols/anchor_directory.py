"""Trust anchors as a hashed directory, which OpenSSL reads lazily (``capath``).

OpenSSL's X509_LOOKUP_hash_dir finds a certificate by its subject: it reads the files
``{subject_hash:08x}.0``, ``.1``... of the directory while a chain is built, and keeps
what it read in the context's store. Nothing is read up front, so a store of any size
costs nothing to build, and adding an anchor is writing one file. The lookup stops at
the first missing suffix, so a removal moves the bucket's last file into the gap.

A process that dies without deleting its directory leaves it behind: each one holds a lock
on its own, and the next one made in the same place deletes those whose lock is free.

Two limits follow from the store's cache, which the owner handles by handing new
handshakes a fresh context: an anchor once read stays trusted by that store after its
file is gone, and a store that has read a subject does not look for it again, so a
second certificate added under a subject hash already present is not found by it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import shutil
import ssl
import tempfile
import weakref
from collections.abc import Iterable
from dataclasses import dataclass

log = logging.getLogger(__name__)

# The string types OpenSSL canonicalises (ASN1_MASK_CANON) and how each one's bytes
# read as characters (ASN1_STRING_to_UTF8: one-byte types are Latin-1 to it).
_TEXT = {0x0C: "utf-8", 0x13: "latin-1", 0x14: "latin-1", 0x16: "latin-1", 0x1A: "latin-1",
         0x1E: "utf-16-be", 0x1C: "utf-32-be"}
_SPACE = b" \t\n\v\f\r"


def _tlv(der: bytes, at: int) -> tuple[int, int, int]:
    """The tag, the start of the contents and the end of the element at ``at``."""
    tag, length, at = der[at], der[at + 1], at + 2
    if length & 0x80:
        size = length & 0x7F
        length, at = int.from_bytes(der[at:at + size], "big"), at + size
    if at + length > len(der):
        raise ValueError("a DER element runs past the end")
    return tag, at, at + length


def _children(der: bytes, start: int, end: int) -> list[tuple[int, int, int, int]]:
    """(tag, element start, contents start, end) of each element between start and end."""
    found = []
    while start < end:
        tag, body, after = _tlv(der, start)
        found.append((tag, start, body, after))
        start = after
    return found


def _header(tag: int, length: int) -> bytes:
    if length < 0x80:
        return bytes((tag, length))
    size = (length.bit_length() + 7) // 8
    return bytes((tag, 0x80 | size)) + length.to_bytes(size, "big")


def _canonical_text(text: bytes) -> bytes:
    """OpenSSL's asn1_string_canon on UTF-8: ASCII whitespace trimmed and each run made one
    space, ASCII letters lowercased, every other byte kept."""
    text = text.strip(_SPACE)
    out = bytearray()
    for byte in text:
        if byte in _SPACE:
            if out[-1:] != b" ":
                out.append(0x20)
        else:
            out.append(byte + 32 if 0x41 <= byte <= 0x5A else byte)
    return bytes(out)


def _canonical_value(der: bytes, tag: int, start: int, body: int, end: int) -> bytes:
    encoding = _TEXT.get(tag)
    if encoding is None:  # not a string OpenSSL canonicalises: kept as encoded
        return der[start:end]
    utf8 = _canonical_text(der[body:end].decode(encoding).encode("utf-8"))
    return _header(0x0C, len(utf8)) + utf8


def name_hash(name_der: bytes) -> int:
    """OpenSSL's X509_NAME_hash (``openssl x509 -subject_hash``) of a DER Name: the first four
    bytes, little-endian, of the SHA-1 of its canonical encoding, every RDN a SET of its
    attributes with their strings canonicalised, the outer SEQUENCE's header left out."""
    tag, body, end = _tlv(name_der, 0)
    if tag != 0x30:
        raise ValueError("not a DER Name")
    canonical = bytearray()
    for _, _, rdn_body, rdn_end in _children(name_der, body, end):
        entries = []
        for _, _, pair_body, pair_end in _children(name_der, rdn_body, rdn_end):
            (_, oid_start, _, oid_end), (value_tag, value_start, value_body, value_end) = \
                _children(name_der, pair_body, pair_end)
            pair = name_der[oid_start:oid_end] + _canonical_value(
                name_der, value_tag, value_start, value_body, value_end)
            entries.append(_header(0x30, len(pair)) + pair)
        members = b"".join(sorted(entries))  # DER's SET OF order, which Python's for bytes is
        canonical += _header(0x31, len(members)) + members
    return int.from_bytes(hashlib.sha1(bytes(canonical)).digest()[:4], "little")


def subject_der(certificate_der: bytes) -> bytes:
    """The subject Name of a DER certificate, as encoded in it."""
    _, body, _ = _tlv(certificate_der, 0)  # Certificate
    tag, at, end = _tlv(certificate_der, body)  # TBSCertificate
    tag, _, end = _tlv(certificate_der, at)
    # [0] version, if there, then serialNumber, signature, issuer, validity: the subject follows
    for _ in range(4 if tag == 0xA0 else 3):
        at = end
        tag, _, end = _tlv(certificate_der, at)
    return certificate_der[end:_tlv(certificate_der, end)[2]]


def subject_hash(certificate_der: bytes) -> int:
    return name_hash(subject_der(certificate_der))


@dataclass(frozen=True, slots=True)
class Change:
    """What a change to the directory means for a store that may have read it already."""

    stale: bool  # a store that read the directory before must be replaced


_PREFIX, _LOCK = "fleetgate-anchors-", ".lock"


def _delete(path: str, lock: int, owner: int | None = None) -> None:
    if owner is not None and os.getpid() != owner:
        return  # a forked child exiting: the directory is its parent's
    shutil.rmtree(path, ignore_errors=True)
    os.close(lock)


def _delete_abandoned(parent: str) -> None:
    """Delete the directories whose process is gone (their lock is free)."""
    for entry in os.scandir(parent):
        if not entry.name.startswith(_PREFIX) or not entry.is_dir(follow_symlinks=False):
            continue
        try:
            lock = os.open(os.path.join(entry.path, _LOCK), os.O_RDONLY)
        except OSError:  # being made right now, or already deleted
            continue
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(lock)  # its process is alive
            continue
        _delete(entry.path, lock)


class AnchorDirectory:
    """A private directory (mode 0700: whoever writes in it is trusted) of PEM anchors named
    for OpenSSL's hashed lookup, one file per certificate."""

    def __init__(self, parent: str | None = None) -> None:
        parent = parent or tempfile.gettempdir()
        with contextlib.suppress(OSError):  # somebody else's to clean, then
            _delete_abandoned(parent)
        self.path = tempfile.mkdtemp(prefix=_PREFIX, dir=parent)
        lock = os.open(os.path.join(self.path, _LOCK), os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        # Deleted with this object, or at exit, when nobody closes it.
        self._finalizer = weakref.finalize(self, _delete, self.path, lock, os.getpid())
        self._files: dict[bytes, str] = {}  # SHA-256 of the DER -> its file's name
        self._buckets: dict[int, list[bytes]] = {}  # subject hash -> the DER digests at .0, .1...

    def __len__(self) -> int:
        return len(self._files)

    def add(self, certificates_der: Iterable[bytes]) -> Change:
        """Write the certificates not there yet; stale when one joins a subject hash already
        present (a store that read that subject would not look again)."""
        stale = False
        for der in certificates_der:
            digest = hashlib.sha256(der).digest()
            if digest in self._files:
                continue
            try:
                bucket_hash = subject_hash(der)
            except (ValueError, IndexError, UnicodeDecodeError) as exc:  # nor would OpenSSL read it
                log.warning("a trust anchor was left out, its subject did not parse: %s", exc)
                continue
            bucket = self._buckets.setdefault(bucket_hash, [])
            stale = stale or bool(bucket)
            name = f"{bucket_hash:08x}.{len(bucket)}"
            self._write(name, der)
            bucket.append(digest)
            self._files[digest] = name
        return Change(stale)

    def replace(self, certificates_der: Iterable[bytes]) -> Change:
        """Hold exactly these certificates: only the missing ones are written and only the
        others deleted. Stale when anything was deleted, or added under a present hash."""
        wanted = {hashlib.sha256(der).digest(): der for der in certificates_der}
        gone = [digest for digest in self._files if digest not in wanted]
        for digest in gone:
            self._remove(digest)
        added = self.add(der for digest, der in wanted.items() if digest not in self._files)
        return Change(bool(gone) or added.stale)

    def close(self) -> None:
        self._finalizer()
        self._files.clear()
        self._buckets.clear()

    def _write(self, name: str, der: bytes) -> None:
        # Not written aside and renamed: handshakes run on this thread, never amid a write,
        # and the directory is this process's alone.
        file = os.open(os.path.join(self.path, name), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(file, ssl.DER_cert_to_PEM_cert(der).encode("ascii"))
        finally:
            os.close(file)

    def _remove(self, digest: bytes) -> None:
        name = self._files.pop(digest)
        bucket_hash, suffix = int(name[:8], 16), int(name[9:])
        bucket = self._buckets[bucket_hash]
        last = bucket.pop()
        if last != digest:  # the lookup stops at the first gap: the last file fills it
            os.replace(os.path.join(self.path, f"{bucket_hash:08x}.{len(bucket)}"), os.path.join(self.path, name))
            bucket[suffix] = last
            self._files[last] = name
        else:
            os.remove(os.path.join(self.path, name))
        if not bucket:
            del self._buckets[bucket_hash]
