#include "discovery/model/state_index.h"

#include "base/address.h"
#include "discovery/model/labels.h"
#include "discovery/model/state.h"

#include <catch2/catch.hpp>

#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

using namespace routemesh;
using namespace routemesh::discovery;

namespace {

std::string describe(const std::vector<StateError>& errors) {
  std::string out;
  for (const auto& e : errors) {
    out += e.path + ": " + e.message + (e.conflict ? " (conflict)" : "") + "\n";
  }
  return out;
}

std::string quoted(const std::string& s) {
  return "\"" + s + "\"";
}

// The validator of one service as it was written before the index existed: every other service
// of the state is replayed (in name order, first claim wins), then the service is checked. It
// is quadratic over a whole state and kept here only as the reference the indexed validator
// must agree with, message for message.
std::vector<StateError> reference_validate_service(const ClusterState& state, const Service& svc,
                                                   const std::string& path, bool task_ports_later) {
  std::map<std::string, std::pair<std::size_t, std::size_t>> task_ports;
  for (const auto& [id, task] : state.tasks) {
    auto& counts = task_ports[task.service];
    ++counts.first;
    if (task.port != 0) {
      ++counts.second;
    }
  }
  std::map<HttpClaim, std::string> claims;
  std::map<std::pair<std::string, std::uint16_t>, std::string> published;
  auto check_and_add = [&](const Service& s, const std::string& p, bool later,
                           std::vector<StateError>& errors) {
    if (!base::is_object_name(s.name)) {
      errors.push_back(StateError{p + ".name", "must match [a-z0-9][a-z0-9_.-]{0,62}"});
    }
    const std::string labels_path = p + ".labels";
    Exposure exposure = parse_labels(s.labels, labels_path, errors);
    for (const auto& http : exposure.http) {
      const std::string label_path = labels_path + "." + http.source_label;
      for (const auto& host : http.hosts) {
        auto [it, inserted] =
            claims.emplace(HttpClaim{host.host, host.wildcard, http.path_prefix}, s.name);
        if (!inserted) {
          errors.push_back(StateError{label_path,
                                      "host " + to_string(host) + " path " + http.path_prefix +
                                          " already claimed by service " + quoted(it->second) +
                                          " (second claim by service " + quoted(s.name) + ")",
                                      true});
        }
      }
      if (http.port == 0 && s.ports.empty()) {
        auto counts = task_ports[s.name];
        const bool missing = later ? counts.second != counts.first
                                   : counts.first == 0 || counts.second != counts.first;
        if (missing) {
          errors.push_back(StateError{
              label_path,
              "no task port for HTTP: set mesh.http.port, publish a target port or give every "
              "task a port"});
        }
      }
    }
    for (std::size_t i = 0; i < s.ports.size(); ++i) {
      const auto& port = s.ports[i];
      const std::string port_path = p + ".ports[" + std::to_string(i) + "]";
      if (port.published == 0 || port.target == 0) {
        errors.push_back(StateError{port_path, "ports must be 1..65535"});
        continue;
      }
      if (port.protocol != "tcp" && port.protocol != "udp") {
        errors.push_back(StateError{port_path, "protocol must be tcp or udp"});
        continue;
      }
      auto [it, inserted] =
          published.emplace(std::make_pair(port.protocol, port.published), s.name);
      if (!inserted) {
        errors.push_back(StateError{port_path,
                                    "published port " + std::to_string(port.published) + "/" +
                                        port.protocol + " already used by service " +
                                        quoted(it->second) + " (second use by service " +
                                        quoted(s.name) + ")",
                                    true});
      }
    }
    std::set<std::string> seen;
    for (std::size_t i = 0; i < s.networks.size(); ++i) {
      const std::string& name = s.networks[i];
      const std::string net_path = p + ".networks[" + std::to_string(i) + "]";
      if (state.networks.count(name) == 0) {
        errors.push_back(StateError{net_path, "unknown network " + quoted(name)});
      } else if (!seen.insert(name).second) {
        errors.push_back(StateError{net_path, "network " + quoted(name) + " listed twice"});
      }
    }
  };
  std::vector<StateError> ignored;
  for (const auto& [name, other] : state.services) {
    if (name != svc.name) {
      check_and_add(other, "services." + name, false, ignored);
    }
  }
  std::vector<StateError> errors;
  check_and_add(svc, path, task_ports_later, errors);
  return errors;
}

bool same_errors(const std::vector<StateError>& a, const std::vector<StateError>& b) {
  if (a.size() != b.size()) {
    return false;
  }
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (a[i].path != b[i].path || a[i].message != b[i].message || a[i].conflict != b[i].conflict) {
      return false;
    }
  }
  return true;
}

