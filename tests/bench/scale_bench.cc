// Scale benchmark of the pure cores (not a test: ctest does not run it; bench/scale.sh does).
// For each size N it builds a state of N services (mesh.http label, one published port, VIP on
// ingress) with T tasks each over 10 nodes, then times what a write and a config check cost at that
// size:
//
//   config        config::parse + cmd::state_from_config + validate_state + compile_route_table
//                 of the same services as a config file (what `routemesh check` does after
//                 reading the file)
//   validate      discovery::validate_state of the state
//   compile       mesh::compile_route_table of the state, as node n1 of 10 (a tenth of the
//                 tasks local), median of 5 (compile.first: the first of them, which also pays
//                 for fresh memory pages), and with every task local (compile.all_local, as
//                 `check` does); compile.policy: the part of it that is mesh::policy::compile
//                 (the facts of every task address); health_targets: mesh::health::targets for n1,
//                 which a node also recomputes for each new state (.cached: through a TargetCache,
//                 as the node does); state_copy: copying the state (the compile thread's
//                 input); dns_view: discovery::dns::compile_view
//   write         StoreStateMachine::apply of one service.create, then of one task.add for it
//                 (median of --writes each), as a manager applies a committed entry
//   snapshot      StoreStateMachine::snapshot (the Raft snapshot image)
//
//   scale_bench [--sizes 100,1000,10000] [--tasks 10] [--writes 20]
//               [--only config|validate|compile|write]   (one group of figures, for profiling)
//
// Prints one line per size and figure: "N=<n> <what> <milliseconds> ms", in CPU time of the
// benchmark's thread (wall-clock time on a shared machine also counts other processes).

#include "cmd/static_state.h"
#include "config/config.h"
#include "discovery/dns/view.h"
#include "discovery/model/state.h"
#include "discovery/store/state_json.h"
#include "discovery/store/store_state_machine.h"
#include "mesh/health/tracker.h"
#include "mesh/policy/policy.h"
#include "mesh/route_table.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <memory>
#include <string>
#include <vector>

