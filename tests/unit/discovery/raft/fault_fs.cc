#include "tests/unit/discovery/raft/fault_fs.h"

#include <algorithm>
#include <cerrno>

namespace routemesh::discovery::raft::sim {

namespace {

boost::system::error_code err(int e) {
  return {e, boost::system::system_category()};
}

}  // namespace

class FaultFs::File final : public AppendFile {
 public:
  File(FaultFs& fs, std::shared_ptr<Inode> inode) : fs_(fs), inode_(std::move(inode)) {}

  boost::system::error_code append(const std::uint8_t* data, std::size_t size) override {
    inode_->data.insert(inode_->data.end(), data, data + size);
    return {};
  }
  boost::system::error_code sync() override { return fs_.sync_file(*inode_); }

 private:
  FaultFs& fs_;
  std::shared_ptr<Inode> inode_;
};

class FaultFs::Lock final : public DirLock {
 public:
  Lock(FaultFs& fs, std::string path) : fs_(fs), path_(std::move(path)) {}
  ~Lock() override { fs_.locks_.erase(path_); }

 private:
  FaultFs& fs_;
  std::string path_;
};

boost::system::error_code FaultFs::sync_file(Inode& inode) {
  if (crash_at_next_sync) {
    crash_at_next_sync = false;
    throw SimulatedCrash{};
  }
  if (sync_error_rate > 0 && rng_.chance(sync_error_rate)) {
    ++sync_errors_;
    return err(EIO);
  }
  ++syncs_;
  inode.synced = inode.data.size();
  return {};
}

void FaultFs::crash(std::optional<std::size_t> keep_bytes) {
  locks_.clear();  // the process is gone
  unsynced_at_last_crash_ = unsynced_bytes();
  names_ = durable_names_;
  std::set<Inode*> seen;
  for (auto& [name, inode] : names_) {
    if (!seen.insert(inode.get()).second) {
      continue;
    }
    Bytes& d = inode->data;
    std::size_t synced = std::min(inode->synced, d.size());
    std::size_t unsynced = d.size() - synced;
    if (unsynced == 0) {
      continue;
    }
    std::size_t len = synced;
    if (keep_bytes) {
      len = synced + std::min(*keep_bytes, unsynced);
    } else {
      switch (rng_.below(3)) {
        case 0:
          len = synced;  // nothing of it reached the disk
          break;
        case 1:
          len = d.size();  // the size made it; sectors may still be missing
          break;
        default:
          len = synced + 1 + rng_.below(unsynced);
      }
      // Each sector of the unsynced range was written or not, independently; one not
      // written reads back as zeros.
      for (std::size_t s = synced / kSector * kSector; s < len; s += kSector) {
        if (rng_.chance(0.3)) {
          std::fill(d.begin() + static_cast<std::ptrdiff_t>(std::max(s, synced)),
                    d.begin() + static_cast<std::ptrdiff_t>(std::min(s + kSector, len)), 0);
        }
      }
    }
    if (len != synced) {
      ++torn_;
    }
    d.resize(len);
    inode->synced = len;
  }
  // Files whose names did not survive are gone; everything left is on disk.
  durable_names_ = names_;
}

std::size_t FaultFs::unsynced_bytes() const {
  std::size_t n = 0;
  std::set<const Inode*> seen;
  for (const auto& [name, inode] : names_) {
    if (seen.insert(inode.get()).second) {
      n += inode->data.size() - std::min(inode->synced, inode->data.size());
    }
  }
  return n;
}

boost::system::error_code FaultFs::create_directories(const std::string&) {
  return {};
}

std::vector<std::string> FaultFs::list(const std::string& dir) {
  std::vector<std::string> out;
  std::string prefix = dir + "/";
  for (auto it = names_.lower_bound(prefix);
       it != names_.end() && it->first.compare(0, prefix.size(), prefix) == 0; ++it) {
    std::string name = it->first.substr(prefix.size());
    if (name.find('/') == std::string::npos) {
      out.push_back(std::move(name));
    }
  }
  return out;
}

boost::system::error_code FaultFs::read(const std::string& path, Bytes& out) {
  auto it = names_.find(path);
  if (it == names_.end()) {
    return err(ENOENT);
  }
  out = it->second->data;
  return {};
}

boost::system::result<std::unique_ptr<AppendFile>> FaultFs::open_append(const std::string& path,
                                                                        bool create) {
  auto it = names_.find(path);
  if (create) {
    if (it != names_.end()) {
      return err(EEXIST);
    }
    it = names_.emplace(path, std::make_shared<Inode>()).first;
  } else if (it == names_.end()) {
    return err(ENOENT);
  }
  return std::unique_ptr<AppendFile>(std::make_unique<File>(*this, it->second));
}

boost::system::error_code FaultFs::truncate(const std::string& path, std::uint64_t size) {
  auto it = names_.find(path);
  if (it == names_.end()) {
    return err(ENOENT);
  }
  Inode& inode = *it->second;
  inode.data.resize(std::min<std::size_t>(size, inode.data.size()));
  inode.synced = inode.data.size();
  return {};
}

boost::system::error_code FaultFs::rename(const std::string& from, const std::string& to) {
  auto it = names_.find(from);
  if (it == names_.end()) {
    return err(ENOENT);
  }
  auto inode = it->second;
  names_.erase(it);
  names_[to] = std::move(inode);
  return {};
}

boost::system::error_code FaultFs::remove(const std::string& path) {
  return names_.erase(path) == 1 ? boost::system::error_code{} : err(ENOENT);
}

boost::system::error_code FaultFs::sync_dir(const std::string&) {
  if (crash_at_next_sync) {
    crash_at_next_sync = false;
    throw SimulatedCrash{};
  }
  durable_names_ = names_;
  return {};
}

boost::system::result<std::unique_ptr<DirLock>> FaultFs::lock(const std::string& path) {
  if (!locks_.insert(path).second) {
    return err(EWOULDBLOCK);
  }
  if (!names_.contains(path)) {
    names_.emplace(path, std::make_shared<Inode>());
  }
  return std::unique_ptr<DirLock>(std::make_unique<Lock>(*this, path));
}

}  // namespace routemesh::discovery::raft::sim
