"""TLS and WSS listeners, with and without client certificates.

Certificates are made with the openssl CLI in a temporary directory: a CA, a
server certificate for 127.0.0.1/localhost, a client certificate from that CA,
and a client certificate from an unrelated CA.
"""
import os
import shutil
import ssl
import subprocess
import tempfile
import unittest

from harness import HOST, V311, V5, MosquittoSub, PahoClient, ServerTestCase, mosquitto_pub

CERTS = None


def openssl(*args, cwd):
    proc = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)} failed: {proc.stderr}")


def make_ca(d, name):
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={name}",
            "-keyout", f"{name}.key", "-out", f"{name}.pem", cwd=d)


def make_cert(d, name, ca, cn, san=None):
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={cn}", "-keyout", f"{name}.key",
            "-out", f"{name}.csr", cwd=d)
    ext = f"{name}.ext"
    with open(os.path.join(d, ext), "w") as f:
        f.write("basicConstraints=CA:FALSE\n")
        if san:
            f.write(f"subjectAltName={san}\nextendedKeyUsage=serverAuth\n")
        else:
            f.write("extendedKeyUsage=clientAuth\n")
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
            "-CAcreateserial", "-days", "2", "-extfile", ext, "-out", f"{name}.pem", cwd=d)


def setUpModule():
    global CERTS
    d = tempfile.mkdtemp(prefix="counterlink-tls-")
    make_ca(d, "ca")
    make_ca(d, "rogue-ca")
    make_cert(d, "server", "ca", "localhost", san="IP:127.0.0.1,DNS:localhost")
    make_cert(d, "client", "ca", "device-001")
    make_cert(d, "rogue", "rogue-ca", "intruder")
    CERTS = d


def tearDownModule():
    if CERTS:
        shutil.rmtree(CERTS, ignore_errors=True)


def path(name):
    return os.path.join(CERTS, name)


def tls_block(verify_client=False, require_client=False):
    block = {"cert_file": path("server.pem"), "key_file": path("server.key")}
    if verify_client or require_client:
        block.update(ca_file=path("ca.pem"), verify_client=True, require_client=require_client)
    return block


