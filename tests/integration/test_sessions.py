"""Persistent sessions, session expiry, clean start and takeover."""
import time
import unittest

from harness import (V311, V5, PUBACK, PUBLISH, P_SESSION_EXPIRY, MosquittoSub, PahoClient,
                     RawClient, ServerTestCase, mosquitto_pub, wait_until)


def wait_sessions(server, count):
    wait_until(lambda: server.metric("counterlink_mqtt_sessions") == count,
               message=f"{count} sessions")


def wait_connections(server, count):
    wait_until(lambda: server.metric("counterlink_mqtt_connections") == count,
               message=f"{count} open connections")


class PersistentSessions(ServerTestCase):
    def test_offline_session_receives_queued_qos1_with_mosquitto_sub(self):
        server = self.start_server()
        for version in (V311, V5):
            with self.subTest(version=version):
                cid, topic = f"offline-{version}", f"offline/{version}"
                expiry = ["-x", "60"] if version == V5 else []
                sub = MosquittoSub(server, "-c", "-i", cid, "-q", "1", "-t", topic, *expiry,
                                   version=version)
                sub.stop()
                wait_connections(server, 0)
                for i in range(3):
                    mosquitto_pub(server, "-t", topic, "-m", f"queued-{i}", "-q", "1",
                                  version=version)
                with MosquittoSub(server, "-c", "-i", cid, "-q", "1", "-t", topic, *expiry,
                                  version=version, wait_subscribed=False) as again:
                    got = again.wait_messages(3)
                    self.assertEqual([m[1] for m in got], [b"queued-0", b"queued-1", b"queued-2"])
                    self.assertTrue(all(m[2] == 1 for m in got))

    def test_session_present_flag(self):
        server = self.start_server()
        with RawClient(server, version=V311) as raw:
            self.assertFalse(raw.connect("sp", clean=False).session_present)
            raw.subscribe([("sp/t", 1)])
        wait_connections(server, 0)
        with RawClient(server, version=V311) as raw:
            self.assertTrue(raw.connect("sp", clean=False).session_present)
        wait_connections(server, 0)
        # Clean session discards it, and a clean session is not kept either.
        with RawClient(server, version=V311) as raw:
            self.assertFalse(raw.connect("sp", clean=True).session_present)
        wait_connections(server, 0)
        with RawClient(server, version=V311) as raw:
            self.assertFalse(raw.connect("sp", clean=False).session_present)

    def test_queued_messages_and_subscriptions_survive_with_paho_311(self):
        server = self.start_server()
        c = PahoClient(server, "paho-persist", protocol=V311, clean=False)
        c.subscribe("persist/#", 1)
        c.disconnect()
        mosquitto_pub(server, "-t", "persist/a", "-m", "while-away", "-q", "1")
        with PahoClient(server, "paho-persist", protocol=V311, clean=False) as again:
            self.assertTrue(again.session_present)
            self.assertEqual(again.wait_messages(1)[0].payload, b"while-away")
            # The subscription itself survived too.
            mosquitto_pub(server, "-t", "persist/b", "-m", "live", "-q", "1")
            self.assertEqual(again.wait_messages(2)[1].payload, b"live")


class SessionExpiry(ServerTestCase):
    def test_session_kept_until_expiry_interval_then_discarded(self):
        server = self.start_server()
        with RawClient(server, version=V5) as raw:
            raw.connect("expiring", properties=[(P_SESSION_EXPIRY, 2)])
            raw.subscribe([("exp/t", 1)])
            raw.disconnect()
        mosquitto_pub(server, "-t", "exp/t", "-m", "kept", "-q", "1")
        # Within the interval: the session and its message are there.
        with RawClient(server, version=V5) as raw:
            connack = raw.connect("expiring", clean=False, properties=[(P_SESSION_EXPIRY, 1)])
            self.assertTrue(connack.session_present)
            msg = raw.expect(PUBLISH)
            self.assertEqual(msg.payload, b"kept")
            raw.ack(PUBACK, msg.packet_id)
            raw.disconnect()
        disconnected_at = time.monotonic()
        # The last CONNECT asked for 1 s: the session goes after about that.
        wait_sessions(server, 0)
        self.assertGreaterEqual(time.monotonic() - disconnected_at, 0.8)
        with RawClient(server, version=V5) as raw:
            self.assertFalse(raw.connect("expiring", clean=False).session_present)

    def test_session_expiry_zero_ends_session_at_disconnect(self):
        server = self.start_server()
        with RawClient(server, version=V5) as raw:
            raw.connect("no-expiry", clean=False)  # no Session Expiry Interval = 0
            raw.subscribe([("noexp/t", 1)])
            raw.disconnect()
        wait_sessions(server, 0)
        with RawClient(server, version=V5) as raw:
            self.assertFalse(raw.connect("no-expiry", clean=False).session_present)

    def test_disconnect_can_shorten_session_expiry(self):
        server = self.start_server()
        with RawClient(server, version=V5) as raw:
            raw.connect("shorten", properties=[(P_SESSION_EXPIRY, 300)])
            raw.disconnect(properties=[(P_SESSION_EXPIRY, 0)])
        wait_sessions(server, 0)

    def test_disconnect_setting_expiry_after_zero_is_protocol_error(self):
        server = self.start_server()
        with RawClient(server, version=V5) as raw:
            raw.connect("zero-then-set")
            raw.send(__import__("harness").disconnect_packet(V5, 0, [(P_SESSION_EXPIRY, 30)]))
            raw.expect_disconnect(0x82)

    def test_clean_start_discards_existing_session(self):
        server = self.start_server()
        with RawClient(server, version=V5) as raw:
            raw.connect("discard", properties=[(P_SESSION_EXPIRY, 60)])
            raw.subscribe([("discard/t", 1)])
            raw.disconnect()
        mosquitto_pub(server, "-t", "discard/t", "-m", "old", "-q", "1")
        with RawClient(server, version=V5) as raw:
            connack = raw.connect("discard", clean=True, properties=[(P_SESSION_EXPIRY, 60)])
            self.assertFalse(connack.session_present)
            raw.assert_silent()  # neither the queued message ...
            mosquitto_pub(server, "-t", "discard/t", "-m", "new", "-q", "1")
            raw.assert_silent()  # ... nor the old subscription


