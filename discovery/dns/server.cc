#include "discovery/dns/server.h"

#include "base/file.h"
#include "base/spawn.h"
#include "discovery/dns/answer.h"
#include "discovery/dns/cache.h"
#include "discovery/dns/errc.h"
#include "discovery/dns/message.h"
#include "discovery/dns/metrics.h"
#include "discovery/dns/upstreams.h"
#include "discovery/dns/view.h"
#include "discovery/dns/wire.h"

#include <spdlog/spdlog.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ip/udp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/system/result.hpp>

#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <unordered_map>

namespace routemesh::discovery::dns {

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
using asio::ip::tcp;
using asio::ip::udp;
using namespace std::chrono_literals;
constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);

// Forwarded queries in flight at once over UDP; beyond it a query is REFUSED at once rather
// than queued behind slow upstreams.
constexpr std::size_t kMaxInflight = 1024;
// TCP clients at once, and how long one may stay idle between queries (RFC 7766 §6.2.3
// recommends seconds, not minutes).
constexpr std::size_t kMaxTcpClients = 256;
constexpr auto kTcpIdle = 10s;
// An upstream that timed out is asked again after this (upstreams.h).
constexpr std::uint64_t kHoldDownMs = 30'000;
// Datagrams read (recvmmsg) and replies sent (sendmmsg) per system call, and the batches a
// listener handles before it lets the other work of the thread run.
constexpr std::size_t kBatch = 32;
constexpr int kBatchesPerTurn = 8;
constexpr std::size_t kDatagram = 65536;
// Stored local answers and forwarding decisions per network (wire.h, LocalAnswers).
constexpr std::size_t kLocalAnswers = 65536;

// routemesh_dns_queries_total{type}: type_label's values (message.h) and "none".
constexpr const char* kTypeLabels[] = {"A",  "AAAA", "SRV",   "PTR", "CNAME", "MX",  "TXT",
                                       "NS", "SOA",  "HTTPS", "ANY", "other", "none"};
constexpr std::size_t kTypeSlots = std::size(kTypeLabels);
constexpr std::size_t kNoType = kTypeSlots - 1;
constexpr std::size_t kOutcomes = static_cast<std::size_t>(Outcome::dropped) + 1;

std::size_t type_slot(std::uint16_t type) {
  switch (type) {
    case kTypeA:
      return 0;
    case kTypeAaaa:
      return 1;
    case kTypeSrv:
      return 2;
    case kTypePtr:
      return 3;
    case kTypeCname:
      return 4;
    case kTypeMx:
      return 5;
    case kTypeTxt:
      return 6;
    case kTypeNs:
      return 7;
    case kTypeSoa:
      return 8;
    case kTypeHttps:
      return 9;
    case kTypeAny:
      return 10;
    default:
      return 11;
  }
}

std::uint64_t now_ms() {
  return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                        std::chrono::steady_clock::now().time_since_epoch())
                                        .count());
}

// Sets IP_FREEBIND: bind() succeeds before the address is on an interface.
void set_freebind(int fd, boost::system::error_code& ec) {
  const int one = 1;
  if (::setsockopt(fd, IPPROTO_IP, IP_FREEBIND, &one, sizeof one) != 0) {
    ec.assign(errno, boost::system::system_category());
  }
}

// A message with its 2-byte length in front, for TCP (RFC 1035 §4.2.2). Messages are at most
// 65535 bytes: ldns writes nothing longer, and reads are sized by a 2-byte length.
Bytes frame(const Bytes& message) {
  Bytes out(2 + message.size());
  out[0] = static_cast<std::uint8_t>(message.size() >> 8);
  out[1] = static_cast<std::uint8_t>(message.size() & 0xff);
  std::copy(message.begin(), message.end(), out.begin() + 2);
  return out;
}

// One exchange with an upstream: its reply (ours: id and question checked), or an errc.
using Exchange = boost::system::result<Bytes>;

const char* result_label(const boost::system::error_code& ec) {
  return ec == errc::upstream_timeout ? "timeout" : "error";
}

// The network a DNS address answers for, with its stored answers (built with each view).
struct Local {
  const NetworkView* network = nullptr;  // in the view the Core holds
  LocalAnswers answers;
};

