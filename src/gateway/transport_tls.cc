// Server-side TLS over a non-blocking socket, using OpenSSL 3.
//
// Memory: the context sets SSL_MODE_RELEASE_BUFFERS, so an idle connection
// holds no record buffers; this transport keeps a plaintext copy only while a
// write is blocked mid-record (at most one record, 16 KiB).
#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "transport.h"

namespace counterlink::gateway {
namespace {

// Largest plaintext OpenSSL puts in one record. Every SSL_write is capped to
// this, so a write that blocks mid-record never covers more bytes than the
// copy kept for retrying it (see TlsTransport::write). The cap also keeps
// OpenSSL's multi-record ("multiblock") write path, which could pend several
// records at once, out of play.
constexpr size_t kMaxRecordPlaintext = 16 * 1024;

// Session ID context: required for resumption when client certificates are
// requested (OpenSSL refuses to resume without one).
constexpr unsigned char kSessionIdContext[] = "counterlink-gateway";

std::string take_openssl_errors() {
  std::string out;
  while (const unsigned long code = ERR_get_error()) {
    char text[256];
    ERR_error_string_n(code, text, sizeof text);
    if (!out.empty()) out += "; ";
    out += text;
  }
  if (out.empty()) out = "no OpenSSL error reported";
  return out;
}

[[noreturn]] void throw_config_error(const std::string& what, const std::string& hint) {
  throw std::runtime_error("TLS: " + what + ": " + take_openssl_errors() + " (hint: " + hint + ")");
}

// Refuses passphrase prompts: without this OpenSSL would read a passphrase for
// an encrypted key from the terminal and block start-up.
int refuse_passphrase(char* /*buf*/, int /*size*/, int /*rwflag*/, void* /*userdata*/) {
  return 0;
}

// --- Socket BIO ------------------------------------------------------------
// OpenSSL's own socket BIO writes with write(), which raises SIGPIPE when the
// peer has gone away. This one sends with MSG_NOSIGNAL (like the TCP
// transport), so the gateway need not rely on SIGPIPE being ignored. It can
// also refuse reads for a while (see TlsTransport::flush). The socket is never
// closed by the BIO.

struct SocketBioState {
  int fd = -1;
  bool reads_blocked = false;  // report "would block" without touching the socket
};

SocketBioState& bio_state(BIO* bio) {
  return *static_cast<SocketBioState*>(BIO_get_data(bio));
}

int socket_bio_write(BIO* bio, const char* data, int len) {
  BIO_clear_retry_flags(bio);
  if (len <= 0) return 0;
  for (;;) {
    const ssize_t n = ::send(bio_state(bio).fd, data, static_cast<size_t>(len), MSG_NOSIGNAL);
    if (n >= 0) return static_cast<int>(n);
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) BIO_set_retry_write(bio);
    return -1;
  }
}

int socket_bio_read(BIO* bio, char* buf, int len) {
  BIO_clear_retry_flags(bio);
  if (len <= 0) return 0;
  SocketBioState& state = bio_state(bio);
  if (state.reads_blocked) {
    BIO_set_retry_read(bio);
    return -1;
  }
  for (;;) {
    const ssize_t n = ::recv(state.fd, buf, static_cast<size_t>(len), 0);
    if (n > 0) return static_cast<int>(n);
    if (n == 0) {
      // OpenSSL asks BIO_eof() to tell a peer's EOF from a transient zero.
      BIO_set_flags(bio, BIO_FLAGS_IN_EOF);
      return 0;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) BIO_set_retry_read(bio);
    return -1;
  }
}

long socket_bio_ctrl(BIO* bio, int cmd, long /*num*/, void* /*ptr*/) {
  switch (cmd) {
    case BIO_CTRL_FLUSH:
      return 1;  // nothing is buffered here
    case BIO_CTRL_EOF:
      return BIO_test_flags(bio, BIO_FLAGS_IN_EOF) != 0 ? 1 : 0;
    default:
      return 0;
  }
}

int socket_bio_create(BIO* bio) {
  BIO_set_init(bio, 1);
  return 1;
}

// Created once, kept for the life of the process. Null if OpenSSL could not
// allocate it; transports then fail their first call.
const BIO_METHOD* socket_bio_method() {
  static BIO_METHOD* const method = [] {
    const int index = BIO_get_new_index();
    if (index == -1) return static_cast<BIO_METHOD*>(nullptr);
    BIO_METHOD* m =
        BIO_meth_new(index | BIO_TYPE_SOURCE_SINK | BIO_TYPE_DESCRIPTOR, "counterlink socket");
    if (m == nullptr) return m;
    BIO_meth_set_write(m, socket_bio_write);
    BIO_meth_set_read(m, socket_bio_read);
    BIO_meth_set_ctrl(m, socket_bio_ctrl);
    BIO_meth_set_create(m, socket_bio_create);
    return m;
  }();
  return method;
}

// --- Transport -------------------------------------------------------------

class TlsTransport final : public Transport {
 public:
  TlsTransport(int fd, SSL_CTX* ctx) {
    bio_state_.fd = fd;
    ERR_clear_error();
    const BIO_METHOD* method = socket_bio_method();
    ssl_ = method != nullptr ? SSL_new(ctx) : nullptr;
    BIO* bio = ssl_ != nullptr ? BIO_new(method) : nullptr;
    if (bio == nullptr) {
      SSL_free(ssl_);
      ssl_ = nullptr;
      failed_ = true;
      ERR_clear_error();
      return;
    }
    BIO_set_data(bio, &bio_state_);  // the transport outlives its SSL and BIO
    SSL_set_bio(ssl_, bio, bio);     // one BIO both ways: SSL takes the single reference
    SSL_set_accept_state(ssl_);
  }