class ExpiryCaps(ServerTestCase):
    def test_session_expiry_capped_by_server_maximum(self):
        server = self.start_server(settings={"gateway.session_expiry_max": 1})
        with RawClient(server, version=V5) as raw:
            connack = raw.connect("capped", properties=[(P_SESSION_EXPIRY, 3600)])
            self.assertEqual(connack.props.get(P_SESSION_EXPIRY), 1)
            raw.disconnect()
        # 3.1.1 persistent sessions get the maximum too.
        with RawClient(server, version=V311) as raw:
            raw.connect("capped-311", clean=False)
            raw.disconnect()
        wait_sessions(server, 0)
        with RawClient(server, version=V311) as raw:
            self.assertFalse(raw.connect("capped-311", clean=False).session_present)

    def test_zero_session_expiry_max_means_no_cap_for_every_version(self):
        server = self.start_server(settings={"gateway.session_expiry_max": 0})
        with RawClient(server, version=V5) as raw:
            connack = raw.connect("uncapped", properties=[(P_SESSION_EXPIRY, 100000)])
            self.assertNotIn(P_SESSION_EXPIRY, connack.props)
            raw.disconnect()
        with RawClient(server, version=V311) as raw:
            raw.connect("uncapped-311", clean=False)
            raw.subscribe([("uncapped/t", 1)])
            raw.disconnect()
        mosquitto_pub(server, "-t", "uncapped/t", "-m", "kept", "-q", "1")
        with RawClient(server, version=V311) as raw:
            self.assertTrue(raw.connect("uncapped-311", clean=False).session_present)
            self.assertEqual(raw.expect(PUBLISH).payload, b"kept")

    def test_message_expiry_capped_by_server_maximum(self):
        server = self.start_server(settings={"gateway.message_expiry_max": 1})
        with RawClient(server, version=V5) as raw:
            raw.connect("mcap", properties=[(P_SESSION_EXPIRY, 60)])
            raw.subscribe([("mcap/t", 1)])
            raw.disconnect()
        mosquitto_pub(server, "-t", "mcap/t", "-m", "no-expiry-asked", "-q", "1")
        time.sleep(1.6)
        with RawClient(server, version=V5) as raw:
            raw.connect("mcap", clean=False, properties=[(P_SESSION_EXPIRY, 60)])
            raw.assert_silent()
        self.assertEqual(server.metric("counterlink_mqtt_messages_dropped_total",
                                       {"reason": "expired"}), 1)


class Takeover(ServerTestCase):
    def test_v5_session_takeover_sends_disconnect_0x8e(self):
        server = self.start_server()
        first = RawClient(server, version=V5)
        self.addCleanup(first.close)
        first.connect("twin", properties=[(P_SESSION_EXPIRY, 60)])
        first.subscribe([("twin/t", 1)])
        with RawClient(server, version=V5) as second:
            connack = second.connect("twin", clean=False, properties=[(P_SESSION_EXPIRY, 60)])
            self.assertTrue(connack.session_present)
            disconnect = first.expect_disconnect(0x8E)
            self.assertTrue(disconnect.reason_string)
            # The session carried over to the new connection.
            mosquitto_pub(server, "-t", "twin/t", "-m", "to-second", "-q", "1")
            self.assertEqual(second.expect(PUBLISH).payload, b"to-second")
        self.assertGreaterEqual(server.metric("counterlink_mqtt_session_takeovers_total"), 1)

    def test_311_session_takeover_closes_first_connection(self):
        server = self.start_server()
        first = RawClient(server, version=V311)
        self.addCleanup(first.close)
        first.connect("twin311", clean=False)
        with RawClient(server, version=V311) as second:
            second.connect("twin311", clean=False)
            self.assertEqual(first.expect_closed(), [])  # no DISCONNECT in 3.1.1

    def test_takeover_with_paho_across_versions(self):
        server = self.start_server()
        old = PahoClient(server, "switcher", protocol=V5)
        self.addCleanup(old.close)
        with PahoClient(server, "switcher", protocol=V311) as new:
            self.assertEqual(old.wait_disconnected(), 0x8E)
            new.subscribe("switch/t", 1)
            new.publish("switch/t", b"x", qos=1)
            new.wait_messages(1)


if __name__ == "__main__":
    unittest.main()
