// DeviceService.ImportDevices: CSV and JSON lines, streamed in chunks.
#include <chrono>

#include "fixture.h"
#include "import_readers.h"

namespace counterlink::platform::testing {
namespace {

using services::CsvReader;
using services::LineReader;
using services::RecordError;

class ImportTest : public ServicesTest {
 protected:
  // Runs one upload as `who`, cutting `body` into pieces of `chunk` bytes
  // (0 = one piece).
  api::Outcome run(const api::Principal& who, const std::string& content_type,
                   const std::string& body, v1::ImportDevicesResponse& resp, size_t chunk = 0,
                   std::map<std::string, std::string> params = {}) {
    const api::UploadFactory* factory =
        registry_.find_upload("counterlink.v1.DeviceService.ImportDevices");
    EXPECT_NE(factory, nullptr);
    auto handler = (*factory)();
    api::CallContext ctx;
    ctx.method = "counterlink.v1.DeviceService.ImportDevices";
    ctx.principal = who;
    if (auto p = handler->start(ctx, content_type, params)) return p;
    if (chunk == 0) chunk = body.size() + 1;
    for (size_t at = 0; at < body.size(); at += chunk) {
      if (auto p = handler->chunk(std::string_view(body).substr(at, chunk))) return p;
    }
    return handler->finish(resp);
  }

