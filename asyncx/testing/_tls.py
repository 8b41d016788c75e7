"""A throw-away self-signed certificate for serving the fake over TLS on loopback."""

from __future__ import annotations

import shutil
import ssl
import subprocess
import tempfile
from pathlib import Path

__all__ = ["self_signed"]

#: Loopback and X's own names, so a client with a pinned resolver (tweepy in the benchmarks) can use it.
_SAN = "DNS:localhost,IP:127.0.0.1,IP:::1,DNS:api.twitter.com,DNS:api.x.com"


def self_signed() -> tuple[ssl.SSLContext, ssl.SSLContext, str]:
    """A (server, client) pair of SSL contexts, and the certificate's PEM; the client trusts only it.

    Made with the ``openssl`` command, which the machine must have.
    """
    if shutil.which("openssl") is None:
        raise RuntimeError("FakeX(tls=True) needs the openssl command to make a certificate")
    with tempfile.TemporaryDirectory() as tmp:
        cert, key = Path(tmp, "cert.pem"), Path(tmp, "key.pem")
        subprocess.run(
            [
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "1",
                "-subj",
                "/CN=localhost",
                "-addext",
                f"subjectAltName={_SAN}",
                "-keyout",
                str(key),
                "-out",
                str(cert),
            ],
            check=True,
            capture_output=True,
        )
        server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server.load_cert_chain(cert, key)
        pem = cert.read_text()
    client = ssl.create_default_context(cadata=pem)
    return server, client, pem
