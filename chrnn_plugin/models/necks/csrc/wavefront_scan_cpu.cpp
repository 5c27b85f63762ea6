// CPU kernels of the wavefront sweep: chrnn_cpu::scan_forward and chrnn_cpu::scan_backward.
//
// They compute what chrnn::wavefront_scan and chrnn::wavefront_scan_backward compute in
// PyTorch operators (fused_wavefront.py), in the same buffer layout, so either half can be
// paired with the other. Per anti-diagonal of the sweep:
//
//   * both recurrent terms are one batched GEMM over the directions (MKL, multi-threaded): the
//     previous diagonal's states times [W_h | W_v] in forward, dL/dz times [W_h^T | W_v^T] in
//     backward; each region reads the half its left and its upper neighbour sent it, and a
//     border sends nothing;
//   * the rest is one pass over the diagonal's regions, in sweep order: the gate maths, the
//     cell update and the state writes fused, vectorised with ATen's Vectorized and split over
//     threads by image.
//
// The sweep permutation is a bulk copy of whole rows before and after the sweep (a gather
// inside the gate maths stalls on every row that misses the cache). Backward keeps only two
// diagonals of dL/dc, and accumulates the weights' gradients diagonal by diagonal from views
// of the saved state buffer.

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/cpu/vec/vec.h>
#include <torch/library.h>

#include <algorithm>
#include <cstring>
#include <vector>

