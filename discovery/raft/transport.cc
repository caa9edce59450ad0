#include "discovery/raft/transport.h"

#include "base/spawn.h"
#include "base/tls_failure.h"
#include "discovery/raft/codec.h"
#include "discovery/raft/metrics.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <cstring>
#include <deque>
#include <map>
#include <optional>
#include <set>
#include <tuple>

namespace routemesh::discovery::raft {
namespace {

namespace asio = boost::asio;
using asio::ip::tcp;
using namespace asio::experimental::awaitable_operators;
constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);
constexpr char kHelloMagic[8] = {'R', 'M', 'R', 'A', 'F', 'T', '1', '\0'};

using Frame = std::shared_ptr<const Bytes>;  // [u32 len][payload]

Frame make_frame(const Bytes& payload) {
  auto f = std::make_shared<Bytes>(4 + payload.size());
  auto n = static_cast<std::uint32_t>(payload.size());
  for (int i = 0; i < 4; ++i) {
    (*f)[static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(n >> (8 * i));
  }
  std::memcpy(f->data() + 4, payload.data(), payload.size());
  return f;
}

Bytes hello_payload(NodeId self, const std::string& address) {
  Bytes p(kHelloMagic, kHelloMagic + 8);
  // Reuse the codec's peer-book encoding for (id, address).
  Bytes book = codec::wrap_peers({{self, address}});
  p.insert(p.end(), book.begin(), book.end());
  return p;
}

// One connection, plain TCP or TLS over it.
class Stream {
 public:
  Stream(tcp::socket socket, asio::ssl::context* tls) {
    if (tls != nullptr) {
      tls_.emplace(std::move(socket), *tls);
    } else {
      plain_.emplace(std::move(socket));
    }
  }

  tcp::socket& socket() { return tls_ ? tls_->next_layer() : *plain_; }
  ssl_st* native_tls() { return tls_ ? tls_->native_handle() : nullptr; }

  // Runs the TLS handshake (nothing for plain TCP) within `timeout`: nullopt when it completed
  // (or there is no TLS), else why not, for the log.
  asio::awaitable<std::optional<std::string>> handshake(asio::ssl::stream_base::handshake_type type,
                                                        std::chrono::milliseconds timeout) {
    if (!tls_) {
      co_return std::nullopt;
    }
    asio::steady_timer timer(socket().get_executor());
    timer.expires_after(timeout);
    auto r = co_await (tls_->async_handshake(type, kTuple) || timer.async_wait(kTuple));
    if (r.index() != 0) {
      co_return "timed out";
    }
    const boost::system::error_code ec = std::get<0>(std::get<0>(r));
    if (!ec) {
      co_return std::nullopt;
    }
    co_return base::tls_handshake_failure(tls_->native_handle(), ec);
  }

  asio::awaitable<std::tuple<boost::system::error_code, std::size_t>> read_some(
      asio::mutable_buffer buffer) {
    if (tls_) {
      co_return co_await tls_->async_read_some(buffer, kTuple);
    }
    co_return co_await plain_->async_read_some(buffer, kTuple);
  }

  asio::awaitable<std::tuple<boost::system::error_code, std::size_t>> write(
      const std::vector<asio::const_buffer>& buffers) {
    if (tls_) {
      co_return co_await asio::async_write(*tls_, buffers, kTuple);
    }
    co_return co_await asio::async_write(*plain_, buffers, kTuple);
  }

  void close() {
    boost::system::error_code ec;
    socket().close(ec);
  }

  // With TLS, once the peer's certificate was authenticated: the node id it speaks for, and
  // how the log names the connection (recheck_peers()).
  std::optional<NodeId> peer;
  std::string remote;

 private:
  std::optional<tcp::socket> plain_;
  std::optional<asio::ssl::stream<tcp::socket>> tls_;
};

// State shared by the transport and its coroutines; coroutines keep it alive, so a stopped
// (even destroyed) transport never leaves them dangling.
struct Shared {
  NodeId self = kNoNode;
  std::string advertised;
  MessageHandler on_message;
  std::function<void(NodeId, std::string)> on_hello;
  Metrics* metrics = nullptr;
  TransportTls tls;  // enabled(): every connection is mutual TLS
  std::function<bool(NodeId)> admit;
  std::chrono::milliseconds handshake_timeout{2000};
  bool stopped = false;
  std::set<std::shared_ptr<Stream>> inbound;

  void refused(const std::string& remote, const std::string& why) const {
    spdlog::warn("raft transport: refusing peer connection {}: {}", remote, why);
    if (metrics != nullptr) {
      metrics->peers_refused.Increment();
    }
  }

  // recheck_peers() for one connection: closes `s` when its authenticated peer certificate no
  // longer speaks for the node it was accepted for. True when it did.
  bool cut_untrusted(Stream& s) const {
    if (!s.peer || !tls.authenticate || !s.socket().is_open()) {
      return false;
    }
    if (auto id = tls.authenticate(s.native_tls()); id && *id == *s.peer) {
      return false;
    }
    refused(s.remote, fmt::format("the certificate of node {:016x} is not trusted any more "
                                  "(revoked)",
                                  *s.peer));
    s.close();
    return true;
  }
};

struct Peer {
  Peer(asio::any_io_executor ex, NodeId id, std::string address)
      : id(id), address(std::move(address)), signal(ex) {}
  NodeId id;
  std::string address;
  bool learned = false;  // from a hello, not from the driver
  bool stopped = false;
  std::uint64_t generation = 0;    // bumped on address change: reconnect
  std::shared_ptr<Stream> stream;  // the current connection (null before the first)
  asio::steady_timer signal;       // wakes the writer (cancel = "work or stop")
  std::deque<Frame> queue;
};

class TcpTransport final : public Transport {
 public:
  TcpTransport(asio::any_io_executor ex, TransportOptions opt, std::shared_ptr<Shared> shared,
               tcp::acceptor acceptor)
      : ex_(std::move(ex)),
        opt_(std::move(opt)),
        shared_(std::move(shared)),
        acceptor_(std::move(acceptor)) {}

  ~TcpTransport() override { stop(); }

  void start() {
    asio::co_spawn(ex_, accept_loop(shared_, &acceptor_),
                   base::log_and_count("raft transport: acceptor"));
  }

  void send(Message m) override {
    if (shared_->stopped) {
      return;
    }
    auto it = peers_.find(m.to);
    if (it == peers_.end()) {
      dropped(1);
      return;
    }
    Bytes payload = codec::encode_message(m);
    if (payload.size() > kMaxFrame) {
      // The receiver would close the connection on it; a snapshot this large needs chunking.
      spdlog::error("raft transport: {} byte message to {:016x} exceeds the frame limit; dropped",
                    payload.size(), m.to);
      dropped(1);
      return;
    }
    Peer& p = *it->second;
    if (p.queue.size() >= opt_.queue_limit) {
      p.queue.pop_front();  // newer messages supersede older ones (Raft retries anyway)
      dropped(1);
    }
    p.queue.push_back(make_frame(payload));
    p.signal.cancel();
  }

  void set_peer(NodeId id, std::string address) override { set(id, std::move(address), false); }

  void learn_peer(NodeId id, std::string address) {
    auto it = peers_.find(id);
    if (it == peers_.end() || it->second->learned) {
      set(id, std::move(address), true);
    }
  }

  void remove_peer(NodeId id) override {
    auto it = peers_.find(id);
    if (it == peers_.end()) {
      return;
    }
    close_peer(*it->second);
    peers_.erase(it);
  }

  bool has_peer(NodeId id) const override { return peers_.contains(id); }

  std::size_t recheck_peers() override {
    std::size_t cut = 0;
    if (shared_->stopped || !shared_->tls.enabled()) {
      return cut;
    }
    // A closed inbound stream ends its read loop, which removes it from the set later.
    for (const auto& s : shared_->inbound) {
      cut += shared_->cut_untrusted(*s) ? 1 : 0;
    }
    // A closed outbound stream ends the writer's connection; it reconnects with backoff and
    // the new connection is authenticated again (and refused while the peer is distrusted).
    for (const auto& [id, p] : peers_) {
      if (p->stream) {
        cut += shared_->cut_untrusted(*p->stream) ? 1 : 0;
      }
    }
    return cut;
  }

  std::string local_address() const override { return shared_->advertised; }

  void stop() override {
    if (shared_->stopped) {
      return;
    }
    shared_->stopped = true;
    shared_->on_message = nullptr;
    shared_->on_hello = nullptr;
    shared_->admit = nullptr;
    shared_->tls.authenticate = nullptr;
    boost::system::error_code ec;
    acceptor_.close(ec);
    for (auto& s : shared_->inbound) {
      s->close();
    }
    shared_->inbound.clear();
    for (auto& [id, p] : peers_) {
      close_peer(*p);
    }
    peers_.clear();
  }

 private:
  void set(NodeId id, std::string address, bool learned) {
    if (id == opt_.self || shared_->stopped) {
      return;
    }
    auto it = peers_.find(id);
    if (it != peers_.end()) {
      Peer& p = *it->second;
      p.learned = learned;
      if (p.address != address) {
        p.address = std::move(address);
        p.generation++;
        if (p.stream) {
          p.stream->close();  // the writer reconnects to the new address
        }
        p.signal.cancel();
      }
      return;
    }
    auto p = std::make_shared<Peer>(ex_, id, std::move(address));
    p->learned = learned;
    peers_[id] = p;
    asio::co_spawn(ex_, run_peer(shared_, p, opt_),
                   base::log_and_count("raft transport: peer writer"));
  }

  static void close_peer(Peer& p) {
    p.stopped = true;
    if (p.stream) {
      p.stream->close();
    }
    p.signal.cancel();
    p.queue.clear();
  }

  void dropped(std::size_t n) {
    if (shared_->metrics != nullptr) {
      shared_->metrics->messages_dropped.Increment(static_cast<double>(n));
    }
  }

  static asio::awaitable<void> accept_loop(std::shared_ptr<Shared> sh, tcp::acceptor* acceptor) {
    // `acceptor` is only dereferenced while !sh->stopped: stop() closes it before the transport
    // goes away, and the pending accept then completes with an error.
    while (!sh->stopped) {
      auto [ec, sock] = co_await acceptor->async_accept(kTuple);
      if (sh->stopped) {
        co_return;
      }
      if (ec) {
        spdlog::warn("raft transport: accept failed: {}", ec.message());
        asio::steady_timer t(co_await asio::this_coro::executor);
        t.expires_after(std::chrono::milliseconds(100));  // e.g. EMFILE: do not spin
        co_await t.async_wait(kTuple);
        continue;
      }
      boost::system::error_code ignored;
      sock.set_option(tcp::no_delay(true), ignored);
      auto s = std::make_shared<Stream>(std::move(sock),
                                        sh->tls.enabled() ? sh->tls.server.get() : nullptr);
      sh->inbound.insert(s);
      asio::co_spawn(acceptor->get_executor(), read_loop(sh, s),
                     base::log_and_count("raft transport: peer reader"));
    }
  }

  static void malformed(const std::shared_ptr<Shared>& sh, const std::string& remote,
                        const char* why) {
    spdlog::warn("raft transport: closing connection from {}: {}", remote, why);
    if (sh->metrics != nullptr) {
      sh->metrics->malformed_frames.Increment();
    }
  }

  // With TLS: the node id the peer's certificate speaks for, once it is admitted; nullopt (the
  // connection is to be closed) when refused. Without TLS: kNoNode (anyone).
  static asio::awaitable<std::optional<NodeId>> admit_inbound(const std::shared_ptr<Shared>& sh,
                                                              Stream& s,
                                                              const std::string& remote) {
    if (!sh->tls.enabled()) {
      co_return kNoNode;
    }
    const std::optional<std::string> failed =
        co_await s.handshake(asio::ssl::stream_base::server, sh->handshake_timeout);
    if (failed) {
      if (!sh->stopped) {
        sh->refused(remote, "TLS handshake failed: " + *failed);
      }
      co_return std::nullopt;
    }
    if (sh->stopped) {  // the hooks below may belong to a node that is gone
      co_return std::nullopt;
    }
    auto id = sh->tls.authenticate(s.native_tls());
    if (!id) {
      sh->refused(remote, "no certificate of a manager of this cluster");
      co_return std::nullopt;
    }
    if (sh->admit && !sh->admit(*id)) {
      sh->refused(remote, fmt::format("node {:016x} is not a member", *id));
      co_return std::nullopt;
    }
    s.peer = id;
    s.remote = remote;
    co_return id;
  }

  static asio::awaitable<void> read_loop(std::shared_ptr<Shared> sh, std::shared_ptr<Stream> s) {
    boost::system::error_code ec;
    auto ep = s->socket().remote_endpoint(ec);
    std::string remote = ec ? "?" : ep.address().to_string() + ":" + std::to_string(ep.port());
    const std::optional<NodeId> peer = co_await admit_inbound(sh, *s, remote);
    if (!peer || sh->stopped) {
      s->close();
      sh->inbound.erase(s);
      co_return;
    }
    Bytes buf;
    std::size_t head = 0;  // start of unparsed bytes
    bool hello_seen = false;
    std::array<std::uint8_t, 64 * 1024> chunk{};
    for (;;) {
      auto [rec, n] = co_await s->read_some(asio::buffer(chunk));
      if (rec || sh->stopped) {
        break;
      }
      buf.insert(buf.end(), chunk.begin(), chunk.begin() + static_cast<std::ptrdiff_t>(n));
      bool bad = false;
      while (buf.size() - head >= 4) {
        std::uint32_t len = 0;
        for (int i = 0; i < 4; ++i) {
          len |= static_cast<std::uint32_t>(buf[head + static_cast<std::size_t>(i)]) << (8 * i);
        }
        if (len == 0 || len > kMaxFrame) {
          malformed(sh, remote, "bad frame length");
          bad = true;
          break;
        }
        if (buf.size() - head - 4 < len) {
          break;
        }
        const std::uint8_t* payload = buf.data() + head + 4;
        head += 4 + len;
        if (!hello_seen) {
          std::optional<codec::Unwrapped> u;
          if (len > 8 && std::memcmp(payload, kHelloMagic, 8) == 0) {
            u = codec::unwrap_entry(Bytes(payload + 8, payload + len));
          }
          if (!u || u->kind != codec::EnvelopeKind::peers || u->peers.size() != 1) {
            malformed(sh, remote, "bad hello");
            bad = true;
            break;
          }
          const auto& [hello_id, addr] = *u->peers.begin();
          if (*peer != kNoNode && hello_id != *peer) {
            sh->refused(remote, fmt::format("certificate of node {:016x} says hello as {:016x}",
                                            *peer, hello_id));
            bad = true;
            break;
          }
          hello_seen = true;
          if (sh->on_hello) {
            sh->on_hello(hello_id, addr);
          }
          continue;
        }
        auto m = codec::decode_message(payload, len);
        if (!m) {
          malformed(sh, remote, "undecodable message");
          bad = true;
          break;
        }
        if (sh->stopped) {
          break;
        }
        if (*peer != kNoNode && m->from != *peer) {
          sh->refused(remote, fmt::format("certificate of node {:016x} sends a message from "
                                          "{:016x}",
                                          *peer, m->from));
          bad = true;
          break;
        }
        sh->on_message(std::move(*m));
      }
      if (bad || sh->stopped) {
        break;
      }
      if (head > 0 && head == buf.size()) {
        buf.clear();
        head = 0;
      } else if (head > (1u << 20)) {
        buf.erase(buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(head));
        head = 0;
      }
    }
    s->close();
    sh->inbound.erase(s);
  }

  static asio::awaitable<bool> connect(std::shared_ptr<Shared> sh, std::shared_ptr<Peer> p,
                                       TransportOptions opt) {
    auto hp = base::parse_host_port(p->address, kPeerAddressRules);
    if (!hp) {
      spdlog::warn("raft transport: bad address {} for peer {:016x}", p->address, p->id);
      co_return false;
    }
    boost::system::error_code ec;
    auto addr = asio::ip::make_address(hp->host, ec);
    tcp::endpoint ep;
    if (ec) {
      tcp::resolver resolver(p->signal.get_executor());
      auto [rec, results] =
          co_await resolver.async_resolve(hp->host, std::to_string(hp->port), kTuple);
      if (rec || results.empty()) {
        co_return false;
      }
      ep = *results.begin();
    } else {
      ep = tcp::endpoint(addr, hp->port);
    }
    const bool tls = sh->tls.enabled();
    auto stream = std::make_shared<Stream>(tcp::socket(p->signal.get_executor()),
                                           tls ? sh->tls.client.get() : nullptr);
    p->stream = stream;  // close_peer() and set() close it, even while connecting
    asio::steady_timer timer(p->signal.get_executor());
    timer.expires_after(opt.connect_timeout);
    auto result = co_await (stream->socket().async_connect(ep, kTuple) || timer.async_wait(kTuple));
    if (result.index() != 0 || std::get<0>(std::get<0>(result)) || p->stopped) {
      stream->close();
      co_return false;
    }
    stream->socket().set_option(tcp::no_delay(true), ec);
    if (!tls) {
      co_return true;
    }
    const std::string remote = fmt::format("to {:016x} at {}", p->id, p->address);
    const std::optional<std::string> failed =
        co_await stream->handshake(asio::ssl::stream_base::client, opt.connect_timeout);
    if (failed) {
      if (!p->stopped) {
        sh->refused(remote, "TLS handshake failed: " + *failed);
      }
      stream->close();
      co_return false;
    }
    if (sh->stopped || p->stopped) {
      stream->close();
      co_return false;
    }
    auto id = sh->tls.authenticate(stream->native_tls());
    if (!id || *id != p->id) {
      sh->refused(remote, id ? fmt::format("its certificate names node {:016x}", *id)
                             : std::string("no certificate of a manager of this cluster"));
      stream->close();
      co_return false;
    }
    stream->peer = id;
    stream->remote = remote;
    co_return true;
  }

  static asio::awaitable<void> run_peer(std::shared_ptr<Shared> sh, std::shared_ptr<Peer> p,
                                        TransportOptions opt) {
    auto backoff = opt.backoff_min;
    bool warned = false;
    while (!p->stopped && !sh->stopped) {
      std::uint64_t gen = p->generation;
      if (!co_await connect(sh, p, opt)) {
        if (p->stopped) {
          break;
        }
        if (!warned) {
          spdlog::info("raft transport: peer {:016x} at {} unreachable; retrying", p->id,
                       p->address);
          warned = true;
        }
        // Messages queued for an unreachable peer are stale by the time it returns.
        if (sh->metrics != nullptr && !p->queue.empty()) {
          sh->metrics->messages_dropped.Increment(static_cast<double>(p->queue.size()));
        }
        p->queue.clear();
        p->signal.expires_after(backoff);
        co_await p->signal.async_wait(kTuple);
        backoff = std::min(backoff * 2, opt.backoff_max);
        continue;
      }
      if (warned) {
        spdlog::info("raft transport: connected to peer {:016x} at {}", p->id, p->address);
        warned = false;
      }
      backoff = opt.backoff_min;
      std::deque<Frame> batch;
      batch.push_back(make_frame(hello_payload(sh->self, sh->advertised)));
      std::size_t not_messages = 1;  // the hello
      while (!p->stopped && !sh->stopped && gen == p->generation) {
        if (batch.empty() && p->queue.empty()) {
          p->signal.expires_at(asio::steady_timer::time_point::max());
          co_await p->signal.async_wait(kTuple);
          continue;
        }
        std::size_t bytes = 0;
        while (!p->queue.empty() && batch.size() < 256 && bytes < (4u << 20)) {
          bytes += p->queue.front()->size();
          batch.push_back(std::move(p->queue.front()));
          p->queue.pop_front();
        }
        std::vector<asio::const_buffer> bufs;
        bufs.reserve(batch.size());
        for (const auto& f : batch) {
          bufs.emplace_back(asio::buffer(*f));
        }
        auto [wec, n] = co_await p->stream->write(bufs);
        if (wec) {
          break;  // reconnect; this batch is lost (Raft retransmits)
        }
        if (sh->metrics != nullptr) {
          sh->metrics->messages_sent.Increment(static_cast<double>(batch.size() - not_messages));
        }
        not_messages = 0;
        batch.clear();
      }
      p->stream->close();
    }
  }

  asio::any_io_executor ex_;
  TransportOptions opt_;
  std::shared_ptr<Shared> shared_;
  tcp::acceptor acceptor_;
  std::map<NodeId, std::shared_ptr<Peer>> peers_;
};

}  // namespace

boost::system::result<std::unique_ptr<Transport>> make_tcp_transport(asio::any_io_executor ex,
                                                                     TransportOptions options,
                                                                     MessageHandler on_message) {
  auto hp = base::parse_host_port(options.listen_address, kPeerAddressRules);
  boost::system::error_code ec;
  auto addr = hp ? asio::ip::make_address(hp->host, ec) : asio::ip::address{};
  if (!hp || ec) {
    return boost::system::errc::make_error_code(boost::system::errc::invalid_argument);
  }
  tcp::acceptor acceptor(ex);
  tcp::endpoint ep(addr, hp->port);
  acceptor.open(ep.protocol(), ec);
  if (!ec) {
    acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
  }
  if (!ec) {
    acceptor.bind(ep, ec);
  }
  if (!ec) {
    acceptor.listen(asio::socket_base::max_listen_connections, ec);
  }
  if (ec) {
    spdlog::error("raft transport: cannot listen on {}: {}", options.listen_address, ec.message());
    return ec;
  }
  auto bound = acceptor.local_endpoint(ec);
  auto sh = std::make_shared<Shared>();
  sh->self = options.self;
  sh->advertised = (bound.address().is_v6() ? "[" + bound.address().to_string() + "]"
                                            : bound.address().to_string()) +
                   ":" + std::to_string(bound.port());
  sh->on_message = std::move(on_message);
  sh->metrics = options.metrics;
  sh->tls = options.tls;
  sh->admit = options.admit;
  sh->handshake_timeout = options.connect_timeout;
  auto t = std::make_unique<TcpTransport>(ex, std::move(options), sh, std::move(acceptor));
  TcpTransport* raw = t.get();  // the hook is cleared by stop(), before the transport dies
  sh->on_hello = [raw](NodeId id, std::string addr) { raw->learn_peer(id, std::move(addr)); };
  t->start();
  return std::unique_ptr<Transport>(std::move(t));
}

}  // namespace routemesh::discovery::raft
