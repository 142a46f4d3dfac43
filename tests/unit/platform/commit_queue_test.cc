// Group commit against the real SQLite adapter: many writers, few
// transactions, every write durable and answered in order.
#include "commands/commit_queue.h"

#include <atomic>
#include <filesystem>
#include <mutex>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <unistd.h>

#include "counterlink/platform/crypto.h"
#include "counterlink/store/store.h"

namespace counterlink::platform {
namespace {

class CommitQueueTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("cl-commit-" + std::to_string(::getpid()) + "-" + hex(random_bytes(4)));
    std::filesystem::create_directories(dir_);
    store_ = store::open_store({"sqlite://" + (dir_ / "x.db").string()});
    ASSERT_TRUE(store_->create_tenant(store::Tenant{"tn_1", "Acme", "aggregator"}).ok());
  }
  void TearDown() override {
    store_.reset();
    std::filesystem::remove_all(dir_);
  }

  static store::Write create(int n, const std::string& dedup = {}) {
    store::Write w;
    w.kind = store::Write::Kind::kCreateCommand;
    w.command.id = "cm_" + std::to_string(1000000 + n);
    w.command.tenant_id = "tn_1";
    w.command.device_id = "dv_" + std::to_string(n % 7);
    w.command.type = "broadcast";
    w.command.state = "queued";
    w.command.dedup_key = dedup;
    w.command.payload_json = "{}";
    w.command.request_json = "{}";
    w.command.created_ms = w.command.updated_ms = 1000 + n;
    w.event.type = "broadcast.queued";
    w.event.at_ms = 1000 + n;
    w.event.data_json = "{}";
    return w;
  }

  std::filesystem::path dir_;
  std::unique_ptr<store::Store> store_;
};

TEST_F(CommitQueueTest, ConcurrentWritersShareTransactionsAndAllArrive) {
  CommitQueue queue(*store_, 256);
  queue.start();
  constexpr int kThreads = 16, kPerThread = 100;
  std::atomic<int> ok{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        auto out = queue.commit(create(t * kPerThread + i));
        if (out.ok() && out.value().code == store::Code::kOk && out.value().event_seq > 0) ++ok;
      }
    });
  }
  for (auto& t : threads)
    t.join();
  queue.stop();
  EXPECT_EQ(ok.load(), kThreads * kPerThread);
  EXPECT_EQ(queue.writes(), static_cast<uint64_t>(kThreads * kPerThread));
  // Sixteen writers waiting on each other's fsync: far fewer transactions
  // than writes.
  EXPECT_LT(queue.batches(), queue.writes() / 2);
  for (int n : {0, 799, 1599}) {
    EXPECT_TRUE(store_->get_command("tn_1", "cm_" + std::to_string(1000000 + n)).ok()) << n;
  }
  auto events = store_->list_events("tn_1", 0, 1000);
  ASSERT_TRUE(events.ok());
  EXPECT_EQ(events.value().size(), 1000u);
}

TEST_F(CommitQueueTest, OutcomesComeBackInWriteOrderAndConflictsAreOutcomesNotFailures) {
  CommitQueue queue(*store_, 8);
  std::vector<store::Code> codes;
  std::vector<std::string> existing;
  std::mutex mutex;
  for (int i : {0, 1, 8}) {
    // Pushed before start(): one batch; the second and third are for the
    // same device (dv_1) with the same dedup key.
    queue.push(create(i, i == 0 ? "" : "order:7"),
               [&](const store::Status& batch, const store::WriteOutcome& out) {
                 ASSERT_TRUE(batch.ok());
                 std::lock_guard lock(mutex);
                 codes.push_back(out.code);
                 existing.push_back(out.existing_id);
               });
  }
  queue.start();
  queue.stop();  // applies what is queued, then stops
  ASSERT_EQ(codes.size(), 3u);
  EXPECT_EQ(codes[0], store::Code::kOk);
  EXPECT_EQ(codes[1], store::Code::kOk);
  EXPECT_EQ(codes[2], store::Code::kConflict);
  EXPECT_EQ(existing[2], "cm_1000001");
  // After stop, a write fails at once instead of hanging.
  auto late = queue.commit(create(9));
  ASSERT_FALSE(late.ok());
  EXPECT_EQ(late.status().code, store::Code::kUnavailable);
}

}  // namespace
}  // namespace counterlink::platform