namespace {

using at::Tensor;

// Cell kinds, in the order of fused_wavefront.CELLS.
enum Cell : int64_t { kRelu = 0, kTanh = 1, kConvex = 2, kSum = 3 };

// Where each diagonal sits in sweep order and in the padded buffer (fused_wavefront._layout).
struct Layout {
  int64_t steps = 0, padded = 0, max_size = 0;
  std::vector<int64_t> sizes, starts, out_rows, left, offset;
  std::vector<int64_t> position;  // padded row of the m-th region visited
};

Layout make_layout(int64_t height, int64_t width) {
  Layout layout;
  layout.steps = height + width - 1;
  int64_t start = 0, previous_lo = 0;
  for (int64_t t = 0; t < layout.steps; ++t) {
    const int64_t lo = std::max<int64_t>(0, t - width + 1);
    const int64_t hi = std::min<int64_t>(t, height - 1);
    const int64_t size = hi - lo + 1;
    layout.sizes.push_back(size);
    layout.starts.push_back(start);
    // Diagonal t fills padded rows start + 2t + 1 .. start + 2t + size, a zero row either side.
    layout.out_rows.push_back(start + 2 * t + 1);
    // The left predecessor of the diagonal's first region; its upper one is the row before.
    layout.left.push_back(t ? layout.out_rows[t - 1] + lo - previous_lo : 0);
    layout.offset.push_back(t ? lo - previous_lo : 0);
    layout.max_size = std::max(layout.max_size, size);
    for (int64_t s = 0; s < size; ++s) layout.position.push_back(layout.out_rows[t] + s);
    start += size;
    previous_lo = lo;
  }
  layout.padded = height * width + 2 * layout.steps;
  return layout;
}

// visited_at[k * R + r]: the step at which direction k visits region r.
std::vector<int64_t> inverse_order(const int64_t* order, int64_t k, int64_t regions) {
  std::vector<int64_t> visited_at(k * regions);
  for (int64_t dir = 0; dir < k; ++dir) {
    for (int64_t m = 0; m < regions; ++m) visited_at[dir * regions + order[dir * regions + m]] = m;
  }
  return visited_at;
}

// Images per thread chunk of a pass over a diagonal (size regions of row_width values per image):
// enough work to be worth a thread.
int64_t grain(int64_t size, int64_t row_width) {
  return std::max<int64_t>(1, 32768 / std::max<int64_t>(1, size * row_width));
}

template <typename T>
using Vec = at::vec::Vectorized<T>;

template <typename T>
inline Vec<T> load(const T* p, int64_t count) {
  return count == Vec<T>::size() ? Vec<T>::loadu(p) : Vec<T>::loadu(p, count);
}

template <typename T>
inline void store(const Vec<T>& v, T* p, int64_t count) {
  if (count == Vec<T>::size()) {
    v.store(p);
  } else {
    v.store(p, count);
  }
}

template <typename T>
inline Vec<T> sigmoid(const Vec<T>& x) {
  const Vec<T> one(1);
  return one / (one + x.neg().exp());
}

// tanh(x) = 2 sigmoid(2x) - 1: one exp instead of Sleef's tanh, which costs about three. In
// float32 its error is below 1e-7 absolute (it is not accurate in relative terms near 0, where
// tanh(x) ~ x is added to terms of order 1); float64 keeps the accurate tanh.
template <typename T>
inline Vec<T> tanh(const Vec<T>& x) {
  return x.tanh();
}

template <>
inline Vec<float> tanh<float>(const Vec<float>& x) {
  const Vec<float> one(1.0f), two(2.0f);
  return two / (one + (x * Vec<float>(-2.0f)).exp()) - one;
}

// own[j..] plus what the two neighbours sent, either missing (null) at a border. In forward:
// a region's pre-activation, its input term z plus W_h h_left and W_v h_above. In backward:
// its dL/dh, from the output plus from the successors whose left (W_h^T part) and upper
// (W_v^T part) predecessor it is.
template <typename T>
inline Vec<T> plus_sent(const T* own, const T* from_left, const T* from_above, int64_t j,
                        int64_t n) {
  Vec<T> v = load(own + j, n);
  if (from_left) v = v + load(from_left + j, n);
  if (from_above) v = v + load(from_above + j, n);
  return v;
}

// One region of an LSTM diagonal: activate the gates of its pre-activation, update the cell
// from its left and upper predecessors' cells (none on the first diagonal).
template <typename T>
void lstm_forward_row(const T* z, const T* from_left, const T* from_above, const T* left_c,
                      const T* above_c, bool convex, int64_t d, T* gates, T* c_out, T* h_out) {
  for (int64_t j = 0; j < d; j += Vec<T>::size()) {
    const int64_t n = std::min<int64_t>(Vec<T>::size(), d - j);
    auto pre = [&](int64_t q) {  // gate q's pre-activation
      return plus_sent(z + q * d, from_left ? from_left + q * d : nullptr,
                       from_above ? from_above + q * d : nullptr, j, n);
    };
    const Vec<T> i = sigmoid(pre(0)), g1 = sigmoid(pre(1)), g2 = sigmoid(pre(2));
    const Vec<T> o = sigmoid(pre(3)), g = tanh(pre(4));
    Vec<T> c = i * g;
    if (left_c) {
      const Vec<T> l = load(left_c + j, n), u = load(above_c + j, n);
      c = convex ? g1 * (u + g2 * (l - u)) + c : g1 * l + g2 * u + c;
    }
    const Vec<T> h = o * tanh(c);
    store(i, gates + j, n);
    store(g1, gates + d + j, n);
    store(g2, gates + 2 * d + j, n);
    store(o, gates + 3 * d + j, n);
    store(g, gates + 4 * d + j, n);
    store(c, c_out + j, n);
    store(h, h_out + j, n);
  }
}

template <typename T>
void simple_forward_row(const T* z, const T* from_left, const T* from_above, bool relu,
                        int64_t d, T* h_out) {
  for (int64_t j = 0; j < d; j += Vec<T>::size()) {
    const int64_t n = std::min<int64_t>(Vec<T>::size(), d - j);
    const Vec<T> v = plus_sent(z, from_left, from_above, j, n);
    const Vec<T> h = relu ? at::vec::clamp_min(v, Vec<T>(0)) : tanh(v);
    store(h, h_out + j, n);
  }
}

// dL/dz of one LSTM region from dL/dh (see plus_sent) and what successors sent to dL/dc
// (dc_in); adds the predecessors' dL/dc into grad_left / grad_above (null on the first
// diagonal).
template <typename T>
void lstm_backward_row(const T* dh_out, const T* as_left, const T* as_above, const T* gates,
                       const T* c, const T* dc_in, const T* left_c, const T* above_c,
                       T* grad_left, T* grad_above, bool convex, int64_t d, T* dz) {
  const Vec<T> one(1), zero(0);
  for (int64_t j = 0; j < d; j += Vec<T>::size()) {
    const int64_t n = std::min<int64_t>(Vec<T>::size(), d - j);
    const Vec<T> i = load(gates + j, n), g1 = load(gates + d + j, n);
    const Vec<T> g2 = load(gates + 2 * d + j, n), o = load(gates + 3 * d + j, n);
    const Vec<T> g = load(gates + 4 * d + j, n);
    const Vec<T> dhv = plus_sent(dh_out, as_left, as_above, j, n);
    const Vec<T> tanh_c = tanh(load(c + j, n));
    const Vec<T> dc = load(dc_in + j, n) + dhv * o * (one - tanh_c * tanh_c);
    const Vec<T> d_i = dc * g * i * (one - i);
    const Vec<T> d_o = dhv * tanh_c * o * (one - o);
    const Vec<T> d_g = dc * i * (one - g * g);
    Vec<T> d_g1 = zero, d_g2 = zero;
    if (left_c) {
      const Vec<T> l = load(left_c + j, n), u = load(above_c + j, n);
      Vec<T> to_left, to_above;
      if (convex) {
        const Vec<T> d_mix = dc * g1;
        d_g1 = dc * (u + g2 * (l - u)) * g1 * (one - g1);
        d_g2 = d_mix * (l - u) * g2 * (one - g2);
        to_left = d_mix * g2;
        to_above = d_mix * (one - g2);
      } else {
        d_g1 = dc * l * g1 * (one - g1);
        d_g2 = dc * u * g2 * (one - g2);
        to_left = dc * g1;
        to_above = dc * g2;
      }
      store(load(grad_left + j, n) + to_left, grad_left + j, n);
      store(load(grad_above + j, n) + to_above, grad_above + j, n);
    }
    const Vec<T>* parts[5] = {&d_i, &d_g1, &d_g2, &d_o, &d_g};
    for (int64_t q = 0; q < 5; ++q) store(*parts[q], dz + q * d + j, n);
  }
}

template <typename T>
void simple_backward_row(const T* dh_out, const T* as_left, const T* as_above, const T* h,
                         bool relu, int64_t d, T* dz) {
  const Vec<T> one(1), zero(0);
  for (int64_t j = 0; j < d; j += Vec<T>::size()) {
    const int64_t n = std::min<int64_t>(Vec<T>::size(), d - j);
    const Vec<T> hv = load(h + j, n), dhv = plus_sent(dh_out, as_left, as_above, j, n);
    // relu: h > 0 where the pre-activation was; tanh: 1 - tanh^2 from h itself.
    const Vec<T> v = relu ? Vec<T>::blendv(zero, dhv, hv > zero) : dhv * (one - hv * hv);
    store(v, dz + j, n);
  }
}

void check_inputs(const Tensor& weight_h, const Tensor& weight_v, const Tensor& order,
                  int64_t cell, std::initializer_list<Tensor> same_dtype) {
  TORCH_CHECK(cell >= kRelu && cell <= kSum, "chrnn_cpu: unknown cell code ", cell);
  TORCH_CHECK(weight_h.dim() == 3 && weight_h.sizes() == weight_v.sizes(),
              "chrnn_cpu: weight_h and weight_v must both be (K, D, G * D)");
  TORCH_CHECK(order.scalar_type() == at::kLong && order.dim() == 2 && order.is_contiguous(),
              "chrnn_cpu: order must be a contiguous int64 (K, H * W) tensor");
  for (const Tensor& t : same_dtype) {
    TORCH_CHECK(t.device().is_cpu() && t.is_contiguous(),
                "chrnn_cpu: every tensor must be a contiguous CPU tensor");
    TORCH_CHECK(t.numel() == 0 || t.scalar_type() == weight_h.scalar_type(),
                "chrnn_cpu: every tensor must have the weights' dtype ", weight_h.scalar_type());
  }
}

// Zero the permanent zero rows (either side of every diagonal) of a (K, padded, N, D) buffer.
template <typename T>
void zero_pad_rows(Tensor& buffer, const Layout& layout) {
  const int64_t k = buffer.size(0), row = buffer.size(2) * buffer.size(3);
  T* base = buffer.data_ptr<T>();
  for (int64_t dir = 0; dir < k; ++dir) {
    for (int64_t t = 0; t < layout.steps; ++t) {
      for (int64_t r : {layout.out_rows[t] - 1, layout.out_rows[t] + layout.sizes[t]}) {
        std::memset(base + (dir * layout.padded + r) * row, 0, sizeof(T) * row);
      }
    }
  }
}

// Copy `count` rows of `width` elements, row i from src_row(i) to dst_row(i): the sweep
// permutation as one bulk pass, whose loads are independent (unlike loads inside the gate
// maths, which stall on every row that misses the cache).
template <typename T, typename Dst, typename Src>
void copy_rows(int64_t count, int64_t width, const Dst& dst_row, const Src& src_row) {
  at::parallel_for(0, count, std::max<int64_t>(1, 16384 / width), [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) std::memcpy(dst_row(i), src_row(i), sizeof(T) * width);
  });
}

