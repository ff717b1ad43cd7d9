"""A local CA's certificates and a node's TLS contexts, over real TLS connections on 127.0.0.1:
a node trusts the CA that follows its certificate in its file unless told another, checks host
names, and keeps its keys to its owner."""

from __future__ import annotations

import asyncio
import ssl
import stat
from pathlib import Path

import pytest

from cluster.certificates import CertificateAuthority
from node.tls import TlsConfig


def node_tls(
    authority: CertificateAuthority, directory: Path, ca_file: Path | None = None
) -> TlsConfig:
    files = authority.issue(directory, "node")
    return TlsConfig(cert_file=files.cert_file, key_file=files.key_file, ca_file=ca_file)


def handshake(server: TlsConfig, client: ssl.SSLContext, host: str = "127.0.0.1") -> None:
    """One TLS connection from `client` to a server with `server`'s context, as `host`; raises
    what the client's handshake raises."""

    async def go() -> None:
        async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.close()

        listener = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=server.server_context())
        port = listener.sockets[0].getsockname()[1]
        try:
            _, writer = await asyncio.open_connection(
                "127.0.0.1", port, ssl=client, server_hostname=host
            )
            writer.close()
            await writer.wait_closed()
        finally:
            listener.close()
            await listener.wait_closed()

    asyncio.run(asyncio.wait_for(go(), 10))


def test_nodes_of_one_ca_trust_each_other_through_the_chain_in_their_files(
    tmp_path: Path,
) -> None:
    authority = CertificateAuthority(tmp_path / "ca")
    one, two = node_tls(authority, tmp_path / "n1"), node_tls(authority, tmp_path / "n2")
    client = two.client_context()
    assert client is not None
    handshake(one, client)
    handshake(one, client, host="localhost")
    # The certificate names 127.0.0.1 and localhost only.
    with pytest.raises(ssl.SSLCertVerificationError, match=r"IP address mismatch"):
        handshake(one, client, host="127.0.0.2")


def test_a_node_given_another_ca_refuses_certificates_of_this_one(tmp_path: Path) -> None:
    authority = CertificateAuthority(tmp_path / "ca")
    stranger = CertificateAuthority(tmp_path / "other-ca")
    server = node_tls(authority, tmp_path / "n1")
    client = node_tls(authority, tmp_path / "n2", ca_file=stranger.cert_file).client_context()
    assert client is not None
    with pytest.raises(ssl.SSLCertVerificationError, match="self-signed certificate in"):
        handshake(server, client)
    # The default store of the machine does not hold a local CA either.
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(server, ssl.create_default_context())


def test_without_certificate_there_is_no_tls_and_a_missing_file_fails_at_start(
    tmp_path: Path,
) -> None:
    plain = TlsConfig()
    assert (plain.enabled, plain.scheme) == (False, "http")
    assert (plain.server_context(), plain.client_context(), plain.grpc_credentials()) == (
        None,
        None,
        None,
    )
    missing = TlsConfig(cert_file=tmp_path / "node.pem", key_file=tmp_path / "node.key")
    assert missing.scheme == "https"
    with pytest.raises(FileNotFoundError):
        missing.server_context()
    with pytest.raises(FileNotFoundError):
        missing.grpc_credentials()


def test_keys_are_private_and_files_are_used_again(tmp_path: Path) -> None:
    authority = CertificateAuthority(tmp_path / "ca")
    files = authority.issue(tmp_path / "n1", "node")
    for key in (tmp_path / "ca" / "ca.key", files.key_file):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
        assert stat.S_IMODE(key.parent.stat().st_mode) == 0o700
    chain = files.cert_file.read_bytes()
    assert chain.count(b"BEGIN CERTIFICATE") == 2
    assert chain.endswith(authority.cert_file.read_bytes())
    # Started again on the same directories: the same CA and the same certificate.
    again = CertificateAuthority(tmp_path / "ca")
    assert again.cert_file.read_bytes() == authority.cert_file.read_bytes()
    assert again.issue(tmp_path / "n1", "node").cert_file.read_bytes() == chain
    # A certificate of a CA that was replaced is issued again by the new one.
    for old in (tmp_path / "ca").iterdir():
        old.unlink()
    renewed = CertificateAuthority(tmp_path / "ca")
    reissued = renewed.issue(tmp_path / "n1", "node").cert_file.read_bytes()
    assert reissued != chain and reissued.endswith(renewed.cert_file.read_bytes())
