// Unit tests for the gateway transports (TCP, TLS, WebSocket) over
// socketpairs and loopback sockets. Both ends are non-blocking and driven from
// the test thread, so a transport that would hang shows up as a timeout
// instead of a stuck test.
#include "transport.h"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

namespace counterlink::gateway {
namespace {

using namespace std::chrono_literals;

constexpr uint8_t kFin = 0x80;
constexpr uint8_t kOpContinuation = 0x0;
constexpr uint8_t kOpText = 0x1;
constexpr uint8_t kOpBinary = 0x2;
constexpr uint8_t kOpClose = 0x8;
constexpr uint8_t kOpPing = 0x9;
constexpr uint8_t kOpPong = 0xA;
constexpr uint32_t kMaxFrameSize = 1024 * 1024;
constexpr std::string_view kRfcKey = "dGhlIHNhbXBsZSBub25jZQ==";
constexpr std::string_view kRfcAccept = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

// --- Plumbing ---------------------------------------------------------------

// Polls `done` until it returns true or the timeout passes.
bool eventually(const std::function<bool()>& done, std::chrono::milliseconds timeout = 5000ms) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (done()) return true;
    std::this_thread::sleep_for(200us);
  }
  return done();
}

void set_nonblocking(int fd) {
  const int flags = fcntl(fd, F_GETFL, 0);
  ASSERT_EQ(fcntl(fd, F_SETFL, flags | O_NONBLOCK), 0);
}

struct SocketPair {
  int server = -1;
  int client = -1;
  SocketPair() = default;
  SocketPair(const SocketPair&) = delete;
  SocketPair& operator=(const SocketPair&) = delete;
  ~SocketPair() {
    if (server >= 0) close(server);
    if (client >= 0) close(client);
  }
  void close_client() {
    close(client);
    client = -1;
  }
};

std::unique_ptr<SocketPair> make_socket_pair() {
  auto pair = std::make_unique<SocketPair>();
  int fds[2];
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, fds) != 0) throw std::runtime_error("socketpair");
  pair->server = fds[0];
  pair->client = fds[1];
  set_nonblocking(pair->server);
  set_nonblocking(pair->client);
  return pair;
}

// Reads until the transport has nothing more; returns the status that ended it.
IoStatus drain(Transport& t, std::string& out, size_t chunk = 4096) {
  std::vector<char> buf(chunk);
  for (;;) {
    const IoResult r = t.read(buf.data(), buf.size());
    if (r.status != IoStatus::kOk) return r.status;
    EXPECT_GT(r.bytes, 0u);
    out.append(buf.data(), r.bytes);
  }
}

// Sends all of `data` on a non-blocking fd, calling `pump` whenever the socket
// is full (so the other side can make room).
void send_all(int fd, std::string_view data, const std::function<void()>& pump = {}) {
  size_t sent = 0;
  ASSERT_TRUE(eventually([&] {
    while (sent < data.size()) {
      const ssize_t n = send(fd, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
      if (n <= 0) break;
      sent += static_cast<size_t>(n);
    }
    if (sent < data.size() && pump) pump();
    return sent == data.size();
  }));
}

// Everything readable on fd right now; sets *eof when the peer has closed.
std::string recv_available(int fd, bool* eof = nullptr) {
  std::string out;
  char buf[8192];
  for (;;) {
    const ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n > 0) {
      out.append(buf, static_cast<size_t>(n));
      continue;
    }
    if (n == 0 && eof != nullptr) *eof = true;
    return out;
  }
}

std::string pattern(size_t n, unsigned seed = 1) {
  std::string s(n, '\0');
  unsigned x = seed;
  for (char& c : s) {
    x = x * 1103515245u + 12345u;
    c = static_cast<char>(x >> 16);
  }
  return s;
}

// --- Test PKI ---------------------------------------------------------------

// A CA, a server certificate for "localhost", a client certificate from the
// CA and a self-signed "rogue" client certificate, written as PEM files into
// a temporary directory for the life of the test process.
class TestPki {
 public:
  static const TestPki& get() {
    static const TestPki pki;
    return pki;
  }

  std::string dir;
  std::string ca_cert, server_cert, server_key, client_cert, client_key, rogue_cert, rogue_key;

 private:
  using Key = std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)>;
  using Cert = std::unique_ptr<X509, decltype(&X509_free)>;

  TestPki() {
    char tmpl[] = "/tmp/transport-test-pki-XXXXXX";
    if (mkdtemp(tmpl) == nullptr) throw std::runtime_error("mkdtemp");
    dir = tmpl;
    Key ca_key = make_key();
    Cert ca = make_cert(ca_key.get(), {{"C", "DE"}, {"O", "Counterlink Test"}, {"CN", "Test CA"}},
                        nullptr, nullptr, true, nullptr);
    Key server_key_pair = make_key();
    Cert server = make_cert(server_key_pair.get(), {{"CN", "localhost"}}, ca.get(), ca_key.get(),
                            false, "DNS:localhost");
    Key client_key_pair = make_key();
    Cert client = make_cert(client_key_pair.get(), {{"C", "DE"}, {"O", "Acme"}, {"CN", "sp-001"}},
                            ca.get(), ca_key.get(), false, nullptr);
    Key rogue_key_pair = make_key();
    Cert rogue =
        make_cert(rogue_key_pair.get(), {{"CN", "rogue"}}, nullptr, nullptr, false, nullptr);
    ca_cert = write_cert(ca.get(), "ca.pem");
    server_cert = write_cert(server.get(), "server.pem");
    server_key = write_key(server_key_pair.get(), "server.key");
    client_cert = write_cert(client.get(), "client.pem");
    client_key = write_key(client_key_pair.get(), "client.key");
    rogue_cert = write_cert(rogue.get(), "rogue.pem");
    rogue_key = write_key(rogue_key_pair.get(), "rogue.key");
  }

  ~TestPki() {
    std::error_code ignored;
    std::filesystem::remove_all(dir, ignored);
  }

  static Key make_key() {
    Key key(EVP_EC_gen("P-256"), &EVP_PKEY_free);
    if (!key) throw std::runtime_error("EVP_EC_gen");
    return key;
  }

  static void add_ext(X509* cert, X509* issuer, int nid, const char* value) {
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, issuer != nullptr ? issuer : cert, cert, nullptr, nullptr, 0);
    X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
    if (ext == nullptr) throw std::runtime_error("X509V3_EXT_conf_nid");
    X509_add_ext(cert, ext, -1);
    X509_EXTENSION_free(ext);
  }

  static Cert make_cert(EVP_PKEY* key, std::vector<std::pair<std::string, std::string>> subject,
                        X509* issuer, EVP_PKEY* issuer_key, bool is_ca, const char* san) {
    static long serial = 1;
    Cert cert(X509_new(), &X509_free);
    X509_set_version(cert.get(), 2);
    ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), serial++);
    X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600);
    X509_gmtime_adj(X509_getm_notAfter(cert.get()), 24 * 3600);
    X509_set_pubkey(cert.get(), key);
    X509_NAME* name = X509_get_subject_name(cert.get());
    for (const auto& [field, value] : subject) {
      X509_NAME_add_entry_by_txt(name, field.c_str(), MBSTRING_ASC,
                                 reinterpret_cast<const unsigned char*>(value.c_str()), -1, -1, 0);
    }
    X509_set_issuer_name(cert.get(), issuer != nullptr ? X509_get_subject_name(issuer) : name);
    add_ext(cert.get(), issuer, NID_basic_constraints, is_ca ? "critical,CA:TRUE" : "CA:FALSE");
    if (is_ca) add_ext(cert.get(), issuer, NID_key_usage, "critical,keyCertSign,cRLSign");
    if (san != nullptr) add_ext(cert.get(), issuer, NID_subject_alt_name, san);
    if (X509_sign(cert.get(), issuer_key != nullptr ? issuer_key : key, EVP_sha256()) == 0) {
      throw std::runtime_error("X509_sign");
    }
    return cert;
  }

  std::string write_cert(X509* cert, const char* file) const {
    const std::string path = dir + "/" + file;
    FILE* f = std::fopen(path.c_str(), "w");
    if (f == nullptr || PEM_write_X509(f, cert) != 1) throw std::runtime_error("write " + path);
    std::fclose(f);
    return path;
  }

  std::string write_key(EVP_PKEY* key, const char* file) const {
    const std::string path = dir + "/" + file;
    FILE* f = std::fopen(path.c_str(), "w");
    if (f == nullptr || PEM_write_PrivateKey(f, key, nullptr, nullptr, 0, nullptr, nullptr) != 1) {
      throw std::runtime_error("write " + path);
    }
    std::fclose(f);
    return path;
  }
};