  std::vector<std::string> serials(const std::string& tenant) {
    store::DeviceFilter filter;
    filter.tenant_id = tenant;
    store::Page page;
    page.limit = 1000;
    std::vector<std::string> out;
    auto listing = store_->list_devices(filter, page);
    EXPECT_TRUE(listing.ok());
    for (const auto& d : listing.value().items)
      out.push_back(d.serial);
    std::sort(out.begin(), out.end());
    return out;
  }
};

TEST_F(ImportTest, CsvWithQuotedFieldsImportsEveryValidRow) {
  const std::string product = make_product(a_);
  const std::string csv =
      "serial,product_id,labels,firmware_version\r\n"
      "SN-1," +
      product +
      ",\"region=east;line=a\",1.0.0\r\n"
      "\"SN-2\"," +
      product +
      ",\"note=say \"\"hi\"\", then, go\",\r\n"
      "SN-3," +
      product + ",,\r\n";
  v1::ImportDevicesResponse resp;
  auto p = run(a_, "text/csv", csv, resp);
  ASSERT_FALSE(p) << p->detail;
  EXPECT_EQ(resp.imported(), 3);
  EXPECT_EQ(resp.failed(), 0);
  ASSERT_EQ(resp.devices_size(), 3);
  EXPECT_EQ(resp.devices(1).row(), 2);
  EXPECT_EQ(resp.devices(1).serial(), "SN-2");
  EXPECT_EQ(resp.devices(1).secret().size(), 32u);

  auto d2 = store_->get_device(tenant_a_, resp.devices(1).id());
  ASSERT_TRUE(d2.ok());
  EXPECT_EQ(d2.value().labels.at("note"), "say \"hi\", then, go");
  auto d1 = store_->get_device(tenant_a_, resp.devices(0).id());
  EXPECT_EQ(d1.value().labels,
            (std::map<std::string, std::string>{{"region", "east"}, {"line", "a"}}));
  EXPECT_EQ(d1.value().firmware_version, "1.0.0");
  // The generated secret is what the store holds, sealed.
  EXPECT_EQ(keys_->open(d1.value().secret_sealed, d1.value().id).plaintext,
            resp.devices(0).secret());
}

TEST_F(ImportTest, NdjsonImportsRowsAndReportsBadLines) {
  const std::string product = make_product(a_);
  const std::string body =
      "{\"serial\":\"J-1\",\"product_id\":\"" + product +
      "\",\"labels\":{\"region\":\"east\"}}\n"
      "\n"
      "{\"serial\":\"J-2\",\"labels\":\"a=1;b=2\",\"secret\":\"factory-secret-abcdefgh\"}\n"
      "not json\n"
      "{\"serial\":\"J-3\",\"colour\":\"red\"}\n"
      "{\"serial\":42}";
  v1::ImportDevicesResponse resp;
  auto p = run(a_, "application/x-ndjson", body, resp, 0, {{"product_id", product}});
  ASSERT_FALSE(p) << p->detail;
  EXPECT_EQ(resp.imported(), 2);
  EXPECT_EQ(resp.failed(), 3);
  ASSERT_EQ(resp.errors_size(), 3);
  EXPECT_EQ(resp.errors(0).row(), 3);
  EXPECT_EQ(resp.errors(0).code(), "malformed_row");
  EXPECT_EQ(resp.errors(1).row(), 4);
  EXPECT_EQ(resp.errors(1).field(), "colour");
  EXPECT_EQ(resp.errors(2).row(), 5);
  EXPECT_EQ(resp.errors(2).field(), "serial");
  // A row with its own secret gets no generated one back.
  ASSERT_EQ(resp.devices_size(), 2);
  EXPECT_EQ(resp.devices(1).serial(), "J-2");
  EXPECT_EQ(resp.devices(1).secret(), "");
  auto d = store_->get_device(tenant_a_, resp.devices(1).id());
  EXPECT_EQ(keys_->open(d.value().secret_sealed, d.value().id).plaintext,
            "factory-secret-abcdefgh");
  EXPECT_EQ(d.value().labels.at("b"), "2");
}

TEST_F(ImportTest, RowsSplitAcrossChunksAtEveryOffsetParseTheSame) {
  const std::string product = make_product(a_);
  const std::string csv =
      "\xEF\xBB\xBFserial,product_id,labels\r\n"
      "S-1," +
      product +
      ",\"k=a,b\"\r\n"
      "\"S-2\"," +
      product +
      ",\"k=\"\"q\"\"\"\n"
      "S-3," +
      product + ",k=v";
  for (size_t cut = 1; cut <= csv.size(); ++cut) {
    // Every piece size exercises every split point of the first piece.
    std::vector<std::vector<std::string>> records;
    CsvReader reader(1024);
    auto collect = [&](std::vector<std::string>& fields, RecordError error) {
      EXPECT_EQ(error, RecordError::kNone);
      records.push_back(fields);
    };
    reader.feed(std::string_view(csv).substr(0, cut), collect);
    reader.feed(std::string_view(csv).substr(cut), collect);
    reader.finish(collect);
    ASSERT_EQ(records.size(), 4u) << "cut at " << cut;
    EXPECT_EQ(records[1][2], "k=a,b") << cut;
    EXPECT_EQ(records[2][0], "S-2") << cut;
    EXPECT_EQ(records[2][2], "k=\"q\"") << cut;
    EXPECT_EQ(records[3][2], "k=v") << cut;
  }
  // And end to end, one byte at a time, through the handler.
  v1::ImportDevicesResponse resp;
  auto p = run(a_, "text/csv", csv, resp, 1);
  ASSERT_FALSE(p) << p->detail;
  EXPECT_EQ(resp.imported(), 3) << (resp.errors_size() ? resp.errors(0).message() : "");
  EXPECT_EQ(serials(tenant_a_), (std::vector<std::string>{"S-1", "S-2", "S-3"}));
}

TEST_F(ImportTest, NdjsonLinesSplitAcrossChunksAtEveryOffsetParseTheSame) {
  const std::string body = "{\"a\":1}\r\n\n  \n{\"b\":\"x\\ny\"}\n{\"c\":3}";
  for (size_t cut = 0; cut <= body.size(); ++cut) {
    std::vector<std::string> lines;
    LineReader reader(1024);
    auto collect = [&](std::string_view line, RecordError) { lines.emplace_back(line); };
    reader.feed(std::string_view(body).substr(0, cut), collect);
    reader.feed(std::string_view(body).substr(cut), collect);
    reader.finish(collect);
    EXPECT_EQ(lines, (std::vector<std::string>{"{\"a\":1}", "{\"b\":\"x\\ny\"}", "{\"c\":3}"}))
        << cut;
  }
}

TEST_F(ImportTest, CsvReaderReportsOversizedAndUnterminatedRecordsAndGoesOn) {
  std::vector<std::pair<size_t, RecordError>> seen;
  CsvReader reader(16);
  auto collect = [&](std::vector<std::string>& fields, RecordError error) {
    seen.emplace_back(fields.size(), error);
  };
  reader.feed("a,b\n" + std::string(40, 'x') + "\nc,d\n\"open", collect);
  reader.finish(collect);
  ASSERT_EQ(seen.size(), 4u);
  EXPECT_EQ(seen[0].second, RecordError::kNone);
  EXPECT_EQ(seen[1].second, RecordError::kTooLong);
  EXPECT_EQ(seen[2], std::make_pair(size_t{2}, RecordError::kNone));
  EXPECT_EQ(seen[3].second, RecordError::kUnterminatedQuote);
}

// Found by fuzz/import_reader_fuzz: commas used to add fields without
// counting, so a record of a million commas grew without bound.
TEST_F(ImportTest, CsvRecordOfOnlyCommasIsBoundedLikeAnyOther) {
  std::vector<std::pair<size_t, RecordError>> seen;
  CsvReader reader(16);
  auto collect = [&](std::vector<std::string>& fields, RecordError error) {
    seen.emplace_back(fields.size(), error);
  };
  reader.feed(std::string(1 << 20, ',') + "\na,b\n", collect);
  reader.finish(collect);
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[0], std::make_pair(size_t{0}, RecordError::kTooLong));
  EXPECT_EQ(seen[1], std::make_pair(size_t{2}, RecordError::kNone));
}

TEST_F(ImportTest, InvalidAndDuplicateRowsAreReportedAndValidRowsCommitted) {
  const std::string product = make_product(a_);
  make_device(a_, product, "TAKEN");
  const std::string csv =
      "serial,product_id,labels,merchant_id\n"
      "OK-1," +
      product +
      ",,\n"
      "bad serial," +
      product +
      ",,\n"
      "OK-2," +
      product +
      ",Bad=1,\n"
      "OK-1," +
      product +
      ",,\n"
      "TAKEN," +
      product +
      ",,\n"
      "OK-3,pd_00000000000000000000000000,,\n"
      "OK-4," +
      product +
      ",,mc_00000000000000000000000000\n"
      "OK-5," +
      product +
      "\n"
      "OK-6," +
      product + ",,\n";
  v1::ImportDevicesResponse resp;
  auto p = run(a_, "text/csv", csv, resp);
  ASSERT_FALSE(p) << p->detail;
  EXPECT_EQ(resp.imported(), 2);
  EXPECT_EQ(resp.failed(), 7);
  ASSERT_EQ(resp.errors_size(), 7);
  struct Want {
    int row;
    std::string field, code;
  };
  std::vector<Want> want = {{2, "serial", "invalid_argument"},
                            {3, "labels", "invalid_argument"},
                            {4, "serial", "duplicate_serial"},
                            {5, "serial", "serial_taken"},
                            {6, "product_id", "product_not_found"},
                            {7, "merchant_id", "merchant_not_found"},
                            {8, "", "malformed_row"}};
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ(resp.errors(i).row(), want[i].row) << i;
    EXPECT_EQ(resp.errors(i).field(), want[i].field) << i;
    EXPECT_EQ(resp.errors(i).code(), want[i].code) << i << ": " << resp.errors(i).message();
    EXPECT_FALSE(resp.errors(i).message().empty());
  }
  EXPECT_EQ(serials(tenant_a_), (std::vector<std::string>{"OK-1", "OK-6", "TAKEN"}));
}

