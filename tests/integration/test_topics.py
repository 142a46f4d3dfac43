"""Topic matching: wildcards, $-topics, shared subscriptions."""
import unittest

from harness import V311, V5, MosquittoSub, PahoClient, ServerTestCase, mosquitto_pub


class Wildcards(ServerTestCase):
    def test_plus_and_hash_wildcards(self):
        server = self.start_server()
        for version in (V311, V5):
            with self.subTest(version=version):
                with MosquittoSub(server, "-t", "sport/+/score", "-q", "1", version=version) as plus, \
                        MosquittoSub(server, "-t", "sport/#", "-q", "1", version=version) as hash_, \
                        MosquittoSub(server, "-t", "+/+", "-q", "1", version=version) as two, \
                        MosquittoSub(server, "-t", "#", "-q", "1", version=version) as everything:
                    topics = ["sport/tennis/score", "sport", "sport/tennis", "sport/a/b/score",
                              "music/x", "sports/x"]
                    for t in topics:
                        mosquitto_pub(server, "-t", t, "-m", t, "-q", "1", version=version)
                    everything.wait_messages(len(topics))
                    expect = {
                        plus: ["sport/tennis/score"],
                        hash_: ["sport/tennis/score", "sport", "sport/tennis", "sport/a/b/score"],
                        two: ["sport/tennis", "music/x", "sports/x"],
                        everything: topics,
                    }
                    for sub, wanted in expect.items():
                        sub.wait_messages(len(wanted))
                    # everything has arrived at '#'; a wrong extra match would be in too
                    mosquitto_pub(server, "-t", "end/marker", "-m", "end", "-q", "1",
                                  version=version)
                    two.wait_messages(len(expect[two]) + 1)
                    for sub, wanted in expect.items():
                        got = [m[0] for m in sub.messages if m[0] != "end/marker"]
                        self.assertEqual(sorted(got), sorted(wanted), sub.cmd)

    def test_sport_hash_matches_parent_level(self):
        server = self.start_server()
        with MosquittoSub(server, "-t", "sport/#", "-q", "1") as sub:
            mosquitto_pub(server, "-t", "sport", "-m", "parent", "-q", "1")
            self.assertEqual(sub.wait_messages(1)[0][:2], ("sport", b"parent"))

    def test_dollar_topics_not_matched_by_leading_wildcards(self):
        server = self.start_server()
        with PahoClient(server, "all") as everything, PahoClient(server, "plus") as plus, \
                PahoClient(server, "sys") as sys_:
            everything.subscribe("#", 1)
            plus.subscribe("+/info", 1)
            sys_.subscribe("$SYS/#", 1)
            mosquitto_pub(server, "-t", "$SYS/info", "-m", "dollar", "-q", "1")
            self.assertEqual(sys_.wait_messages(1)[0].topic, "$SYS/info")
            mosquitto_pub(server, "-t", "plain/info", "-m", "plain", "-q", "1")
            self.assertEqual([m.topic for m in everything.wait_messages(1)], ["plain/info"])
            self.assertEqual([m.topic for m in plus.wait_messages(1)], ["plain/info"])
            everything.assert_no_message(after=1)
            plus.assert_no_message(after=1, duration=0.1)

    def test_retained_dollar_topics_not_matched_by_hash(self):
        server = self.start_server()
        mosquitto_pub(server, "-t", "$SYS/retained", "-m", "d", "-r")
        mosquitto_pub(server, "-t", "normal/retained", "-m", "n", "-r")
        with PahoClient(server, "r-all") as c:
            c.subscribe("#", 0)
            self.assertEqual([m.topic for m in c.wait_messages(1)], ["normal/retained"])
            c.assert_no_message(after=1)


class SubscriptionLifecycle(ServerTestCase):
    def test_unsubscribe_stops_delivery(self):
        server = self.start_server()
        for version in (V311, V5):
            with self.subTest(version=version):
                with PahoClient(server, f"unsub-{version}", protocol=version) as c:
                    c.subscribe("unsub/a", 1)
                    c.subscribe("unsub/+", 1)
                    c.unsubscribe("unsub/a")
                    mosquitto_pub(server, "-t", "unsub/a", "-m", "via-plus", "-q", "1")
                    self.assertEqual(len(c.wait_messages(1)), 1)
                    c.unsubscribe("unsub/+")
                    mosquitto_pub(server, "-t", "unsub/a", "-m", "none", "-q", "1")
                    c.assert_no_message(after=1)
        from harness import wait_until
        wait_until(lambda: server.subscriptions() == 0, message="no subscriptions left")

    def test_resubscribe_replaces_options(self):
        server = self.start_server()
        with PahoClient(server, "resub") as c:
            self.assertEqual(c.subscribe("resub/t", 0), [0])
            self.assertEqual(c.subscribe("resub/t", 2), [2])
            mosquitto_pub(server, "-t", "resub/t", "-m", "x", "-q", "2")
            msgs = c.wait_messages(1)
            c.assert_no_message(after=1)  # one subscription, not two
            self.assertEqual(msgs[0].qos, 2)
        self.assertEqual(server.subscriptions(), 0)

    def test_nested_filters_survive_unsubscribe_of_parent(self):
        server = self.start_server()
        with PahoClient(server, "nested") as c:
            c.subscribe("n/a/b", 1)
            c.subscribe("n/a", 1)
            c.subscribe("n/a/b/c", 1)
            c.unsubscribe("n/a")
            c.unsubscribe("n/a/b/c")
            for t in ("n/a", "n/a/b", "n/a/b/c"):
                mosquitto_pub(server, "-t", t, "-m", t, "-q", "1")
            self.assertEqual([m.topic for m in c.wait_messages(1)], ["n/a/b"])
            c.assert_no_message(after=1)

    def test_subscription_identifier_on_retained_messages(self):
        server = self.start_server()
        mosquitto_pub(server, "-t", "rsid/t", "-m", "kept", "-r", "-q", "1")
        with PahoClient(server, "rsid") as c:
            c.subscribe("rsid/#", 1, properties={"SubscriptionIdentifier": 77})
            msg = c.wait_messages(1)[0]
            self.assertEqual((msg.payload, msg.retain, msg.subscription_ids), (b"kept", True, [77]))


