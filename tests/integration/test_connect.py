"""CONNECT and CONNACK: protocol versions, authentication, client identifiers."""
import hashlib
import unittest

from harness import (V31, V311, V5, P_ASSIGNED_CLIENT_ID, P_REASON_STRING, MosquittoSub,
                     PahoClient, RawClient, ServerTestCase, mosquitto_pub)


class ProtocolVersions(ServerTestCase):
    def test_mosquitto_round_trip_with_each_protocol_version(self):
        server = self.start_server()
        for version in (V31, V311, V5):
            with self.subTest(version=version):
                topic = f"versions/{version}"
                with MosquittoSub(server, "-t", topic, "-q", "1", version=version) as sub:
                    mosquitto_pub(server, "-t", topic, "-m", f"hello {version}", "-q", "1",
                                  version=version)
                    self.assertEqual(sub.wait_messages(1)[0][1], f"hello {version}".encode())
        self.assertGreaterEqual(server.metric("counterlink_mqtt_connects_total",
                                              {"result": "accepted"}), 6)

    def test_mqtt31_and_v5_clients_interoperate(self):
        server = self.start_server()
        with MosquittoSub(server, "-t", "mixed/#", "-q", "2", version=V31) as old:
            mosquitto_pub(server, "-t", "mixed/a", "-m", "from-v5", "-q", "2", version=V5)
            self.assertEqual(old.wait_messages(1)[0][:3], ("mixed/a", b"from-v5", 2))


class Authentication(ServerTestCase):
    def test_anonymous_refused_when_not_allowed(self):
        server = self.start_server(allow_anonymous=False)
        for version, code in ((V311, 5), (V5, 0x87)):
            with self.subTest(version=version):
                proc = mosquitto_pub(server, "-d", "-t", "t", "-m", "x", version=version,
                                     check=False)
                self.assertNotEqual(proc.returncode, 0)
                self.assertIn(f"received CONNACK ({code})", proc.stdout + proc.stderr)
                with RawClient(server, version=version) as raw:
                    raw.connect("anon", expect_reason=code)
                    raw.expect_closed()
        self.assertGreaterEqual(server.metric("counterlink_mqtt_auth_failures_total"), 4)
        self.assertGreaterEqual(server.metric("counterlink_mqtt_connects_total",
                                              {"result": "refused"}), 4)

    def test_static_user_password_checked(self):
        digest = hashlib.sha256(b"hashed-secret").hexdigest()
        server = self.start_server(allow_anonymous=False, settings={
            "gateway.users.0.username": "alice",
            "gateway.users.0.password": "secret",
            "gateway.users.1.username": "bob",
            "gateway.users.1.password_sha256": digest,
        })
        for version, bad_code in ((V311, 4), (V5, 0x86)):
            with self.subTest(version=version):
                proc = mosquitto_pub(server, "-d", "-t", "t", "-m", "x", "-u", "alice", "-P",
                                     "wrong", version=version, check=False)
                self.assertNotEqual(proc.returncode, 0)
                self.assertIn(f"received CONNACK ({bad_code})", proc.stdout + proc.stderr)
                # An unknown user is refused the same way.
                proc = mosquitto_pub(server, "-d", "-t", "t", "-m", "x", "-u", "mallory", "-P",
                                     "secret", version=version, check=False)
                self.assertIn(f"received CONNACK ({bad_code})", proc.stdout + proc.stderr)
                # The right passwords (plain and SHA-256) are accepted.
                with MosquittoSub(server, "-t", "auth/t", "-u", "bob", "-P", "hashed-secret",
                                  version=version) as sub:
                    mosquitto_pub(server, "-t", "auth/t", "-m", "ok", "-u", "alice", "-P",
                                  "secret", version=version)
                    sub.wait_messages(1)
        with RawClient(server, version=V5) as raw:
            connack = raw.connect("c", username="alice", password="nope", expect_reason=0x86)
            self.assertTrue(connack.props.get(P_REASON_STRING), "refusal has a reason string")