  ~TlsTransport() override { SSL_free(ssl_); }  // frees the BIO; the socket is not ours

  TlsTransport(const TlsTransport&) = delete;
  TlsTransport& operator=(const TlsTransport&) = delete;

  IoResult read(char* buf, size_t len) override {
    if (failed_) return {IoStatus::kError, 0};
    if (closed_) return {IoStatus::kClosed, 0};
    if (len == 0) return {IoStatus::kWouldBlock, 0};
    if (!handshake_done_) {
      const IoResult r = handshake();
      if (r.status != IoStatus::kOk) return r;
      // Application data may have arrived with the client's last flight.
    }
    ERR_clear_error();
    const int n = SSL_read(ssl_, buf, static_cast<int>(std::min<size_t>(len, INT_MAX)));
    if (n > 0) {
      want_write_ = false;
      return {IoStatus::kOk, static_cast<size_t>(n)};
    }
    return on_failure(n);
  }

  // Takes at most one record's worth per call. If the socket fills while a
  // record is half sent, OpenSSL requires the same bytes to be offered again;
  // the transport keeps its own copy of them (pending_) so the caller is free
  // to move on, reports them as taken, and finishes the record in flush().
  IoResult write(const char* data, size_t len) override {
    if (failed_) return {IoStatus::kError, 0};
    if (len == 0) return {IoStatus::kOk, 0};
    if (!handshake_done_) {
      const IoResult r = handshake();
      if (r.status == IoStatus::kWouldBlock) return r;
      if (r.status != IoStatus::kOk) return fail();
    }
    if (!pending_.empty()) {
      const IoResult r = flush_pending();
      if (r.status != IoStatus::kOk) return r;
    }
    const size_t chunk = std::min(len, kMaxRecordPlaintext);
    ERR_clear_error();
    const int n = SSL_write(ssl_, data, static_cast<int>(chunk));
    if (n > 0) return {IoStatus::kOk, static_cast<size_t>(n)};
    switch (SSL_get_error(ssl_, n)) {
      case SSL_ERROR_WANT_WRITE:
        pending_.assign(data, chunk);
        return {IoStatus::kOk, chunk};
      case SSL_ERROR_WANT_READ:  // nothing was encrypted; nothing taken
        return {IoStatus::kWouldBlock, 0};
      default:
        return fail();
    }
  }

  // Progresses the handshake, a read that stopped because OpenSSL had to
  // write, and a record left half sent by write(). kWouldBlock only when the
  // socket must become writable; a handshake waiting for the peer is kOk
  // (nothing to send), so a caller waiting for writability does not spin.
  IoResult flush() override {
    if (failed_) return {IoStatus::kError, 0};
    if (!handshake_done_) {
      const IoResult r = handshake();
      if (r.status == IoStatus::kWouldBlock) {
        return want_write_ ? r : IoResult{IoStatus::kOk, 0};
      }
      if (r.status != IoStatus::kOk) return fail();
    } else if (want_write_ && !closed_) {
      // A read() stopped because OpenSSL had to write (e.g. answering a TLS
      // 1.3 KeyUpdate). SSL_peek resumes that write. Socket reads are blocked
      // meanwhile: a record pulled in here would sit decrypted inside OpenSSL,
      // invisible to the event loop, which only watches the socket.
      char byte;
      ERR_clear_error();
      bio_state_.reads_blocked = true;
      const int n = SSL_peek(ssl_, &byte, 1);
      bio_state_.reads_blocked = false;
      if (n > 0) {
        want_write_ = false;
      } else {
        const IoResult r = on_failure(n);
        if (r.status == IoStatus::kError) return r;
        if (r.status == IoStatus::kWouldBlock && want_write_) return r;
      }
    }
    return flush_pending();
  }

  bool wants_write() const override { return want_write_ || !pending_.empty(); }