TEST_F(ImportTest, HeaderProblemsRejectTheUploadBeforeAnyRowIsStored) {
  const std::string product = make_product(a_);
  v1::ImportDevicesResponse resp;
  auto p = run(a_, "text/csv", "serial,colour\nS-1,red\n", resp);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->http_status, 400);
  p = run(a_, "text/csv", "product_id\n" + product + "\n", resp);
  ASSERT_TRUE(p);
  EXPECT_NE(p->detail.find("serial"), std::string::npos);
  p = run(a_, "application/json", "{}", resp);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->http_status, 415);
  EXPECT_EQ(store_->count_devices(tenant_a_).value(), 0);
}

TEST_F(ImportTest, OperatorMustNameTheTenant) {
  v1::ImportDevicesResponse resp;
  auto p = run(admin_, "text/csv", "serial\n", resp);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->field, "tenant_id");
}

TEST_F(ImportTest, DeviceQuotaStopsTheImportAtTheLimit) {
  const std::string tenant = make_tenant("Small", /*max_devices=*/3);
  api::Principal who;
  who.tenant_id = tenant;
  const std::string product = make_product(who);
  make_device(who, product, "EXISTING");
  std::string csv = "serial\n";
  for (int i = 1; i <= 5; ++i)
    csv += "Q-" + std::to_string(i) + "\n";
  v1::ImportDevicesResponse resp;
  auto p = run(who, "text/csv", csv, resp, 0, {{"product_id", product}});
  ASSERT_FALSE(p) << p->detail;
  EXPECT_EQ(resp.imported(), 2);
  EXPECT_EQ(resp.failed(), 3);
  ASSERT_EQ(resp.errors_size(), 3);
  EXPECT_EQ(resp.errors(0).row(), 3);
  EXPECT_EQ(resp.errors(0).code(), "device_quota_exceeded");
  EXPECT_EQ(store_->count_devices(tenant).value(), 3);
}

