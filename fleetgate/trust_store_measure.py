"""What a TLS trust store of many X.509 device credentials costs, kept as the device listeners
keep it (protocols.tls: a hashed directory OpenSSL reads by subject), against the in-memory
store it replaced: start-up, adding one, removing one, handshakes, memory and disk.

    python -m fleetgate.trust_store_measure [--counts 10000,100000] [--handshakes 200]
                                              [--baseline-max 10000]

For each count N: N self-signed device certificates (ThingsBoard's X509_CERTIFICATE credentials,
P-256, made here with one key to save time: the store does not care). The baseline, for N up to
--baseline-max (it grows faster than N², 202 s at 30,000): a context with all N loaded in memory
(what every start and every removal cost before). Then the listeners' own DeviceTls, imported:
this measures a component in process, not the gateway over the wire (which is why it lives beside
the composition root, not in the simulator), because what is measured is OpenSSL's store. Timed: the start (every credential hashed and
written, the context built), adding one credential (median of 20), removing one (the directory
given all but one and the context rebuilt, median of 5; the database read aside), full handshakes
in memory (no sockets) by distinct devices spread over the store, first (the anchor read from its
file) and again (read from the store's cache). Memory: the resident growth of the start, and of
the handshakes per connection held (their anchors read into the store included); disk: the
directory's blocks.
"""

from __future__ import annotations

import argparse
import ctypes
import datetime
import gc
import os
import ssl
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from fleetgate.protocols.tls import DeviceTls

_PAGE = os.sysconf("SC_PAGE_SIZE")
_LIBC = ctypes.CDLL(None)  # glibc's malloc_trim


def rss() -> int:
    """The resident memory, once what was freed is handed back (or freed memory would be reused
    and growth not show)."""
    gc.collect()
    _LIBC.malloc_trim(0)
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * _PAGE


def certificates(count: int, key: ec.EllipticCurvePrivateKey) -> list[bytes]:
    now = datetime.datetime.now(datetime.timezone.utc)
    made = []
    for n in range(count):
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"device-{n}")])
        made.append(
            x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(n + 1).not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(days=365)).sign(key, hashes.SHA256())
            .public_bytes(serialization.Encoding.DER))
    return made


def pem_files(directory: Path, stem: str, der: bytes, key: ec.EllipticCurvePrivateKey) -> tuple[str, str]:
    cert, key_file = directory / f"{stem}.pem", directory / f"{stem}.key"
    cert.write_text(ssl.DER_cert_to_PEM_cert(der))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert), str(key_file)