std::tuple<Tensor, Tensor, Tensor, Tensor> scan_forward(const Tensor& pre_activation,
                                                        const Tensor& weight_h,
                                                        const Tensor& weight_v,
                                                        const Tensor& order, int64_t cell) {
  check_inputs(weight_h, weight_v, order, cell, {pre_activation, weight_h, weight_v});
  const int64_t height = pre_activation.size(0), width = pre_activation.size(1);
  const int64_t batch = pre_activation.size(2), regions = height * width;
  const int64_t k = weight_h.size(0), d = weight_h.size(1), gd = weight_h.size(2);
  const bool lstm = cell >= kConvex;
  TORCH_CHECK(gd == (lstm ? 5 : 1) * d && pre_activation.size(3) == k * gd,
              "chrnn_cpu: pre_activation must be (H, W, N, K * G * D) for the cell");
  TORCH_CHECK(order.size(0) == k && order.size(1) == regions,
              "chrnn_cpu: order must be (K, H * W)");
  const Layout layout = make_layout(height, width);
  const auto options = weight_h.options();
  Tensor hidden = at::empty({k, layout.padded, batch, d}, options);
  Tensor cells = lstm ? at::empty({k, layout.padded, batch, d}, options) : at::empty({0}, options);
  Tensor gates = lstm ? at::empty({k, regions, batch, gd}, options) : at::empty({0}, options);
  Tensor out = at::empty({height, width, batch, k * d}, options);
  // What a diagonal sends its successors: h [W_h | W_v], (K, size * N, 2 * G * D) contiguous
  // at the start; the successor diagonal reads the W_h half of its left predecessor's row and
  // the W_v half of its upper one's.
  const Tensor weight_cat = at::cat({weight_h, weight_v}, 2);
  Tensor to_successors = at::empty({k * layout.max_size * batch * 2 * gd}, options);

  AT_DISPATCH_FLOATING_TYPES(weight_h.scalar_type(), "chrnn_cpu::scan_forward", [&] {
    using T = scalar_t;
    zero_pad_rows<T>(hidden, layout);
    if (lstm) zero_pad_rows<T>(cells, layout);
    const T* pre = pre_activation.data_ptr<T>();
    const int64_t* visit = order.data_ptr<int64_t>();
    T* h_buf = hidden.data_ptr<T>();
    T* c_buf = lstm ? cells.data_ptr<T>() : nullptr;
    T* gate_buf = lstm ? gates.data_ptr<T>() : nullptr;
    const T* sent = to_successors.data_ptr<T>();
    const int64_t row = batch * d;  // one padded row of one direction
    // The input term in sweep order: into the gates (LSTM), activated there in place, or
    // into the hidden states' rows (HSRN), activated in place.
    copy_rows<T>(
        k * regions * batch, gd,
        [&](int64_t i) {
          const int64_t m = (i / batch) % regions, dir = i / (regions * batch), n = i % batch;
          return lstm ? gate_buf + i * gd
                      : h_buf + (dir * layout.padded + layout.position[m]) * row + n * d;
        },
        [&](int64_t i) {
          const int64_t m = (i / batch) % regions, dir = i / (regions * batch), n = i % batch;
          return pre + ((visit[dir * regions + m] * batch + n) * k + dir) * gd;
        });
    for (int64_t t = 0; t < layout.steps; ++t) {
      const int64_t size = layout.sizes[t], start = layout.starts[t];
      const int64_t out_row = layout.out_rows[t], left = layout.left[t];
      // Both recurrent terms for this diagonal: one batched GEMM over the directions, on the
      // previous diagonal's states.
      const int64_t prev_size = t ? layout.sizes[t - 1] : 0, offset = layout.offset[t];
      if (t) {
        const int64_t rows = prev_size * batch;
        Tensor sent_now = to_successors.narrow(0, 0, k * rows * 2 * gd).view({k, rows, 2 * gd});
        at::bmm_out(sent_now, hidden.narrow(1, layout.out_rows[t - 1], prev_size)
                                  .view({k, rows, d}), weight_cat);
      }
      // Region s's left predecessor is the previous diagonal's region s + offset, its upper
      // one s + offset - 1; outside that diagonal, a border.
      auto sent_by = [&](int64_t dir, int64_t s, int64_t n, int64_t half) -> const T* {
        const int64_t q = s + offset - half;
        if (q < 0 || q >= prev_size) return nullptr;
        return sent + ((dir * prev_size + q) * batch + n) * 2 * gd + half * gd;
      };
      at::parallel_for(0, batch, grain(size, k * gd), [&](int64_t begin, int64_t end) {
        for (int64_t dir = 0; dir < k; ++dir) {
          for (int64_t s = 0; s < size; ++s) {
            for (int64_t n = begin; n < end; ++n) {
              const T* from_left = sent_by(dir, s, n, 0);
              const T* from_above = sent_by(dir, s, n, 1);
              const int64_t h_at = (dir * layout.padded + out_row + s) * row + n * d;
              if (lstm) {
                const T* left_c = t ? c_buf + h_at + (left - out_row) * row : nullptr;
                T* g = gate_buf + ((dir * regions + start + s) * batch + n) * gd;
                lstm_forward_row<T>(g, from_left, from_above, left_c,
                                    left_c ? left_c - row : nullptr,
                                    cell == kConvex, d, g, c_buf + h_at, h_buf + h_at);
              } else {
                simple_forward_row<T>(h_buf + h_at, from_left, from_above, cell == kRelu, d,
                                      h_buf + h_at);
              }
            }
          }
        }
      });
    }
    // Back to region-major order: out[r, n, k] = the state of region r in direction k.
    const std::vector<int64_t> visited_at = inverse_order(visit, k, regions);
    T* out_ptr = out.data_ptr<T>();
    copy_rows<T>(
        regions * batch * k, d, [&](int64_t i) { return out_ptr + i * d; },
        [&](int64_t i) {
          const int64_t dir = i % k, n = (i / k) % batch, r = i / (k * batch);
          const int64_t m = visited_at[dir * regions + r];
          return h_buf + (dir * layout.padded + layout.position[m]) * row + n * d;
        });
  });
  return {out, gates, hidden, cells};
}