// The buffers of one UDP listener's batches: datagrams read, their sources, replies.
struct UdpBatch {
  UdpBatch() : buffers(new std::uint8_t[kBatch * kDatagram]) {}
  std::unique_ptr<std::uint8_t[]> buffers;  // not zeroed: pages are touched as used
  std::array<mmsghdr, kBatch> in{};
  std::array<iovec, kBatch> in_iov{};
  std::array<sockaddr_storage, kBatch> sources{};
  std::array<Bytes, kBatch> replies;
  std::array<mmsghdr, kBatch> out{};
  std::array<iovec, kBatch> out_iov{};
};

struct Listener {
  std::shared_ptr<udp::socket> datagrams;
  std::shared_ptr<tcp::acceptor> streams;
};

// What one message from a client leads to.
struct Handled {
  Bytes reply;                   // to send now (empty with `forward` or when dropped)
  std::optional<Query> forward;  // ask the upstreams, then answer this query
  std::size_t type = kNoType;    // metric label (kTypeLabels)
  Outcome outcome = Outcome::dropped;
};

class Core : public std::enable_shared_from_this<Core> {
 public:
  Core(asio::any_io_executor executor, const config::DnsSettings& settings,
       prometheus::Registry& registry, std::function<void(const std::set<std::string>&)> own,
       std::vector<Upstream> upstreams)
      : executor_(std::move(executor)),
        settings_(settings),
        metrics_(registry),
        own_addresses_(std::move(own)),
        view_(std::make_shared<const View>()),
        cache_(settings.cache_entries),
        upstreams_(std::move(upstreams), kHoldDownMs),
        rng_(std::random_device{}()) {}

  void update(std::shared_ptr<const View> view) {
    if (stopped_ || !view) {
      return;
    }
    view_ = std::move(view);
    std::set<std::string> want;
    local_.clear();
    for (const auto& [address, network] : view_->by_address) {
      want.insert(address);
      local_.emplace(
          address, std::make_unique<Local>(
                       Local{&network, LocalAnswers(*view_, network, AnswerOptions{settings_.ttl_s},
                                                    kLocalAnswers)}));
    }
    own_addresses_(want);
    for (auto it = listeners_.begin(); it != listeners_.end();) {
      if (want.count(it->first) != 0) {
        ++it;
        continue;
      }
      close(it->second);
      spdlog::info("dns: stopped serving {}", it->first);
      it = listeners_.erase(it);
    }
    for (const auto& address : want) {
      if (listeners_.count(address) == 0) {
        open(address);
      }
    }
    metrics_.addresses.Set(static_cast<double>(listeners_.size()));
  }

  void stop() {
    if (stopped_) {
      return;
    }
    stopped_ = true;
    for (auto& [address, listener] : listeners_) {
      close(listener);
    }
    listeners_.clear();
    local_.clear();
    metrics_.addresses.Set(0);
  }

  std::vector<std::string> addresses() const {
    std::vector<std::string> out;
    for (const auto& [address, listener] : listeners_) {
      out.push_back(address);
    }
    return out;
  }

 private:
  void open(const std::string& address) {
    boost::system::error_code ec;
    const auto ip = asio::ip::make_address(address, ec);
    Listener l;
    if (!ec) {
      const udp::endpoint uep(ip, settings_.port);
      l.datagrams = std::make_shared<udp::socket>(executor_);
      l.datagrams->open(uep.protocol(), ec);
      if (!ec) {
        set_freebind(l.datagrams->native_handle(), ec);
      }
      if (!ec) {
        l.datagrams->bind(uep, ec);
      }
      if (!ec) {
        l.datagrams->non_blocking(true, ec);
      }
    }
    if (!ec) {
      const tcp::endpoint tep(ip, settings_.port);
      l.streams = std::make_shared<tcp::acceptor>(executor_);
      l.streams->open(tep.protocol(), ec);
      if (!ec) {
        l.streams->set_option(asio::socket_base::reuse_address(true), ec);
      }
      if (!ec) {
        set_freebind(l.streams->native_handle(), ec);
      }
      if (!ec) {
        l.streams->bind(tep, ec);
      }
      if (!ec) {
        l.streams->listen(asio::socket_base::max_listen_connections, ec);
      }
    }
    if (ec) {
      close(l);
      metrics_.listen_errors.Increment();
      if (failed_.insert(address).second) {
        spdlog::warn("dns: cannot listen on {}:{}: {} (this network's names are not served here)",
                     address, settings_.port, ec.message());
      }
      return;
    }
    failed_.erase(address);
    listeners_[address] = l;
    spdlog::info("dns: serving {}:{} (udp, tcp)", address, settings_.port);
    auto self = shared_from_this();
    asio::co_spawn(executor_, serve_udp(self, l.datagrams, address),
                   base::log_and_count("dns: udp listener", &metrics_.session_errors));
    asio::co_spawn(executor_, serve_tcp(self, l.streams, address),
                   base::log_and_count("dns: tcp listener", &metrics_.session_errors));
  }