def in_memory_context(cert: str, key: str, anchors: list[bytes]) -> ssl.SSLContext:
    """The baseline: every anchor loaded into the store up front, as before."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    context.verify_mode = ssl.CERT_OPTIONAL
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    context.load_verify_locations(cadata=b"".join(anchors))
    return context


def handshake(server: ssl.SSLContext, client: ssl.SSLContext) -> ssl.SSLObject:
    pipes = [ssl.MemoryBIO() for _ in range(4)]
    ours = server.wrap_bio(pipes[0], pipes[1], server_side=True)
    theirs = client.wrap_bio(pipes[2], pipes[3])
    for _ in range(6):
        for side in (theirs, ours):
            try:
                side.do_handshake()
            except ssl.SSLWantReadError:
                pass
        pipes[0].write(pipes[3].read())
        pipes[2].write(pipes[1].read())
    if ours.getpeercert(binary_form=True) is None:
        raise RuntimeError("the device's certificate was not accepted")
    return ours


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def measure(count: int, handshakes: int, baseline_max: int, directory: Path, store_in: str | None) -> dict[str, float]:
    key = ec.generate_private_key(ec.SECP256R1())
    anchors = certificates(count + 21, key)
    extras, anchors = anchors[count:], anchors[:count]
    server_cert, server_key = pem_files(directory, "server", certificates(1, key)[0], key)
    result: dict[str, float] = {"anchors": count}
    if count <= baseline_max:
        before = rss()
        started = time.perf_counter()
        baseline = in_memory_context(server_cert, server_key, anchors)
        result["baseline_ms"] = (time.perf_counter() - started) * 1000
        result["baseline_mib"] = (rss() - before) / 2**20
        del baseline
    before = rss()
    store = Path(tempfile.mkdtemp(prefix="trust-store-anchors-", dir=store_in))
    tls = DeviceTls(server_cert, server_key, anchors_in=str(store))
    result["start_ms"] = timed(lambda: tls.set_anchors([], anchors)) * 1000
    result["start_mib"] = (rss() - before) / 2**20
    adds = [timed(lambda: tls.add_anchors([], [one])) for one in extras[:20]]
    result["add_ms"] = statistics.median(adds) * 1000
    # A removal: the directory given every anchor but one, then one rebuild (the database read aside).
    kept = anchors + extras[:20]
    removes = []
    for n in range(5):
        kept = kept[:n] + kept[n + 1:]
        removes.append(timed(lambda: tls.set_anchors([], kept)))
    result["remove_ms"] = statistics.median(removes) * 1000
    # Handshakes by distinct devices, spread over the store: each one's anchor read from its file.
    step = max(1, len(kept) // handshakes)
    devices = [pem_files(directory, f"device-{n}", kept[n * step % len(kept)], key) for n in range(handshakes)]
    clients = []
    for cert, device_key in devices:
        client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        client.check_hostname, client.verify_mode = False, ssl.CERT_NONE
        client.load_cert_chain(cert, device_key)
        clients.append(client)
    held, first, again = [], [], []
    before = rss()
    for client in clients:
        started = time.perf_counter()
        held.append(handshake(tls.context, client))
        first.append(time.perf_counter() - started)
    result["handshake_kib"] = (rss() - before) / handshakes / 1024
    for client in clients:
        again.append(timed(lambda: handshake(tls.context, client)))
    result["first_ms"] = statistics.median(first) * 1000
    result["again_ms"] = statistics.median(again) * 1000
    result["disk_mib"] = sum(f.stat().st_blocks * 512 for f in store.rglob("*") if f.is_file()) / 2**20
    tls.close()
    store.rmdir()
    return result


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m fleetgate.trust_store_measure",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--counts", default="10000,100000", help="anchor counts, comma-separated")
    parser.add_argument("--handshakes", type=int, default=200, help="full handshakes per count")
    parser.add_argument("--baseline-max", type=int, default=10000,
                        help="largest count the in-memory store is built for (it grows faster than N²)")
    parser.add_argument("--store-in", help="the directory the credentials' directory is made in "
                        "(the temporary directory if not given; its file system sets the start time)")
    args = parser.parse_args(argv)
    print("| X.509 credentials | before: in-memory store (every start and removal) | start | add one | "
          "remove one (rebuild) | first handshake of a device (CPU, both sides) | again (cached) | "
          "memory: before / start / per handshake held | disk |")
    print("|---|---|---|---|---|---|---|---|---|")
    for count in (int(n) for n in args.counts.split(",")):
        with tempfile.TemporaryDirectory(prefix="trust-store-") as directory:
            r = measure(count, args.handshakes, args.baseline_max, Path(directory), args.store_in)
        baseline = f"{r['baseline_ms']:.0f} ms" if "baseline_ms" in r else "not built"
        before = f"{r['baseline_mib']:.0f} MiB" if "baseline_mib" in r else "-"
        print(f"| {count:,} | {baseline} | {r['start_ms']:.0f} ms | {r['add_ms']:.2f} ms | {r['remove_ms']:.0f} ms | "
              f"{r['first_ms']:.2f} ms | {r['again_ms']:.2f} ms | {before} / {r['start_mib']:.0f} MiB / "
              f"{r['handshake_kib']:.0f} KiB | {r['disk_mib']:.1f} MiB |", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
