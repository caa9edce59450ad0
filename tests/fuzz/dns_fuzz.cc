// The DNS server's query path on arbitrary bytes: decode_query, answer() from a fixed view of
// a small cluster, encode_answer under each size limit; and the same bytes as an upstream's
// reply: inspect_upstream_reply, reply_from_upstream, the cache. Nothing may crash, leak or
// read out of bounds, and a reply must fit its limit.

#include "discovery/dns/answer.h"
#include "discovery/dns/cache.h"
#include "discovery/dns/message.h"
#include "discovery/dns/view.h"

#include <cstddef>
#include <cstdint>
#include <cstdlib>

namespace {

using namespace routemesh;
using namespace routemesh::discovery;
using namespace routemesh::discovery::dns;

View make_view() {
  ClusterState s;
  for (auto [name, subnet] :
       {std::pair{"neta", "10.10.0.0/24"}, std::pair{"netb", "10.10.1.0/24"}}) {
    Network n;
    n.name = name;
    n.subnet = subnet;
    s.networks[name] = n;
  }
  auto service = [&](const char* name, EndpointMode mode, const char* net, const char* vip) {
    Service svc;
    svc.name = name;
    svc.endpoint_mode = mode;
    svc.networks = {net};
    svc.vips[net] = vip;
    svc.ports.push_back(base::PortMapping{8080, 80});
    s.services[name] = svc;
  };
  service("web", EndpointMode::vip, "neta", "10.10.0.3");
  service("api", EndpointMode::dnsrr, "neta", "10.10.0.4");
  service("secret", EndpointMode::vip, "netb", "10.10.1.3");
  const char* addresses[] = {"172.31.0.1", "172.31.0.2", "fd00::3", "172.31.0.4"};
  for (int i = 0; i < 4; ++i) {
    Task t;
    t.id = "t" + std::to_string(i);
    t.service = i < 2 ? "web" : "api";
    t.address = addresses[i];
    t.health = TaskHealth::healthy;
    s.tasks[t.id] = t;
  }
  return compile_view(s);
}

void check(bool ok) {
  if (!ok) {
    std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const View view = make_view();
  static Cache cache(16);
  const std::span<const std::uint8_t> wire(data, size);
  const NetworkView& network = view.by_address.begin()->second;

  Decoded d = decode_query(wire);
  check(d.query || d.outcome != Outcome::local);
  Query q;
  q.question = Question{{"example", "com"}, kTypeA, kClassIn};
  if (d.query) {
    q = *d.query;
    const Answer a = answer(q, view, network, AnswerOptions{5}, size);
    for (Transport t : {Transport::udp, Transport::tcp}) {
      const std::size_t limit = reply_limit(q, t);
      const Bytes reply = encode_answer(q, a, limit);
      check(reply.size() <= limit);
    }
    (void)encode_error(q, Rcode::servfail);
    (void)encode_upstream_query(q, 7, size % 2 == 0);
  }
  const std::uint16_t id = size >= 2 ? static_cast<std::uint16_t>(data[0] << 8 | data[1]) : 0;
  const UpstreamReply r = inspect_upstream_reply(wire, id, q.question);
  if (r.status == UpstreamReply::Status::ok && r.cache_ttl) {
    cache.insert(cache_key(q), Bytes(wire.begin(), wire.end()), *r.cache_ttl, size);
  }
  if (auto hit = cache.lookup(cache_key(q), size + 1000)) {
    (void)reply_from_upstream(hit->reply, q, hit->age_s, 512);
  }
  for (std::size_t limit : {std::size_t{512}, std::size_t{65535}}) {
    if (auto out = reply_from_upstream(wire, q, static_cast<std::uint32_t>(size % 300), limit)) {
      check(out->size() <= limit);
    }
  }
  return 0;
}