  static void close(Listener& l) {
    boost::system::error_code ignored;
    if (l.datagrams) {
      l.datagrams->close(ignored);
    }
    if (l.streams) {
      l.streams->close(ignored);
    }
  }

  prometheus::Counter& counter(std::size_t type, Outcome outcome) {
    prometheus::Counter*& c = counters_[type][static_cast<std::size_t>(outcome)];
    if (c == nullptr) {
      c = &metrics_.queries.Add({{"type", kTypeLabels[type]}, {"result", to_string(outcome)}});
    }
    return *c;
  }

  prometheus::Counter& upstream_counter(const Upstream& up, const char* result) {
    return metrics_.upstream.Add({{"upstream", to_string(up)}, {"result", result}});
  }

  static Address address_of(asio::ip::address a) {
    if (a.is_v6() && a.to_v6().is_v4_mapped()) {
      a = asio::ip::make_address_v4(asio::ip::v4_mapped, a.to_v6());
    }
    Address out;
    if (a.is_v4()) {
      const auto b = a.to_v4().to_bytes();
      std::copy(b.begin(), b.end(), out.bytes.begin());
    } else {
      out.v6 = true;
      const auto b = a.to_v6().to_bytes();
      std::copy(b.begin(), b.end(), out.bytes.begin());
    }
    return out;
  }

  // The source of a datagram as an Address (IPv4-mapped IPv6 as IPv4).
  static Address address_of(const sockaddr_storage& source) {
    Address out;
    if (source.ss_family == AF_INET) {
      const auto& in = reinterpret_cast<const sockaddr_in&>(source);
      std::memcpy(out.bytes.data(), &in.sin_addr, 4);
    } else if (source.ss_family == AF_INET6) {
      const auto& in6 = reinterpret_cast<const sockaddr_in6&>(source);
      const std::uint8_t* b = in6.sin6_addr.s6_addr;
      static constexpr std::uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
      if (std::memcmp(b, kMapped, 12) == 0) {
        std::memcpy(out.bytes.data(), b + 12, 4);
      } else {
        out.v6 = true;
        std::memcpy(out.bytes.data(), b, 16);
      }
    }
    return out;
  }

  Local* local(const std::string& address) {
    auto it = local_.find(address);
    return it == local_.end() ? nullptr : it->second.get();
  }

  // The common query answered from stored bytes (wire.h): a stored local answer, or a
  // forwarded name's cache hit. False: the ldns path (handle) answers it, including every
  // refusal (isolation) and everything not stored.
  bool answer_fast(Local* local, const Address& source, std::span<const std::uint8_t> wire,
                   Transport transport, Bytes& reply, Handled& h) {
    if (local == nullptr || !parse_fast(wire, fast_)) {
      return false;
    }
    if (!may_query(*local->network, source)) {
      return false;
    }
    const LocalAnswers::Entry* e = local->answers.find(fast_.key);
    if (e == nullptr) {
      return false;
    }
    const std::size_t limit = reply_limit(fast_, transport);
    if (!e->forward) {
      if (!write_reply(e->reply, wire, fast_, 0, limit, reply)) {
        return false;
      }
      h.outcome = e->outcome;
    } else {
      cache_key(fast_, cache_key_);
      auto hit = cache_.lookup_stored(cache_key_, now_ms());
      if (!hit || !write_reply(*hit->reply, wire, fast_, hit->age_s, limit, reply)) {
        return false;
      }
      h.outcome = Outcome::cached;
    }
    h.type = type_slot(fast_.type);
    return true;
  }

