"""The balancer's certificate on the controller (session_kit/tls.py), the TLS variables' checks, and what every client
of the balancer is told (Deployment.lb_url, tls_ca)."""

from __future__ import annotations

import ipaddress
import ssl
import stat

import pytest
from cryptography import x509

from session_kit import tls
from session_kit.defaults import ALL_DEFAULTS
from session_kit.inventory import Deployment, Node
from session_kit.strategies import STRATEGIES, app_environment
from session_kit.validate import KitError, check_data

GOOD = {**ALL_DEFAULTS, "inventory_name": "test"}


def alt_names(path) -> x509.SubjectAlternativeName:
    certificate = x509.load_pem_x509_certificate(path.read_bytes())
    return certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value


def test_a_self_signed_pair_names_every_address_and_is_made_once(tmp_path):
    names = tls.subject_names(["203.0.113.10", "10.0.0.5", "lb.example.org", "10.0.0.5", None])
    assert names == ["203.0.113.10", "10.0.0.5", "lb.example.org"]
    certificate, key = tls.self_signed(tmp_path / "secrets", "prod", names)
    assert (certificate, key) == (tmp_path / "secrets/prod-tls.crt", tmp_path / "secrets/prod-tls.key")
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    alt = alt_names(certificate)
    assert alt.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("203.0.113.10"),
        ipaddress.ip_address("10.0.0.5"),
    ]
    assert alt.get_values_for_type(x509.DNSName) == ["lb.example.org"]
    ssl.create_default_context(cafile=str(certificate))  # loads as a CA file (tests/app/test_tls.py trusts it)
    before = (certificate.read_bytes(), key.read_bytes())
    key.chmod(0o644)
    assert tls.self_signed(tmp_path / "secrets", "prod", names[:2]) == (certificate, key)
    assert (certificate.read_bytes(), key.read_bytes()) == before, "reused by a later apply"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    # an address it does not name yet (a new lb host): made again, naming it
    tls.self_signed(tmp_path / "secrets", "prod", [*names, "10.0.0.6"])
    assert certificate.read_bytes() != before[0] and key.read_bytes() != before[1]
    assert ipaddress.ip_address("10.0.0.6") in alt_names(certificate).get_values_for_type(x509.IPAddress)
    assert not list(tmp_path.glob("secrets/*.tmp*"))


def test_the_spki_pin_is_the_public_keys_sha256(tmp_path):
    import base64
    import hashlib
    import subprocess

    certificate, _ = tls.self_signed(tmp_path, "pin", ["127.0.0.1"])
    der = subprocess.run(
        f"openssl x509 -in {certificate} -pubkey -noout | openssl pkey -pubin -outform der",
        shell=True,
        capture_output=True,
        check=True,
    ).stdout
    assert tls.spki_sha256(certificate) == base64.b64encode(hashlib.sha256(der).digest()).decode()


def test_the_inventorys_own_pair_is_used_as_it_is(tmp_path):
    own_crt, own_key = tmp_path / "chain.pem", tmp_path / "key.pem"
    own_crt.write_text("chain"), own_key.write_text("key")
    data = {**GOOD, "lb_tls_certificate": str(own_crt), "lb_tls_key": str(own_key)}
    check_data(data)
    assert tls.pair(tmp_path, data, ["10.0.0.5"]) == (own_crt, own_key)
    assert not list(tmp_path.glob("secrets*")), "no self-signed pair made"