TlsConfig server_config(bool verify_client = false, bool require_client = false) {
  const TestPki& pki = TestPki::get();
  TlsConfig config;
  config.cert_file = pki.server_cert;
  config.key_file = pki.server_key;
  if (verify_client || require_client) config.ca_file = pki.ca_cert;
  config.verify_client = verify_client;
  config.require_client = require_client;
  return config;
}

std::string sha256_hex_of_der(const std::string& pem_path) {
  FILE* f = std::fopen(pem_path.c_str(), "r");
  X509* cert = PEM_read_X509(f, nullptr, nullptr, nullptr);
  std::fclose(f);
  unsigned char* der = nullptr;
  const int der_len = i2d_X509(cert, &der);
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int digest_len = 0;
  EVP_Digest(der, static_cast<size_t>(der_len), digest, &digest_len, EVP_sha256(), nullptr);
  OPENSSL_free(der);
  X509_free(cert);
  std::string hex;
  char byte[3];
  for (unsigned int i = 0; i < digest_len; ++i) {
    std::snprintf(byte, sizeof byte, "%02x", digest[i]);
    hex += byte;
  }
  return hex;
}

// --- TLS client, driven non-blocking from the test thread ----------------------

class TlsClient {
 public:
  enum class Step { kDone, kPending, kFailed };

  explicit TlsClient(int fd, const std::string& cert = {}, const std::string& key = {}) {
    ctx_ = SSL_CTX_new(TLS_client_method());
    SSL_CTX_load_verify_locations(ctx_, TestPki::get().ca_cert.c_str(), nullptr);
    SSL_CTX_set_verify(ctx_, SSL_VERIFY_PEER, nullptr);
    if (!cert.empty()) {
      EXPECT_EQ(SSL_CTX_use_certificate_file(ctx_, cert.c_str(), SSL_FILETYPE_PEM), 1);
      EXPECT_EQ(SSL_CTX_use_PrivateKey_file(ctx_, key.c_str(), SSL_FILETYPE_PEM), 1);
    }
    ssl_ = SSL_new(ctx_);
    SSL_set_fd(ssl_, fd);
    SSL_set_connect_state(ssl_);
    SSL_set1_host(ssl_, "localhost");
  }
  ~TlsClient() {
    SSL_free(ssl_);
    SSL_CTX_free(ctx_);
    ERR_clear_error();
  }
  TlsClient(const TlsClient&) = delete;
  TlsClient& operator=(const TlsClient&) = delete;

  Step handshake() {
    const int rc = SSL_do_handshake(ssl_);
    if (rc == 1) return Step::kDone;
    const int err = SSL_get_error(ssl_, rc);
    if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) return Step::kPending;
    ERR_clear_error();
    return Step::kFailed;
  }

  // Writes all of data, calling pump while the socket is full.
  bool write(std::string_view data, const std::function<void()>& pump = {}) {
    size_t sent = 0;
    return eventually([&] {
      while (sent < data.size()) {
        const int n = SSL_write(ssl_, data.data() + sent, static_cast<int>(data.size() - sent));
        if (n <= 0) break;
        sent += static_cast<size_t>(n);
      }
      if (sent < data.size() && pump) pump();
      return sent == data.size();
    });
  }

  // Reads what is available: kOk/kWouldBlock, or kClosed/kError at the end.
  IoStatus read(std::string& out) {
    char buf[16384];
    for (;;) {
      const int n = SSL_read(ssl_, buf, sizeof buf);
      if (n > 0) {
        out.append(buf, static_cast<size_t>(n));
        continue;
      }
      const int err = SSL_get_error(ssl_, n);
      if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) return IoStatus::kWouldBlock;
      ERR_clear_error();
      return err == SSL_ERROR_ZERO_RETURN ? IoStatus::kClosed : IoStatus::kError;
    }
  }

  SSL* ssl() const { return ssl_; }

 private:
  SSL_CTX* ctx_ = nullptr;
  SSL* ssl_ = nullptr;
};

// Runs both handshakes (the server's progresses inside read()) and sends one
// marker byte so the server read completes. Returns the server's last status:
// kOk when connected, otherwise why it was not.
IoStatus establish(TlsClient& client, Transport& server) {
  std::string got;
  bool sent = false;
  IoStatus status = IoStatus::kWouldBlock;
  eventually([&] {
    if (!sent && client.handshake() == TlsClient::Step::kDone) {
      sent = client.write("!");
    }
    status = drain(server, got);
    if (status == IoStatus::kError || status == IoStatus::kClosed) return true;
    return !got.empty();
  });
  if (status == IoStatus::kError || status == IoStatus::kClosed) return status;
  return got == "!" ? IoStatus::kOk : IoStatus::kWouldBlock;
}

// --- TCP ----------------------------------------------------------------------

TEST(TcpTransport, ReadReturnsBytesSentByPeer) {
  auto pair = make_socket_pair();
  auto tcp = make_tcp_transport(pair->server);
  send_all(pair->client, "hello");
  char buf[16];
  const IoResult r = tcp->read(buf, sizeof buf);
  ASSERT_EQ(r.status, IoStatus::kOk);
  EXPECT_EQ(std::string(buf, r.bytes), "hello");
  EXPECT_STREQ(tcp->name(), "tcp");
}

TEST(TcpTransport, ReadWouldBlockWhenNothingIsPending) {
  auto pair = make_socket_pair();
  auto tcp = make_tcp_transport(pair->server);
  char buf[16];
  EXPECT_EQ(tcp->read(buf, sizeof buf).status, IoStatus::kWouldBlock);
}

TEST(TcpTransport, ReadReportsClosedOnPeerEof) {
  auto pair = make_socket_pair();
  auto tcp = make_tcp_transport(pair->server);
  send_all(pair->client, "bye");
  pair->close_client();
  std::string got;
  EXPECT_EQ(drain(*tcp, got), IoStatus::kClosed);
  EXPECT_EQ(got, "bye");
}