  // Reads one message from `source` that arrived on `address` and decides what it gets.
  Handled handle(const std::string& address, const asio::ip::address& source,
                 std::span<const std::uint8_t> wire, Transport transport) {
    Handled h;
    Decoded d = decode_query(wire);
    if (!d.query) {
      h.reply = std::move(d.reply);
      h.outcome = d.outcome;
      return h;
    }
    const Query& q = *d.query;
    h.type = type_slot(q.question.type);
    auto network = view_->by_address.find(address);
    if (network == view_->by_address.end()) {
      // The network went away after the datagram arrived.
      h.reply = encode_error(q, Rcode::refused);
      h.outcome = Outcome::refused;
      return h;
    }
    if (!may_query(network->second, address_of(source))) {
      // Network isolation: only the network's own addresses ask its DNS address.
      h.reply = encode_error(q, Rcode::refused);
      h.outcome = Outcome::refused;
      return h;
    }
    Answer a = answer(q, *view_, network->second, AnswerOptions{settings_.ttl_s}, rng_());
    if (Local* l = local(address)) {
      l->answers.learn(q, a);  // the next such query takes the fast path
    }
    if (a.action == Answer::Action::forward) {
      h.forward = std::move(*d.query);
      return h;
    }
    h.outcome = outcome_of(a);
    h.reply = encode_answer(q, a, reply_limit(q, transport));
    return h;
  }

  // ---- forwarding ---------------------------------------------------------------------------

  static asio::awaitable<Exchange> udp_attempt(std::shared_ptr<udp::socket> socket,
                                               std::uint16_t id, Question question) {
    std::array<std::uint8_t, 65535> buf{};
    for (;;) {
      auto [ec, n] = co_await socket->async_receive(asio::buffer(buf), kTuple);
      if (ec) {
        co_return errc::upstream_unreachable;  // e.g. ECONNREFUSED from an ICMP port unreachable
      }
      const std::span<const std::uint8_t> reply(buf.data(), n);
      if (inspect_upstream_reply(reply, id, question).status == UpstreamReply::Status::ok) {
        co_return Bytes(reply.begin(), reply.end());
      }
      // Not ours (a late reply to an earlier query, a spoofing attempt): keep listening.
    }
  }

  // One UDP exchange with `up`: a fresh socket (a random source port) connected to it.
  asio::awaitable<Exchange> udp_exchange(Upstream up, Bytes query, std::uint16_t id,
                                         Question question) {
    boost::system::error_code ec;
    const udp::endpoint ep(asio::ip::make_address(up.ip, ec), up.port);
    if (ec) {
      co_return errc::upstream_unreachable;
    }
    auto socket = std::make_shared<udp::socket>(executor_);
    socket->open(ep.protocol(), ec);
    if (!ec) {
      socket->connect(ep, ec);
    }
    if (!ec) {
      socket->send(asio::buffer(query), 0, ec);
    }
    if (ec) {
      co_return errc::upstream_unreachable;
    }
    auto attempt = udp_attempt(socket, id, std::move(question));
    co_return co_await within_upstream_timeout(std::move(attempt));
  }

  // `attempt`, or upstream_timeout once the upstream timeout has passed (which ends it).
  asio::awaitable<Exchange> within_upstream_timeout(asio::awaitable<Exchange> attempt) {
    using namespace asio::experimental::awaitable_operators;
    asio::steady_timer timer(executor_);
    timer.expires_after(std::chrono::milliseconds(settings_.upstream_timeout_ms));
    // The operands as locals (GCC 12: no temporaries inside a co_await full-expression).
    auto deadline = timer.async_wait(kTuple);
    auto result = co_await (std::move(attempt) || std::move(deadline));
    if (result.index() == 1) {
      co_return errc::upstream_timeout;
    }
    co_return std::get<0>(std::move(result));
  }

  static asio::awaitable<Exchange> tcp_attempt(std::shared_ptr<tcp::socket> socket,
                                               tcp::endpoint ep, Bytes query, std::uint16_t id,
                                               Question question) {
    auto [cec] = co_await socket->async_connect(ep, kTuple);
    if (cec) {
      co_return errc::upstream_unreachable;
    }
    Bytes framed = frame(query);
    auto [wec, wn] = co_await asio::async_write(*socket, asio::buffer(framed), kTuple);
    if (wec) {
      co_return errc::upstream_closed;
    }
    // RFC 7766 §6.2.1: a reply over TCP may be preceded by others; read until ours.
    for (;;) {
      std::array<std::uint8_t, 2> len{};
      auto [lec, ln] = co_await asio::async_read(*socket, asio::buffer(len), kTuple);
      if (lec) {
        co_return errc::upstream_closed;
      }
      Bytes reply((std::size_t{len[0]} << 8) | len[1]);
      auto [rec, rn] = co_await asio::async_read(*socket, asio::buffer(reply), kTuple);
      if (rec) {
        co_return errc::upstream_closed;
      }
      if (inspect_upstream_reply(reply, id, question).status == UpstreamReply::Status::ok) {
        co_return reply;
      }
    }
  }