class SharedSubscriptions(ServerTestCase):
    def test_shared_subscription_delivers_each_message_to_exactly_one_member(self):
        server = self.start_server()
        members = [PahoClient(server, f"member-{i}") for i in range(3)]
        for m in members:
            self.addCleanup(m.close)
            self.assertEqual(m.subscribe("$share/g/jobs/+", 1), [1])
        with PahoClient(server, "other-group") as other, PahoClient(server, "plain") as plain:
            other.subscribe("$share/h/jobs/+", 1)
            plain.subscribe("jobs/+", 1)
            server.wait_subscriptions(5)
            count = 30
            with PahoClient(server, "producer") as producer:
                for i in range(count):
                    producer.publish(f"jobs/{i % 3}", str(i).encode(), qos=1)
            # Every group gets every message once; a plain subscriber too.
            self.assertEqual(sorted(int(m.payload) for m in other.wait_messages(count)),
                             list(range(count)))
            plain.wait_messages(count)
        received = wait_total(members, count)
        payloads = sorted(int(m.payload) for c in members for m in c.messages)
        self.assertEqual(payloads, list(range(count)), "each message to exactly one member")
        self.assertTrue(all(received), f"every member gets some: {received}")

    def test_shared_subscription_with_mosquitto_v5(self):
        server = self.start_server()
        with MosquittoSub(server, "-t", "$share/grp/work", "-q", "1", version=V5) as a, \
                MosquittoSub(server, "-t", "$share/grp/work", "-q", "1", version=V5) as b:
            server.wait_subscriptions(2)
            for i in range(10):
                mosquitto_pub(server, "-t", "work", "-m", str(i), "-q", "1", version=V5)
            wait_for_total = lambda: len(a.messages) + len(b.messages) >= 10
            from harness import wait_until
            wait_until(wait_for_total, message="10 shared messages")
            got = sorted(int(m[1]) for m in a.messages + b.messages)
            self.assertEqual(got, list(range(10)))
            self.assertTrue(a.messages and b.messages)

    def test_offline_persistent_member_is_skipped_while_another_is_online(self):
        # Like EMQX: messages go to connected members; an offline persistent
        # member would only hold them in its queue.
        server = self.start_server()
        away = PahoClient(server, "away", protocol=V311, clean=False)
        here = PahoClient(server, "here")
        self.addCleanup(away.close)
        self.addCleanup(here.close)
        away.subscribe("$share/g/pay/t", 1)
        here.subscribe("$share/g/pay/t", 1)
        server.wait_subscriptions(2)
        away.disconnect()
        from harness import wait_until
        wait_until(lambda: server.metric("counterlink_mqtt_connections") == 1,
                   message="the server saw the member leave")
        with PahoClient(server, "p") as p:
            for i in range(10):
                p.publish("pay/t", str(i).encode(), qos=1)
        self.assertEqual(sorted(int(m.payload) for m in here.wait_messages(10)), list(range(10)))

    def test_member_leaving_group_gets_no_more(self):
        server = self.start_server()
        stay = PahoClient(server, "stay")
        leave = PahoClient(server, "leave")
        self.addCleanup(stay.close)
        self.addCleanup(leave.close)
        stay.subscribe("$share/g/leave/t", 1)
        leave.subscribe("$share/g/leave/t", 1)
        server.wait_subscriptions(2)
        self.assertEqual(leave.unsubscribe("$share/g/leave/t"), [0])
        from harness import wait_until
        wait_until(lambda: server.subscriptions() == 1, message="1 subscription")
        with PahoClient(server, "p") as p:
            for i in range(6):
                p.publish("leave/t", str(i).encode(), qos=1)
        stay.wait_messages(6)
        leave.assert_no_message(duration=0.2)

    def test_shared_and_non_shared_overlap_delivers_two_copies(self):
        # MQTT 5.0 section 4.8.2: one copy by virtue of the non-shared
        # subscription, and one as the (only) member of the group. Several
        # group names, so that group homes fall on both workers.
        server = self.start_server()
        with PahoClient(server, "both-kinds") as c:
            groups = [f"g{i}" for i in range(6)]
            c.subscribe("mix/t", 1, properties={"SubscriptionIdentifier": 100})
            for i, g in enumerate(groups):
                c.subscribe(f"$share/{g}/mix/t", 1, properties={"SubscriptionIdentifier": i + 1})
            server.wait_subscriptions(1 + len(groups))
            mosquitto_pub(server, "-t", "mix/t", "-m", "x", "-q", "1")
            msgs = c.wait_messages(1 + len(groups))
            c.assert_no_message(after=len(msgs))
            self.assertEqual(sorted(tuple(m.subscription_ids) for m in msgs),
                             [(1,), (2,), (3,), (4,), (5,), (6,), (100,)])


def wait_total(clients, count):
    from harness import wait_until
    wait_until(lambda: sum(len(c.messages) for c in clients) >= count,
               message=f"{count} messages across the group")
    # Nothing beyond `count` should follow.
    clients[0].assert_no_message(duration=0.3, after=len(clients[0].messages))
    return [len(c.messages) for c in clients]


if __name__ == "__main__":
    unittest.main()
