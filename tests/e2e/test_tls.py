"""TLS on every listener, against the real binary, with a test CA made here by
the openssl CLI: the Python SDK's OTLP/HTTP and OTLP/gRPC exporters send over
TLS, the API answers over TLS, a plain-text client is refused, a SIGHUP loads
a new certificate, and with a client CA (mTLS) a client without a
certificate is refused while one with a certificate gets through."""

import http.client
import json
import signal
import ssl
import subprocess
import time
import urllib.request

import grpc
import pytest
from conftest import Server
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_ca(d, name):
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", f"{name}.key", "-out", f"{name}.pem", "-subj", f"/CN={name}", "-days", "2", cwd=d)
    return d / f"{name}.pem"


def make_cert(d, ca, name, server=True):
    """A certificate for `name` signed by `ca` (for 127.0.0.1 and localhost)."""
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=d)
    ext = d / f"{name}.ext"
    usage = "serverAuth" if server else "clientAuth"
    ext.write_text(f"subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage={usage}\nbasicConstraints=CA:FALSE\n")
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key", "-CAcreateserial",
            "-out", f"{name}.crt", "-days", "2", "-extfile", str(ext), cwd=d)
    return d / f"{name}.crt", d / f"{name}.key"


class TlsServer(Server):
    """`costplane serve` whose API speaks TLS: health is checked over https."""

    def __init__(self, data_dir, ca, client=None, **kw):
        self.context = ssl.create_default_context(cafile=str(ca))
        if client:
            self.context.load_cert_chain(str(client[0]), str(client[1]))
        super().__init__(data_dir, **kw)

    def _wait_healthy(self):
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(f"https://127.0.0.1:{self.api_port}/healthz", timeout=1,
                                            context=self.context) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"costplane did not become healthy over TLS:\n{self.log()}")

    def sql_rows(self, query, context=None):
        req = urllib.request.Request(f"https://127.0.0.1:{self.api_port}/api/v1/sql", method="POST",
                                     data=json.dumps({"sql": query}).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10, context=context or self.context) as r:
            return json.loads(r.read())["rows"]


@pytest.fixture(autouse=True)
def no_ca_bundle_override(monkeypatch):
    # requests lets these variables override a session's own CA file (the
    # SDK's certificate_file); a machine that sets them would hide it.
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)


def send_span(exporter, name):
    provider = TracerProvider(resource=Resource.create({"service.name": "tls-test", "tenant.id": "acme"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with provider.get_tracer("tls").start_as_current_span(name):
        pass
    provider.shutdown()


def wait_spans(server, want):
    deadline = time.time() + 30
    while True:
        rows = server.sql_rows("SELECT SpanName FROM otel_traces ORDER BY SpanName")
        if rows == want or time.time() > deadline:
            return rows
        time.sleep(0.2)


def test_sdk_exporters_send_over_tls_and_a_sighup_reloads_the_certificate(tmp_path):
    certs = tmp_path / "certs"
    certs.mkdir()
    ca = make_ca(certs, "ca")
    cert, key = make_cert(certs, "ca", "server")
    config = tmp_path / "costplane.toml"
    config.write_text(f'[tls]\ncert_file = "{cert}"\nkey_file = "{key}"\nreload_interval = "1h"\n')
    (tmp_path / "data").mkdir()
    server = TlsServer(tmp_path / "data", ca, extra_args=["--config", str(config)])
    try:
        send_span(HttpSpanExporter(endpoint=f"https://127.0.0.1:{server.http_port}/v1/traces", certificate_file=str(ca)),
                  "over https")
        creds = grpc.ssl_channel_credentials(root_certificates=ca.read_bytes())
        send_span(GrpcSpanExporter(endpoint=f"127.0.0.1:{server.grpc_port}", credentials=creds), "over grpcs")
        assert wait_spans(server, [["over grpcs"], ["over https"]]) == [["over grpcs"], ["over https"]]

        # A plain-text client gets no HTTP answer from a TLS listener (only
        # a TLS alert, or a closed connection).
        with pytest.raises((OSError, http.client.HTTPException)):
            urllib.request.urlopen(f"http://127.0.0.1:{server.api_port}/healthz", timeout=5)

        # A new certificate from another CA, loaded on SIGHUP: clients that
        # trust only the new CA get through, clients of the old one do not.
        ca2 = make_ca(certs, "ca2")
        cert2, key2 = make_cert(certs, "ca2", "server2")
        cert.write_bytes(cert2.read_bytes())
        key.write_bytes(key2.read_bytes())
        server.proc.send_signal(signal.SIGHUP)
        new_context = ssl.create_default_context(cafile=str(ca2))
        deadline = time.time() + 10
        while True:
            try:
                server.sql_rows("SELECT 1", context=new_context)
                break
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(0.2)
        with pytest.raises(OSError):
            server.sql_rows("SELECT 1")
        assert "TLS certificate reloaded" in server.log()
        assert server.terminate() == 0
    finally:
        if server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait()


def test_mtls_refuses_a_client_without_a_certificate(tmp_path):
    certs = tmp_path / "certs"
    certs.mkdir()
    ca = make_ca(certs, "ca")
    cert, key = make_cert(certs, "ca", "server")
    client_ca = make_ca(certs, "clients")
    client = make_cert(certs, "clients", "client", server=False)
    config = tmp_path / "costplane.toml"
    config.write_text(f'[tls]\ncert_file = "{cert}"\nkey_file = "{key}"\nclient_ca_file = "{client_ca}"\n')
    (tmp_path / "data").mkdir()
    server = TlsServer(tmp_path / "data", ca, client=client, extra_args=["--config", str(config)])
    try:
        # No client certificate: the handshake (or the first read) fails.
        no_cert = ssl.create_default_context(cafile=str(ca))
        with pytest.raises(OSError):
            server.sql_rows("SELECT 1", context=no_cert)
        # A certificate from another CA is refused too.
        other_ca = make_ca(certs, "other")
        stranger = make_cert(certs, "other", "stranger", server=False)
        wrong = ssl.create_default_context(cafile=str(ca))
        wrong.load_cert_chain(str(stranger[0]), str(stranger[1]))
        with pytest.raises(OSError):
            server.sql_rows("SELECT 1", context=wrong)
        assert other_ca.exists()
        # gRPC without a client certificate: UNAVAILABLE (the handshake fails).
        with grpc.secure_channel(f"127.0.0.1:{server.grpc_port}",
                                 grpc.ssl_channel_credentials(root_certificates=ca.read_bytes())) as channel:
            with pytest.raises(grpc.FutureTimeoutError):
                grpc.channel_ready_future(channel).result(timeout=3)
        # With its certificate, the SDK exporter sends and the API answers.
        send_span(HttpSpanExporter(endpoint=f"https://127.0.0.1:{server.http_port}/v1/traces", certificate_file=str(ca),
                                   client_certificate_file=str(client[0]), client_key_file=str(client[1])), "mutual")
        assert wait_spans(server, [["mutual"]]) == [["mutual"]]
    finally:
        if server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait()
