"""What a TLS trust store of many X.509 device credentials costs: a rebuild against an added
anchor, the store's memory, and a handshake's time and memory.

    python -m fleetgate.simulator.trust_store [--counts 10000,100000] [--handshakes 200]

For each count N: N self-signed device certificates (ThingsBoard's X509_CERTIFICATE credentials,
P-256, made here with one key to save time: the store does not care); a server context built as
the gateway's device listeners build theirs (TLS server, client certificate optional, partial
chains) with all N as anchors, timed (what every change cost before: a rebuild, the database read
aside); one more anchor added to that context in place, timed (what a new credential costs now);
the resident memory the N anchors take; full handshakes in memory (no sockets) by a device whose
certificate is one of the N, their time, and the memory each handshake's connection holds.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import os
import ssl
import statistics
import sys
import tempfile
import time
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

_PAGE = os.sysconf("SC_PAGE_SIZE")


def rss() -> int:
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


def server_context(cert: str, key: str, anchors: list[bytes]) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    context.verify_mode = ssl.CERT_OPTIONAL
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    if anchors:
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


def measure(count: int, handshakes: int, directory: Path) -> dict[str, float]:
    key = ec.generate_private_key(ec.SECP256R1())
    started = time.perf_counter()
    anchors = certificates(count + 1, key)
    made = time.perf_counter() - started
    extra = anchors.pop()
    server_cert, server_key = pem_files(directory, "server", certificates(1, key)[0], key)
    device_cert, device_key = pem_files(directory, "device", anchors[count // 2], key)
    gc.collect()
    before = rss()
    started = time.perf_counter()
    context = server_context(server_cert, server_key, anchors)
    rebuild = time.perf_counter() - started
    store = rss() - before
    adds = []
    for n in range(20):
        one = certificates(1, key)[0] if n else extra
        started = time.perf_counter()
        context.load_verify_locations(cadata=one)
        adds.append(time.perf_counter() - started)
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.check_hostname, client.verify_mode = False, ssl.CERT_NONE
    client.load_cert_chain(device_cert, device_key)
    times, held = [], []
    gc.collect()
    before = rss()
    for _ in range(handshakes):
        started = time.perf_counter()
        held.append(handshake(context, client))
        times.append(time.perf_counter() - started)
    per_handshake = (rss() - before) / handshakes
    return {"anchors": count, "made_s": made, "rebuild_ms": rebuild * 1000, "add_ms": statistics.median(adds) * 1000,
            "store_mib": store / 2**20, "handshake_ms": statistics.median(times) * 1000,
            "handshake_kib": per_handshake / 1024}


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m fleetgate.simulator.trust_store",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--counts", default="10000,100000", help="anchor counts, comma-separated")
    parser.add_argument("--handshakes", type=int, default=200, help="full handshakes per count")
    args = parser.parse_args(argv)
    print("| X.509 credentials | rebuild (before: every change) | add one (now: a new credential) | "
          "trust store memory | full handshake (CPU, both sides) | memory per handshake held |")
    print("|---|---|---|---|---|---|")
    for count in (int(n) for n in args.counts.split(",")):
        with tempfile.TemporaryDirectory(prefix="trust-store-") as directory:
            r = measure(count, args.handshakes, Path(directory))
        print(f"| {count:,} | {r['rebuild_ms']:.0f} ms | {r['add_ms']:.2f} ms | {r['store_mib']:.0f} MiB | "
              f"{r['handshake_ms']:.2f} ms | {r['handshake_kib']:.0f} KiB |", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