class SmallBatchImportTest : public ImportTest {
 protected:
  SmallBatchImportTest() {
    import_options_.batch_rows = 7;
    import_options_.max_errors = 5;
  }
};

TEST_F(SmallBatchImportTest, ErrorsListIsCappedInRowOrderAcrossBatches) {
  const std::string product = make_product(a_);
  std::string csv = "serial\n";
  for (int i = 1; i <= 40; ++i) {
    csv += (i % 3 == 0 ? "bad serial " : "S-") + std::to_string(i) + "\n";
  }
  v1::ImportDevicesResponse resp;
  auto p = run(a_, "text/csv", csv, resp, 5, {{"product_id", product}});
  ASSERT_FALSE(p) << p->detail;
  EXPECT_EQ(resp.imported(), 27);
  EXPECT_EQ(resp.failed(), 13);
  ASSERT_EQ(resp.errors_size(), 5);
  EXPECT_EQ(resp.errors_omitted(), 8);
  for (int i = 0; i < 5; ++i)
    EXPECT_EQ(resp.errors(i).row(), 3 * (i + 1));
  ASSERT_EQ(resp.devices_size(), 27);
  EXPECT_TRUE(std::is_sorted(resp.devices().begin(), resp.devices().end(),
                             [](const auto& x, const auto& y) { return x.row() < y.row(); }));
}

TEST_F(ImportTest, HundredThousandRowsImportInOneRequest) {
  const std::string product = make_product(a_);
  std::string csv = "serial,labels\n";
  for (int i = 0; i < 100000; ++i)
    csv += "BULK-" + std::to_string(i) + ",batch=1\n";
  v1::ImportDevicesResponse resp;
  const auto started = std::chrono::steady_clock::now();
  auto p = run(a_, "text/csv", csv, resp, 64 * 1024, {{"product_id", product}});
  const auto seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started);
  ASSERT_FALSE(p) << p->detail;
  EXPECT_EQ(resp.imported(), 100000);
  EXPECT_EQ(resp.failed(), 0);
  EXPECT_EQ(store_->count_devices(tenant_a_).value(), 100000);
  // Reported, not asserted (speed is checked by the benchmarks).
  RecordProperty("import_seconds", std::to_string(seconds.count()));
  std::printf("100k-row import: %.2f s\n", seconds.count());
}

}  // namespace
}  // namespace counterlink::platform::testing