namespace {

using namespace routemesh;

// This thread's CPU time: unlike the wall clock, it does not count the time other processes
// hold the core (the 2-core machines this runs on are often shared).
struct CpuClock {
  using duration = std::chrono::nanoseconds;
  using time_point = std::chrono::time_point<CpuClock>;
  static time_point now() {
    timespec ts{};
    ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return time_point(std::chrono::seconds(ts.tv_sec) + std::chrono::nanoseconds(ts.tv_nsec));
  }
};
using Clock = CpuClock;

double ms_since(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

std::string service_name(std::size_t i) {
  return "svc-" + std::to_string(i);
}

std::string task_address(std::size_t i, std::size_t k) {
  return "10." + std::to_string((i >> 8) & 0xff) + "." + std::to_string(i & 0xff) + "." +
         std::to_string(k + 1);
}

std::uint16_t published_port(std::size_t i) {
  return static_cast<std::uint16_t>(20000 + i);
}

constexpr std::size_t kNodes = 10;

// The state a store holds after N service.create and N*T task.add commands: VIPs on ingress
// (10.255.0.0/16) from .2 upwards, as the store's IPAM hands them out; kNodes nodes n1, n2, ...
// with overlay listeners, the tasks of each service spread over them.
discovery::ClusterState make_state(std::size_t n, std::size_t tasks) {
  discovery::ClusterState state;
  state.revision = 1;
  state.cluster_id = "scale";
  discovery::Network ingress;
  ingress.name = "ingress";
  ingress.subnet = "10.255.0.0/16";
  ingress.gateway = "10.255.0.1";
  ingress.builtin = true;
  state.networks.emplace(ingress.name, ingress);
  for (std::size_t k = 1; k <= kNodes; ++k) {
    discovery::Node node;
    node.id = std::string(14, '0') + (k < 10 ? "0" : "") + std::to_string(k);
    node.name = "n" + std::to_string(k);
    node.role = k == 1 ? discovery::NodeRole::manager : discovery::NodeRole::worker;
    node.address = "127.0.1." + std::to_string(k) + ":9901";
    node.overlay = "127.0.1." + std::to_string(k) + ":7947";
    if (k == 1) {
      node.peer = "127.0.1.1:7946";
    }
    node.version = ++state.revision;
    state.nodes.emplace(node.id, std::move(node));
  }
  for (std::size_t i = 0; i < n; ++i) {
    discovery::Service svc;
    svc.name = service_name(i);
    svc.labels["mesh.http"] = svc.name + ".scale.test";
    svc.networks = {"ingress"};
    svc.ports.push_back(base::PortMapping{published_port(i), 80, "tcp"});
    const std::uint32_t vip = (10u << 24 | 255u << 16) + 2 + static_cast<std::uint32_t>(i);
    svc.vips["ingress"] =
        "10.255." + std::to_string((vip >> 8) & 0xff) + "." + std::to_string(vip & 0xff);
    svc.version = ++state.revision;
    for (std::size_t k = 0; k < tasks; ++k) {
      discovery::Task task;
      task.id = svc.name + "." + std::to_string(k + 1);
      task.service = svc.name;
      task.node = "n" + std::to_string((i + k) % kNodes + 1);
      task.address = task_address(i, k);
      task.port = 8080;
      task.version = ++state.revision;
      state.tasks.emplace(task.id, std::move(task));
    }
    state.services.emplace(svc.name, std::move(svc));
  }
  return state;
}

// The same services as a config file (JSON is YAML).
std::string make_config(std::size_t n, std::size_t tasks) {
  std::string out =
      R"({"node":{"name":"scale","listen":"127.0.0.1","http_port":8080,"admin":"127.0.0.1:9901"},)"
      R"("services":[)";
  for (std::size_t i = 0; i < n; ++i) {
    const std::string name = service_name(i);
    out += (i == 0 ? "" : ",");
    out += R"({"name":")" + name + R"(","labels":{"mesh.http":")" + name +
           R"(.scale.test"},"published":[")" + std::to_string(published_port(i)) +
           R"(:80/tcp"],"tasks":[)";
    for (std::size_t k = 0; k < tasks; ++k) {
      out += (k == 0 ? "\"" : ",\"") + task_address(i, k) + ":8080\"";
    }
    out += "]}";
  }
  out += "]}";
  return out;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

void report(std::size_t n, const char* what, double ms) {
  std::printf("N=%zu %s %.3f ms\n", n, what, ms);
  std::fflush(stdout);
}

// `only`: "" for every figure, else one of config, validate, compile, write (for profiling).
int run(std::size_t n, std::size_t tasks, std::size_t writes, const std::string& only) {
  auto wanted = [&only](const char* what) { return only.empty() || only == what; };
  if (wanted("config")) {
    const std::string text = make_config(n, tasks);
    auto start = Clock::now();
    auto parsed = config::parse(text);
    auto* cfg = std::get_if<config::NodeConfig>(&parsed);
    if (cfg == nullptr) {
      std::fprintf(stderr, "config does not parse\n");
      return 1;
    }
    const double parse_ms = ms_since(start);
    auto state = cmd::state_from_config(*cfg);
    const double build_ms = ms_since(start) - parse_ms;
    auto errors = discovery::validate_state(state, cmd::service_paths_from_config(*cfg));
    const double validate_ms = ms_since(start) - parse_ms - build_ms;
    auto table = mesh::compile_route_table(state);
    if (!errors.empty() || table.exact_hosts.size() != n) {
      std::fprintf(stderr, "config: %zu errors, %zu hosts\n", errors.size(),
                   table.exact_hosts.size());
      return 1;
    }
    report(n, "config.parse", parse_ms);
    report(n, "config.state", build_ms);
    report(n, "config.validate", validate_ms);
    report(n, "config.total", ms_since(start));
  }

  discovery::ClusterState state = make_state(n, tasks);
  if (wanted("validate")) {
    auto start = Clock::now();
    auto errors = discovery::validate_state(state);
    report(n, "validate", ms_since(start));
    if (!errors.empty()) {
      std::fprintf(stderr, "state: %s: %s\n", errors[0].path.c_str(), errors[0].message.c_str());
      return 1;
    }
  }
  if (wanted("compile")) {
    // As node n1 compiles it (a tenth of the tasks local), then as `check` does (no node name:
    // every task local).
    // The first compile of a process also pays for fresh pages; a node compiles again for every
    // new state, so the median of a few is what a write costs.
    std::vector<double> first_ms;
    std::vector<double> local_ms;
    for (int round = 0; round < 5; ++round) {
      auto start = Clock::now();
      auto table = mesh::compile_route_table(state, "n1");
      first_ms.push_back(ms_since(start));
      start = Clock::now();
      auto all_local = mesh::compile_route_table(state);
      local_ms.push_back(ms_since(start));
    }
    report(n, "compile.first", first_ms.front());
    report(n, "compile", median(first_ms));
    report(n, "compile.all_local", median(local_ms));
    // Of which the policy facts (mesh::policy::compile: one entry per task address).
    std::vector<double> policy_ms;
    for (int round = 0; round < 5; ++round) {
      const auto t0 = Clock::now();
      auto compiled = mesh::policy::compile(state);
      policy_ms.push_back(ms_since(t0));
    }
    report(n, "compile.policy", median(policy_ms));
    // What the manager also recomputes for each new state: the health checker's targets,
    // from scratch (a label parse per local task) and through a TargetCache that saw the
    // state before (labels unchanged: a pass over the tasks).
    auto start = Clock::now();
    auto targets = mesh::health::targets(state, "n1");
    report(n, "health_targets", ms_since(start));
    mesh::health::TargetCache cache;
    cache.targets(state, "n1");
    start = Clock::now();
    auto cached = cache.targets(state, "n1");
    report(n, "health_targets.cached", ms_since(start));
    if (cached != targets) {
      std::fprintf(stderr, "cached health targets differ\n");
      return 1;
    }
    // What a node's control thread pays per route compile to hand the compile thread an
    // immutable input: a copy of the state (median of 5).
    std::vector<double> copy_ms;
    for (int round = 0; round < 5; ++round) {
      start = Clock::now();
      auto copy = std::make_shared<const discovery::ClusterState>(state);
      copy_ms.push_back(ms_since(start));
    }
    report(n, "state_copy", median(copy_ms));
    // The DNS view, rebuilt for each new state by a node that serves DNS.
    start = Clock::now();
    auto view = discovery::dns::compile_view(state);
    report(n, "dns_view", ms_since(start));
  }

  if (!wanted("write")) {
    return 0;
  }
  discovery::store::StoreStateMachine machine;
  machine.restore(discovery::store::encode_state(state));
  std::uint64_t index = 1;
  std::vector<double> service_ms;
  std::vector<double> task_ms;
  for (std::size_t w = 0; w < writes; ++w) {
    const std::size_t i = n + w;
    const std::string name = service_name(i);
    const std::string create =
        R"({"op":"service.create","service":{"name":")" + name + R"(","labels":{"mesh.http":")" +
        name + R"(.scale.test"},"ports":[{"published":)" + std::to_string(published_port(i)) +
        R"(,"target":80,"protocol":"tcp"}]}})";
    auto start = Clock::now();
    std::string result = machine.apply(++index, create);
    service_ms.push_back(ms_since(start));
    if (result.find("\"ok\":true") == std::string::npos) {
      std::fprintf(stderr, "service.create refused: %s\n", result.c_str());
      return 1;
    }
    const std::string add = R"({"op":"task.add","task":{"id":")" + name + R"(.1","service":")" +
                            name + R"(","node":"n1","address":")" + task_address(i, 0) +
                            R"(","port":8080}})";
    start = Clock::now();
    result = machine.apply(++index, add);
    task_ms.push_back(ms_since(start));
    if (result.find("\"ok\":true") == std::string::npos) {
      std::fprintf(stderr, "task.add refused: %s\n", result.c_str());
      return 1;
    }
  }
  report(n, "write.service", median(service_ms));
  report(n, "write.task", median(task_ms));
  {
    auto start = Clock::now();
    auto image = machine.snapshot();
    report(n, "snapshot", ms_since(start));
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::size_t> sizes = {100, 1000, 10000};
  std::size_t tasks = 10;
  std::size_t writes = 20;
  std::string only;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const char* value = i + 1 < argc ? argv[i + 1] : nullptr;
    if (arg == "--sizes" && value != nullptr) {
      sizes.clear();
      std::string list = value;
      for (std::size_t pos = 0; pos <= list.size();) {
        const std::size_t comma = std::min(list.find(',', pos), list.size());
        sizes.push_back(std::strtoull(list.substr(pos, comma - pos).c_str(), nullptr, 10));
        pos = comma + 1;
      }
      ++i;
    } else if (arg == "--tasks" && value != nullptr) {
      tasks = std::strtoull(value, nullptr, 10);
      ++i;
    } else if (arg == "--only" && value != nullptr) {
      only = value;
      ++i;
    } else if (arg == "--writes" && value != nullptr) {
      writes = std::max<std::size_t>(1, std::strtoull(value, nullptr, 10));
      ++i;
    } else {
      std::fprintf(stderr,
                   "usage: scale_bench [--sizes 100,1000,10000] [--tasks T] [--writes W]\n"
                   "                   [--only config|validate|compile|write]\n");
      return 2;
    }
  }
  for (std::size_t n : sizes) {
    if (n > 45000 || tasks > 250) {
      std::fprintf(stderr, "at most 45000 services and 250 tasks each\n");
      return 2;
    }
    if (int rc = run(n, tasks, writes, only); rc != 0) {
      return rc;
    }
  }
  return 0;
}
