"""The back end in a child process (Server) and its throwaway certificates, for the
simulator, the benchmarks and the tests."""

import datetime
import os
import sys
import time

ROOT = os.path.dirname(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
)


def make_certs(out, hosts=("localhost", "127.0.0.1")):
    """A throwaway CA and a server certificate for `hosts` (names or IP addresses): PEM for
    uvicorn, the CA as DER for the terminal (MicroPython takes DER only)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    os.makedirs(out, mode=0o700, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "OneTill test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(x509.SubjectAlternativeName([_alt_name(h) for h in hosts]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    files = {
        "ca.der": ca.public_bytes(serialization.Encoding.DER),
        "ca.pem": ca.public_bytes(pem),
        "server.pem": cert.public_bytes(pem),
        "server.key": key.private_bytes(
            pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
    }
    for name, data in files.items():
        path = os.path.join(out, name)
        with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as f:
            f.write(data)
    return files


def _alt_name(host):
    import ipaddress

    from cryptography import x509

    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def _end_with_parent(parent_pid):
    """For a child's preexec_fn: the child gets SIGTERM when its parent dies, even by kill -9
    (Linux PR_SET_PDEATHSIG), so a killed simulator leaves no back end behind."""

    import ctypes
    import signal

    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up here: the child only calls

    def arm():
        prctl(1, signal.SIGTERM)  # 1: PR_SET_PDEATHSIG
        if os.getppid() != parent_pid:  # the parent died before the line above
            os.kill(os.getpid(), signal.SIGTERM)

    return arm


class Server:
    """`tools/backend serve` in a child process on a free loopback port, until stop().
    For the simulator, the benchmarks and the tests: one way to start and wait for it."""

    def __init__(self, db_path, bdk_file, cert_dir, timeout_s=15, workers=1, token_key_file=None):
        """bdk_file: a key file, or a list of them (the keyring, the base key first)."""
        import socket
        import ssl
        import subprocess
        import urllib.request

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = "https://127.0.0.1:%d" % self.port
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tools.host.backend",
                "serve",
                "--db",
                db_path,
                *[
                    word
                    for path in ([bdk_file] if isinstance(bdk_file, str) else bdk_file)
                    for word in ("--bdk-file", path)
                ],
                "--port",
                str(self.port),
                "--tls-cert",
                os.path.join(cert_dir, "server.pem"),
                "--tls-key",
                os.path.join(cert_dir, "server.key"),
                "--workers",
                str(workers),
                *(("--token-key-file", token_key_file) if token_key_file else ()),
            ],
            cwd=ROOT,
            preexec_fn=_end_with_parent(os.getpid()),
        )
        context = ssl.create_default_context(cafile=os.path.join(cert_dir, "ca.pem"))
        # A readiness probe: the CA chain is checked, the name not (some test servers are
        # made with certificates for other hosts on purpose).
        context.check_hostname = False
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                urllib.request.urlopen(self.url + "/v1/health", context=context, timeout=1)
                return
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise OSError("the back end did not start on port %d" % self.port) from None
                time.sleep(0.1)

    def stop(self):
        import subprocess

        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
