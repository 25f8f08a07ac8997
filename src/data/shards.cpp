#include "phi/data/shards.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "core/file_util.h"
#include "phi/core/error.h"
#include "phi/core/json_reader.h"

namespace phi {

namespace fs = std::filesystem;

namespace {
constexpr char kMagic[8] = {'P', 'H', 'I', 'S', 'H', 'R', 'D', '1'};
constexpr size_t kHeaderBytes = 64;
}  // namespace

int64_t DatasetManifest::n_tokens() const {
  int64_t n = 0;
  for (const auto& s : shards) n += s.n_tokens;
  return n;
}

int64_t DatasetManifest::n_documents() const {
  int64_t n = 0;
  for (const auto& s : shards) n += s.n_documents;
  return n;
}

DatasetManifest read_manifest(const std::string& dataset_directory) {
  const auto path = (fs::path(dataset_directory) / "manifest.json").string();
  if (!fs::exists(path)) {
    throw Error("dataset has no manifest.json", dataset_directory, "create it with `phi data tokenize`");
  }
  return manifest_from_json(read_json_file(path), path);
}

DatasetManifest manifest_from_json(const nlohmann::json& j, const std::string& path) {
  JsonReader r(j, path);
  auto format = r.required<std::string>("format");
  if (format != "phi-shards") r.fail("format", "must be \"phi-shards\", got \"" + format + "\"");
  DatasetManifest m;
  m.version = r.required<int64_t>("version");
  if (m.version != 1) r.fail("version", "is " + std::to_string(m.version) + "; this phi reads version 1");
  m.token_bytes = r.required<int64_t>("token_bytes");
  if (m.token_bytes != 2 && m.token_bytes != 4) r.fail("token_bytes", "must be 2 or 4");
  m.vocab_size = r.required<int64_t>("vocab_size");
  if (m.vocab_size <= 0) r.fail("vocab_size", "must be > 0");
  m.eos_id = r.optional<int64_t>("eos_id", -1);
  m.tokenizer = r.optional<std::string>("tokenizer", "");
  m.loss_mask = r.optional<bool>("loss_mask", false);
  r.ignore({"n_tokens", "n_documents"});
  const auto& shards = r.raw("shards");
  if (!shards.is_array()) r.fail("shards", "must be an array");
  for (size_t i = 0; i < shards.size(); ++i) {
    JsonReader s(shards[i], path, "$.shards[" + std::to_string(i) + "]");
    ShardInfo info;
    info.file = s.required<std::string>("file");
    info.n_tokens = s.required<int64_t>("n_tokens");
    info.n_documents = s.required<int64_t>("n_documents");
    s.finish();
    if (info.file.empty() || info.file == "." || info.file == ".." || info.file.size() > 255 ||
        info.file.find_first_of(std::string("/\0", 2)) != std::string::npos) {
      s.fail("file", "must name a file in the dataset directory");
    }
    if (info.n_tokens < 0 || info.n_documents < 0) s.fail("n_tokens", "and n_documents must be >= 0");
    m.shards.push_back(info);
  }
  r.finish();
  return m;
}

void write_manifest(const std::string& dataset_directory, const DatasetManifest& m) {
  write_json_file_atomic((fs::path(dataset_directory) / "manifest.json").string(), manifest_to_json(m));
}

nlohmann::json manifest_to_json(const DatasetManifest& m) {
  nlohmann::json shards = nlohmann::json::array();
  for (const auto& s : m.shards)
    shards.push_back({{"file", s.file}, {"n_tokens", s.n_tokens}, {"n_documents", s.n_documents}});
  nlohmann::json j = {{"format", "phi-shards"},
                      {"version", m.version},
                      {"token_bytes", m.token_bytes},
                      {"vocab_size", m.vocab_size},
                      {"eos_id", m.eos_id},
                      {"tokenizer", m.tokenizer},
                      {"loss_mask", m.loss_mask},
                      {"n_tokens", m.n_tokens()},
                      {"n_documents", m.n_documents()},
                      {"shards", shards}};
  return j;
}

ShardWriter::ShardWriter(std::string directory, int64_t vocab_size, int64_t eos_id, std::string tokenizer,
                         int64_t shard_tokens, std::string name_prefix)
    : directory_(std::move(directory)), name_prefix_(std::move(name_prefix)), shard_tokens_(shard_tokens) {
  PHI_CHECK(vocab_size > 0, "vocab_size must be > 0");
  manifest_.vocab_size = vocab_size;
  manifest_.eos_id = eos_id;
  manifest_.tokenizer = std::move(tokenizer);
  manifest_.token_bytes = vocab_size <= 65536 ? 2 : 4;
  fs::create_directories(directory_);
}

void ShardWriter::add_document(const std::vector<int64_t>& ids, const std::vector<uint8_t>* mask) {
  if (!documents_seen_) {
    manifest_.loss_mask = mask != nullptr;
    documents_seen_ = true;
  }
  if ((mask != nullptr) != manifest_.loss_mask) {
    throw Error("a dataset's documents must all have a loss mask or none");
  }
  if (mask != nullptr && mask->size() != ids.size()) {
    throw Error("loss mask has " + std::to_string(mask->size()) + " entries for " + std::to_string(ids.size()) +
                " tokens");
  }
  for (auto id : ids) {
    if (id < 0 || id >= manifest_.vocab_size) {
      throw Error("token id " + std::to_string(id) + " outside the vocabulary [0, " +
                  std::to_string(manifest_.vocab_size) + ")");
    }
  }
  if (!tokens_.empty() && static_cast<int64_t>(tokens_.size() + ids.size()) > shard_tokens_) flush_shard();
  tokens_.insert(tokens_.end(), ids.begin(), ids.end());
  if (mask != nullptr) mask_.insert(mask_.end(), mask->begin(), mask->end());
  offsets_.push_back(tokens_.size());
}

void ShardWriter::flush_shard() {
  if (offsets_.size() <= 1) return;
  char number[32];
  std::snprintf(number, sizeof(number), "%05zu.bin", manifest_.shards.size());
  const std::string name = name_prefix_ + number;
  AtomicFileWriter writer((fs::path(directory_) / name).string());
  uint8_t header[kHeaderBytes] = {};
  std::memcpy(header, kMagic, 8);
  const uint32_t version = 1, token_bytes = static_cast<uint32_t>(manifest_.token_bytes);
  const uint64_t n_tokens = tokens_.size(), n_docs = offsets_.size() - 1;
  std::memcpy(header + 8, &version, 4);
  std::memcpy(header + 12, &token_bytes, 4);
  std::memcpy(header + 16, &n_tokens, 8);
  std::memcpy(header + 24, &n_docs, 8);
  const uint32_t flags = manifest_.loss_mask ? 1u : 0u;
  std::memcpy(header + 32, &flags, 4);
  writer.append(header, sizeof(header));
  if (token_bytes == 2) {
    std::vector<uint16_t> narrow(tokens_.begin(), tokens_.end());
    writer.append(narrow.data(), narrow.size() * 2);
  } else {
    std::vector<uint32_t> wide(tokens_.begin(), tokens_.end());
    writer.append(wide.data(), wide.size() * 4);
  }
  writer.append(offsets_.data(), offsets_.size() * 8);
  if (manifest_.loss_mask) writer.append(mask_.data(), mask_.size());
  writer.commit();
  manifest_.shards.push_back({name, static_cast<int64_t>(n_tokens), static_cast<int64_t>(n_docs)});
  tokens_.clear();
  mask_.clear();
  offsets_.assign(1, 0);
}

DatasetManifest ShardWriter::finish(bool write) {
  flush_shard();
  if (write) write_manifest(directory_, manifest_);
  return manifest_;
}

std::shared_ptr<Shard> Shard::open(const std::string& path) {
  std::shared_ptr<Shard> shard(new Shard());
  shard->path_ = path;
  int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) throw Error(std::string("cannot open shard: ") + std::strerror(errno), path);
  struct stat st {};
  ::fstat(fd, &st);
  shard->size_ = static_cast<size_t>(st.st_size);
  if (shard->size_ < kHeaderBytes) {
    ::close(fd);
    throw Error("shard is truncated (" + std::to_string(shard->size_) + " bytes, shorter than its header)", path);
  }
  shard->mapping_ = ::mmap(nullptr, shard->size_, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (shard->mapping_ == MAP_FAILED) {
    shard->mapping_ = nullptr;
    throw Error(std::string("mmap failed: ") + std::strerror(errno), path);
  }
  const auto* bytes = static_cast<const uint8_t*>(shard->mapping_);
  if (std::memcmp(bytes, kMagic, 8) != 0) throw Error("not a phi token shard (bad magic)", path);
  uint32_t version, token_bytes;
  uint64_t n_tokens, n_docs;
  std::memcpy(&version, bytes + 8, 4);
  std::memcpy(&token_bytes, bytes + 12, 4);
  std::memcpy(&n_tokens, bytes + 16, 8);
  std::memcpy(&n_docs, bytes + 24, 8);
  uint32_t flags;
  std::memcpy(&flags, bytes + 32, 4);
  if (flags > 1) throw Error("shard has unknown flags " + std::to_string(flags), path);
  if (version != 1) throw Error("shard version " + std::to_string(version) + " is not supported", path);
  if (token_bytes != 2 && token_bytes != 4) throw Error("shard token size must be 2 or 4 bytes", path);
  const uint64_t expected = kHeaderBytes + n_tokens * token_bytes + (n_docs + 1) * 8 + ((flags & 1) ? n_tokens : 0);
  if (n_tokens > (1ull << 40) || n_docs > (1ull << 40) || expected != shard->size_) {
    throw Error("shard size " + std::to_string(shard->size_) + " does not match its header (expected " +
                    std::to_string(expected) + " bytes): truncated or damaged",
                path);
  }
  shard->token_bytes_ = token_bytes;
  shard->n_tokens_ = static_cast<int64_t>(n_tokens);
  shard->n_documents_ = static_cast<int64_t>(n_docs);
  shard->tokens_ = bytes + kHeaderBytes;
  shard->offsets_ = reinterpret_cast<const uint64_t*>(bytes + kHeaderBytes + n_tokens * token_bytes);
  if (flags & 1) shard->mask_ = bytes + kHeaderBytes + n_tokens * token_bytes + (n_docs + 1) * 8;
  return shard;
}

Shard::~Shard() {
  if (mapping_ != nullptr) ::munmap(mapping_, size_);
}

int64_t Shard::token(int64_t i) const {
  if (token_bytes_ == 2) {
    uint16_t v;
    std::memcpy(&v, tokens_ + i * 2, 2);
    return v;
  }
  uint32_t v;
  std::memcpy(&v, tokens_ + i * 4, 4);
  return v;
}

void Shard::read(int64_t begin, int64_t n, int64_t* out) const {
  PHI_CHECK(begin >= 0 && n >= 0 && begin + n <= n_tokens_, "shard read [", begin, ", ", begin + n, ") outside ",
            n_tokens_);
  for (int64_t i = 0; i < n; ++i) out[i] = token(begin + i);
}

void Shard::read_mask(int64_t begin, int64_t n, uint8_t* out) const {
  PHI_CHECK(begin >= 0 && n >= 0 && begin + n <= n_tokens_, "shard mask read outside the shard");
  if (n == 0) return;  // `out` may be null for an empty read
  if (mask_ == nullptr) {
    std::memset(out, 1, static_cast<size_t>(n));
  } else {
    std::memcpy(out, mask_ + begin, static_cast<size_t>(n));
  }
}

int64_t Shard::document_offset(int64_t d) const {
  PHI_CHECK(d >= 0 && d <= n_documents_, "document ", d, " outside [0, ", n_documents_, "] of ", path_);
  uint64_t v;
  std::memcpy(&v, reinterpret_cast<const uint8_t*>(offsets_) + d * 8, 8);
  return static_cast<int64_t>(v);
}

int64_t Shard::document_at(int64_t i) const {
  PHI_CHECK(i >= 0 && i < n_tokens_, "token ", i, " outside the shard");
  int64_t lo = 0, hi = n_documents_ - 1;  // the last d with document_offset(d) <= i
  while (lo < hi) {
    const int64_t mid = (lo + hi + 1) / 2;
    if (document_offset(mid) <= i)
      lo = mid;
    else
      hi = mid - 1;
  }
  return lo;
}

}  // namespace phi
