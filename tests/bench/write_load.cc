// Closed-loop write load for bench/cluster.sh (not a test: ctest does not run it). N writers,
// each on one kept-alive connection of its own, each updating its own key for S seconds;
// a write counts when its 200 arrives. The Python clients the bench used before cost about
// 0.2 ms of CPU per write on the 2-core machine the nodes also run on, as much as the three
// managers together; this one costs a few tens of microseconds, so the figure is the
// servers'.
//
//   write_load --api HOST:PORT [--cert-dir DIR] [--writers N] [--duration S] [--prefix P]
//              [--etcd]
//
// routemesh (default): the admin API over TLS with DIR's ca.pem, cert.pem and key.pem (the
// admin certificate `cluster init` writes); writer i owns the service P-i, creates it when it
// is missing (201 or 409) and then puts a label change (`PUT /v1/services/P-i`, label
// `bench.n`). --etcd: etcd's v3 JSON gateway in plain HTTP, `POST /v3/kv/put` of key P/i.
//
// Every writer first makes one write that is not counted (its connection and TLS handshake);
// then the tool prints the line "start" (the caller starts measuring the servers' CPU there),
// runs S seconds and prints one line of JSON: committed, seconds, writes_per_s, p50_ms,
// p99_ms, max_ms, errors (by HTTP status or transport error). Exit 0, or 2 on bad arguments
// or when a writer could not make its first write.

#include "base/http_client.h"
#include "tls/context.h"
#include "tls/credentials.h"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace {

namespace asio = boost::asio;
using namespace routemesh;
using Clock = std::chrono::steady_clock;

struct Options {
  std::string api;
  std::string cert_dir;
  int writers = 8;
  double duration = 5.0;
  std::string prefix = "wl";
  bool etcd = false;
};

std::optional<Options> parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    const bool has_value = i + 1 < argc;
    if (arg == "--etcd") {
      o.etcd = true;
    } else if (arg == "--api" && has_value) {
      o.api = argv[++i];
    } else if (arg == "--cert-dir" && has_value) {
      o.cert_dir = argv[++i];
    } else if (arg == "--writers" && has_value) {
      o.writers = std::atoi(argv[++i]);
    } else if (arg == "--duration" && has_value) {
      o.duration = std::atof(argv[++i]);
    } else if (arg == "--prefix" && has_value) {
      o.prefix = argv[++i];
    } else {
      std::fprintf(stderr, "write_load: unknown or incomplete argument: %s\n", argv[i]);
      return std::nullopt;
    }
  }
  if (o.api.empty() || o.writers < 1 || o.writers > 4096 || !(o.duration > 0)) {
    std::fprintf(stderr, "write_load: --api is required; --writers 1..4096; --duration > 0\n");
    return std::nullopt;
  }
  if (!o.etcd && o.cert_dir.empty()) {
    std::fprintf(stderr, "write_load: --cert-dir is required for routemesh's admin API\n");
    return std::nullopt;
  }
  return o;
}