std::tuple<Tensor, Tensor, Tensor> scan_backward(const Tensor& grad_out, const Tensor& weight_h,
                                                 const Tensor& weight_v, const Tensor& gates,
                                                 const Tensor& hidden, const Tensor& cells,
                                                 const Tensor& order, int64_t cell) {
  check_inputs(weight_h, weight_v, order, cell,
               {grad_out, weight_h, weight_v, gates, hidden, cells});
  const int64_t height = grad_out.size(0), width = grad_out.size(1);
  const int64_t batch = grad_out.size(2), regions = height * width;
  const int64_t k = weight_h.size(0), d = weight_h.size(1), gd = weight_h.size(2);
  const bool lstm = cell >= kConvex;
  const Layout layout = make_layout(height, width);
  TORCH_CHECK(grad_out.size(3) == k * d && hidden.size(1) == layout.padded,
              "chrnn_cpu: grad_out and the saved buffers do not match the weights");
  const auto options = weight_h.options();
  Tensor grad_pre = at::empty({height, width, batch, k * gd}, options);
  Tensor grad_wh = at::zeros_like(weight_h), grad_wv = at::zeros_like(weight_v);
  Tensor from_output = at::empty({k, regions, batch, d}, options);
  // dL/dc of two diagonals (the current one and its predecessors), each padded by a row on
  // both sides, which collects what the borders would receive and is never read.
  const int64_t local_rows = layout.max_size + 2;
  Tensor grad_c[2];
  for (int q = 0; q < 2 && lstm; ++q) grad_c[q] = at::zeros({k, local_rows, batch, d}, options);
  // What a diagonal sends its predecessors' dL/dh: dz [W_h^T | W_v^T], (K, size * N, 2 * D)
  // contiguous at the start; the predecessor diagonal reads its two halves.
  const Tensor weight_t = at::cat({weight_h.transpose(1, 2), weight_v.transpose(1, 2)}, 2);
  Tensor to_predecessors = at::empty({k * layout.max_size * batch * 2 * d}, options);
  // dL/d(pre-activation) of one diagonal, (K, size * N, G * D) contiguous at the start.
  Tensor dz = at::empty({k * layout.max_size * batch * gd}, options);

  AT_DISPATCH_FLOATING_TYPES(weight_h.scalar_type(), "chrnn_cpu::scan_backward", [&] {
    using T = scalar_t;
    const int64_t* visit = order.data_ptr<int64_t>();
    const T* h_buf = hidden.data_ptr<T>();
    const T* c_buf = lstm ? cells.data_ptr<T>() : nullptr;
    const T* gate_buf = lstm ? gates.data_ptr<T>() : nullptr;
    T* gp = grad_pre.data_ptr<T>();
    T* dz_ptr = dz.data_ptr<T>();
    T* from_out = from_output.data_ptr<T>();
    const T* go = grad_out.data_ptr<T>();
    // dL/dh from the output, in sweep order.
    copy_rows<T>(
        k * regions * batch, d, [&](int64_t i) { return from_out + i * d; },
        [&](int64_t i) {
          const int64_t m = (i / batch) % regions, dir = i / (regions * batch), n = i % batch;
          return go + ((visit[dir * regions + m] * batch + n) * k + dir) * d;
        });
    const int64_t row = batch * d;
    const T* sent = to_predecessors.data_ptr<T>();
    int cur = 0;
    for (int64_t t = layout.steps - 1; t >= 0; --t) {
      const int64_t size = layout.sizes[t], start = layout.starts[t];
      const int64_t out_row = layout.out_rows[t], left = layout.left[t];
      const int64_t offset = layout.offset[t];
      const int prev = 1 - cur;
      const int64_t dz_rows = size * batch;
      if (t && lstm) {  // the predecessors' dL/dc start from zero
        const int64_t bytes = sizeof(T) * (layout.sizes[t - 1] + 2) * row;
        for (int64_t dir = 0; dir < k; ++dir) {
          std::memset(grad_c[prev].data_ptr<T>() + dir * local_rows * row, 0, bytes);
        }
      }
      // The successor diagonal (none for the last): its region s - offset has this region s
      // as its left predecessor, its region s - offset + 1 as its upper one.
      const bool last = t + 1 == layout.steps;
      const int64_t succ_size = last ? 0 : layout.sizes[t + 1];
      const int64_t succ_offset = last ? 0 : layout.offset[t + 1];
      auto sent_to = [&](int64_t dir, int64_t s, int64_t n, int64_t half) -> const T* {
        const int64_t q = s - succ_offset + half;
        if (q < 0 || q >= succ_size) return nullptr;
        return sent + ((dir * succ_size + q) * batch + n) * 2 * d + half * d;
      };
      const T* gc_cur = lstm ? grad_c[cur].data_ptr<T>() : nullptr;
      T* gc_prev = lstm ? grad_c[prev].data_ptr<T>() : nullptr;
      at::parallel_for(0, batch, grain(size, k * gd), [&](int64_t begin, int64_t end) {
        for (int64_t dir = 0; dir < k; ++dir) {
          for (int64_t s = 0; s < size; ++s) {
            for (int64_t n = begin; n < end; ++n) {
              const int64_t local = (dir * local_rows + s + 1) * row + n * d;
              const T* dh_out = from_out + ((dir * regions + start + s) * batch + n) * d;
              const T* as_left = sent_to(dir, s, n, 0);
              const T* as_above = sent_to(dir, s, n, 1);
              const int64_t h_at = (dir * layout.padded + out_row + s) * row + n * d;
              T* dz_row = dz_ptr + (dir * dz_rows + s * batch + n) * gd;
              if (lstm) {
                const T* left_c = t ? c_buf + h_at + (left - out_row) * row : nullptr;
                T* grad_left = t ? gc_prev + local + offset * row : nullptr;
                lstm_backward_row<T>(dh_out, as_left, as_above,
                                     gate_buf + ((dir * regions + start + s) * batch + n) * gd,
                                     c_buf + h_at, gc_cur + local, left_c,
                                     left_c ? left_c - row : nullptr, grad_left,
                                     grad_left ? grad_left - row : nullptr, cell == kConvex, d,
                                     dz_row);
              } else {
                simple_backward_row<T>(dh_out, as_left, as_above, h_buf + h_at, cell == kRelu,
                                       d, dz_row);
              }
            }
          }
        }
      });
      if (t) {
        const Tensor dz_t = dz.narrow(0, 0, k * dz_rows * gd).view({k, dz_rows, gd});
        const Tensor h_left = hidden.narrow(1, left, size).view({k, dz_rows, d});
        const Tensor h_above = hidden.narrow(1, left - 1, size).view({k, dz_rows, d});
        // What the predecessors' dL/dh receive, and the weights' gradients from this
        // diagonal: batched GEMMs over the directions. (The elementwise pass above has read
        // what the successor sent, so its buffer is free.)
        Tensor sent_now =
            to_predecessors.narrow(0, 0, k * dz_rows * 2 * d).view({k, dz_rows, 2 * d});
        at::bmm_out(sent_now, dz_t, weight_t);
        grad_wh.baddbmm_(h_left.transpose(1, 2), dz_t);
        grad_wv.baddbmm_(h_above.transpose(1, 2), dz_t);
      }
      // This diagonal's dL/d(pre-activation), back to region-major order.
      copy_rows<T>(
          k * size * batch, gd,
          [&](int64_t i) {
            const int64_t dir = i / (size * batch), s = (i / batch) % size, n = i % batch;
            return gp + ((visit[dir * regions + start + s] * batch + n) * k + dir) * gd;
          },
          [&](int64_t i) {
            const int64_t dir = i / (size * batch);
            return dz_ptr + (dir * dz_rows + i % dz_rows) * gd;
          });
      cur = prev;
    }
  });
  return {grad_pre, grad_wh, grad_wv};
}

}  // namespace

TORCH_LIBRARY(chrnn_cpu, m) {
  m.def("scan_forward(Tensor pre_activation, Tensor weight_h, Tensor weight_v, Tensor order, "
        "int cell) -> (Tensor, Tensor, Tensor, Tensor)");
  m.def("scan_backward(Tensor grad_out, Tensor weight_h, Tensor weight_v, Tensor gates, "
        "Tensor hidden, Tensor cells, Tensor order, int cell) -> (Tensor, Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(chrnn_cpu, CPU, m) {
  m.impl("scan_forward", &scan_forward);
  m.impl("scan_backward", &scan_backward);
}