  asio::awaitable<Exchange> tcp_exchange(Upstream up, Bytes query, std::uint16_t id,
                                         Question question) {
    boost::system::error_code ec;
    const tcp::endpoint ep(asio::ip::make_address(up.ip, ec), up.port);
    if (ec) {
      co_return errc::upstream_unreachable;
    }
    auto socket = std::make_shared<tcp::socket>(executor_);
    auto attempt = tcp_attempt(socket, ep, std::move(query), id, std::move(question));
    co_return co_await within_upstream_timeout(std::move(attempt));
  }

  std::uint16_t random_id() { return static_cast<std::uint16_t>(rng_()); }

  // Whether asking `up` would be asking ourselves (a resolv.conf naming a network's DNS
  // address): that would loop.
  bool is_self(const Upstream& up) const {
    return up.port == settings_.port && listeners_.count(up.ip) != 0;
  }

  // A question being asked upstream (by its cache key): askers of the same question meanwhile
  // wait for its reply instead of asking again (a burst of misses for one name is one query).
  struct Pending {
    explicit Pending(const asio::any_io_executor& ex) : done(ex) {
      done.expires_at(asio::steady_timer::time_point::max());
    }
    asio::steady_timer done;     // cancelled once `reply` is final
    std::optional<Bytes> reply;  // the upstream's reply; nullopt: every upstream failed
  };

  // Ends a Pending however resolve() ends (a reply, SERVFAIL, or the coroutine destroyed).
  struct PendingGuard {
    Core& core;
    const std::string& key;
    std::shared_ptr<Pending> pending;
    ~PendingGuard() {
      core.pending_.erase(key);
      pending->done.cancel();
    }
  };

