// Counts the bytes live in LibTorch's CPU allocator and their high-water mark, for memory
// measurements (`grpo bench learner`, tests). Internal to runtime/ (includes LibTorch).
//
// Install with c10::SetCPUAllocator(&counter, 255) for the duration of a measurement and put the
// previous allocator back afterwards. Each allocation carries its own context, so blocks freed after
// the measurement still return to the allocator they came from; the counter must outlive every
// block it handed out (make it static). Thread-safe.
#pragma once

#include <c10/core/Allocator.h>

#include <atomic>
#include <cstdint>

namespace grpo::runtime {

class CountingAllocator : public c10::Allocator {
 public:
  explicit CountingAllocator(c10::Allocator* base) : base_(base) {}

  c10::DataPtr allocate(size_t bytes) const override {
    c10::DataPtr inner = base_->allocate(bytes);
    void* data = inner.get();
    const c10::Device device = inner.device();
    auto* ctx = new Block{std::move(inner), bytes, this};
    const int64_t now = live_.fetch_add(static_cast<int64_t>(bytes)) + static_cast<int64_t>(bytes);
    int64_t peak = peak_.load();
    while (now > peak && !peak_.compare_exchange_weak(peak, now)) {
    }
    return {data, ctx, &CountingAllocator::release, device};
  }
  c10::DeleterFnPtr raw_deleter() const override { return nullptr; }

  void reset_peak() { peak_.store(live_.load()); }
  int64_t live() const { return live_.load(); }
  int64_t peak() const { return peak_.load(); }

  // Peak bytes allocated beyond those live at the start, while fn() runs.
  template <typename Fn>
  int64_t peak_extra_bytes(Fn&& fn) {
    reset_peak();
    const int64_t start = live();
    fn();
    return peak() - start;
  }

 private:
  struct Block {
    c10::DataPtr inner;
    size_t bytes;
    const CountingAllocator* owner;
  };
  static void release(void* ctx) {
    auto* block = static_cast<Block*>(ctx);
    block->owner->live_.fetch_sub(static_cast<int64_t>(block->bytes));
    delete block;
  }

  c10::Allocator* base_;
  mutable std::atomic<int64_t> live_{0};
  mutable std::atomic<int64_t> peak_{0};
};

}  // namespace grpo::runtime
