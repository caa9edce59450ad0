#pragma once
// The sample cluster the DNS fast-path tests and the DNS fuzz target answer from: networks
// neta (10.10.0.0/24) and netb (10.10.1.0/24); services web (VIP 10.10.0.3, tasks t0 and t1,
// one IPv6), api (dnsrr on neta, tasks t2 and t3) and secret (VIP on netb, no tasks), each
// publishing 8080:80.

#include "discovery/dns/view.h"
#include "discovery/model/types.h"

#include <string>
#include <utility>

namespace routemesh::test {

inline discovery::dns::View sample_dns_view() {
  using namespace routemesh::discovery;
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
  return dns::compile_view(s);
}

}  // namespace routemesh::test