  // The reply to a forwarded query and how it ended. The Core outlives the call (`self`).
  static asio::awaitable<std::pair<Bytes, Outcome>> resolve(std::shared_ptr<Core> self, Query q,
                                                            Transport transport) {
    Core& c = *self;
    const std::size_t limit = reply_limit(q, transport);
    const std::string key = cache_key(q);
    if (auto hit = c.cache_.lookup(key, now_ms())) {
      if (auto reply = reply_from_upstream(hit->reply, q, hit->age_s, limit)) {
        co_return std::make_pair(std::move(*reply), Outcome::cached);
      }
    }
    if (auto it = c.pending_.find(key); it != c.pending_.end()) {
      std::shared_ptr<Pending> pending = it->second;
      c.metrics_.coalesced.Increment();
      co_await pending->done.async_wait(kTuple);  // cancelled: the reply is final
      if (pending->reply) {
        if (auto out = reply_from_upstream(*pending->reply, q, 0, limit)) {
          co_return std::make_pair(std::move(*out), Outcome::forwarded);
        }
      }
      co_return std::make_pair(encode_error(q, Rcode::servfail), Outcome::servfail);
    }
    auto pending = std::make_shared<Pending>(c.executor_);
    c.pending_.emplace(key, pending);
    PendingGuard guard{c, key, pending};
    const auto started = std::chrono::steady_clock::now();
    for (std::size_t index : c.upstreams_.order(now_ms())) {
      const Upstream up = c.upstreams_.upstreams()[index];
      if (c.is_self(up)) {
        continue;
      }
      bool edns = true;
      std::optional<Bytes> reply;
      UpstreamReply info;
      for (int attempt = 0; attempt < 2; ++attempt) {
        reply.reset();
        std::uint16_t id = c.random_id();
        Bytes wire = encode_upstream_query(q, id, edns);
        Exchange ex = co_await c.udp_exchange(up, std::move(wire), id, q.question);
        if (!ex) {
          c.upstream_counter(up, result_label(ex.error())).Increment();
          break;
        }
        reply = std::move(*ex);
        info = inspect_upstream_reply(*reply, id, q.question);
        if (info.truncated) {
          // RFC 7766 §5: a truncated reply is asked again over TCP.
          c.upstream_counter(up, "truncated").Increment();
          id = c.random_id();
          Bytes tcp_wire = encode_upstream_query(q, id, edns);
          Exchange tex = co_await c.tcp_exchange(up, std::move(tcp_wire), id, q.question);
          if (!tex) {
            reply.reset();  // the truncated one is no answer
            c.upstream_counter(up, result_label(tex.error())).Increment();
            break;
          }
          reply = std::move(*tex);
          info = inspect_upstream_reply(*reply, id, q.question);
        }
        if (info.rcode == static_cast<std::uint8_t>(Rcode::formerr) && edns) {
          // RFC 6891 §7: a server that does not know EDNS answers FORMERR; ask it without.
          c.upstream_counter(up, "formerr").Increment();
          edns = false;
          continue;
        }
        break;
      }
      if (!reply) {
        c.upstreams_.failed(index, now_ms());
        continue;
      }
      if (info.rcode == static_cast<std::uint8_t>(Rcode::servfail) ||
          info.rcode == static_cast<std::uint8_t>(Rcode::refused) ||
          info.rcode == static_cast<std::uint8_t>(Rcode::formerr)) {
        // This upstream cannot answer this name; another one may. Not set aside: the
        // failure may be the name's, not the upstream's.
        c.upstream_counter(up, "servfail").Increment();
        continue;
      }
      c.upstreams_.answered(index);
      c.upstream_counter(up, "ok").Increment();
      pending->reply = *reply;
      c.metrics_.forward_seconds.Observe(
          std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
      if (info.cache_ttl) {
        auto stored = store_upstream_reply(*reply, q);
        c.cache_.insert(key, *reply, *info.cache_ttl, now_ms(), std::move(stored));
        c.metrics_.cache_entries.Set(static_cast<double>(c.cache_.size()));
      }
      if (auto out = reply_from_upstream(*reply, q, 0, limit)) {
        co_return std::make_pair(std::move(*out), Outcome::forwarded);
      }
    }
    if (c.upstreams_.upstreams().empty() && !c.warned_no_upstreams_) {
      c.warned_no_upstreams_ = true;
      spdlog::warn(
          "dns: no upstream resolvers (dns.upstreams empty and none in resolv.conf): "
          "names outside the cluster get SERVFAIL");
    }
    co_return std::make_pair(encode_error(q, Rcode::servfail), Outcome::servfail);
  }

  // ---- UDP ----------------------------------------------------------------------------------

  static asio::awaitable<void> forward_udp(std::shared_ptr<Core> self,
                                           std::shared_ptr<udp::socket> socket,
                                           udp::endpoint client, Query q) {
    const std::size_t type = type_slot(q.question.type);
    auto [reply, outcome] = co_await resolve(self, std::move(q), Transport::udp);
    --self->inflight_;
    self->counter(type, outcome).Increment();
    boost::system::error_code ec;
    if (socket->is_open()) {
      socket->send_to(asio::buffer(reply), client, 0, ec);
    }
  }

  // Reads datagrams in batches (recvmmsg) while there are any, answers each (the fast path,
  // else handle), and sends the replies of a batch at once (sendmmsg). Non-blocking: a reply
  // that does not fit the socket's buffer is dropped, as a lost datagram would be.
  static asio::awaitable<void> serve_udp(std::shared_ptr<Core> self,
                                         std::shared_ptr<udp::socket> socket, std::string address) {
    auto batch = std::make_unique<UdpBatch>();
    UdpBatch& b = *batch;
    for (std::size_t i = 0; i < kBatch; ++i) {
      b.in_iov[i] = iovec{b.buffers.get() + i * kDatagram, kDatagram};
    }
    int batches = 0;
    for (;;) {
      if (!socket->is_open() || self->stopped_) {
        co_return;
      }
      for (std::size_t i = 0; i < kBatch; ++i) {
        msghdr& m = b.in[i].msg_hdr;
        m = msghdr{};
        m.msg_name = &b.sources[i];
        m.msg_namelen = sizeof b.sources[i];
        m.msg_iov = &b.in_iov[i];
        m.msg_iovlen = 1;
      }
      const int n = ::recvmmsg(socket->native_handle(), b.in.data(), kBatch, MSG_DONTWAIT, nullptr);
      if (n <= 0) {
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
          continue;  // e.g. an ICMP error queued on the socket, or EINTR
        }
        batches = 0;
        auto [ec] = co_await socket->async_wait(udp::socket::wait_read, kTuple);
        if (ec && ec != asio::error::operation_aborted) {
          // Not expected on a datagram socket: do not spin on it.
          asio::steady_timer pause(self->executor_);
          pause.expires_after(50ms);
          co_await pause.async_wait(kTuple);
        }
        continue;
      }
      self->handle_batch(b, static_cast<std::size_t>(n), socket, address);
      if (++batches >= kBatchesPerTurn) {
        batches = 0;
        co_await asio::post(self->executor_, asio::use_awaitable);
      }
    }
  }