TEST(TcpTransport, WriteDeliversBytesToPeer) {
  auto pair = make_socket_pair();
  auto tcp = make_tcp_transport(pair->server);
  const IoResult r = tcp->write("ping", 4);
  ASSERT_EQ(r.status, IoStatus::kOk);
  EXPECT_EQ(r.bytes, 4u);
  EXPECT_EQ(recv_available(pair->client), "ping");
  EXPECT_FALSE(tcp->wants_write());
  EXPECT_EQ(tcp->flush().status, IoStatus::kOk);
}

TEST(TcpTransport, WriteWouldBlockWhenSocketBufferIsFull) {
  auto pair = make_socket_pair();
  auto tcp = make_tcp_transport(pair->server);
  const std::string chunk(64 * 1024, 'x');
  size_t written = 0;
  IoResult r;
  for (int i = 0; i < 10000; ++i) {
    r = tcp->write(chunk.data(), chunk.size());
    if (r.status != IoStatus::kOk) break;
    written += r.bytes;
  }
  EXPECT_EQ(r.status, IoStatus::kWouldBlock);
  EXPECT_GT(written, 0u);
}

TEST(TcpTransport, ReadReportsErrorOnConnectionReset) {
  const int listener = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(listener, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(listen(listener, 1), 0);
  socklen_t addr_len = sizeof addr;
  ASSERT_EQ(getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &addr_len), 0);
  const int client = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_EQ(connect(client, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  const int server = accept(listener, nullptr, nullptr);
  ASSERT_GE(server, 0);
  set_nonblocking(server);
  auto tcp = make_tcp_transport(server);

  linger abort_on_close{1, 0};  // close() sends RST
  setsockopt(client, SOL_SOCKET, SO_LINGER, &abort_on_close, sizeof abort_on_close);
  close(client);
  IoStatus status = IoStatus::kWouldBlock;
  EXPECT_TRUE(eventually([&] {
    char buf[16];
    status = tcp->read(buf, sizeof buf).status;
    return status != IoStatus::kWouldBlock;
  }));
  EXPECT_EQ(status, IoStatus::kError);
  close(server);
  close(listener);
}

TEST(TcpTransport, WriteToClosedPeerReportsErrorWithoutSigpipe) {
  auto pair = make_socket_pair();
  auto tcp = make_tcp_transport(pair->server);
  pair->close_client();
  // SIGPIPE (default action: terminate) would kill the test here.
  EXPECT_EQ(tcp->write("x", 1).status, IoStatus::kError);
}

// --- TLS context --------------------------------------------------------------

std::string context_error(const TlsConfig& config) {
  try {
    TlsContext context(config);
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  return {};
}

TEST(TlsContext, LoadsValidCertificateAndKey) {
  EXPECT_NO_THROW(TlsContext context(server_config()));
  EXPECT_NO_THROW(TlsContext context(server_config(true, true)));
}

TEST(TlsContext, ErrorNamesMissingCertificateFile) {
  TlsConfig config = server_config();
  config.cert_file = TestPki::get().dir + "/no-such-cert.pem";
  const std::string error = context_error(config);
  EXPECT_NE(error.find(config.cert_file), std::string::npos) << error;
  EXPECT_NE(error.find("certificate"), std::string::npos) << error;
  EXPECT_NE(error.find("hint:"), std::string::npos) << error;
}

TEST(TlsContext, ErrorNamesMissingKeyFile) {
  TlsConfig config = server_config();
  config.key_file = TestPki::get().dir + "/no-such-key.pem";
  const std::string error = context_error(config);
  EXPECT_NE(error.find(config.key_file), std::string::npos) << error;
}

TEST(TlsContext, RejectsKeyThatDoesNotMatchCertificate) {
  TlsConfig config = server_config();
  config.key_file = TestPki::get().client_key;
  const std::string error = context_error(config);
  EXPECT_NE(error.find("does not match"), std::string::npos) << error;
  EXPECT_NE(error.find(config.key_file), std::string::npos) << error;
}

TEST(TlsContext, ErrorNamesUnreadableCaFile) {
  TlsConfig config = server_config(true);
  config.ca_file = TestPki::get().dir + "/no-such-ca.pem";
  const std::string error = context_error(config);
  EXPECT_NE(error.find(config.ca_file), std::string::npos) << error;
}

TEST(TlsContext, ClientVerificationRequiresCaFile) {
  TlsConfig config = server_config();
  config.verify_client = true;
  EXPECT_NE(context_error(config).find("ca_file"), std::string::npos);
}

// --- TLS transport --------------------------------------------------------------

TEST(TlsTransport, RoundTripsBytesBothWays) {
  auto pair = make_socket_pair();
  TlsContext context(server_config());
  auto tls = make_tls_transport(pair->server, context);
  EXPECT_STREQ(tls->name(), "tls");
  TlsClient client(pair->client);
  ASSERT_EQ(establish(client, *tls), IoStatus::kOk);

  const std::string up = pattern(100000, 7);
  std::string got;
  ASSERT_TRUE(client.write(up, [&] { drain(*tls, got); }));
  ASSERT_TRUE(eventually([&] {
    drain(*tls, got);
    return got.size() >= up.size();
  }));
  EXPECT_EQ(got, up);

  const std::string down = "hello from the broker";
  const IoResult w = tls->write(down.data(), down.size());
  ASSERT_EQ(w.status, IoStatus::kOk);
  EXPECT_EQ(w.bytes, down.size());
  std::string received;
  ASSERT_TRUE(eventually([&] {
    client.read(received);
    return received.size() >= down.size();
  }));
  EXPECT_EQ(received, down);
  EXPECT_FALSE(tls->peer_certificate().has_value());  // no client verification configured
}

TEST(TlsTransport, FlushIsOkWhileHandshakeWaitsForThePeer) {
  auto pair = make_socket_pair();
  TlsContext context(server_config());
  auto tls = make_tls_transport(pair->server, context);
  // Nothing to send yet: kWouldBlock here would make a caller wait for
  // writability, which is immediate, and spin.
  EXPECT_EQ(tls->flush().status, IoStatus::kOk);
  EXPECT_FALSE(tls->wants_write());
}

TEST(TlsTransport, HandshakeFailsOnPlainTextClientWithoutHang) {
  auto pair = make_socket_pair();
  TlsContext context(server_config());
  auto tls = make_tls_transport(pair->server, context);
  // An MQTT 3.1.1 CONNECT sent to the TLS port by mistake.
  const char connect[] = {0x10, 0x0c, 0x00, 0x04, 'M',  'Q',  'T',
                          'T',  0x04, 0x02, 0x00, 0x3c, 0x00, 0x00};
  send_all(pair->client, std::string_view(connect, sizeof connect));
  IoStatus status = IoStatus::kWouldBlock;
  EXPECT_TRUE(eventually(
      [&] {
        char buf[64];
        status = tls->read(buf, sizeof buf).status;
        return status != IoStatus::kWouldBlock;
      },
      2000ms));
  EXPECT_EQ(status, IoStatus::kError);
  char buf[8];
  EXPECT_EQ(tls->read(buf, sizeof buf).status, IoStatus::kError);  // stays failed
}

TEST(TlsTransport, PeerEofDuringHandshakeEndsReadWithoutHang) {
  auto pair = make_socket_pair();
  TlsContext context(server_config());
  auto tls = make_tls_transport(pair->server, context);
  {
    TlsClient client(pair->client);
    EXPECT_EQ(client.handshake(), TlsClient::Step::kPending);  // ClientHello sent
  }
  pair->close_client();
  IoStatus status = IoStatus::kWouldBlock;
  EXPECT_TRUE(eventually([&] {
    char buf[64];
    status = tls->read(buf, sizeof buf).status;
    return status != IoStatus::kWouldBlock;
  }));
  EXPECT_TRUE(status == IoStatus::kClosed || status == IoStatus::kError);
}

TEST(TlsTransport, ReportsVerifiedClientCertificate) {
  const TestPki& pki = TestPki::get();
  auto pair = make_socket_pair();
  TlsContext context(server_config(true, true));
  auto tls = make_tls_transport(pair->server, context);
  TlsClient client(pair->client, pki.client_cert, pki.client_key);
  ASSERT_EQ(establish(client, *tls), IoStatus::kOk);

  const std::optional<PeerCertificate> peer = tls->peer_certificate();
  ASSERT_TRUE(peer.has_value());
  EXPECT_EQ(peer->subject, "CN=sp-001,O=Acme,C=DE");
  EXPECT_EQ(peer->common_name, "sp-001");
  EXPECT_EQ(peer->fingerprint_sha256, sha256_hex_of_der(pki.client_cert));
  EXPECT_EQ(peer->fingerprint_sha256.size(), 64u);
}

TEST(TlsTransport, RequireClientRefusesClientWithoutCertificate) {
  auto pair = make_socket_pair();
  TlsContext context(server_config(true, true));
  auto tls = make_tls_transport(pair->server, context);
  TlsClient client(pair->client);
  EXPECT_EQ(establish(client, *tls), IoStatus::kError);
  EXPECT_FALSE(tls->peer_certificate().has_value());
}

TEST(TlsTransport, OptionalClientVerificationAcceptsClientWithoutCertificate) {
  auto pair = make_socket_pair();
  TlsContext context(server_config(true, false));
  auto tls = make_tls_transport(pair->server, context);
  TlsClient client(pair->client);
  ASSERT_EQ(establish(client, *tls), IoStatus::kOk);
  EXPECT_FALSE(tls->peer_certificate().has_value());
}

TEST(TlsTransport, RefusesClientCertificateFromUnknownCa) {
  const TestPki& pki = TestPki::get();
  auto pair = make_socket_pair();
  TlsContext context(server_config(true, false));
  auto tls = make_tls_transport(pair->server, context);
  TlsClient client(pair->client, pki.rogue_cert, pki.rogue_key);
  EXPECT_EQ(establish(client, *tls), IoStatus::kError);
}

TEST(TlsTransport, ReportsClosedOnCloseNotify) {
  auto pair = make_socket_pair();
  TlsContext context(server_config());
  auto tls = make_tls_transport(pair->server, context);
  TlsClient client(pair->client);
  ASSERT_EQ(establish(client, *tls), IoStatus::kOk);
  SSL_shutdown(client.ssl());
  std::string got;
  IoStatus status = IoStatus::kWouldBlock;
  EXPECT_TRUE(eventually([&] { return (status = drain(*tls, got)) != IoStatus::kWouldBlock; }));
  EXPECT_EQ(status, IoStatus::kClosed);
}

TEST(TlsTransport, ReportsClosedOnPeerEofWithoutCloseNotify) {
  auto pair = make_socket_pair();
  TlsContext context(server_config());
  auto tls = make_tls_transport(pair->server, context);
  {
    TlsClient client(pair->client);
    ASSERT_EQ(establish(client, *tls), IoStatus::kOk);
    // Take the session tickets first: closing an AF_UNIX socket with unread
    // data makes the peer see ECONNRESET (an error, rightly) instead of EOF.
    std::string ignored;
    client.read(ignored);
  }
  pair->close_client();
  std::string got;
  IoStatus status = IoStatus::kWouldBlock;
  EXPECT_TRUE(eventually([&] { return (status = drain(*tls, got)) != IoStatus::kWouldBlock; }));
  EXPECT_EQ(status, IoStatus::kClosed);
}

TEST(TlsTransport, CloseGracefullySendsCloseNotify) {
  auto pair = make_socket_pair();
  TlsContext context(server_config());
  auto tls = make_tls_transport(pair->server, context);
  TlsClient client(pair->client);
  ASSERT_EQ(establish(client, *tls), IoStatus::kOk);
  tls->close_gracefully();
  std::string got;
  IoStatus status = IoStatus::kWouldBlock;
  EXPECT_TRUE(eventually([&] { return (status = client.read(got)) != IoStatus::kWouldBlock; }));
  EXPECT_EQ(status, IoStatus::kClosed);
}

TEST(TlsTransport, KeepsBlockedWriteAndFinishesItInFlush) {
  auto pair = make_socket_pair();
  TlsContext context(server_config());
  auto tls = make_tls_transport(pair->server, context);
  TlsClient client(pair->client);
  ASSERT_EQ(establish(client, *tls), IoStatus::kOk);

  // Far more than the socket buffers hold: writes must block and resume.
  const std::string data = pattern(4 * 1024 * 1024, 3);
  std::string received;
  size_t offset = 0;
  bool saw_backpressure = false;
  ASSERT_TRUE(eventually(
      [&] {
        while (offset < data.size()) {
          const IoResult r = tls->write(data.data() + offset, data.size() - offset);
          if (r.status != IoStatus::kOk) {
            EXPECT_EQ(r.status, IoStatus::kWouldBlock);
            break;
          }
          offset += r.bytes;
        }
        if (tls->wants_write()) {
          saw_backpressure = true;
          client.read(received);
          EXPECT_NE(tls->flush().status, IoStatus::kError);
        } else {
          client.read(received);
        }
        return received.size() == data.size();
      },
      20000ms));
  EXPECT_TRUE(saw_backpressure);
  EXPECT_TRUE(received == data);
  EXPECT_FALSE(tls->wants_write());
}

TEST(TlsTransport, WriteToClosedPeerReportsErrorWithoutSigpipe) {
  auto pair = make_socket_pair();
  TlsContext context(server_config());
  auto tls = make_tls_transport(pair->server, context);
  {
    TlsClient client(pair->client);
    ASSERT_EQ(establish(client, *tls), IoStatus::kOk);
  }
  pair->close_client();
  IoStatus status = IoStatus::kOk;
  for (int i = 0; i < 100 && status == IoStatus::kOk; ++i)
    status = tls->write("data", 4).status;
  EXPECT_EQ(status, IoStatus::kError);
}

// --- WebSocket helpers ----------------------------------------------------------

std::string upgrade_request(std::vector<std::string> headers, std::string_view path = "/mqtt",
                            std::string_view method = "GET") {
  std::string request = std::string(method) + " " + std::string(path) + " HTTP/1.1\r\n";
  for (const std::string& h : headers)
    request += h + "\r\n";
  return request + "\r\n";
}

std::vector<std::string> standard_headers(std::string_view protocols = "mqtt") {
  std::vector<std::string> h = {
      "Host: localhost",           "Upgrade: websocket",
      "Connection: Upgrade",       "Sec-WebSocket-Key: " + std::string(kRfcKey),
      "Sec-WebSocket-Version: 13",
  };
  if (!protocols.empty()) h.push_back("Sec-WebSocket-Protocol: " + std::string(protocols));
  return h;
}

// A client frame: masked unless told otherwise, with the shortest length form.
std::string client_frame(uint8_t first_byte, std::string_view payload, bool masked = true) {
  std::string f(1, static_cast<char>(first_byte));
  const uint8_t mask_bit = masked ? 0x80 : 0x00;
  const uint64_t n = payload.size();
  if (n < 126) {
    f += static_cast<char>(mask_bit | n);
  } else if (n <= 0xFFFF) {
    f += static_cast<char>(mask_bit | 126);
    f += static_cast<char>(n >> 8);
    f += static_cast<char>(n);
  } else {
    f += static_cast<char>(mask_bit | 127);
    for (int i = 7; i >= 0; --i)
      f += static_cast<char>(n >> (8 * i));
  }
  if (!masked) return f + std::string(payload);
  const uint8_t key[4] = {0x37, 0xfa, 0x21, 0x3d};
  f.append(reinterpret_cast<const char*>(key), 4);
  for (size_t i = 0; i < payload.size(); ++i)
    f += static_cast<char>(payload[i] ^ key[i % 4]);
  return f;
}

std::string close_payload(uint16_t code) {
  return {static_cast<char>(code >> 8), static_cast<char>(code & 0xFF)};
}

std::string status_line(const std::string& reply) {
  return reply.substr(0, reply.find("\r\n"));
}

struct Frame {
  uint8_t first_byte = 0;
  bool masked = false;
  std::string payload;
  uint8_t opcode() const { return first_byte & 0x0F; }
  bool fin() const { return (first_byte & 0x80) != 0; }
  uint16_t close_code() const {
    return payload.size() < 2 ? 0
                              : static_cast<uint16_t>((static_cast<uint8_t>(payload[0]) << 8) |
                                                      static_cast<uint8_t>(payload[1]));
  }
};

// Takes one complete server frame off the front of buf.
bool take_frame(std::string& buf, Frame& frame) {
  if (buf.size() < 2) return false;
  const uint8_t b1 = static_cast<uint8_t>(buf[1]);
  uint64_t len = b1 & 0x7F;
  size_t pos = 2;
  if (len == 126 || len == 127) {
    const size_t width = len == 126 ? 2 : 8;
    if (buf.size() < 2 + width) return false;
    len = 0;
    for (size_t i = 0; i < width; ++i)
      len = (len << 8) | static_cast<uint8_t>(buf[2 + i]);
    pos += width;
  }
  frame.masked = (b1 & 0x80) != 0;
  if (frame.masked) pos += 4;
  if (buf.size() < pos + len) return false;
  frame.first_byte = static_cast<uint8_t>(buf[0]);
  frame.payload = buf.substr(pos, len);
  buf.erase(0, pos + len);
  return true;
}

class WebSocketTransportTest : public ::testing::Test {
 protected:
  void SetUp() override {
    pair_ = make_socket_pair();
    ws_ = make_websocket_transport(make_tcp_transport(pair_->server), "/mqtt", kMaxFrameSize);
  }

  // Sends `request`, lets the server answer it, and returns the HTTP reply
  // head plus anything after it; server_status_ is the server's last status.
  std::string exchange(std::string_view request) {
    send_all(pair_->client, request);
    std::string reply;
    eventually([&] {
      std::string ignored;
      server_status_ = drain(*ws_, ignored);
      reply += recv_available(pair_->client);
      return reply.find("\r\n\r\n") != std::string::npos;
    });
    return reply;
  }

  void upgrade() {
    const std::string reply = exchange(upgrade_request(standard_headers()));
    ASSERT_EQ(reply.rfind("HTTP/1.1 101 ", 0), 0u) << reply;
    ASSERT_EQ(server_status_, IoStatus::kWouldBlock);
  }

  // Sends raw bytes and collects the server's payload until `want` bytes or
  // a non-kWouldBlock end; returns that end status.
  IoStatus send_and_read(std::string_view bytes, std::string& got, size_t want,
                         size_t chunk = 4096) {
    IoStatus status = IoStatus::kWouldBlock;
    send_all(pair_->client, bytes, [&] { status = drain(*ws_, got, chunk); });
    eventually([&] {
      status = drain(*ws_, got, chunk);
      return status != IoStatus::kWouldBlock || got.size() >= want;
    });
    return status;
  }

  // Frames the server has sent so far.
  std::vector<Frame> server_frames() {
    pending_ += recv_available(pair_->client);
    std::vector<Frame> frames;
    Frame f;
    while (take_frame(pending_, f))
      frames.push_back(f);
    return frames;
  }

  // Expects a close frame with `code` and kError from read().
  void expect_failure_with_close(std::string_view bytes, uint16_t code) {
    std::string got;
    EXPECT_EQ(send_and_read(bytes, got, SIZE_MAX), IoStatus::kError);
    const std::vector<Frame> frames = server_frames();
    ASSERT_EQ(frames.size(), 1u);
    EXPECT_EQ(frames[0].opcode(), kOpClose);
    EXPECT_EQ(frames[0].close_code(), code);
    EXPECT_FALSE(frames[0].masked);
  }

  std::unique_ptr<SocketPair> pair_;
  std::unique_ptr<Transport> ws_;
  IoStatus server_status_ = IoStatus::kWouldBlock;
  std::string pending_;
};

// --- WebSocket upgrade ----------------------------------------------------------

TEST_F(WebSocketTransportTest, HandshakeRepliesWithRfc6455AcceptValue) {
  const std::string reply = exchange(upgrade_request(standard_headers()));
  EXPECT_EQ(status_line(reply), "HTTP/1.1 101 Switching Protocols");
  EXPECT_NE(reply.find("\r\nSec-WebSocket-Accept: " + std::string(kRfcAccept) + "\r\n"),
            std::string::npos)
      << reply;
  EXPECT_NE(reply.find("\r\nUpgrade: websocket\r\n"), std::string::npos);
  EXPECT_NE(reply.find("\r\nConnection: Upgrade\r\n"), std::string::npos);
  EXPECT_NE(reply.find("\r\nSec-WebSocket-Protocol: mqtt\r\n"), std::string::npos);
  EXPECT_EQ(server_status_, IoStatus::kWouldBlock);
  EXPECT_STREQ(ws_->name(), "ws");
}

TEST_F(WebSocketTransportTest, PrefersMqttSubprotocolWhenBothAreOffered) {
  const std::string reply = exchange(upgrade_request(standard_headers("mqttv3.1, mqtt")));
  EXPECT_EQ(status_line(reply), "HTTP/1.1 101 Switching Protocols");
  EXPECT_NE(reply.find("\r\nSec-WebSocket-Protocol: mqtt\r\n"), std::string::npos) << reply;
}

TEST_F(WebSocketTransportTest, AcceptsMqttv31SubprotocolWhenOnlyItIsOffered) {
  const std::string reply = exchange(upgrade_request(standard_headers("chat, mqttv3.1")));
  EXPECT_EQ(status_line(reply), "HTTP/1.1 101 Switching Protocols");
  EXPECT_NE(reply.find("\r\nSec-WebSocket-Protocol: mqttv3.1\r\n"), std::string::npos) << reply;
}

TEST_F(WebSocketTransportTest, RefusesRequestWithoutMqttSubprotocol) {
  const std::string reply = exchange(upgrade_request(standard_headers("")));
  EXPECT_EQ(status_line(reply), "HTTP/1.1 400 Bad Request");
  EXPECT_NE(reply.find("requires the subprotocol"), std::string::npos) << reply;
  EXPECT_EQ(server_status_, IoStatus::kError);
}

TEST_F(WebSocketTransportTest, RefusesOtherSubprotocolsOnly) {
  const std::string reply = exchange(upgrade_request(standard_headers("chat, superchat")));
  EXPECT_EQ(status_line(reply), "HTTP/1.1 400 Bad Request");
  EXPECT_EQ(server_status_, IoStatus::kError);
}

TEST_F(WebSocketTransportTest, RefusesWrongPathWith404) {
  const std::string reply = exchange(upgrade_request(standard_headers(), "/other"));
  EXPECT_EQ(status_line(reply), "HTTP/1.1 404 Not Found");
  EXPECT_EQ(server_status_, IoStatus::kError);
}

TEST_F(WebSocketTransportTest, IgnoresQueryStringWhenMatchingPath) {
  const std::string reply = exchange(upgrade_request(standard_headers(), "/mqtt?client=1"));
  EXPECT_EQ(status_line(reply), "HTTP/1.1 101 Switching Protocols");
}

TEST_F(WebSocketTransportTest, RefusesUnsupportedVersionWith426) {
  std::vector<std::string> headers = standard_headers();
  headers[4] = "Sec-WebSocket-Version: 8";
  const std::string reply = exchange(upgrade_request(headers));
  EXPECT_EQ(status_line(reply), "HTTP/1.1 426 Upgrade Required");
  EXPECT_NE(reply.find("\r\nSec-WebSocket-Version: 13\r\n"), std::string::npos) << reply;
  EXPECT_EQ(server_status_, IoStatus::kError);
}

TEST_F(WebSocketTransportTest, RefusesPlainHttpRequestWith400) {
  const std::string reply = exchange("GET /mqtt HTTP/1.1\r\nHost: localhost\r\n\r\n");
  EXPECT_EQ(status_line(reply), "HTTP/1.1 400 Bad Request");
  EXPECT_EQ(server_status_, IoStatus::kError);
}

TEST_F(WebSocketTransportTest, RefusesMissingOrMalformedKey) {
  std::vector<std::string> headers = standard_headers();
  headers[3] = "Sec-WebSocket-Key: c2hvcnQ=";  // base64 of 5 bytes
  const std::string reply = exchange(upgrade_request(headers));
  EXPECT_EQ(status_line(reply), "HTTP/1.1 400 Bad Request");
  EXPECT_EQ(server_status_, IoStatus::kError);
}

TEST_F(WebSocketTransportTest, RefusesNonGetMethodWith405) {
  const std::string reply = exchange(upgrade_request(standard_headers(), "/mqtt", "POST"));
  EXPECT_EQ(status_line(reply), "HTTP/1.1 405 Method Not Allowed");
  EXPECT_EQ(server_status_, IoStatus::kError);
}

TEST_F(WebSocketTransportTest, RefusesRequestHeadOver8KiBWith431) {
  std::vector<std::string> headers = standard_headers();
  headers.push_back("X-Padding: " + std::string(9000, 'a'));
  const std::string reply = exchange(upgrade_request(headers));
  EXPECT_EQ(status_line(reply), "HTTP/1.1 431 Request Header Fields Too Large");
  EXPECT_EQ(server_status_, IoStatus::kError);
}

TEST_F(WebSocketTransportTest, AcceptsRequestHeadOfExactly8KiB) {
  std::vector<std::string> headers = standard_headers();
  const size_t base = upgrade_request(headers).size() + std::string("X-Padding: \r\n").size();
  headers.push_back("X-Padding: " + std::string(8192 - base, 'a'));
  ASSERT_EQ(upgrade_request(headers).size(), 8192u);
  EXPECT_EQ(status_line(exchange(upgrade_request(headers))), "HTTP/1.1 101 Switching Protocols");
}

TEST_F(WebSocketTransportTest, AcceptsRequestSplitIntoOneBytePieces) {
  const std::string request = upgrade_request(standard_headers());
  for (char c : request) {
    send_all(pair_->client, std::string_view(&c, 1));
    char buf[64];
    ASSERT_EQ(ws_->read(buf, sizeof buf).status, IoStatus::kWouldBlock);
  }
  const std::string reply = recv_available(pair_->client);
  EXPECT_EQ(status_line(reply), "HTTP/1.1 101 Switching Protocols");
  EXPECT_NE(reply.find(std::string(kRfcAccept)), std::string::npos);
}

TEST_F(WebSocketTransportTest, MatchesHeaderNamesAndTokensCaseInsensitively) {
  const std::string reply = exchange(
      "GET /mqtt HTTP/1.1\r\nhost: x\r\nUPGRADE: WebSocket\r\nconnection: keep-alive, upgrade\r\n"
      "sec-websocket-key: " +
      std::string(kRfcKey) +
      "\r\nsec-websocket-version:13\r\nsec-websocket-protocol: MQTT\r\n\r\n");
  EXPECT_EQ(status_line(reply), "HTTP/1.1 101 Switching Protocols");
  EXPECT_NE(reply.find("\r\nSec-WebSocket-Protocol: MQTT\r\n"), std::string::npos) << reply;
}

TEST_F(WebSocketTransportTest, KeepsFrameBytesThatArriveWithTheRequestHead) {
  const std::string bytes =
      upgrade_request(standard_headers()) + client_frame(kFin | kOpBinary, "early bytes");
  std::string got;
  EXPECT_EQ(send_and_read(bytes, got, 11), IoStatus::kWouldBlock);
  EXPECT_EQ(got, "early bytes");
}

// --- WebSocket framing ----------------------------------------------------------

TEST_F(WebSocketTransportTest, DeliversEarlyFrameBytesIntoOneByteReadBuffers) {
  const std::string payload = pattern(300, 4);
  const std::string bytes = upgrade_request(standard_headers()) +
                            client_frame(kFin | kOpBinary, payload) +
                            client_frame(kFin | kOpBinary, "end");
  std::string got;
  EXPECT_EQ(send_and_read(bytes, got, payload.size() + 3, 1), IoStatus::kWouldBlock);
  EXPECT_TRUE(got == payload + "end");
}

TEST_F(WebSocketTransportTest, ReassemblesMaskedBinaryFramesOfAllLengthForms) {
  upgrade();
  const std::string small = pattern(125, 1);
  const std::string medium = pattern(126, 2);   // 16-bit length form
  const std::string large = pattern(70000, 3);  // 64-bit length form
  const std::string empty;
  const std::string bytes =
      client_frame(kFin | kOpBinary, small) + client_frame(kFin | kOpBinary, medium) +
      client_frame(kFin | kOpBinary, empty) + client_frame(kFin | kOpBinary, large);
  std::string got;
  EXPECT_EQ(send_and_read(bytes, got, small.size() + medium.size() + large.size(), 1000),
            IoStatus::kWouldBlock);
  EXPECT_TRUE(got == small + medium + large);
}

TEST_F(WebSocketTransportTest, DeliversFragmentedMessageWithInterleavedPing) {
  upgrade();
  const std::string bytes = client_frame(kOpBinary, "one-") + client_frame(kFin | kOpPing, "hb") +
                            client_frame(kOpContinuation, "two-") +
                            client_frame(kFin | kOpContinuation, "three");
  std::string got;
  EXPECT_EQ(send_and_read(bytes, got, 13), IoStatus::kWouldBlock);
  EXPECT_EQ(got, "one-two-three");
  const std::vector<Frame> frames = server_frames();
  ASSERT_EQ(frames.size(), 1u);
  EXPECT_EQ(frames[0].opcode(), kOpPong);
  EXPECT_EQ(frames[0].payload, "hb");
}

TEST_F(WebSocketTransportTest, DecodesFramesDeliveredOneByteAtATime) {
  upgrade();
  const std::string payload = pattern(300, 9);
  const std::string bytes = client_frame(kFin | kOpBinary, payload) +
                            client_frame(kFin | kOpPing, "p") +
                            client_frame(kFin | kOpBinary, "tail");
  std::string got;
  for (char c : bytes) {
    send_all(pair_->client, std::string_view(&c, 1));
    EXPECT_EQ(drain(*ws_, got, 7), IoStatus::kWouldBlock);
  }
  EXPECT_TRUE(got == payload + "tail");
  const std::vector<Frame> frames = server_frames();
  ASSERT_EQ(frames.size(), 1u);
  EXPECT_EQ(frames[0].payload, "p");
}

TEST_F(WebSocketTransportTest, AnswersPingWithPongCarryingSamePayload) {
  upgrade();
  std::string got;
  EXPECT_EQ(send_and_read(client_frame(kFin | kOpPing, "are you there?"), got, 0),
            IoStatus::kWouldBlock);
  EXPECT_TRUE(got.empty());
  const std::vector<Frame> frames = server_frames();
  ASSERT_EQ(frames.size(), 1u);
  EXPECT_EQ(frames[0].first_byte, kFin | kOpPong);
  EXPECT_FALSE(frames[0].masked);
  EXPECT_EQ(frames[0].payload, "are you there?");
}

TEST_F(WebSocketTransportTest, IgnoresUnsolicitedPong) {
  upgrade();
  std::string got;
  EXPECT_EQ(send_and_read(client_frame(kFin | kOpPong, "x") + client_frame(kFin | kOpBinary, "d"),
                          got, 1),
            IoStatus::kWouldBlock);
  EXPECT_EQ(got, "d");
  EXPECT_TRUE(server_frames().empty());
}

TEST_F(WebSocketTransportTest, AnswersCloseAndReportsClosed) {
  upgrade();
  std::string got;
  EXPECT_EQ(send_and_read(client_frame(kFin | kOpBinary, "last") +
                              client_frame(kFin | kOpClose, close_payload(1000) + "bye"),
                          got, SIZE_MAX),
            IoStatus::kClosed);
  EXPECT_EQ(got, "last");
  const std::vector<Frame> frames = server_frames();
  ASSERT_EQ(frames.size(), 1u);
  EXPECT_EQ(frames[0].opcode(), kOpClose);
  EXPECT_EQ(frames[0].close_code(), 1000);
  char buf[8];
  EXPECT_EQ(ws_->read(buf, sizeof buf).status, IoStatus::kClosed);
  EXPECT_EQ(ws_->write("x", 1).status, IoStatus::kError);
}

TEST_F(WebSocketTransportTest, CloseDecodedWithPayloadIsReportedThroughFlush) {
  upgrade();
  send_all(pair_->client, client_frame(kFin | kOpBinary, "final") +
                              client_frame(kFin | kOpClose, close_payload(1000)));
  char buf[4096];
  const IoResult r = ws_->read(buf, sizeof buf);
  ASSERT_EQ(r.status, IoStatus::kOk);
  EXPECT_EQ(std::string(buf, r.bytes), "final");
  // The socket holds nothing more to wake a read, so the ending shows up as
  // wanting a flush, which reports it.
  EXPECT_TRUE(ws_->wants_write());
  EXPECT_EQ(ws_->flush().status, IoStatus::kClosed);
  EXPECT_FALSE(ws_->wants_write());
  const std::vector<Frame> frames = server_frames();
  ASSERT_EQ(frames.size(), 1u);
  EXPECT_EQ(frames[0].close_code(), 1000);
}

TEST_F(WebSocketTransportTest, ProtocolErrorDecodedWithPayloadIsReportedThroughFlush) {
  upgrade();
  send_all(pair_->client,
           client_frame(kFin | kOpBinary, "valid") + client_frame(kFin | kOpText, "text"));
  char buf[4096];
  const IoResult r = ws_->read(buf, sizeof buf);
  ASSERT_EQ(r.status, IoStatus::kOk);
  EXPECT_EQ(std::string(buf, r.bytes), "valid");
  EXPECT_TRUE(ws_->wants_write());
  EXPECT_EQ(ws_->flush().status, IoStatus::kError);
  EXPECT_EQ(ws_->read(buf, sizeof buf).status, IoStatus::kError);
}

TEST_F(WebSocketTransportTest, AnswersEmptyCloseWithEmptyClose) {
  upgrade();
  std::string got;
  EXPECT_EQ(send_and_read(client_frame(kFin | kOpClose, ""), got, SIZE_MAX), IoStatus::kClosed);
  const std::vector<Frame> frames = server_frames();
  ASSERT_EQ(frames.size(), 1u);
  EXPECT_EQ(frames[0].opcode(), kOpClose);
  EXPECT_TRUE(frames[0].payload.empty());
}

TEST_F(WebSocketTransportTest, ReportsClosedOnPeerEof) {
  upgrade();
  pair_->close_client();
  std::string got;
  EXPECT_EQ(drain(*ws_, got), IoStatus::kClosed);
}

TEST_F(WebSocketTransportTest, RejectsUnmaskedClientFrameWith1002) {
  upgrade();
  expect_failure_with_close(client_frame(kFin | kOpBinary, "plain", false), 1002);
}

TEST_F(WebSocketTransportTest, RejectsOversizeFrameWith1009) {
  upgrade();
  // Only the header is needed: the length alone exceeds max_frame_size.
  const std::string frame = client_frame(kFin | kOpBinary, std::string(kMaxFrameSize + 1, 'x'));
  expect_failure_with_close(frame.substr(0, 14), 1009);
}

TEST_F(WebSocketTransportTest, RejectsTextFrameWith1003) {
  upgrade();
  expect_failure_with_close(client_frame(kFin | kOpText, "{\"json\":1}"), 1003);
}

TEST_F(WebSocketTransportTest, RejectsReservedBitsWith1002) {
  upgrade();
  expect_failure_with_close(client_frame(kFin | 0x40 | kOpBinary, "compressed?"), 1002);
}

TEST_F(WebSocketTransportTest, RejectsContinuationWithoutMessageWith1002) {
  upgrade();
  expect_failure_with_close(client_frame(kFin | kOpContinuation, "orphan"), 1002);
}

TEST_F(WebSocketTransportTest, RejectsNewMessageInsideFragmentedOneWith1002) {
  upgrade();
  std::string got;
  EXPECT_EQ(send_and_read(client_frame(kOpBinary, "start") + client_frame(kFin | kOpBinary, "new"),
                          got, SIZE_MAX),
            IoStatus::kError);
  EXPECT_EQ(got, "start");  // payload before the violation is still delivered
  const std::vector<Frame> frames = server_frames();
  ASSERT_EQ(frames.size(), 1u);
  EXPECT_EQ(frames[0].close_code(), 1002);
}

TEST_F(WebSocketTransportTest, RejectsFragmentedControlFrameWith1002) {
  upgrade();
  expect_failure_with_close(client_frame(kOpPing, "frag"), 1002);
}

// --- WebSocket writing ----------------------------------------------------------

TEST_F(WebSocketTransportTest, WriteSendsOneUnmaskedBinaryFramePerCall) {
  upgrade();
  const std::vector<std::string> messages = {pattern(10, 1), pattern(200, 2), pattern(70000, 3)};
  for (const std::string& m : messages) {
    const IoResult r = ws_->write(m.data(), m.size());
    ASSERT_EQ(r.status, IoStatus::kOk);
    ASSERT_EQ(r.bytes, m.size());
  }
  std::vector<Frame> frames;
  ASSERT_TRUE(eventually([&] {
    EXPECT_NE(ws_->flush().status, IoStatus::kError);
    for (Frame& f : server_frames())
      frames.push_back(std::move(f));
    return frames.size() == messages.size();
  }));
  for (size_t i = 0; i < messages.size(); ++i) {
    EXPECT_EQ(frames[i].first_byte, kFin | kOpBinary);
    EXPECT_FALSE(frames[i].masked);
    EXPECT_TRUE(frames[i].payload == messages[i]) << i;
  }
}

TEST_F(WebSocketTransportTest, WriteBuffersWhatTheSocketDoesNotTake) {
  upgrade();
  const std::string big = pattern(3 * 1024 * 1024, 5);
  const IoResult r = ws_->write(big.data(), big.size());
  ASSERT_EQ(r.status, IoStatus::kOk);
  EXPECT_EQ(r.bytes, big.size());  // the frame was started, so all of it is taken
  EXPECT_TRUE(ws_->wants_write());
  EXPECT_EQ(ws_->write("more", 4).status, IoStatus::kWouldBlock);  // frames never interleave

  std::vector<Frame> frames;
  ASSERT_TRUE(eventually([&] {
    EXPECT_NE(ws_->flush().status, IoStatus::kError);
    for (Frame& f : server_frames())
      frames.push_back(std::move(f));
    return !frames.empty();
  }));
  EXPECT_TRUE(frames[0].payload == big);
  EXPECT_EQ(ws_->flush().status, IoStatus::kOk);
  EXPECT_FALSE(ws_->wants_write());
}

TEST_F(WebSocketTransportTest, AnswersOnlyLatestPingWhileOutputIsBackedUp) {
  upgrade();
  const std::string big = pattern(3 * 1024 * 1024, 6);
  ASSERT_EQ(ws_->write(big.data(), big.size()).status, IoStatus::kOk);
  std::string pings;
  for (int i = 0; i < 200; ++i)
    pings += client_frame(kFin | kOpPing, "ping " + std::to_string(i));
  std::string got;
  EXPECT_EQ(send_and_read(pings, got, 0), IoStatus::kWouldBlock);

  std::vector<Frame> frames;
  ASSERT_TRUE(eventually([&] {
    EXPECT_NE(ws_->flush().status, IoStatus::kError);
    for (Frame& f : server_frames())
      frames.push_back(std::move(f));
    return frames.size() >= 2 && !ws_->wants_write();
  }));
  ASSERT_EQ(frames.size(), 2u);
  EXPECT_EQ(frames[0].opcode(), kOpBinary);
  EXPECT_EQ(frames[1].opcode(), kOpPong);
  EXPECT_EQ(frames[1].payload, "ping 199");
}

TEST_F(WebSocketTransportTest, CloseGracefullySendsNormalClose) {
  upgrade();
  ws_->close_gracefully();
  const std::vector<Frame> frames = server_frames();
  ASSERT_EQ(frames.size(), 1u);
  EXPECT_EQ(frames[0].opcode(), kOpClose);
  EXPECT_EQ(frames[0].close_code(), 1000);
}

TEST_F(WebSocketTransportTest, WriteBeforeUpgradeTakesNothing) {
  EXPECT_EQ(ws_->write("x", 1).status, IoStatus::kWouldBlock);
}

// --- WebSocket over TLS ---------------------------------------------------------

TEST(WebSocketOverTls, CarriesMqttBytesBothWaysEndToEnd) {
  const TestPki& pki = TestPki::get();
  auto pair = make_socket_pair();
  TlsContext context(server_config(true, false));
  auto wss =
      make_websocket_transport(make_tls_transport(pair->server, context), "/mqtt", kMaxFrameSize);
  EXPECT_STREQ(wss->name(), "wss");
  TlsClient client(pair->client, pki.client_cert, pki.client_key);

  // TLS handshake, then the upgrade request, all while the server reads.
  std::string got;
  IoStatus status = IoStatus::kWouldBlock;
  bool sent = false;
  ASSERT_TRUE(eventually([&] {
    if (!sent && client.handshake() == TlsClient::Step::kDone) {
      sent = client.write(upgrade_request(standard_headers()));
    }
    status = drain(*wss, got);
    EXPECT_NE(status, IoStatus::kError);
    return sent;
  }));
  std::string reply;
  ASSERT_TRUE(eventually([&] {
    drain(*wss, got);
    client.read(reply);
    return reply.find("\r\n\r\n") != std::string::npos;
  }));
  EXPECT_EQ(status_line(reply), "HTTP/1.1 101 Switching Protocols") << reply;
  EXPECT_NE(reply.find(std::string(kRfcAccept)), std::string::npos);

  const std::string up = pattern(50000, 11);
  ASSERT_TRUE(client.write(client_frame(kOpBinary, up.substr(0, 20000)) +
                           client_frame(kFin | kOpContinuation, up.substr(20000))));
  ASSERT_TRUE(eventually([&] {
    EXPECT_EQ(drain(*wss, got), IoStatus::kWouldBlock);
    return got.size() >= up.size();
  }));
  EXPECT_TRUE(got == up);

  const std::string down = pattern(40000, 12);
  ASSERT_EQ(wss->write(down.data(), down.size()).status, IoStatus::kOk);
  std::string raw;
  Frame frame;
  ASSERT_TRUE(eventually([&] {
    EXPECT_NE(wss->flush().status, IoStatus::kError);
    client.read(raw);
    return take_frame(raw, frame);
  }));
  EXPECT_EQ(frame.first_byte, kFin | kOpBinary);
  EXPECT_TRUE(frame.payload == down);

  const std::optional<PeerCertificate> peer = wss->peer_certificate();
  ASSERT_TRUE(peer.has_value());
  EXPECT_EQ(peer->common_name, "sp-001");
}

}  // namespace
}  // namespace counterlink::gateway
