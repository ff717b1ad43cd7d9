"""TLS of one node: HTTPS on its HTTP port, TLS on its gRPC port, and https between nodes.

`--tls-cert-file` (PEM: the node's certificate, optionally followed by the certificates that
signed it) and `--tls-key-file` (its private key) turn TLS on for both listeners; a client that
speaks plain HTTP or plain gRPC to them gets no answer. A node reaches another by the HTTP address
that node announced (`--http`), and checks its certificate against `--tls-ca-file`, or, without
it, against the certificates in its own certificate file: the chain `tock up --tls` writes there
(the node's certificate, then the CA's) makes every node trust the CA that signed them all. So a
node's certificate names its HTTP host (an IP address or a name) in its subjectAltName.

The contexts are built when the node is (Node.__init__), so that a node with an unreadable
certificate or key fails at start, not at its first connection.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

import grpc

from store.errors import ValidationError


@dataclass(frozen=True, kw_only=True)
class TlsConfig:
    # The node's certificate (PEM, with its chain) and private key: both, or neither for no TLS.
    cert_file: Path | None = None
    key_file: Path | None = None
    # What other nodes' certificates are checked against; None: the certificates in cert_file.
    ca_file: Path | None = None

    @property
    def enabled(self) -> bool:
        return self.cert_file is not None

    @property
    def scheme(self) -> str:
        """The scheme of this node's HTTP API, and of every other node's."""
        return "https" if self.enabled else "http"

    def validate(self) -> None:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValidationError("cert_file and key_file must be given together")
        if self.ca_file is not None and self.cert_file is None:
            raise ValidationError("ca_file is for checking other nodes: it needs cert_file")

    def server_context(self) -> ssl.SSLContext | None:
        """The HTTPS listener's context; None without TLS."""
        if self.cert_file is None or self.key_file is None:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert_file, self.key_file)
        return context

    def client_context(self) -> ssl.SSLContext | None:
        """The context of requests to other nodes, checking their certificates and host
        names; None without TLS."""
        trusted = self.ca_file or self.cert_file
        return None if trusted is None else ssl.create_default_context(cafile=str(trusted))

    def grpc_credentials(self) -> grpc.ServerCredentials | None:
        """The gRPC listener's credentials; None without TLS."""
        if self.cert_file is None or self.key_file is None:
            return None
        key_and_chain = (self.key_file.read_bytes(), self.cert_file.read_bytes())
        return grpc.ssl_server_credentials([key_and_chain])