  void handle_batch(UdpBatch& b, std::size_t n, const std::shared_ptr<udp::socket>& socket,
                    const std::string& address) {
    Local* here = local(address);
    std::size_t replies = 0;
    for (std::size_t i = 0; i < n; ++i) {
      const std::span<const std::uint8_t> wire(b.buffers.get() + i * kDatagram, b.in[i].msg_len);
      const sockaddr_storage& source = b.sources[i];
      Bytes& reply = b.replies[replies];
      Handled h;
      if (!answer_fast(here, address_of(source), wire, Transport::udp, reply, h)) {
        udp::endpoint client;
        const std::size_t size = std::min<std::size_t>(b.in[i].msg_hdr.msg_namelen, sizeof source);
        std::memcpy(client.data(), &source, std::min<std::size_t>(size, client.capacity()));
        client.resize(std::min<std::size_t>(size, client.capacity()));
        h = handle(address, client.address(), wire, Transport::udp);
        if (h.forward) {
          if (inflight_ >= kMaxInflight) {
            h.reply = encode_error(*h.forward, Rcode::refused);
            h.outcome = Outcome::refused;
          } else {
            ++inflight_;
            asio::co_spawn(executor_,
                           forward_udp(shared_from_this(), socket, client, std::move(*h.forward)),
                           base::log_and_count("dns: forward", &metrics_.session_errors));
            continue;
          }
        }
        reply = std::move(h.reply);
      }
      counter(h.type, h.outcome).Increment();
      if (reply.empty()) {
        continue;
      }
      b.out_iov[replies] = iovec{reply.data(), reply.size()};
      msghdr& m = b.out[replies].msg_hdr;
      m = msghdr{};
      m.msg_name = const_cast<sockaddr_storage*>(&source);
      m.msg_namelen = b.in[i].msg_hdr.msg_namelen;
      m.msg_iov = &b.out_iov[replies];
      m.msg_iovlen = 1;
      ++replies;
    }
    for (std::size_t sent = 0; sent < replies;) {
      const int r = ::sendmmsg(socket->native_handle(), b.out.data() + sent,
                               static_cast<unsigned>(replies - sent), MSG_DONTWAIT);
      if (r > 0) {
        sent += static_cast<std::size_t>(r);
      } else if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        break;  // the socket's buffer is full: the rest are dropped
      } else {
        ++sent;  // this one failed (e.g. no route): skip it
      }
    }
  }

  // ---- TCP ----------------------------------------------------------------------------------

  static asio::awaitable<void> serve_tcp_client(std::shared_ptr<Core> self, tcp::socket socket,
                                                std::string address) {
    boost::system::error_code pec;
    const asio::ip::address peer = socket.remote_endpoint(pec).address();
    beast::tcp_stream stream(std::move(socket));
    for (;;) {
      std::array<std::uint8_t, 2> len{};
      stream.expires_after(kTcpIdle);
      auto [lec, ln] = co_await asio::async_read(stream, asio::buffer(len), kTuple);
      if (lec || self->stopped_) {
        break;
      }
      Bytes message((std::size_t{len[0]} << 8) | len[1]);
      auto [mec, mn] = co_await asio::async_read(stream, asio::buffer(message), kTuple);
      if (mec || self->stopped_) {
        break;
      }
      Handled h = self->handle(address, peer, message, Transport::tcp);
      if (h.forward) {
        stream.expires_never();
        Query q = std::move(*h.forward);
        auto resolved = co_await resolve(self, std::move(q), Transport::tcp);
        h.reply = std::move(resolved.first);
        h.outcome = resolved.second;
      }
      self->counter(h.type, h.outcome).Increment();
      if (h.reply.empty()) {
        break;  // nothing to say to a message we drop: close, as RFC 7766 §6.2.4 allows
      }
      Bytes framed = frame(h.reply);
      stream.expires_after(kTcpIdle);
      auto [wec, wn] = co_await asio::async_write(stream, asio::buffer(framed), kTuple);
      if (wec) {
        break;
      }
    }
    --self->tcp_clients_;
    boost::system::error_code ignored;
    stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
  }

  static asio::awaitable<void> serve_tcp(std::shared_ptr<Core> self,
                                         std::shared_ptr<tcp::acceptor> acceptor,
                                         std::string address) {
    for (;;) {
      auto [ec, socket] = co_await acceptor->async_accept(kTuple);
      if (!acceptor->is_open() || self->stopped_) {
        co_return;
      }
      if (ec) {
        // Out of descriptors, say: do not spin on it.
        asio::steady_timer pause(self->executor_);
        pause.expires_after(50ms);
        co_await pause.async_wait(kTuple);
        continue;
      }
      if (self->tcp_clients_ >= kMaxTcpClients) {
        boost::system::error_code ignored;
        socket.close(ignored);
        continue;
      }
      ++self->tcp_clients_;
      asio::co_spawn(self->executor_, serve_tcp_client(self, std::move(socket), address),
                     base::log_and_count("dns: tcp client", &self->metrics_.session_errors));
    }
  }

  asio::any_io_executor executor_;
  config::DnsSettings settings_;
  Metrics metrics_;
  std::function<void(const std::set<std::string>&)> own_addresses_;
  std::shared_ptr<const View> view_;
  Cache cache_;
  UpstreamSet upstreams_;
  std::mt19937_64 rng_;
  std::map<std::string, Listener> listeners_;            // by DNS address
  std::set<std::string> failed_;                         // addresses whose failure was logged
  std::map<std::string, std::unique_ptr<Local>> local_;  // by DNS address
  std::array<std::array<prometheus::Counter*, kOutcomes>, kTypeSlots> counters_{};
  FastQuery fast_;         // reused: parse_fast keeps its key's capacity
  std::string cache_key_;  // reused
  std::unordered_map<std::string, std::shared_ptr<Pending>> pending_;  // asked upstream, by key
  std::size_t inflight_ = 0;
  std::size_t tcp_clients_ = 0;
  bool stopped_ = false;
  bool warned_no_upstreams_ = false;
};