// A random service from a small vocabulary, so that claims, ports and task ports collide often.
Service random_service(std::mt19937& rng, const std::string& name) {
  auto pick = [&rng](int n) { return static_cast<int>(rng() % static_cast<unsigned>(n)); };
  static const char* kHosts[] = {"a.test",        "b.test",        "*.test", "A.test",
                                 "c.test,a.test", "a.test,a.test", ""};
  static const char* kPaths[] = {"/", "/api", "/api/", "/v1"};
  Service s;
  s.name = name;
  if (pick(4) != 0) {
    s.labels["mesh.http"] = kHosts[pick(7)];
  }
  if (pick(3) == 0) {
    s.labels["mesh.http.path"] = kPaths[pick(4)];
  }
  if (pick(4) == 0) {
    s.labels["mesh.http.port"] = pick(5) == 0 ? "0" : "8080";
  }
  if (pick(5) == 0) {
    s.labels["com.docker.ucp.mesh.http.80"] = std::string("external_route=http://") +
                                              (pick(2) == 0 ? "a.test" : "d.test") +
                                              ",internal_port=80";
  }
  const int ports = pick(3);
  for (int i = 0; i < ports; ++i) {
    const auto published = static_cast<std::uint16_t>(pick(6) == 0 ? 0 : 8000 + pick(4));
    s.ports.push_back(base::PortMapping{published, 80, pick(4) == 0 ? "udp" : "tcp"});
  }
  if (pick(6) == 0) {
    s.ports.push_back(base::PortMapping{9000, 80, "sctp"});
  }
  s.networks = {"ingress"};
  if (pick(5) == 0) {
    s.networks.push_back(pick(2) == 0 ? "ingress" : "backend");
  }
  return s;
}

}  // namespace

TEST_CASE("address set: merged ranges answer the lowest free address at or above a bound") {
  detail::AddressSet set;
  CHECK(set.first_free(10) == 10);
  for (std::uint32_t a : {10u, 11u, 13u}) {
    set.insert(a);
  }
  CHECK(set.first_free(10) == 12);
  CHECK(set.first_free(12) == 12);
  CHECK(set.first_free(13) == 14);
  CHECK(set.first_free(9) == 9);
  set.insert(12);  // joins [10,11] and [13]
  CHECK(set.first_free(10) == 14);
  set.insert(12);  // held twice
  set.erase(12);
  CHECK(set.first_free(10) == 14);
  set.erase(12);  // splits again
  CHECK(set.first_free(10) == 12);
  CHECK(set.first_free(13) == 14);
  set.erase(10);
  CHECK(set.first_free(10) == 10);
  CHECK(set.first_free(11) == 12);
  set.erase(99);  // absent: nothing happens
  set.erase(11);
  set.erase(13);
  CHECK(set.empty());
  CHECK(set == detail::AddressSet{});
  set.insert(0xffffffffu);
  CHECK(set.first_free(0xffffffffu) == 0x100000000u);
}

TEST_CASE("address set: random inserts and erases agree with a plain multiset") {
  std::mt19937 rng(7);
  detail::AddressSet set;
  std::multiset<std::uint32_t> plain;
  for (int step = 0; step < 5000; ++step) {
    const std::uint32_t a = 100 + rng() % 64;
    if (rng() % 3 == 0 && plain.count(a) != 0) {
      set.erase(a);
      plain.erase(plain.find(a));
    } else {
      set.insert(a);
      plain.insert(a);
    }
    const std::uint64_t from = 95 + rng() % 75;
    std::uint64_t want = from;
    while (plain.count(static_cast<std::uint32_t>(want)) != 0) {
      ++want;
    }
    REQUIRE(set.first_free(from) == want);
  }
}

