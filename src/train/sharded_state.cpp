#include "train/sharded_state.h"

#include <algorithm>
#include <chrono>

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <torch/csrc/autograd/function_hook.h>
#include <torch/csrc/autograd/variable.h>

#include "phi/core/error.h"
#include "phi/train/optimizer.h"

namespace phi {

struct ShardedState::Member {
  std::string name;
  at::Tensor param;       // the model's tensor: aliases unit.full while the unit is gathered
  int64_t offset = 0;     // in the unit's flat buffer
  int64_t numel = 0;
  int64_t begin = 0;      // this rank's part of it: flat [begin, begin + length)
  int64_t length = 0;
};

struct ShardedState::Unit {
  std::vector<Member> members;
  int64_t size = 0, padded = 0, shard_size = 0, shard_begin = 0;
  at::Tensor full;        // [padded]; its storage holds memory only while gathered
  at::Tensor shard;       // [shard_size] this rank's master weights
  at::Tensor shard_grad;  // [shard_size] their gradient, summed over ranks and micro-steps
  at::Tensor grad_whole;  // zero1: [padded] the parameters' .grad (views), accumulated in place
  at::Tensor grad_flat;   // [padded] what is reduce-scattered (fsdp: the gradient of one backward)
  at::Tensor reduced;     // [shard_size] this rank's slice of grad_flat summed over ranks
  std::unique_ptr<PendingCollective> scatter;
  std::unique_ptr<PendingCollective> gathering;  // a prefetch in flight, into `alias`
  at::Tensor alias;
  bool gathered = false;  // the storage is allocated (its values may still be arriving: gathering)
  size_t ready = 0;       // members whose gradient arrived in this backward
  int64_t bytes() const { return padded * static_cast<int64_t>(sizeof(float)); }
};

// After a parameter's gradient is accumulated into .grad (AccumulateGrad's post hook).
class ShardedState::GradientHook final : public torch::autograd::PostAccumulateGradHook {
 public:
  GradientHook(ShardedState* owner, Unit* unit, size_t member) : owner_(owner), unit_(unit), member_(member) {}
  void operator()(const torch::autograd::Variable&) override { owner_->on_gradient(*unit_, member_); }

