#include "discovery/raft/transport.h"

#include "base/spawn.h"
#include "discovery/raft/codec.h"
#include "discovery/raft/metrics.h"

#include <spdlog/spdlog.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <cstring>
#include <deque>
#include <map>
#include <optional>
#include <set>

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

// State shared by the transport and its coroutines; coroutines keep it alive, so a stopped
// (even destroyed) transport never leaves them dangling.
struct Shared {
  NodeId self = kNoNode;
  std::string advertised;
  MessageHandler on_message;
  std::function<void(NodeId, std::string)> on_hello;
  Metrics* metrics = nullptr;
  bool stopped = false;
  std::set<std::shared_ptr<tcp::socket>> inbound;
};

struct Peer {
  Peer(asio::any_io_executor ex, NodeId id, std::string address)
      : id(id), address(std::move(address)), socket(ex), signal(ex) {}
  NodeId id;
  std::string address;
  bool learned = false;  // from a hello, not from the driver
  bool stopped = false;
  std::uint64_t generation = 0;  // bumped on address change: reconnect
  tcp::socket socket;
  asio::steady_timer signal;  // wakes the writer (cancel = "work or stop")
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

  std::string local_address() const override { return shared_->advertised; }

  void stop() override {
    if (shared_->stopped) {
      return;
    }
    shared_->stopped = true;
    shared_->on_message = nullptr;
    shared_->on_hello = nullptr;
    boost::system::error_code ec;
    acceptor_.close(ec);
    for (auto& s : shared_->inbound) {
      s->close(ec);
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
        boost::system::error_code ec;
        p.socket.close(ec);  // the writer reconnects to the new address
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
    boost::system::error_code ec;
    p.socket.close(ec);
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
      auto s = std::make_shared<tcp::socket>(std::move(sock));
      boost::system::error_code ignored;
      s->set_option(tcp::no_delay(true), ignored);
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

  static asio::awaitable<void> read_loop(std::shared_ptr<Shared> sh,
                                         std::shared_ptr<tcp::socket> s) {
    boost::system::error_code ec;
    auto ep = s->remote_endpoint(ec);
    std::string remote = ec ? "?" : ep.address().to_string() + ":" + std::to_string(ep.port());
    Bytes buf;
    std::size_t head = 0;  // start of unparsed bytes
    bool hello_seen = false;
    std::array<std::uint8_t, 64 * 1024> chunk{};
    for (;;) {
      auto [rec, n] = co_await s->async_read_some(asio::buffer(chunk), kTuple);
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
          hello_seen = true;
          if (sh->on_hello) {
            auto& [id, addr] = *u->peers.begin();
            sh->on_hello(id, addr);
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
    s->close(ec);
    sh->inbound.erase(s);
  }

  static asio::awaitable<bool> connect(std::shared_ptr<Peer> p, TransportOptions opt) {
    auto hp = base::parse_host_port(p->address, kPeerAddressRules);
    if (!hp) {
      spdlog::warn("raft transport: bad address {} for peer {:016x}", p->address, p->id);
      co_return false;
    }
    boost::system::error_code ec;
    auto addr = asio::ip::make_address(hp->host, ec);
    tcp::endpoint ep;
    if (ec) {
      tcp::resolver resolver(p->socket.get_executor());
      auto [rec, results] =
          co_await resolver.async_resolve(hp->host, std::to_string(hp->port), kTuple);
      if (rec || results.empty()) {
        co_return false;
      }
      ep = *results.begin();
    } else {
      ep = tcp::endpoint(addr, hp->port);
    }
    p->socket = tcp::socket(p->socket.get_executor());
    asio::steady_timer timer(p->socket.get_executor());
    timer.expires_after(opt.connect_timeout);
    auto result = co_await (p->socket.async_connect(ep, kTuple) || timer.async_wait(kTuple));
    if (result.index() != 0 || std::get<0>(std::get<0>(result)) || p->stopped) {
      p->socket.close(ec);
      co_return false;
    }
    p->socket.set_option(tcp::no_delay(true), ec);
    co_return true;
  }

  static asio::awaitable<void> run_peer(std::shared_ptr<Shared> sh, std::shared_ptr<Peer> p,
                                        TransportOptions opt) {
    auto backoff = opt.backoff_min;
    bool warned = false;
    while (!p->stopped && !sh->stopped) {
      std::uint64_t gen = p->generation;
      if (!co_await connect(p, opt)) {
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
        auto [wec, n] = co_await asio::async_write(p->socket, bufs, kTuple);
        if (wec) {
          break;  // reconnect; this batch is lost (Raft retransmits)
        }
        if (sh->metrics != nullptr) {
          sh->metrics->messages_sent.Increment(static_cast<double>(batch.size() - not_messages));
        }
        not_messages = 0;
        batch.clear();
      }
      boost::system::error_code ec;
      p->socket.close(ec);
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
  auto t = std::make_unique<TcpTransport>(ex, std::move(options), sh, std::move(acceptor));
  TcpTransport* raw = t.get();  // the hook is cleared by stop(), before the transport dies
  sh->on_hello = [raw](NodeId id, std::string addr) { raw->learn_peer(id, std::move(addr)); };
  t->start();
  return std::unique_ptr<Transport>(std::move(t));
}

}  // namespace routemesh::discovery::raft
