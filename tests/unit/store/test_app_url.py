"""An app URL names one target: each rule of store/app_url.py refuses what breaks it, naming the
rule, and the machine refuses such a registration when it applies it."""

from __future__ import annotations

import ipaddress

import pytest

from cluster.ring import Ring
from store.app_url import AppUrl, parse_app_url
from store.codec import RegisterApp
from store.errors import ValidationError
from store.machine import ErrorKind, JobMachine


@pytest.mark.parametrize(
    ("url", "parsed"),
    [
        ("http://127.0.0.1:6000", AppUrl("http", "127.0.0.1", 6000, "")),
        ("https://Apps.Example.com/base/", AppUrl("https", "apps.example.com", None, "/base/")),
        ("http://[::1]:8080/x", AppUrl("http", "::1", 8080, "/x")),
        ("grpc://app_1.internal:50051", AppUrl("grpc", "app_1.internal", 50051, "")),
        ("grpc://127.0.0.1:50051/", AppUrl("grpc", "127.0.0.1", 50051, "/")),
    ],
)
def test_a_url_that_names_one_target_is_taken_apart(url: str, parsed: AppUrl) -> None:
    assert parse_app_url(url) == parsed


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://x", "must start with one of http://, https://, grpc://"),
        ("HTTP://x", "must start with one of"),
        ("127.0.0.1:3500", "must start with one of"),
        ("http://127.0.0.1:3501/admin/quiesce?", r"must not have a query \('\?'\)"),
        ("http://127.0.0.1:3501/admin?a=1", "must not have a query"),
        ("http://127.0.0.1:3501/admin#", r"must not have a fragment \('#'\)"),
        ("http://user:pw@127.0.0.1:3501", r"must not have userinfo \('user@'\)"),
        ("http://evil@127.0.0.1", "must not have userinfo"),
        ("http://", "must name a host"),
        ("http://:8080/x", "must name a host"),
        ("http://127.0.0.1:99999", "malformed: Port out of range"),
        ("http://127.0.0.1:x", "malformed"),
        ("http://127.0.0.1:0", "port must be between 1 and 65535"),
        ("http://[::1/x", "malformed"),
        ("http://a%2fb:80", "neither a host name nor an IP address"),
        ("http://127.0.0.1:9/\ud800", "printable ASCII"),
        ("http://127.0.0.1 :9", "printable ASCII"),
        ("http://127.0.0.1\\@evil:9", "printable ASCII"),
        ("grpc://unix:/tmp/app.sock", "grpc://HOST:PORT, without a path"),
        ("grpc://unix:///tmp/app.sock", "grpc://HOST:PORT, without a path"),
        ("grpc://127.0.0.1", "grpc://HOST:PORT, without a path"),
        ("grpc://127.0.0.1:50051/x", "grpc://HOST:PORT, without a path"),
    ],
)
def test_a_url_that_breaks_a_rule_is_refused_naming_it(url: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        parse_app_url(url)


def test_the_parts_give_back_the_authority_and_the_address() -> None:
    assert parse_app_url("http://[::1]:8080").netloc == "[::1]:8080"
    assert parse_app_url("grpc://localhost:1").netloc == "localhost:1"
    assert parse_app_url("http://[::ffff:127.0.0.1]:1").ip == ipaddress.ip_address("127.0.0.1")
    assert parse_app_url("http://localhost:1").ip is None


def test_the_machine_refuses_a_url_that_breaks_a_rule_and_keeps_the_old_one() -> None:
    machine = JobMachine(16, Ring)
    assert machine.apply(RegisterApp("ns", "app", "http://127.0.0.1:6000")).ok
    for url in ("http://127.0.0.1:3501/admin/quiesce?", "grpc://unix:/run/x.sock"):
        result = machine.apply(RegisterApp("ns", "app", url))
        assert (result.ok, result.error) == (False, ErrorKind.INVALID), url
        assert result.message.startswith("app url"), result.message
    assert machine.app_url("ns", "app") == "http://127.0.0.1:6000"