@pytest.mark.parametrize(
    "change, line",
    [
        ({"lb_tls_certificate": "CRT"}, "lb_tls_key: not set, but lb_tls_certificate is"),
        ({"lb_tls_key": "KEY"}, "lb_tls_certificate: not set, but lb_tls_key is"),
        ({"lb_tls_certificate": "/nonexistent/chain.pem", "lb_tls_key": "KEY"}, "lb_tls_certificate: must be the path"),
        ({"lb_tls_certificate": "CRT", "lb_tls_key": "/nonexistent/key.pem"}, "lb_tls_key: must be the path"),
        ({"lb_tls": "yes"}, "lb_tls: must be True or False"),
        ({"nginx_listen_tls": "0.0.0.0"}, "nginx_listen_tls: must be PORT or ADDRESS:PORT"),
        ({"nginx_listen_tls": "0.0.0.0:80"}, "nginx_listen_tls: '0.0.0.0:80' takes the port of nginx_listen"),
        ({"nginx_listen": "8080", "nginx_listen_tls": "10.0.0.5:8080"}, "nginx_listen_tls: '10.0.0.5:8080' takes"),
    ],
)
def test_tls_mistakes_are_one_line_naming_the_variable(tmp_path, change, line):
    (tmp_path / "crt.pem").write_text("c"), (tmp_path / "key.pem").write_text("k")
    paths = {"CRT": str(tmp_path / "crt.pem"), "KEY": str(tmp_path / "key.pem")}
    with pytest.raises(KitError) as error:
        check_data({**GOOD, **{k: paths.get(v, v) if isinstance(v, str) else v for k, v in change.items()}}, "lb1")
    message = str(error.value)
    assert message.startswith(line) and "\n" not in message and "(host lb1)" in message, message


@pytest.mark.parametrize(
    "change",
    [
        {"lb_tls": False, "lb_tls_certificate": "CRT"},  # unused without TLS: the pair is not checked
        {"nginx_listen": "10.0.0.5:443", "nginx_listen_tls": "10.0.0.6:443"},
        {"lb_tls": False, "nginx_listen_tls": "0.0.0.0:80"},
    ],
)
def test_tls_values_accepted(tmp_path, change):
    (tmp_path / "crt.pem").write_text("c")
    check_data({**GOOD, **{k: str(tmp_path / "crt.pem") if v == "CRT" else v for k, v in change.items()}})


def deployment(**values) -> Deployment:
    nodes = (
        Node("lb1", "10.0.0.5", {"ssh_hostname": "203.0.113.10"}, ("lb",)),
        Node("app1", "10.0.0.6", {}, ("app",)),
        Node("app2", "10.0.0.7", {}, ("app",)),
    )
    return Deployment(STRATEGIES["redis"], "round_robin", {**GOOD, **values}, nodes)


def test_clients_are_told_https_and_the_ca_to_trust():
    kit = deployment()
    assert kit.lb_url == "https://203.0.113.10" and kit.lb_http_url == "http://203.0.113.10"
    assert kit.tls_ca is not None and kit.tls_ca.name == "test-tls.crt" and kit.tls_ca.parent.name == "secrets"
    assert kit.tls_verify == str(kit.tls_ca) and kit.tls_certificate == kit.tls_ca
    assert kit.tls_names() == ["203.0.113.10", "10.0.0.5"]
    assert deployment(nginx_listen_tls="8443", nginx_listen="8080").lb_url == "https://203.0.113.10:8443"
    plain = deployment(lb_tls=False, nginx_listen="8080")
    assert plain.lb_url == "http://203.0.113.10:8080" and plain.tls_ca is None and plain.tls_verify is True
    own = deployment(lb_tls_certificate="/etc/ssl/chain.pem", lb_tls_key="/etc/ssl/key.pem")
    assert own.tls_ca is None and own.tls_verify is True, "a certificate of the inventory's own: the system's CAs"
    assert str(own.tls_certificate) == "/etc/ssl/chain.pem"


@pytest.mark.parametrize(
    "values, secure",
    [({}, "true"), ({"lb_tls": False}, "false"), ({"lb_tls": False, "app_cookie_secure": True}, "true")],
)
def test_the_cookie_is_secure_whenever_tls_is_on(values, secure):
    env = app_environment(
        STRATEGIES["redis"],
        {**GOOD, **values},
        {"redis_password": "p"},
        node="n1",
        private_ip="10.0.0.6",
        peers=[],
        redis_ip="10.0.0.9",
        db_ip=None,
    )
    assert env["COOKIE_SECURE"] == secure