class Tls(ServerTestCase):
    def start_tls_server(self, **tls):
        return self.start_server(listeners=[
            {"name": "tls", "kind": "tls", "tls": tls_block(**tls)},
            {"name": "wss", "kind": "wss", "tls": tls_block(**tls)},
        ])

    def cafile(self):
        return ["--cafile", path("ca.pem")]

    def client_cert(self, name="client"):
        return ["--cert", path(f"{name}.pem"), "--key", path(f"{name}.key")]

    def test_tls_round_trip_with_mosquitto_clients(self):
        server = self.start_tls_server()
        port = server.ports["tls"]
        for version in (V311, V5):
            with self.subTest(version=version):
                topic = f"tls/{version}"
                with MosquittoSub(server, "-t", topic, "-q", "1", *self.cafile(), port=port,
                                  version=version) as sub:
                    mosquitto_pub(server, "-t", topic, "-m", "secret", "-q", "1", *self.cafile(),
                                  port=port, version=version)
                    self.assertEqual(sub.wait_messages(1)[0][1], b"secret")
                # TLS and plain TCP clients share one broker.
                with MosquittoSub(server, "-t", topic, "-q", "1", version=version) as plain:
                    mosquitto_pub(server, "-t", topic, "-m", "mixed", "-q", "1", *self.cafile(),
                                  port=port, version=version)
                    self.assertEqual(plain.wait_messages(1)[0][1], b"mixed")

    def test_untrusted_server_certificate_rejected_by_client(self):
        server = self.start_tls_server()
        proc = mosquitto_pub(server, "-t", "t", "-m", "x", "--cafile", path("rogue-ca.pem"),
                             port=server.ports["tls"], check=False)
        self.assertNotEqual(proc.returncode, 0)
        self.assertServerAlive(server)

    def test_plain_mqtt_on_tls_port_is_refused(self):
        server = self.start_tls_server()
        proc = mosquitto_pub(server, "-t", "t", "-m", "x", port=server.ports["tls"], check=False,
                             timeout=15)
        self.assertNotEqual(proc.returncode, 0)
        self.assertServerAlive(server)

    def test_required_client_certificate(self):
        server = self.start_tls_server(require_client=True)
        port = server.ports["tls"]
        with MosquittoSub(server, "-t", "mtls/t", "-q", "1", *self.cafile(), *self.client_cert(),
                          port=port) as sub:
            mosquitto_pub(server, "-t", "mtls/t", "-m", "with-cert", "-q", "1", *self.cafile(),
                          *self.client_cert(), port=port)
            self.assertEqual(sub.wait_messages(1)[0][1], b"with-cert")
        without = mosquitto_pub(server, "-t", "mtls/t", "-m", "x", *self.cafile(), port=port,
                                check=False)
        self.assertNotEqual(without.returncode, 0, "no client certificate: refused")
        rogue = mosquitto_pub(server, "-t", "mtls/t", "-m", "x", *self.cafile(),
                              *self.client_cert("rogue"), port=port, check=False)
        self.assertNotEqual(rogue.returncode, 0, "certificate from another CA: refused")
        self.assertServerAlive(server)

    def test_optional_client_certificate(self):
        server = self.start_tls_server(verify_client=True)
        port = server.ports["tls"]
        mosquitto_pub(server, "-t", "opt/t", "-m", "x", *self.cafile(), port=port)
        mosquitto_pub(server, "-t", "opt/t", "-m", "x", *self.cafile(), *self.client_cert(),
                      port=port)
        rogue = mosquitto_pub(server, "-t", "opt/t", "-m", "x", *self.cafile(),
                              *self.client_cert("rogue"), port=port, check=False)
        self.assertNotEqual(rogue.returncode, 0, "a presented but invalid certificate: refused")

    def test_paho_tls_client(self):
        server = self.start_tls_server(require_client=True)
        tls = {"ca_certs": path("ca.pem"), "certfile": path("client.pem"),
               "keyfile": path("client.key")}
        with PahoClient(server, "paho-tls", port=server.ports["tls"], tls=tls) as c:
            c.subscribe("paho/tls", 2)
            c.publish("paho/tls", b"x" * 70000, qos=2)
            self.assertEqual(len(c.wait_messages(1)[0].payload), 70000)

    def test_wss_round_trip_with_tcp_peer(self):
        server = self.start_tls_server()
        tls = {"ca_certs": path("ca.pem")}
        with MosquittoSub(server, "-t", "wss/to-tcp", "-q", "1") as sub, \
                PahoClient(server, "paho-wss", transport="websockets", port=server.ports["wss"],
                           tls=tls) as wss:
            wss.subscribe("tcp/to-wss", 1)
            wss.publish("wss/to-tcp", b"over wss", qos=1)
            self.assertEqual(sub.wait_messages(1)[0][1], b"over wss")
            mosquitto_pub(server, "-t", "tcp/to-wss", "-m", "to wss", "-q", "1")
            self.assertEqual(wss.wait_messages(1)[0].payload, b"to wss")

    def test_wss_with_client_certificate(self):
        server = self.start_tls_server(require_client=True)
        tls = {"ca_certs": path("ca.pem"), "certfile": path("client.pem"),
               "keyfile": path("client.key")}
        with PahoClient(server, "paho-wss-mtls", transport="websockets",
                        port=server.ports["wss"], tls=tls) as wss:
            wss.subscribe("wss/mtls", 1)
            wss.publish("wss/mtls", b"ok", qos=1)
            wss.wait_messages(1)
        bad = PahoClient(server, "paho-wss-nocert", transport="websockets",
                         port=server.ports["wss"], tls={"ca_certs": path("ca.pem")}, connect=False)
        self.addCleanup(bad.close)
        with self.assertRaises((OSError, ssl.SSLError, AssertionError)):
            bad.connect()

    def test_stalled_tls_reader_gets_an_intact_stream(self):
        # A flood while the TLS client reads nothing blocks the server's writes
        # mid-record again and again; whatever arrives must still be valid
        # MQTT, every kept message whole.
        import socket
        from harness import (PUBLISH, Packet, RawClient, connect_packet, read_varint,
                             subscribe_packet)
        server = self.start_tls_server()
        ctx = ssl.create_default_context(cafile=path("ca.pem"))
        raw_sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        raw_sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
        raw_sock.settimeout(10)
        raw_sock.connect((HOST, server.ports["tls"]))
        tls = ctx.wrap_socket(raw_sock, server_hostname="127.0.0.1")
        self.addCleanup(tls.close)
        tls.sendall(connect_packet("tls-stalled", V311) + subscribe_packet(1, [("tflood", 0)]))
        server.wait_subscriptions(1)
        chunk = bytes(range(256)) * 200  # 51200 bytes, not a multiple of a record
        with RawClient(server, version=V311) as pub:
            pub.connect("tls-flooder")
            for i in range(200):
                pub.publish("tflood", chunk)
            from harness import PUBACK
            pub.publish("tflood-end", b"x", qos=1, packet_id=1)
            pub.expect(PUBACK)
        data = b""
        tls.settimeout(1.0)
        try:  # drain what was kept, until the server has nothing more
            while True:
                part = tls.recv(1 << 16)
                self.assertTrue(part, "closed")
                data += part
        except (socket.timeout, ssl.SSLError):
            pass
        mosquitto_pub(server, "-t", "tflood", "-m", "the-end")
        tls.settimeout(30)
        while not data.endswith(b"the-end"):
            part = tls.recv(1 << 16)
            self.assertTrue(part, "closed")
            data += part
        packets, off = [], 0
        while off < len(data):
            length, body = read_varint(data, off + 1)
            packets.append(Packet(data[off], data[body:body + length], V311))
            off = body + length
        self.assertEqual(off, len(data))
        publishes = [p for p in packets if p.type == PUBLISH]
        self.assertEqual(publishes[-1].payload, b"the-end")
        self.assertTrue(all(p.payload == chunk for p in publishes[:-1]), "no corrupted message")
        self.assertGreater(len(publishes), 1)

    def test_idle_socket_on_tls_port_closed_by_connect_timeout(self):
        import socket
        server = self.start_server(settings={"gateway.connect_timeout_ms": 300}, listeners=[
            {"name": "tls", "kind": "tls", "tls": tls_block()}])
        with socket.create_connection((HOST, server.ports["tls"]), timeout=10) as idle:
            idle.settimeout(6)
            self.assertEqual(idle.recv(16), b"")
        self.assertGreaterEqual(server.metric("counterlink_mqtt_limit_hits_total",
                                              {"limit": "connect_timeout"}), 1)

    def test_bad_certificate_file_fails_start_with_clear_message(self):
        from harness import Server, ServerError
        broken = Server(listeners=[{"name": "tls", "kind": "tls",
                                    "tls": {"cert_file": path("ca.key"),
                                            "key_file": path("server.key")}}])
        with self.assertRaises(ServerError) as caught:
            broken.start()
        self.assertIn("cert", str(caught.exception).lower())


if __name__ == "__main__":
    unittest.main()