std::string base64(std::string_view in) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  std::size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    const unsigned v = static_cast<unsigned char>(in[i]) << 16 |
                       static_cast<unsigned char>(in[i + 1]) << 8 |
                       static_cast<unsigned char>(in[i + 2]);
    for (int shift : {18, 12, 6, 0}) {
      out += kAlphabet[(v >> shift) & 63];
    }
  }
  if (i < in.size()) {
    unsigned v = static_cast<unsigned char>(in[i]) << 16;
    if (i + 1 < in.size()) {
      v |= static_cast<unsigned char>(in[i + 1]) << 8;
    }
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += i + 1 < in.size() ? kAlphabet[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

class Load {
 public:
  Load(asio::io_context& io, Options o, base::TlsContext tls)
      : io_(io), o_(std::move(o)), tls_(std::move(tls)), all_ready_(io, Clock::time_point::max()) {
    for (int i = 0; i < o_.writers; ++i) {
      writers_.push_back(std::make_unique<Writer>(io.get_executor(), tls_));
    }
  }

  asio::awaitable<int> run() {
    pending_ = o_.writers;
    for (int i = 0; i < o_.writers; ++i) {
      asio::co_spawn(io_, first_write(i), asio::detached);
    }
    co_await all_ready_.async_wait(asio::as_tuple(asio::use_awaitable));
    if (failed_ > 0) {
      std::fprintf(stderr, "write_load: %d writer(s) could not make a first write\n", failed_);
      co_return 2;
    }
    std::printf("start\n");
    std::fflush(stdout);
    start_ = Clock::now();
    end_ = start_ +
           std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(o_.duration));
    pending_ = o_.writers;
    all_ready_.expires_at(Clock::time_point::max());
    for (int i = 0; i < o_.writers; ++i) {
      asio::co_spawn(io_, loop(i), asio::detached);
    }
    co_await all_ready_.async_wait(asio::as_tuple(asio::use_awaitable));
    report();
    co_return 0;
  }

 private:
  struct Writer {
    Writer(asio::any_io_executor ex, base::TlsContext tls) : client(ex, std::move(tls)) {}
    base::KeepAliveClient client;
    std::uint64_t n = 0;
  };

  base::ClientRequest request(int i, std::uint64_t n) const {
    base::ClientRequest r;
    const std::string key = o_.prefix + "-" + std::to_string(i);
    if (o_.etcd) {
      r.method = "POST";
      r.target = "/v3/kv/put";
      r.body = R"({"key":")" + base64(o_.prefix + "/" + std::to_string(i)) + R"(","value":")" +
               base64(R"({"bench.n":)" + std::to_string(n) + "}") + R"("})";
    } else {
      r.method = "PUT";
      r.target = "/v1/services/" + key;
      r.body = R"({"name":")" + key + R"(","labels":{"bench.n":")" + std::to_string(n) + R"("}})";
    }
    return r;
  }

  // The writer's service (routemesh) and one write, neither counted.
  asio::awaitable<void> first_write(int i) {
    Writer& w = *writers_[static_cast<std::size_t>(i)];
    bool ok = true;
    if (!o_.etcd) {
      base::ClientRequest create;
      create.method = "POST";
      create.target = "/v1/services";
      const std::string key = o_.prefix + "-" + std::to_string(i);
      create.body = R"({"name":")" + key + R"(","labels":{"bench.n":"0"}})";
      auto r = co_await w.client.call(o_.api, std::move(create), std::chrono::seconds(30));
      ok = r && (r->status == 201 || r->status == 409);
      if (!ok) {
        std::fprintf(stderr, "write_load: creating %s: %s\n", key.c_str(),
                     r ? std::to_string(r->status).c_str() : r.error().message().c_str());
      }
    }
    if (ok) {
      auto r = co_await w.client.call(o_.api, request(i, ++w.n), std::chrono::seconds(30));
      ok = r && r->status == 200;
      if (!ok) {
        std::fprintf(stderr, "write_load: first write of writer %d: %s\n", i,
                     r ? std::to_string(r->status).c_str() : r.error().message().c_str());
      }
    }
    if (!ok) {
      ++failed_;
    }
    if (--pending_ == 0) {
      all_ready_.cancel();
    }
  }

  asio::awaitable<void> loop(int i) {
    Writer& w = *writers_[static_cast<std::size_t>(i)];
    while (Clock::now() < end_) {
      const auto t0 = Clock::now();
      auto r = co_await w.client.call(o_.api, request(i, ++w.n), std::chrono::seconds(10));
      const auto t1 = Clock::now();
      if (!r) {
        ++errors_[r.error().code.message()];
      } else if (r->status != 200) {
        ++errors_[std::to_string(r->status)];
      } else if (t1 <= end_) {
        latencies_ms_.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
      }
    }
    if (--pending_ == 0) {
      all_ready_.cancel();
    }
  }

  void report() {
    const double seconds = std::chrono::duration<double>(end_ - start_).count();
    std::sort(latencies_ms_.begin(), latencies_ms_.end());
    auto pct = [&](double p) {
      if (latencies_ms_.empty()) {
        return 0.0;
      }
      auto k = static_cast<std::size_t>(p / 100.0 * static_cast<double>(latencies_ms_.size()));
      return latencies_ms_[std::min(k, latencies_ms_.size() - 1)];
    };
    std::string errors;
    for (const auto& [what, count] : errors_) {
      errors += (errors.empty() ? "\"" : ", \"") + what + "\": " + std::to_string(count);
    }
    std::printf(
        "{\"committed\": %zu, \"seconds\": %.3f, \"writes_per_s\": %.1f, \"p50_ms\": %.2f, "
        "\"p99_ms\": %.2f, \"max_ms\": %.2f, \"writers\": %d, \"errors\": {%s}}\n",
        latencies_ms_.size(), seconds, static_cast<double>(latencies_ms_.size()) / seconds, pct(50),
        pct(99), latencies_ms_.empty() ? 0.0 : latencies_ms_.back(), o_.writers, errors.c_str());
    std::fflush(stdout);
  }

  asio::io_context& io_;
  Options o_;
  base::TlsContext tls_;
  std::vector<std::unique_ptr<Writer>> writers_;
  asio::steady_timer all_ready_;  // cancelled when the last writer of a phase is done
  int pending_ = 0;
  int failed_ = 0;
  Clock::time_point start_;
  Clock::time_point end_;
  std::vector<double> latencies_ms_;
  std::map<std::string, std::uint64_t> errors_;
};

}  // namespace

int main(int argc, char** argv) {
  auto options = parse(argc, argv);
  if (!options) {
    return 2;
  }
  base::TlsContext tls;
  if (!options->etcd) {
    std::string pems[3];
    const char* names[3] = {"ca.pem", "cert.pem", "key.pem"};
    for (int i = 0; i < 3; ++i) {
      const std::string path = options->cert_dir + "/" + names[i];
      auto text = tls::read_credential_file(path);
      if (!text) {
        std::fprintf(stderr, "write_load: cannot read %s: %s\n", path.c_str(),
                     text.error().message().c_str());
        return 2;
      }
      pems[i] = std::move(*text);
    }
    auto ctx = tls::client_context(pems[0], pems[1], pems[2]);
    if (!ctx) {
      std::fprintf(stderr, "write_load: --cert-dir: %s\n", ctx.error().message().c_str());
      return 2;
    }
    tls = std::move(*ctx);
  }
  asio::io_context io(1);
  Load load(io, std::move(*options), tls);
  int rc = 2;
  asio::co_spawn(
      io, [&]() -> asio::awaitable<void> { rc = co_await load.run(); }, asio::detached);
  io.run();
  return rc;
}
