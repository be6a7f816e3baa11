"""Real Mosquitto brokers for the brokers tests: plain, password file, TLS."""

from __future__ import annotations

import datetime
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.services import MosquittoProcess, missing

MQTT_USER, MQTT_PASSWORD = "sensor", "s3cret-Pa55"


@pytest.fixture
def plain_broker(mosquitto: Any) -> MosquittoProcess:
    """Anonymous access on a free port."""
    return mosquitto()


@pytest.fixture
def password_broker(mosquitto: Any, tmp_path: Path) -> MosquittoProcess:
    """Only MQTT_USER / MQTT_PASSWORD may connect."""
    tool = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
    if not Path(tool).exists():
        missing("mosquitto_passwd is not installed (apt-get install mosquitto)")
    passwd = tmp_path / "passwd"
    subprocess.run(
        [tool, "-b", "-c", str(passwd), MQTT_USER, MQTT_PASSWORD],
        check=True,
        capture_output=True,
    )
    passwd.chmod(0o644)
    return mosquitto(
        f"listener {{port}} 127.0.0.1\nallow_anonymous false\npassword_file {passwd}\n",
        name="password",
    )


@pytest.fixture
def tls_broker(mosquitto: Any, tls_material: TlsMaterial) -> MosquittoProcess:
    """A TLS listener whose certificate is signed by tls_material's CA."""
    return mosquitto(
        "listener {port} 127.0.0.1\nallow_anonymous true\n"
        f"cafile {tls_material.ca_file}\ncertfile {tls_material.server_cert}\n"
        f"keyfile {tls_material.server_key}\n",
        name="tls",
    )


@dataclass
class TlsMaterial:
    ca_pem: str
    other_ca_pem: str
    server_cert: Path
    server_key: Path
    ca_file: Path


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _ca(common_name: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = _key()
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


@pytest.fixture
def tls_material(tmp_path: Path) -> TlsMaterial:
    """A CA, a server certificate for 127.0.0.1/localhost signed by it, and an
    unrelated CA (to provoke verification failures)."""
    import ipaddress

    ca_cert, ca_key = _ca("MQTT Admin Test CA")
    other_ca, _other_key = _ca("Some Other CA")
    server_key = _key()
    now = datetime.datetime.now(datetime.UTC)
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("localhost"))
        .issuer_name(ca_cert.subject)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                ]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    directory = tmp_path / "tls"
    directory.mkdir()
    paths = {
        "ca": directory / "ca.pem",
        "cert": directory / "server.pem",
        "key": directory / "server.key",
    }
    paths["ca"].write_text(_pem(ca_cert))
    paths["cert"].write_text(_pem(server_cert))
    paths["key"].write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    for path in paths.values():
        path.chmod(0o644)
    return TlsMaterial(
        ca_pem=_pem(ca_cert),
        other_ca_pem=_pem(other_ca),
        server_cert=paths["cert"],
        server_key=paths["key"],
        ca_file=paths["ca"],
    )
