#pragma once
// `routemesh whoami`: a tiny test backend in the spirit of traefik/whoami.

#include <string>

namespace routemesh::tools {

struct WhoamiOptions {
  std::string listen = "127.0.0.1:9101";  // HOST:PORT (port 0 = any; the bound port is printed)
  std::string name = "whoami";
  unsigned threads = 1;
};

// Runs until SIGINT/SIGTERM. Returns the process exit code.
int run_whoami(const WhoamiOptions& options);

}  // namespace routemesh::tools
