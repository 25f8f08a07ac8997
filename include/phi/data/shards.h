// Token shards: the binary format the data pipeline writes and the trainer reads (docs/data.md).
//
// A shard file is
//   header (64 bytes): magic "PHISHRD1", uint32 version (1), uint32 token bytes (2 or 4),
//                      uint64 token count, uint64 document count, uint32 flags (bit 0: loss mask),
//                      28 reserved zero bytes;
//   tokens:            count x (uint16 | uint32), little-endian;
//   document index:    (documents + 1) x uint64 token offsets (first 0, last = token count);
//   loss mask:         count x uint8 (1: the token is a training target), when flag bit 0 is set.
// A dataset is a directory with manifest.json listing its shards. Shards and manifests are written
// to a temporary name, fsynced and renamed.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace phi {

struct ShardInfo {
  std::string file;  // relative to the dataset directory
  int64_t n_tokens = 0;
  int64_t n_documents = 0;
};

struct DatasetManifest {
  int64_t version = 1;
  bool loss_mask = false;  // shards carry a per-token loss mask
  int64_t token_bytes = 2;
  int64_t vocab_size = 0;
  int64_t eos_id = -1;
  std::string tokenizer;  // where the ids came from (informational)
  std::vector<ShardInfo> shards;
  int64_t n_tokens() const;
  int64_t n_documents() const;
};

DatasetManifest read_manifest(const std::string& dataset_directory);
void write_manifest(const std::string& dataset_directory, const DatasetManifest& manifest);
/// The manifest's JSON (what manifest.json holds), and back: checked, errors naming `source` and
/// JSON paths. read_manifest / write_manifest use them; so do the per-file parts of a dataset.
nlohmann::json manifest_to_json(const DatasetManifest& manifest);
DatasetManifest manifest_from_json(const nlohmann::json& j, const std::string& source);

/// Writes documents into shards of about `shard_tokens` tokens (a document never spans shards).
class ShardWriter {
 public:
  /// Shards are named `name_prefix` + 00000, 00001, ... + ".bin".
  ShardWriter(std::string directory, int64_t vocab_size, int64_t eos_id, std::string tokenizer,
              int64_t shard_tokens = 64 << 20, std::string name_prefix = "shard-");
  /// Appends one document (its ids; the caller adds EOS when it wants one). `mask` (same length,
  /// 1 = train on the token) makes this a masked dataset; every document then needs one.
  void add_document(const std::vector<int64_t>& ids, const std::vector<uint8_t>* mask = nullptr);
  /// Flushes the last shard and writes manifest.json (unless `write_manifest` is false: a part of a
  /// dataset whose manifest is assembled later). Returns the manifest.
  DatasetManifest finish(bool write_manifest = true);

 private:
  void flush_shard();
  std::string directory_, name_prefix_;
  DatasetManifest manifest_;
  int64_t shard_tokens_;
  std::vector<int64_t> tokens_;
  std::vector<uint8_t> mask_;
  std::vector<uint64_t> offsets_{0};
  bool documents_seen_ = false;
};

/// A memory-mapped, validated shard.
class Shard {
 public:
  static std::shared_ptr<Shard> open(const std::string& path);
  ~Shard();
  int64_t n_tokens() const { return n_tokens_; }
  int64_t n_documents() const { return n_documents_; }
  int64_t token(int64_t i) const;
  /// Copies tokens [begin, begin + n) into out.
  void read(int64_t begin, int64_t n, int64_t* out) const;
  bool has_loss_mask() const { return mask_ != nullptr; }
  /// Copies the loss mask of tokens [begin, begin + n) (all ones without a mask).
  void read_mask(int64_t begin, int64_t n, uint8_t* out) const;
  int64_t document_offset(int64_t d) const;  // d in [0, n_documents]
  /// The document that token i belongs to (binary search over the document index).
  int64_t document_at(int64_t i) const;

 private:
  Shard() = default;
  std::string path_;
  void* mapping_ = nullptr;
  size_t size_ = 0;
  int64_t token_bytes_ = 2;
  int64_t n_tokens_ = 0;
  int64_t n_documents_ = 0;
  const uint8_t* tokens_ = nullptr;
  const uint64_t* offsets_ = nullptr;
  const uint8_t* mask_ = nullptr;
};

}  // namespace phi
