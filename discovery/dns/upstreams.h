#pragma once
// The upstream resolvers (pure): where they come from (dns.upstreams, else the node's
// resolv.conf) and which one a forwarded query asks first.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace routemesh::discovery::dns {

struct Upstream {
  std::string ip;
  std::uint16_t port = 53;
  bool operator==(const Upstream&) const = default;
};

// "IP", "IP:PORT", "[IPv6]:PORT" or a bare IPv6 literal (base::parse_host_port); a specific
// address (not 0.0.0.0 or ::). nullopt otherwise.
std::optional<Upstream> parse_upstream(std::string_view text);
// "IP:PORT" ("[IPv6]:PORT"), for logs and metric labels.
std::string to_string(const Upstream& upstream);

// The nameservers of a resolv.conf text (resolv.conf(5)): `nameserver ADDRESS` lines in order,
// at most 3 (MAXNS) as the C library reads them; comments (# or ;) and other options are
// ignored, and so are addresses it cannot use (an IPv6 address with a zone id).
std::vector<Upstream> parse_resolv_conf(std::string_view text);

// Which upstream a query asks first. Upstreams are asked in the configured order; one that
// did not answer (a timeout, an error, SERVFAIL) is set aside for `hold_down_ms`, so the
// following queries go to the next one at once instead of waiting for the same timeout, and
// is asked again after that (or as soon as it is the only hope left).
class UpstreamSet {
 public:
  explicit UpstreamSet(std::vector<Upstream> upstreams, std::uint64_t hold_down_ms = 30'000);

  // The indices to try at `now_ms`: those not set aside in configured order, then the set-aside
  // ones, the one back soonest first. Every upstream is in it once.
  std::vector<std::size_t> order(std::uint64_t now_ms) const;
  void failed(std::size_t index, std::uint64_t now_ms);
  void answered(std::size_t index);
  const std::vector<Upstream>& upstreams() const { return upstreams_; }

 private:
  std::vector<Upstream> upstreams_;
  std::vector<std::uint64_t> down_until_;
  std::uint64_t hold_down_ms_;
};

}  // namespace routemesh::discovery::dns
