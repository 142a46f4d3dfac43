"""Graceful stop: SIGTERM disconnects clients with 0x8B and exits 0."""
import unittest

from harness import (V311, V5, P_SESSION_EXPIRY, MosquittoSub, PahoClient, RawClient, Server,
                     ServerTestCase)


class GracefulStop(ServerTestCase):
    def test_sigterm_sends_server_shutting_down_and_exits_zero(self):
        server = Server().start()
        self.addCleanup(server.kill)
        # Enough clients that both workers own some.
        v5 = []
        for i in range(6):
            raw = RawClient(server, version=V5)
            self.addCleanup(raw.close)
            raw.connect(f"stop-{i}", will={"topic": "stop/will", "payload": b"no"})
            v5.append(raw)
        old = RawClient(server, version=V311)
        self.addCleanup(old.close)
        old.connect("stop-311")
        paho = PahoClient(server, "stop-paho")
        self.addCleanup(paho.close)
        ws = PahoClient(server, "stop-ws", transport="websockets")
        self.addCleanup(ws.close)
        sub = MosquittoSub(server, "-t", "stop/#", version=V5)
        self.addCleanup(sub.stop)
        self.assertEqual(server.stop(), 0)  # SIGTERM; asserts exit code 0
        for raw in v5:
            disconnect = raw.expect_disconnect(0x8B)
            self.assertTrue(disconnect.reason_string)
        self.assertEqual(old.expect_closed(), [])  # 3.1.1: just closed
        self.assertEqual(paho.wait_disconnected(), 0x8B)
        self.assertEqual(ws.wait_disconnected(), 0x8B)
        sub.wait_exit()  # its output is complete
        # Wills are not published because the server itself is going away.
        self.assertEqual(sub.messages, [])
        self.assertIn("counterlink.stopping signal=SIGTERM", server.log)

    def test_ops_endpoint_reports_health_readiness_and_metrics(self):
        server = self.start_server()
        self.assertEqual(server.http_get("/healthz")[0], 200)
        self.assertEqual(server.http_get("/readyz")[0], 200)
        with PahoClient(server, "ops-client"):
            self.assertEqual(server.metric("counterlink_mqtt_connections"), 1)
            self.assertEqual(server.metric("counterlink_mqtt_sessions"), 1)
        self.assertEqual(server.http_get("/no-such-page")[0], 404)

    def test_sigterm_with_persistent_sessions_and_queued_messages(self):
        server = Server().start()
        self.addCleanup(server.kill)
        with RawClient(server, version=V5) as raw:
            raw.connect("persist-stop", properties=[(P_SESSION_EXPIRY, 600)])
            raw.subscribe([("ps/t", 1)])
            raw.disconnect()
        with PahoClient(server, "ps-pub") as pub:
            for i in range(20):
                pub.publish("ps/t", str(i).encode(), qos=1)
        self.assertEqual(server.stop(), 0)


if __name__ == "__main__":
    unittest.main()
