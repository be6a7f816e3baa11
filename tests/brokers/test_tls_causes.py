"""A TLS failure is named as one: a client certificate the broker wants or refuses,
or TLS spoken to a port that speaks plain MQTT.

With TLS 1.3 a broker checks the client's certificate after the client believes
the handshake done, so its refusal used to look like any connection closed before
CONNACK; the connection test said "network" and the runtime left the broker in
"connecting" with no error at all.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from brokers import services
from brokers.client import ConnectionSettings
from tests.factories import make_superuser
from tests.runtime_support import running_broker, state_is, status_of, wait_until

pytestmark = [pytest.mark.django_db, pytest.mark.mosquitto]


@dataclass
class Pki:
    ca_pem: str
    client_cert: str
    client_key: str
    stranger_cert: str  # signed by a CA the broker does not know
    stranger_key: str
    broker_config: str  # cafile / certfile / keyfile lines


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _certificate(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: str,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool = False,
    names: list[x509.GeneralName] | None = None,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
    )
    if ca:
        builder = builder.add_extension(
            x509.BasicConstraints(ca=True, path_length=None), critical=True
        )
    if names:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(names), critical=False
        )
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _key_pem(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    """A CA with a server and a client certificate, and a stranger's client
    certificate from another CA."""
    ca_key, other_key = (
        ec.generate_private_key(ec.SECP256R1()),
        (ec.generate_private_key(ec.SECP256R1())),
    )
    ca = _certificate("Test CA", ca_key, "Test CA", ca_key, ca=True)
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = _certificate(
        "localhost",
        server_key,
        "Test CA",
        ca_key,
        names=[
            x509.DNSName("localhost"),
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        ],
    )
    client_key = ec.generate_private_key(ec.SECP256R1())
    client = _certificate("plant-gateway", client_key, "Test CA", ca_key)
    stranger_key = ec.generate_private_key(ec.SECP256R1())
    stranger = _certificate("stranger", stranger_key, "Other CA", other_key)
    directory = tmp_path / "pki"
    directory.mkdir()
    files = {
        "cafile": (directory / "ca.pem", _pem(ca)),
        "certfile": (directory / "server.pem", _pem(server)),
        "keyfile": (directory / "server.key", _key_pem(server_key)),
    }
    for path, content in files.values():
        path.write_text(content)
        path.chmod(0o644)
    return Pki(
        ca_pem=_pem(ca),
        client_cert=_pem(client),
        client_key=_key_pem(client_key),
        stranger_cert=_pem(stranger),
        stranger_key=_key_pem(stranger_key),
        broker_config="".join(f"{k} {path}\n" for k, (path, _c) in files.items()),
    )


@pytest.fixture
def mutual_tls_broker(mosquitto: Any, pki: Pki) -> Any:
    """A TLS listener that requires a client certificate signed by pki's CA."""
    return mosquitto(
        "listener {port} 127.0.0.1\nallow_anonymous true\n"
        + pki.broker_config
        + "require_certificate true\n",
        name="mtls",
    )


def _tested(port: int, **fields: Any) -> Any:
    return services.broker_test_connection(
        ConnectionSettings(host="127.0.0.1", port=port, connect_timeout=5, **fields)
    )


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
def test_connection_test_says_the_broker_requires_a_client_certificate(
    mutual_tls_broker: Any, pki: Pki, protocol: str
) -> None:
    result = _tested(
        mutual_tls_broker.port, use_tls=True, ca_cert=pki.ca_pem, protocol=protocol
    )
    assert (result.ok, result.error) == (False, "tls")
    assert "requires a client certificate" in result.reason


def test_connection_test_says_the_broker_does_not_trust_the_client_certificate(
    mutual_tls_broker: Any, pki: Pki
) -> None:
    result = _tested(
        mutual_tls_broker.port,
        use_tls=True,
        ca_cert=pki.ca_pem,
        client_cert=pki.stranger_cert,
        client_key=pki.stranger_key,
    )
    assert (result.ok, result.error) == (False, "tls")
    assert "does not trust the client certificate" in result.reason


def test_connection_test_with_the_right_client_certificate_connects(
    mutual_tls_broker: Any, pki: Pki
) -> None:
    result = _tested(
        mutual_tls_broker.port,
        use_tls=True,
        ca_cert=pki.ca_pem,
        client_cert=pki.client_cert,
        client_key=pki.client_key,
    )
    assert (result.ok, result.reason) == (True, "Connected")


def test_connection_test_says_a_plain_port_did_not_speak_tls(
    plain_broker: Any, pki: Pki
) -> None:
    result = _tested(plain_broker.port, use_tls=True, ca_cert=pki.ca_pem)
    assert (result.ok, result.error) == (False, "tls")
    assert "did not speak TLS" in result.reason


def test_runtime_status_says_the_broker_requires_a_client_certificate(
    mutual_tls_broker: Any, pki: Pki, start_runtime: Any
) -> None:
    start_runtime()
    broker = running_broker(
        make_superuser(), mutual_tls_broker.port, use_tls=True, ca_cert=pki.ca_pem
    )
    wait_until(state_is(broker, "error"), 15, "a TLS error on the status")
    assert "requires a client certificate" in status_of(broker).connection_error


def test_runtime_status_says_a_plain_port_did_not_speak_tls(
    plain_broker: Any, pki: Pki, start_runtime: Any
) -> None:
    start_runtime()
    broker = running_broker(
        make_superuser(), plain_broker.port, use_tls=True, ca_cert=pki.ca_pem
    )
    wait_until(state_is(broker, "error"), 15, "a TLS error on the status")
    assert "did not speak TLS" in status_of(broker).connection_error
