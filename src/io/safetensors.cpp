#include "phi/io/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include "core/file_util.h"
#include "phi/core/error.h"
#include "phi/core/json_reader.h"

namespace phi {

namespace {

// Largest header we accept (the format's own limit is 100 MB).
constexpr uint64_t kMaxHeaderBytes = 100ull << 20;

struct DTypeEntry {
  const char* name;
  c10::ScalarType type;
};
const DTypeEntry kDTypes[] = {
    {"F32", at::kFloat}, {"F16", at::kHalf},  {"BF16", at::kBFloat16}, {"F64", at::kDouble},
    {"I64", at::kLong},  {"I32", at::kInt},   {"I16", at::kShort},     {"I8", at::kChar},
    {"U8", at::kByte},   {"BOOL", at::kBool},
};

[[noreturn]] void bad_file(const std::string& path, const std::string& message,
                           const std::string& hint = "the file is damaged or not a safetensors file; "
                                                     "re-download or re-convert it") {
  throw Error("invalid safetensors file: " + message, path, hint);
}

}  // namespace

c10::ScalarType scalar_type_from_safetensors(const std::string& dtype) {
  for (const auto& entry : kDTypes) {
    if (dtype == entry.name) return entry.type;
  }
  throw Error("unsupported safetensors dtype \"" + dtype + "\"", "",
              "supported: F32, F16, BF16, F64, I64, I32, I16, I8, U8, BOOL");
}

std::string safetensors_dtype_name(c10::ScalarType type) {
  for (const auto& entry : kDTypes) {
    if (type == entry.type) return entry.name;
  }
  throw Error(std::string("cannot store dtype ") + c10::toString(type) + " in safetensors");
}

struct SafetensorsFile::Mapping {
  void* address = nullptr;
  size_t size = 0;
  ~Mapping() {
    if (address != nullptr && address != MAP_FAILED) ::munmap(address, size);
  }
};

std::shared_ptr<SafetensorsFile> SafetensorsFile::open(const std::string& path) {
  std::shared_ptr<SafetensorsFile> file(new SafetensorsFile());
  file->path_ = path;
  int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) {
    throw Error(std::string("cannot open safetensors file: ") + std::strerror(errno), path,
                "check that the file exists and is readable");
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    ::close(fd);
    throw Error(std::string("cannot stat file: ") + std::strerror(errno), path);
  }
  const uint64_t file_size = static_cast<uint64_t>(st.st_size);
  if (file_size < 8) {
    ::close(fd);
    bad_file(path, "truncated: " + std::to_string(file_size) +
                       " bytes, shorter than the 8-byte header length");
  }
  auto mapping = std::make_shared<Mapping>();
  mapping->size = file_size;
  mapping->address = ::mmap(nullptr, file_size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (mapping->address == MAP_FAILED) {
    throw Error(std::string("mmap failed: ") + std::strerror(errno), path);
  }
  file->mapping_ = mapping;
  const auto* bytes = static_cast<const uint8_t*>(mapping->address);

  uint64_t header_size = 0;
  for (int i = 7; i >= 0; --i) header_size = (header_size << 8) | bytes[i];
  if (header_size > file_size - 8) {
    bad_file(path, "header length " + std::to_string(header_size) + " is beyond the end of the file (" +
                       std::to_string(file_size) + " bytes): truncated file?");
  }
  if (header_size > kMaxHeaderBytes) {
    bad_file(path, "header length " + std::to_string(header_size) + " exceeds the 100 MB limit");
  }
  const char* header_text = reinterpret_cast<const char*>(bytes + 8);
  nlohmann::json header = nlohmann::json::parse(header_text, header_text + header_size, nullptr,
                                                /*allow_exceptions=*/false);
  if (header.is_discarded()) bad_file(path, "malformed header JSON");
  if (!header.is_object()) bad_file(path, "header JSON is not an object");

  file->data_ = bytes + 8 + header_size;
  const uint64_t data_size = file_size - 8 - header_size;
  for (const auto& item : header.items()) {
    const std::string& name = item.key();
    const auto& entry = item.value();
    if (name == "__metadata__") {
      if (!entry.is_object()) bad_file(path, "__metadata__ is not an object");
      for (const auto& meta : entry.items()) {
        if (!meta.value().is_string()) bad_file(path, "__metadata__." + meta.key() + " is not a string");
        file->metadata_[meta.key()] = meta.value().get<std::string>();
      }
      continue;
    }
    const std::string where = "tensor \"" + name + "\"";
    if (!entry.is_object() || !entry.contains("dtype") || !entry.contains("shape") ||
        !entry.contains("data_offsets")) {
      bad_file(path, where + ": entry needs dtype, shape and data_offsets");
    }
    TensorInfo info;
    info.name = name;
    if (!entry["dtype"].is_string()) bad_file(path, where + ": dtype is not a string");
    info.dtype = entry["dtype"].get<std::string>();
    c10::ScalarType type;
    try {
      type = scalar_type_from_safetensors(info.dtype);
    } catch (const Error& e) {
      bad_file(path, where + ": " + e.message(), e.hint());
    }
    const auto& shape = entry["shape"];
    if (!shape.is_array()) bad_file(path, where + ": shape is not an array");
    uint64_t numel = 1;
    for (const auto& dim : shape) {
      if (!dim.is_number_unsigned()) bad_file(path, where + ": shape has a non-integer or negative dimension");
      uint64_t d = dim.get<uint64_t>();
      if (d > (1ull << 40) || (d != 0 && numel > (1ull << 48) / d)) {
        bad_file(path, where + ": shape is implausibly large");
      }
      numel *= d;
      info.shape.push_back(static_cast<int64_t>(d));
    }
    const auto& offsets = entry["data_offsets"];
    if (!offsets.is_array() || offsets.size() != 2 || !offsets[0].is_number_unsigned() ||
        !offsets[1].is_number_unsigned()) {
      bad_file(path, where + ": data_offsets must be two non-negative integers");
    }
    info.begin = offsets[0].get<uint64_t>();
    info.end = offsets[1].get<uint64_t>();
    if (info.begin > info.end) bad_file(path, where + ": data_offsets begin > end");
    if (info.end > data_size) {
      bad_file(path, where + ": data_offsets [" + std::to_string(info.begin) + ", " +
                         std::to_string(info.end) + ") are out of range of the data region (" +
                         std::to_string(data_size) + " bytes): truncated file?");
    }
    const uint64_t expected = numel * c10::elementSize(type);
    if (info.end - info.begin != expected) {
      bad_file(path, where + ": holds " + std::to_string(info.end - info.begin) +
                         " bytes but dtype " + info.dtype + " and its shape need " +
                         std::to_string(expected));
    }
    file->tensors_.push_back(std::move(info));
  }
  std::vector<const TensorInfo*> by_offset;
  for (const auto& t : file->tensors_) by_offset.push_back(&t);
  std::sort(by_offset.begin(), by_offset.end(),
            [](const TensorInfo* a, const TensorInfo* b) { return a->begin < b->begin; });
  // As the format's reference implementation requires: the tensors tile the data region exactly,
  // without gaps or overlaps, from its first byte to the end of the file. A header length that is
  // off (by even one byte of its space padding) shifts the region and fails here instead of
  // loading every tensor shifted.
  uint64_t covered = 0;
  for (size_t i = 0; i < by_offset.size(); ++i) {
    if (by_offset[i]->begin < covered) {
      bad_file(path, "tensors \"" + by_offset[i - 1]->name + "\" and \"" + by_offset[i]->name +
                         "\" have overlapping data_offsets");
    }
    if (by_offset[i]->begin > covered) {
      bad_file(path, "tensor \"" + by_offset[i]->name + "\" starts at data offset " + std::to_string(by_offset[i]->begin) +
                         ", leaving a gap after offset " + std::to_string(covered) +
                         " (the tensors must cover the data region exactly; header length " +
                         std::to_string(header_size) + " off?)");
    }
    covered = by_offset[i]->end;
  }
  if (covered != data_size) {
    bad_file(path, "the tensors cover " + std::to_string(covered) + " bytes of the " + std::to_string(data_size) +
                       "-byte data region (they must cover it exactly; header length " + std::to_string(header_size) +
                       " off, or bytes appended to the file?)");
  }
  for (size_t i = 0; i < file->tensors_.size(); ++i) file->index_[file->tensors_[i].name] = i;
  return file;
}

bool SafetensorsFile::contains(const std::string& name) const { return index_.count(name) > 0; }

const TensorInfo& SafetensorsFile::info(const std::string& name) const {
  auto it = index_.find(name);
  if (it == index_.end()) throw Error("tensor \"" + name + "\" not found", path_);
  return tensors_[it->second];
}

at::Tensor SafetensorsFile::tensor(const std::string& name) const {
  const auto& ti = info(name);
  auto type = scalar_type_from_safetensors(ti.dtype);
  auto* pointer = const_cast<uint8_t*>(data_ + ti.begin);
  auto options = at::TensorOptions().dtype(type).device(at::kCPU);
  if (reinterpret_cast<uintptr_t>(pointer) % c10::elementSize(type) != 0) {
    // Misaligned data (legal in the format): copy into an aligned tensor.
    auto out = at::empty(ti.shape, options);
    std::memcpy(out.data_ptr(), pointer, ti.end - ti.begin);
    return out;
  }
  auto keep_alive = mapping_;
  return at::from_blob(
      pointer, ti.shape, [keep_alive](void*) mutable { keep_alive.reset(); }, options);
}

// ---- TensorStore ---------------------------------------------------------------------------------

TensorStore TensorStore::open_file(const std::string& path) {
  TensorStore store;
  store.description_ = path;
  auto file = SafetensorsFile::open(path);
  for (const auto& t : file->tensors()) store.owner_[t.name] = 0;
  store.files_.push_back(std::move(file));
  return store;
}

TensorStore TensorStore::open_directory(const std::string& directory) {
  namespace fs = std::filesystem;
  const fs::path dir(directory);
  const fs::path single = dir / "model.safetensors";
  const fs::path index_path = dir / "model.safetensors.index.json";
  if (fs::exists(index_path)) {
    auto index = read_json_file(index_path.string());
    JsonReader reader(index, index_path.string());
    reader.ignore({"metadata"});
    const auto& weight_map = reader.raw("weight_map");
    if (!weight_map.is_object()) reader.fail("weight_map", "must be an object of tensor -> file");
    TensorStore store;
    store.description_ = index_path.string();
    std::map<std::string, size_t> file_ids;
    for (const auto& item : weight_map.items()) {
      if (!item.value().is_string()) reader.fail("weight_map." + item.key(), "must be a file name");
      const std::string shard = item.value().get<std::string>();
      // A plain file name beside the index (file systems allow 255 bytes per name).
      if (shard.empty() || shard == "." || shard == ".." || shard.size() > 255 ||
          shard.find_first_of(std::string("/\0", 2)) != std::string::npos) {
        reader.fail("weight_map." + item.key().substr(0, 200),
                    "must name a file in the checkpoint directory, got \"" + shard.substr(0, 300) + "\"");
      }
      auto it = file_ids.find(shard);
      if (it == file_ids.end()) {
        const auto shard_path = (dir / shard).string();
        std::error_code ec;
        if (!fs::is_regular_file(shard_path, ec)) {
          throw Error("shard \"" + shard + "\" listed in the index does not exist", index_path.string(),
                      "the checkpoint is incomplete; re-download the missing shard");
        }
        store.files_.push_back(SafetensorsFile::open(shard_path));
        it = file_ids.emplace(shard, store.files_.size() - 1).first;
      }
      if (!store.files_[it->second]->contains(item.key())) {
        throw Error("tensor \"" + item.key() + "\" is listed in the index but missing from its shard",
                    store.files_[it->second]->path());
      }
      store.owner_[item.key()] = it->second;
    }
    for (size_t f = 0; f < store.files_.size(); ++f) {
      for (const auto& t : store.files_[f]->tensors()) {
        if (!store.owner_.count(t.name)) {
          throw Error("tensor \"" + t.name + "\" is not listed in the index", store.files_[f]->path(),
                      "the index and its shards do not match");
        }
      }
    }
    return store;
  }
  if (fs::exists(single)) return open_file(single.string());
  throw Error("no model.safetensors or model.safetensors.index.json", directory,
              "pass a Hugging Face model directory");
}

std::vector<std::string> TensorStore::names() const {
  std::vector<std::string> out;
  for (const auto& item : owner_) out.push_back(item.first);
  return out;
}

bool TensorStore::contains(const std::string& name) const { return owner_.count(name) > 0; }

const TensorInfo& TensorStore::info(const std::string& name) const {
  auto it = owner_.find(name);
  if (it == owner_.end()) throw Error("tensor \"" + name + "\" not found", description_);
  return files_[it->second]->info(name);
}

at::Tensor TensorStore::tensor(const std::string& name) const {
  auto it = owner_.find(name);
  if (it == owner_.end()) throw Error("tensor \"" + name + "\" not found", description_);
  return files_[it->second]->tensor(name);
}

const std::string& TensorStore::file_of(const std::string& name) const {
  auto it = owner_.find(name);
  if (it == owner_.end()) return description_;
  return files_[it->second]->path();
}

// ---- Writing ---------------------------------------------------------------------------------------

void save_safetensors(const std::string& path, const NamedTensors& tensors,
                      const std::map<std::string, std::string>& metadata) {
  nlohmann::json header = nlohmann::json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::vector<at::Tensor> contiguous;
  contiguous.reserve(tensors.size());
  uint64_t offset = 0;
  for (const auto& [name, tensor] : tensors) {
    if (header.contains(name)) throw Error("duplicate tensor name \"" + name + "\"", path);
    auto t = tensor.detach().to(at::kCPU).contiguous();
    uint64_t bytes = t.numel() * t.element_size();
    header[name] = {{"dtype", safetensors_dtype_name(t.scalar_type())},
                    {"shape", t.sizes().vec()},
                    {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
    contiguous.push_back(std::move(t));
  }
  std::string text = header.dump();
  while ((text.size() + 8) % 8 != 0) text.push_back(' ');
  uint8_t length[8];
  uint64_t n = text.size();
  for (int i = 0; i < 8; ++i) length[i] = static_cast<uint8_t>(n >> (8 * i));
  AtomicFileWriter writer(path);
  writer.append(length, 8);
  writer.append(text.data(), text.size());
  for (const auto& t : contiguous) writer.append(t.data_ptr(), t.numel() * t.element_size());
  writer.commit();
}

void save_safetensors_directory(const std::string& directory, const NamedTensors& tensors,
                                uint64_t max_shard_bytes) {
  namespace fs = std::filesystem;
  fs::create_directories(directory);
  uint64_t total = 0;
  for (const auto& item : tensors) total += item.second.numel() * item.second.element_size();
  const fs::path dir(directory);
  if (max_shard_bytes == 0 || total <= max_shard_bytes) {
    save_safetensors((dir / "model.safetensors").string(), tensors);
    fs::remove(dir / "model.safetensors.index.json");
    return;
  }
  std::vector<NamedTensors> shards(1);
  uint64_t current = 0;
  for (const auto& item : tensors) {
    uint64_t bytes = item.second.numel() * item.second.element_size();
    if (!shards.back().empty() && current + bytes > max_shard_bytes) {
      shards.emplace_back();
      current = 0;
    }
    shards.back().push_back(item);
    current += bytes;
  }
  nlohmann::json weight_map = nlohmann::json::object();
  char name[64];
  for (size_t i = 0; i < shards.size(); ++i) {
    std::snprintf(name, sizeof(name), "model-%05zu-of-%05zu.safetensors", i + 1, shards.size());
    save_safetensors((dir / name).string(), shards[i]);
    for (const auto& item : shards[i]) weight_map[item.first] = name;
  }
  nlohmann::json index = {{"metadata", {{"total_size", total}}}, {"weight_map", weight_map}};
  write_json_file_atomic((dir / "model.safetensors.index.json").string(), index);
  fs::remove(dir / "model.safetensors");
}

}  // namespace phi