TEST_CASE("an index kept in step with changes equals one built from the state") {
  ClusterState state;
  state.networks["ingress"] = Network{"ingress", "10.255.0.0/16", "10.255.0.1", true, 0};
  StateIndex index(state);
  std::mt19937 rng(11);
  for (int step = 0; step < 3000; ++step) {
    const std::string name = "s" + std::to_string(rng() % 12);
    const std::string task_id = "t" + std::to_string(rng() % 40);
    switch (rng() % 6) {
      case 0:
      case 1: {  // put a service (replacing any old one)
        Service s = random_service(rng, name);
        s.vips["ingress"] = "10.255.0." + std::to_string(2 + rng() % 20);
        if (auto it = state.services.find(name); it != state.services.end()) {
          index.remove_service(it->second);
        }
        state.services[name] = s;
        index.add_service(s);
        break;
      }
      case 2:
        if (auto it = state.services.find(name); it != state.services.end()) {
          index.remove_service(it->second);
          state.services.erase(it);
        }
        break;
      case 3:
        if (state.tasks.count(task_id) == 0) {
          Task t{task_id, name, "n" + std::to_string(rng() % 3), "10.0.0.1",
                 static_cast<std::uint16_t>(rng() % 2 == 0 ? 0 : 80)};
          state.tasks[task_id] = t;
          index.add_task(t);
        }
        break;
      case 4:
        if (auto it = state.tasks.find(task_id); it != state.tasks.end()) {
          index.remove_task(it->second);
          state.tasks.erase(it);
        }
        break;
      case 5: {
        const std::string id = std::string(15, '0') + std::to_string(rng() % 6);
        if (auto it = state.nodes.find(id); it != state.nodes.end()) {
          index.remove_node(it->second);
          state.nodes.erase(it);
        } else {
          Node n;
          n.id = id;
          n.name = "n" + std::to_string(rng() % 3);
          state.nodes[id] = n;
          index.add_node(n);
        }
        break;
      }
    }
    REQUIRE(index == StateIndex(state));
  }
}

TEST_CASE("validate_service with the index reports what the pairwise validator reported") {
  std::mt19937 rng(3);
  for (int round = 0; round < 400; ++round) {
    ClusterState state;
    state.networks["ingress"] = Network{"ingress", "10.255.0.0/16", "10.255.0.1", true, 0};
    state.networks["backend"] = Network{"backend", "10.10.0.0/24", "10.10.0.1", false, 0};
    const int services = 1 + static_cast<int>(rng() % 8);
    for (int i = 0; i < services; ++i) {
      Service s = random_service(rng, "s" + std::to_string(rng() % 10));
      state.services[s.name] = s;
    }
    for (int i = 0; i < 6; ++i) {
      Task t;
      t.id = "t" + std::to_string(i);
      t.service = "s" + std::to_string(rng() % 10);
      t.address = "10.0.0.1";
      t.port = static_cast<std::uint16_t>(rng() % 2 == 0 ? 0 : 80);
      state.tasks[t.id] = t;
    }
    const StateIndex index(state);
    for (int probe = 0; probe < 4; ++probe) {
      // A new service, or a replacement of an existing one.
      Service candidate = random_service(rng, "s" + std::to_string(rng() % 12));
      for (bool later : {false, true}) {
        auto want = reference_validate_service(state, candidate, "service", later);
        auto got = validate_service(state, index, candidate, "service", "ports", later);
        INFO("want:\n" << describe(want) << "got:\n" << describe(got));
        REQUIRE(same_errors(want, got));
        REQUIRE(same_errors(got, validate_service(state, candidate, "service", "ports", later)));
      }
    }
  }
}

TEST_CASE("a conflict names the smallest other holder, and a repeat within a service itself") {
  ClusterState state;
  state.networks["ingress"] = Network{"ingress", "10.255.0.0/16", "10.255.0.1", true, 0};
  for (const char* name : {"zeta", "beta", "alpha"}) {
    Service s;
    s.name = name;
    s.labels = {{"mesh.http", "web.test"}};
    s.ports = {base::PortMapping{8081, 80, "tcp"}};
    s.networks = {"ingress"};
    state.services[name] = s;
  }
  const StateIndex index(state);

  Service beta = state.services["beta"];  // replacing beta: alpha is the other holder
  auto errors = validate_service(state, index, beta, "service", "ports", true);
  REQUIRE(errors.size() == 2);
  CHECK(errors[0].path == "service.labels.mesh.http");
  CHECK(errors[0].message ==
        "host web.test path / already claimed by service \"alpha\" (second claim by service "
        "\"beta\")");
  CHECK(errors[0].conflict);
  CHECK(errors[1].path == "service.ports[0]");
  CHECK(errors[1].message ==
        "published port 8081/tcp already used by service \"alpha\" (second use by service "
        "\"beta\")");

  Service solo;
  solo.name = "solo";
  solo.labels = {
      {"mesh.http", "solo.test"},
      {"com.docker.ucp.mesh.http.80", "external_route=http://solo.test,internal_port=80"}};
  solo.ports = {base::PortMapping{9001, 80, "udp"}, base::PortMapping{9001, 81, "udp"},
                base::PortMapping{9001, 80, "tcp"}};
  solo.networks = {"ingress"};
  errors = validate_service(state, index, solo, "service", "ports", true);
  INFO(describe(errors));
  REQUIRE(errors.size() == 2);
  CHECK(errors[0].path == "service.labels.com.docker.ucp.mesh.http.80");
  CHECK(errors[0].message ==
        "host solo.test path / already claimed by service \"solo\" (second claim by service "
        "\"solo\")");
  CHECK(errors[1].path == "service.ports[1]");
  CHECK(errors[1].message ==
        "published port 9001/udp already used by service \"solo\" (second use by service "
        "\"solo\")");
}