class ClientIdentifiers(ServerTestCase):
    def test_empty_client_id_rules(self):
        server = self.start_server()
        with self.subTest("3.1.1 clean session: accepted"):
            with RawClient(server, version=V311) as raw:
                connack = raw.connect("", clean=True)
                self.assertFalse(connack.session_present)
                raw.subscribe([("empty/id", 0)])
        with self.subTest("3.1.1 persistent session: identifier rejected (2)"):
            with RawClient(server, version=V311) as raw:
                raw.connect("", clean=False, expect_reason=2)
                raw.expect_closed()
        with self.subTest("3.1 never: identifier rejected (2)"):
            with RawClient(server, version=V31) as raw:
                raw.connect("", clean=True, expect_reason=2)
                raw.expect_closed()
        with self.subTest("5.0: the server assigns one and says so"):
            with RawClient(server, version=V5) as raw:
                connack = raw.connect("", clean=True)
                assigned = connack.props.get(P_ASSIGNED_CLIENT_ID)
                self.assertTrue(assigned, f"no Assigned Client Identifier in {connack}")
            with RawClient(server, version=V5) as raw:
                other = raw.connect("").props.get(P_ASSIGNED_CLIENT_ID)
                self.assertNotEqual(assigned, other)
        with self.subTest("5.0 client that chose an id gets none assigned"):
            with RawClient(server, version=V5) as raw:
                self.assertNotIn(P_ASSIGNED_CLIENT_ID, raw.connect("chosen").props)

    def test_paho_v5_receives_assigned_identifier_and_works(self):
        server = self.start_server()
        with PahoClient(server, "", protocol=V5) as c:
            self.assertTrue(c.connack_properties.AssignedClientIdentifier)
            self.assertEqual(c.subscribe("assigned/t", 1), [1])
            c.publish("assigned/t", b"me", qos=1)
            self.assertEqual(c.wait_messages(1)[0].payload, b"me")

    def test_client_id_longer_than_maximum_refused(self):
        server = self.start_server(settings={"gateway.max_client_id_length": 23})
        with RawClient(server, version=V311) as raw:
            raw.connect("x" * 24, expect_reason=2)
        with RawClient(server, version=V5) as raw:
            raw.connect("x" * 24, expect_reason=0x85)
        with RawClient(server, version=V5) as raw:
            raw.connect("x" * 23)



class Features(ServerTestCase):
    def test_connect_refused_for_unsupported_features(self):
        server = self.start_server(settings={"gateway.maximum_qos": 1,
                                             "gateway.retain_available": False})
        with RawClient(server, version=V5) as raw:
            raw.connect("will-qos2", will={"topic": "w", "payload": b"x", "qos": 2},
                        expect_reason=0x9B)
        with RawClient(server, version=V5) as raw:
            raw.connect("will-retain", will={"topic": "w", "payload": b"x", "retain": True},
                        expect_reason=0x9A)
        with RawClient(server, version=V5) as raw:
            raw.connect("auth-method", properties=[(0x15, "SCRAM-SHA-1")], expect_reason=0x8C)
        with RawClient(server, version=V5) as raw:
            connack = raw.connect("features")
            self.assertEqual((connack.props.get(0x24), connack.props.get(0x25)), (1, 0))
            raw.publish("r/t", b"x", retain=True)
            raw.expect_disconnect(0x9A)

    def test_features_turned_off_are_announced_and_enforced(self):
        server = self.start_server(settings={"gateway.wildcard_subscriptions": False,
                                             "gateway.shared_subscriptions": False,
                                             "gateway.subscription_identifiers": False})
        with RawClient(server, version=V5) as raw:
            connack = raw.connect("nofeatures")
            self.assertEqual([connack.props.get(p) for p in (0x28, 0x29, 0x2A)], [0, 0, 0])
            self.assertEqual(raw.subscribe([("a/+", 0), ("$share/g/a", 0), ("a/b", 1)]).reasons,
                             [0xA2, 0x9E, 1])
            from harness import P_SUBSCRIPTION_ID, subscribe_packet
            raw.send(subscribe_packet(2, [("x", 0)], V5, properties=[(P_SUBSCRIPTION_ID, 3)]))
            raw.expect_disconnect(0xA1)


if __name__ == "__main__":
    unittest.main()