class ServerImpl final : public Server {
 public:
  explicit ServerImpl(std::shared_ptr<Core> core) : core_(std::move(core)) {}
  ~ServerImpl() override { core_->stop(); }
  void update(const ClusterState& state) override {
    core_->update(std::make_shared<const View>(compile_view(state)));
  }
  void update(std::shared_ptr<const View> view) override { core_->update(std::move(view)); }
  void stop() override { core_->stop(); }
  std::vector<std::string> addresses() const override { return core_->addresses(); }

 private:
  std::shared_ptr<Core> core_;
};

}  // namespace

std::unique_ptr<Server> make_server(boost::asio::any_io_executor executor,
                                    const config::DnsSettings& settings,
                                    prometheus::Registry& registry,
                                    std::function<void(const std::set<std::string>&)> own_addresses,
                                    const std::string& resolv_conf) {
  std::vector<Upstream> upstreams;
  std::string source = "dns.upstreams";
  for (const auto& text : settings.upstreams) {
    if (auto up = parse_upstream(text)) {
      upstreams.push_back(*up);  // config/ checked them: all parse
    }
  }
  if (settings.upstreams.empty()) {
    source = resolv_conf;
    if (auto text = base::read_file(resolv_conf)) {
      upstreams = parse_resolv_conf(*text);
    }
  }
  std::string names;
  for (const auto& up : upstreams) {
    names += (names.empty() ? "" : ", ") + to_string(up);
  }
  if (upstreams.empty()) {
    spdlog::warn("dns: no upstream resolvers in {}: names outside the cluster get SERVFAIL",
                 source);
  } else {
    spdlog::info("dns: upstream resolvers {} (from {})", names, source);
  }
  auto core = std::make_shared<Core>(std::move(executor), settings, registry,
                                     std::move(own_addresses), std::move(upstreams));
  return std::make_unique<ServerImpl>(std::move(core));
}

}  // namespace routemesh::discovery::dns