TEST_CASE("validate_state: later services in config order name the first claimant") {
  ClusterState state;
  for (const char* name : {"c", "a", "b"}) {
    Service s;
    s.name = name;
    s.labels = {{"mesh.http", "web.test"}, {"mesh.http.port", "80"}};
    s.ports = {base::PortMapping{8081, 80, "tcp"}};
    state.services[name] = s;
  }
  // Config order: b, c, a.
  auto errors =
      validate_state(state, {{"b", "services[0]"}, {"c", "services[1]"}, {"a", "services[2]"}});
  INFO(describe(errors));
  REQUIRE(errors.size() == 4);
  CHECK(errors[0].path == "services[1].labels.mesh.http");
  CHECK_THAT(errors[0].message, Catch::Contains("already claimed by service \"b\""));
  CHECK(errors[1].path == "services[1].published[0]");
  CHECK_THAT(errors[1].message, Catch::Contains("already used by service \"b\""));
  CHECK(errors[2].path == "services[2].labels.mesh.http");
  CHECK_THAT(errors[2].message, Catch::Contains("already claimed by service \"b\" (second claim "
                                                "by service \"a\")"));
  CHECK(errors[3].path == "services[2].published[0]");
}

TEST_CASE("validate_state reports task errors in config order, not id order") {
  ClusterState state;
  Service web;
  web.name = "web";
  web.labels = {{"mesh.http", "web.test"}};
  web.ports = {base::PortMapping{8081, 80, "tcp"}};
  state.services["web"] = web;
  // Ids sort "web.10" < "web.3" < "web.4"; the config file wrote web.3 before web.10.
  for (int i = 1; i <= 12; ++i) {
    Task t;
    t.id = "web." + std::to_string(i);
    t.service = "web";
    t.address = (i == 3 || i == 10) ? "backend" + std::to_string(i) : "10.0.0.1";
    state.tasks[t.id] = t;
  }
  Task ghost{"ghost.1", "ghost", "", "bogus"};
  state.tasks[ghost.id] = ghost;
  auto errors = validate_state(state, {{"web", "services[0]"}});
  INFO(describe(errors));
  REQUIRE(errors.size() == 4);
  CHECK(errors[0].path == "services[0].tasks[2]");
  CHECK(errors[0].message == "address \"backend3\" is not an IP literal");
  CHECK(errors[1].path == "services[0].tasks[9]");
  CHECK(errors[2].path == "tasks.ghost.1");
  CHECK(errors[2].message == "unknown service \"ghost\"");
  CHECK(errors[3].path == "tasks.ghost.1");
  CHECK(errors[3].message == "address \"bogus\" is not an IP literal");
}

TEST_CASE("validate_state on a large state: every conflict found once, tasks by index") {
  // 3,000 services, every tenth reusing the host and port of the one before it.
  ClusterState state;
  std::map<std::string, std::string> paths;
  for (int i = 0; i < 3000; ++i) {
    const int slot = (i % 10 == 9) ? i - 1 : i;
    Service s;
    s.name = "svc" + std::to_string(i);
    s.labels = {{"mesh.http", "h" + std::to_string(slot) + ".test"}};
    s.ports = {base::PortMapping{static_cast<std::uint16_t>(10000 + slot), 80, "tcp"}};
    state.services[s.name] = s;
    paths[s.name] = "services[" + std::to_string(i) + "]";
    for (int k = 1; k <= 3; ++k) {
      Task t;
      t.id = s.name + "." + std::to_string(k);
      t.service = s.name;
      t.address = "10.0.0." + std::to_string(k);
      state.tasks[t.id] = t;
    }
  }
  auto errors = validate_state(state, paths);
  REQUIRE(errors.size() == 600);
  CHECK(errors[0].path == "services[9].labels.mesh.http");
  CHECK_THAT(errors[0].message, Catch::Contains("service \"svc8\" (second claim by service "
                                                "\"svc9\")"));
  CHECK(errors[1].path == "services[9].published[0]");
  CHECK(errors[599].path == "services[2999].published[0]");
}