 private:
  ShardedState* owner_;
  Unit* unit_;
  size_t member_;
};

namespace {

c10::StorageImpl& storage_of(const at::Tensor& t) { return *t.storage().unsafeGetStorageImpl(); }

// A tensor over `full`'s storage with its own version counter: collectives write the gathered
// values through it without bumping the version of the parameters the autograd graph saved.
at::Tensor writable_alias(const at::Tensor& full) {
  return at::empty({0}, full.options()).set_(full.storage(), 0, {full.numel()}, {1});
}

}  // namespace

ShardedState::ShardedState(Transformer& model, Communicator& comm, Strategy strategy, c10::ScalarType reduce_dtype)
    : model_(model), comm_(comm), strategy_(strategy), reduce_dtype_(reduce_dtype) {
  const int64_t world = comm.world_size(), rank = comm.rank();
  for (int64_t i = 0; i < static_cast<int64_t>(kFirstBlock) + model.config().n_layers; ++i) units_.push_back(std::make_unique<Unit>());
  for (auto& [name, p] : model.mutable_parameters()) {
    if (!p.requires_grad()) {  // frozen: whole on every rank, no gradient, no communication
      frozen_bytes_ += p.numel() * p.element_size();
      continue;
    }
    PHI_CHECK(p.scalar_type() == at::kFloat, "sharded training keeps float32 master weights; ", name, " is ",
              p.scalar_type());
    // The embedding (with a tied head), the head and final norm, then one unit per block.
    size_t u = name.rfind("embed", 0) == 0 ? 0 : 1;
    if (name.rfind("layers.", 0) == 0) {
      u = kFirstBlock + static_cast<size_t>(std::stoll(name.substr(7, name.find('.', 7) - 7)));
    }
    Member m;
    m.name = name;
    m.param = p;
    m.numel = p.numel();
    units_.at(u)->members.push_back(std::move(m));
  }
  at::NoGradGuard no_grad;
  for (auto& unit_ptr : units_) {
    auto& unit = *unit_ptr;
    if (unit.members.empty()) continue;
    for (auto& m : unit.members) {
      m.offset = unit.size;
      unit.size += m.numel;
    }
    // Padded to a multiple of the world size: equal shards, the padding zeros and never trained.
    unit.shard_size = (unit.size + world - 1) / world;
    unit.padded = unit.shard_size * world;
    unit.shard_begin = rank * unit.shard_size;
    const auto options = unit.members.front().param.options().requires_grad(false);
    unit.full = at::zeros({unit.padded}, options);
    for (auto& m : unit.members) unit.full.narrow(0, m.offset, m.numel).copy_(m.param.reshape({-1}));
    // zero1's shard is its part of the whole weights (updated in place, then all-gathered); fsdp's
    // is its own: the whole buffer's memory comes and goes.
    unit.shard = unit.full.narrow(0, unit.shard_begin, unit.shard_size);
    if (strategy_ == Strategy::kFsdp) unit.shard = unit.shard.clone();
    if (strategy_ == Strategy::kZero1) {
      // The gradients accumulate in one whole buffer whose shard is the optimizer's gradient.
      unit.grad_whole = at::zeros({unit.padded}, options);
      unit.shard_grad = unit.grad_whole.narrow(0, unit.shard_begin, unit.shard_size);
    } else {
      unit.shard_grad = at::zeros({unit.shard_size}, options);
    }
    for (size_t i = 0; i < unit.members.size(); ++i) {
      auto& m = unit.members[i];
      // The model's tensor now aliases the flat buffer (same TensorImpl: the model keeps using it).
      m.param.set_data(unit.full.narrow(0, m.offset, m.numel).view(m.param.sizes()));
      if (unit.grad_whole.defined()) m.param.mutable_grad() = unit.grad_whole.narrow(0, m.offset, m.numel).view(m.param.sizes());
      torch::autograd::impl::set_post_acc_grad_hooks(m.param, std::make_unique<GradientHook>(this, &unit, i));
      m.begin = std::max(m.offset, unit.shard_begin);
      const int64_t end = std::min(m.offset + m.numel, unit.shard_begin + unit.shard_size);
      m.length = std::max<int64_t>(0, end - m.begin);
      if (m.length == 0) continue;
      auto slice = unit.shard.narrow(0, m.begin - unit.shard_begin, m.length).detach();
      slice.mutable_grad() = unit.shard_grad.narrow(0, m.begin - unit.shard_begin, m.length);
      shards_.emplace(m.name, slice);
    }
    unit.gathered = true;
    if (strategy_ == Strategy::kFsdp) {
      track(unit.bytes());
      release(unit);
    }
  }
  peak_gathered_bytes_ = 0;
  if (strategy_ == Strategy::kFsdp) model_.set_block_hooks(this);
}

ShardedState::~ShardedState() {
  model_.set_block_hooks(nullptr);
  for (auto& unit : units_) {
    for (auto& m : unit->members) torch::autograd::impl::set_post_acc_grad_hooks(m.param, nullptr);
  }
}

int64_t ShardedState::grad_bytes(const Unit& unit) const {
  return unit.padded * static_cast<int64_t>(c10::elementSize(reduce_dtype_));
}

void ShardedState::track(int64_t delta) {
  gathered_bytes_ += delta;
  peak_gathered_bytes_ = std::max(peak_gathered_bytes_, gathered_bytes_);
}

void ShardedState::share_updated_weights() {
  if (strategy_ != Strategy::kZero1) return;
  at::NoGradGuard no_grad;
  std::vector<std::pair<std::unique_ptr<PendingCollective>, at::Tensor>> pending;
  for (auto& unit : units_) {
    if (unit->members.empty()) continue;
    auto input = unit->shard.clone();  // the output holds the input's place: not in place
    auto alias = writable_alias(unit->full);
    pending.emplace_back(comm_.all_gather_async(input, alias), input);
  }
  for (auto& [work, input] : pending) work->wait();
  for (auto& unit : units_) {
    if (unit->grad_whole.defined()) unit->grad_whole.zero_();  // the next step accumulates afresh
  }
}

void ShardedState::prefetch(Unit& unit) {
  if (unit.gathered || unit.members.empty()) return;
  auto& storage = storage_of(unit.full);
  const auto nbytes = static_cast<size_t>(unit.bytes());
  storage.set_data_ptr_noswap(storage.allocator()->allocate(nbytes));
  storage.set_nbytes(nbytes);
  unit.alias = writable_alias(unit.full);
  unit.gathering = comm_.all_gather_async(unit.shard, unit.alias);
  unit.gathered = true;
  track(unit.bytes());
}

void ShardedState::gather(Unit& unit) {
  prefetch(unit);
  if (unit.gathering) {
    unit.gathering->wait();
    unit.gathering.reset();
    unit.alias = at::Tensor();
  }
}

void ShardedState::release(Unit& unit) {
  if (!unit.gathered || strategy_ == Strategy::kZero1) return;  // zero1: the weights stay whole
  gather(unit);  // a prefetch still writing must end before its memory goes
  storage_of(unit.full).reset();  // the parameters keep their shapes; their memory goes
  unit.gathered = false;
  track(-unit.bytes());
}

void ShardedState::gather_root() {
  for (size_t u = 0; u < kFirstBlock; ++u) gather(*units_[u]);
}
void ShardedState::release_root() {
  for (size_t u = 0; u < kFirstBlock; ++u) release(*units_[u]);
}

void ShardedState::before_block(int64_t index) {
  const auto u = kFirstBlock + static_cast<size_t>(index);
  gather(*units_.at(u));
  if (u + 1 < units_.size()) prefetch(*units_[u + 1]);  // the next block's gather runs during this one
}

at::Tensor ShardedState::after_block(int64_t index, const at::Tensor& output) {
  auto& unit = *units_.at(kFirstBlock + static_cast<size_t>(index));
  release(unit);
  if (at::GradMode::is_enabled() && output.requires_grad() && !unit.members.empty()) {
    // Before this block's backward (or its recomputation) runs: its parameters again.
    // The block before it (the next in backward order) starts gathering meanwhile.
    Unit* previous = index > 0 ? units_[kFirstBlock + static_cast<size_t>(index) - 1].get() : nullptr;
    output.register_hook([this, &unit, previous](const at::Tensor&) {
      gather(unit);
      if (previous) prefetch(*previous);
    });
  }
  return output;
}

void ShardedState::on_gradient(Unit& unit, size_t index) {
  auto& m = unit.members[index];
  auto& grad = m.param.mutable_grad();
  if (!grad.defined()) return;
  at::NoGradGuard no_grad;
  if (strategy_ == Strategy::kZero1) {
    // Accumulated in place into the whole buffer; should autograd ever have replaced the tensor,
    // its values go back into the buffer.
    auto view = unit.grad_whole.narrow(0, m.offset, m.numel).view(m.param.sizes());
    if (grad.data_ptr() != view.data_ptr()) {
      view.copy_(grad);
      grad = view;
    }
    if (!armed_) return;  // an earlier micro-step: no communication
  } else {
    if (!unit.grad_flat.defined()) {
      unit.grad_flat = at::zeros({unit.padded}, unit.shard.options().dtype(reduce_dtype_));
      track(grad_bytes(unit));
    }
    unit.grad_flat.narrow(0, m.offset, m.numel).copy_(grad.reshape({-1}));
    grad = at::Tensor();  // the whole gradient lives only in the flat buffer until it is scattered
  }
  if (++unit.ready == unit.members.size()) {
    // The reduce-scatters started before this one have had a block's backward to finish: their
    // whole gradients go now, so that about two units' gradients are ever whole at once.
    for (auto& other : units_) {
      if (other.get() != &unit && other->scatter) collect(*other);
    }
    start_scatter(unit);
    release(unit);  // this backward needs the block's parameters no more
  }
}

bool ShardedState::scatters_a_copy() const {
  return strategy_ == Strategy::kFsdp || reduce_dtype_ != at::kFloat;
}

void ShardedState::start_scatter(Unit& unit) {
  if (strategy_ == Strategy::kZero1) {
    // The whole buffer itself, or a copy in the reduction dtype.
    unit.grad_flat = reduce_dtype_ == at::kFloat ? unit.grad_whole : unit.grad_whole.to(reduce_dtype_);
    if (scatters_a_copy()) track(grad_bytes(unit));
  }
  unit.reduced = at::empty({unit.shard_size}, unit.grad_flat.options());
  unit.scatter = comm_.reduce_scatter_async(unit.grad_flat, unit.reduced);
}

void ShardedState::collect(Unit& unit) {
  const auto start = std::chrono::steady_clock::now();
  unit.scatter->wait();
  waited_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  at::NoGradGuard no_grad;
  if (strategy_ == Strategy::kZero1) {
    unit.shard_grad.copy_(unit.reduced);  // this rank's own part of the buffer becomes the sum
  } else {
    unit.shard_grad.add_(unit.reduced);   // fsdp sums every micro-step's
  }
  unit.scatter.reset();
  unit.reduced = at::Tensor();
  unit.grad_flat = at::Tensor();
  if (scatters_a_copy()) track(-grad_bytes(unit));
}

double ShardedState::finish() {
  // A unit some of whose members got no gradient in this backward (the same on every rank: the
  // graph is) starts its reduce-scatter now, in unit order.
  for (auto& unit : units_) {
    if (unit->ready > 0 && unit->ready < unit->members.size()) start_scatter(*unit);
  }
  for (auto& unit : units_) {
    if (unit->scatter) collect(*unit);
    unit->ready = 0;
    release(*unit);
  }
  const double waited = waited_;
  waited_ = 0;
  armed_ = false;
  return waited;
}

NamedTensors ShardedState::local_slices(const Optimizer& optimizer, std::map<std::string, int64_t>& first) const {
  NamedTensors out;
  for (const auto& unit : units_) {
    for (const auto& m : unit->members) {
      if (m.length == 0) continue;
      first[m.name] = m.begin - m.offset;
      out.push_back({m.name, unit->shard.narrow(0, m.begin - unit->shard_begin, m.length)});
      for (const auto& kind : optimizer.state_kinds()) {
        const auto state = optimizer.state(m.name, kind);
        if (state.defined()) out.push_back({m.name + "." + kind, state});
      }
    }
  }
  return out;
}

const ShardedState::Member* ShardedState::member(const std::string& name) const {
  for (const auto& unit : units_) {
    for (const auto& m : unit->members) {
      if (m.name == name) return &m;
    }
  }
  return nullptr;
}

std::pair<int64_t, int64_t> ShardedState::range_of(const std::string& name) const {
  const auto* m = member(name);
  return m ? std::pair<int64_t, int64_t>{m->begin - m->offset, m->length} : std::pair<int64_t, int64_t>{0, 0};
}

at::Tensor ShardedState::slice_of(const std::string& name, const at::Tensor& whole) const {
  const auto* m = member(name);
  if (!m) return {};
  PHI_CHECK(whole.numel() == m->numel, name, " has ", whole.numel(), " elements, the parameter ", m->numel);
  if (m->length == 0) return {};
  return whole.reshape({-1}).narrow(0, m->begin - m->offset, m->length);
}

bool ShardedState::finite() {
  // One read-back for every unit (a device sync per unit would stall a GPU).
  std::vector<at::Tensor> flags;
  for (const auto& unit : units_) {
    if (!unit->members.empty()) flags.push_back(at::isfinite(unit->shard).all());
  }
  const double ok = flags.empty() || at::stack(flags).all().item<bool>() ? 1.0 : 0.0;
  auto flag = at::full({1}, ok, at::kDouble);
  comm_.all_reduce(flag, ReduceOp::kMin);
  return flag.item<double>() > 0;
}

ShardedState::Memory ShardedState::memory() const {
  Memory m;
  m.frozen_bytes = frozen_bytes_;
  m.peak_gathered_bytes = peak_gathered_bytes_;
  for (const auto& unit : units_) {
    if (unit->members.empty()) continue;
    const int64_t f = sizeof(float);
    // fsdp: the shard's weights and gradient; zero1: the whole weights and gradients (the shard's
    // are parts of them).
    m.held_bytes += 2 * (strategy_ == Strategy::kFsdp ? unit->shard_size : unit->padded) * f;
    m.largest_unit_bytes = std::max(m.largest_unit_bytes, unit->bytes());
    m.sharded_elements += unit->size;
    m.padded_elements += unit->padded;
  }
  return m;
}

}  // namespace phi
