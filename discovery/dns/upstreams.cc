#include "discovery/dns/upstreams.h"

#include "base/address.h"

#include <algorithm>
#include <sstream>

namespace routemesh::discovery::dns {

std::optional<Upstream> parse_upstream(std::string_view text) {
  auto hp = base::parse_host_port(text, {.port_optional = true});
  if (!hp || !base::is_ip_literal(hp->host) || base::is_unspecified_ip(hp->host)) {
    return std::nullopt;
  }
  return Upstream{hp->host, hp->port == 0 ? std::uint16_t{53} : hp->port};
}

std::string to_string(const Upstream& upstream) {
  return base::join_host_port(upstream.ip, upstream.port);
}

std::vector<Upstream> parse_resolv_conf(std::string_view text) {
  constexpr std::size_t kMaxNs = 3;
  std::vector<Upstream> out;
  std::istringstream in{std::string(text)};
  std::string line;
  while (std::getline(in, line) && out.size() < kMaxNs) {
    if (auto c = line.find_first_of("#;"); c != std::string::npos) {
      line.resize(c);
    }
    std::istringstream words(line);
    std::string key;
    std::string address;
    if (!(words >> key >> address) || key != "nameserver") {
      continue;
    }
    if (base::is_ip_literal(address) && !base::is_unspecified_ip(address)) {
      out.push_back(Upstream{address, 53});
    }
  }
  return out;
}

UpstreamSet::UpstreamSet(std::vector<Upstream> upstreams, std::uint64_t hold_down_ms)
    : upstreams_(std::move(upstreams)),
      down_until_(upstreams_.size(), 0),
      hold_down_ms_(hold_down_ms) {}

std::vector<std::size_t> UpstreamSet::order(std::uint64_t now_ms) const {
  std::vector<std::size_t> up;
  std::vector<std::size_t> down;
  for (std::size_t i = 0; i < upstreams_.size(); ++i) {
    (down_until_[i] <= now_ms ? up : down).push_back(i);
  }
  std::stable_sort(down.begin(), down.end(),
                   [&](std::size_t a, std::size_t b) { return down_until_[a] < down_until_[b]; });
  up.insert(up.end(), down.begin(), down.end());
  return up;
}

void UpstreamSet::failed(std::size_t index, std::uint64_t now_ms) {
  if (index < down_until_.size()) {
    down_until_[index] = now_ms + hold_down_ms_;
  }
}

void UpstreamSet::answered(std::size_t index) {
  if (index < down_until_.size()) {
    down_until_[index] = 0;
  }
}

}  // namespace routemesh::discovery::dns