  // One SSL_shutdown (close_notify), result ignored: the caller closes the
  // socket right after, so waiting for the peer's close_notify is pointless.
  void close_gracefully() override {
    if (ssl_ == nullptr || failed_ || !handshake_done_ || shutdown_sent_) return;
    shutdown_sent_ = true;
    flush_pending();  // best effort: a half-sent record would hold the alert back
    ERR_clear_error();
    SSL_shutdown(ssl_);
    ERR_clear_error();
  }

  // The client certificate, when one was presented and verified. Computed on
  // demand rather than cached: it is needed once per connection and caching
  // would cost every idle connection the strings.
  std::optional<PeerCertificate> peer_certificate() const override {
    if (ssl_ == nullptr || failed_ || !handshake_done_) return std::nullopt;
    if ((SSL_get_verify_mode(ssl_) & SSL_VERIFY_PEER) == 0) return std::nullopt;
    X509* cert = SSL_get0_peer_certificate(ssl_);
    if (cert == nullptr || SSL_get_verify_result(ssl_) != X509_V_OK) return std::nullopt;

    PeerCertificate out;
    const X509_NAME* subject = X509_get_subject_name(cert);
    if (BIO* mem = BIO_new(BIO_s_mem())) {
      // XN_FLAG_RFC2253: most specific RDN first, e.g. "CN=sp-001,O=Acme".
      if (X509_NAME_print_ex(mem, subject, 0, XN_FLAG_RFC2253) >= 0) {
        char* text = nullptr;
        const long size = BIO_get_mem_data(mem, &text);
        if (text != nullptr && size > 0) out.subject.assign(text, static_cast<size_t>(size));
      }
      BIO_free(mem);
    }
    const int index = X509_NAME_get_index_by_NID(subject, NID_commonName, -1);
    if (index >= 0) {
      const X509_NAME_ENTRY* entry = X509_NAME_get_entry(subject, index);
      unsigned char* utf8 = nullptr;
      const int size = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(entry));
      if (size > 0)
        out.common_name.assign(reinterpret_cast<char*>(utf8), static_cast<size_t>(size));
      OPENSSL_free(utf8);
    }
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int digest_len = 0;
    if (X509_digest(cert, EVP_sha256(), digest, &digest_len) == 1) {
      static constexpr char kHex[] = "0123456789abcdef";
      out.fingerprint_sha256.reserve(digest_len * 2);
      for (unsigned int i = 0; i < digest_len; ++i) {
        out.fingerprint_sha256 += kHex[digest[i] >> 4];
        out.fingerprint_sha256 += kHex[digest[i] & 0x0f];
      }
    }
    ERR_clear_error();
    return out;
  }

  const char* name() const override { return "tls"; }

 private:
  IoResult handshake() {
    ERR_clear_error();
    const int rc = SSL_do_handshake(ssl_);
    if (rc == 1) {
      handshake_done_ = true;
      want_write_ = false;
      return {IoStatus::kOk, 0};
    }
    return on_failure(rc);
  }

  // Maps a failed SSL_* call. The thread's OpenSSL error queue is always left
  // empty: it is shared by every connection on this event loop.
  IoResult on_failure(int rc) {
    switch (SSL_get_error(ssl_, rc)) {
      case SSL_ERROR_WANT_READ:
        want_write_ = false;
        return {IoStatus::kWouldBlock, 0};
      case SSL_ERROR_WANT_WRITE:
        want_write_ = true;
        return {IoStatus::kWouldBlock, 0};
      case SSL_ERROR_ZERO_RETURN:
        // close_notify, or plain EOF (the context sets
        // SSL_OP_IGNORE_UNEXPECTED_EOF: MQTT detects truncation itself).
        ERR_clear_error();
        closed_ = true;
        want_write_ = false;
        return {IoStatus::kClosed, 0};
      default:  // SSL_ERROR_SSL (bad handshake, bad record), SSL_ERROR_SYSCALL
        return fail();
    }
  }

  IoResult fail() {
    ERR_clear_error();
    failed_ = true;
    want_write_ = false;
    return {IoStatus::kError, 0};
  }

  IoResult flush_pending() {
    while (!pending_.empty()) {
      ERR_clear_error();
      const int n = SSL_write(ssl_, pending_.data(), static_cast<int>(pending_.size()));
      if (n > 0) {
        pending_.erase(0, static_cast<size_t>(n));
        continue;
      }
      const int err = SSL_get_error(ssl_, n);
      if (err == SSL_ERROR_WANT_WRITE || err == SSL_ERROR_WANT_READ) {
        return {IoStatus::kWouldBlock, 0};
      }
      return fail();
    }
    std::string().swap(pending_);  // give the record-sized copy back
    return {IoStatus::kOk, 0};
  }

  SSL* ssl_ = nullptr;
  SocketBioState bio_state_;
  std::string pending_;  // plaintext of a record OpenSSL has half sent
  bool handshake_done_ = false;
  bool want_write_ = false;  // the last handshake/read step needs a writable socket
  bool closed_ = false;
  bool failed_ = false;
  bool shutdown_sent_ = false;
};

}  // namespace

TlsContext::TlsContext(const TlsConfig& config) {
  ERR_clear_error();
  std::unique_ptr<SSL_CTX, decltype(&SSL_CTX_free)> ctx(SSL_CTX_new(TLS_server_method()),
                                                        &SSL_CTX_free);
  if (!ctx) throw_config_error("cannot create a server context", "OpenSSL is out of memory");
  SSL_CTX* c = ctx.get();

  if (SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION) != 1) {
    throw_config_error("cannot require TLS 1.2 or later", "check the OpenSSL configuration");
  }
  // No renegotiation (a DoS vector in TLS 1.2); peer EOF without close_notify
  // is an orderly close, as for plain TCP.
  SSL_CTX_set_options(c, SSL_OP_NO_RENEGOTIATION | SSL_OP_IGNORE_UNEXPECTED_EOF);
  // Partial writes and moving buffers suit the non-blocking write path;
  // released buffers keep idle connections small (target ≤ 1.5 KiB each).
  SSL_CTX_set_mode(c, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                          SSL_MODE_RELEASE_BUFFERS);
  // No stateful session cache (up to 20k sessions with their peer certs per
  // context); resumption still works through stateless session tickets.
  SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_OFF);
  SSL_CTX_set_session_id_context(c, kSessionIdContext, sizeof kSessionIdContext - 1);
  SSL_CTX_set_default_passwd_cb(c, refuse_passphrase);

  const std::string& cert_file = config.cert_file;
  // A key stored with the certificate in one PEM file is accepted.
  const std::string& key_file = config.key_file.empty() ? config.cert_file : config.key_file;
  if (cert_file.empty()) {
    throw std::runtime_error(
        "TLS: no certificate file configured (hint: set cert_file to the server's PEM "
        "certificate chain)");
  }
  if (SSL_CTX_use_certificate_chain_file(c, cert_file.c_str()) != 1) {
    throw_config_error("cannot load the certificate chain from '" + cert_file + "'",
                       "cert_file must be a readable PEM file holding the server certificate "
                       "first, then any intermediate CA certificates");
  }
  const auto throw_key_mismatch = [&] {
    throw_config_error(
        "the private key in '" + key_file + "' does not match the certificate in '" + cert_file +
            "'",
        "cert_file and key_file must be the two halves of one key pair; the first certificate "
        "in cert_file must be the server's own");
  };
  if (SSL_CTX_use_PrivateKey_file(c, key_file.c_str(), SSL_FILETYPE_PEM) != 1) {
    // Loading already compares the key with the certificate.
    const unsigned long code = ERR_peek_last_error();
    if (ERR_GET_LIB(code) == ERR_LIB_X509 && ERR_GET_REASON(code) == X509_R_KEY_VALUES_MISMATCH) {
      throw_key_mismatch();
    }
    throw_config_error("cannot load the private key from '" + key_file + "'",
                       "key_file must be a readable, unencrypted PEM private key");
  }
  if (SSL_CTX_check_private_key(c) != 1) throw_key_mismatch();
  if (!config.ca_file.empty()) {
    if (SSL_CTX_load_verify_locations(c, config.ca_file.c_str(), nullptr) != 1) {
      throw_config_error("cannot load CA certificates from '" + config.ca_file + "'",
                         "ca_file must be a readable PEM bundle of the CAs that issue client "
                         "certificates");
    }
    // Tells clients which issuers we accept, so they pick the right cert.
    if (STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(config.ca_file.c_str())) {
      SSL_CTX_set_client_CA_list(c, names);
    }
    ERR_clear_error();
  }
  // require_client implies verification: a listener configured to refuse
  // clients without a valid certificate must never silently accept them.
  if (config.verify_client || config.require_client) {
    if (config.ca_file.empty()) {
      throw std::runtime_error(
          "TLS: verify_client/require_client is set but ca_file is empty (hint: set ca_file to "
          "the PEM bundle of the CAs that issue client certificates)");
    }
    int mode = SSL_VERIFY_PEER;
    if (config.require_client) mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
    SSL_CTX_set_verify(c, mode, nullptr);
  }
  ctx_ = ctx.release();
}

TlsContext::~TlsContext() {
  SSL_CTX_free(ctx_);
}

std::unique_ptr<Transport> make_tls_transport(int fd, const TlsContext& context) {
  return std::make_unique<TlsTransport>(fd, context.native());
}

}  // namespace counterlink::gateway
