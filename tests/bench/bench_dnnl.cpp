/* bench_dnnl.cpp — the oneDNN twin of bench_layer.c: the same layer-level
 * forward+backward (1 layer, float32, x [T,B,I] -> y [T,B,H] from a zero
 * state, backward from the seed gy on y) with Intel oneDNN 2.x's fused RNN
 * training primitives:
 *   lstm      lstm_forward (forward_training) + lstm_backward
 *   gru       lbr_gru_forward + lbr_gru_backward ("linear before reset" =
 *             PyTorch's nn.GRU)
 *   rnn_tanh  vanilla_rnn_forward + vanilla_rnn_backward, eltwise_tanh
 * with the same weights, inputs and seed as chainrule (layer_common.c draws
 * them), and the same FLOP convention (3 * 2*T*B*G*H*(I+H) per repetition).
 *
 * Set-up, outside the timed loop: primitive descriptors with format "any"
 * for the weights (oneDNN picks its layouts; the backward wants ldgoi, the
 * forward ldigo-like), the weights reordered once into each, the workspace
 * and every other buffer allocated once.  A timed repetition is
 *   zero diff_weights/diff_bias (the backward accumulates into them) ->
 *   forward -> backward -> stream wait
 * The initial states are passed explicitly as zeros: oneDNN 2.6.3 computes
 * a wrong diff_weights_iter for lstm and vanilla_rnn when src_iter is
 * omitted.  diff_dst_iter (and _c) are explicit zeros too.
 *
 * Weight conversion from PyTorch's layout (weight_ih [G*H, I], gates in
 * PyTorch order): oneDNN's ldgoi tag is exactly [gate][out][in], so only the
 * gate order changes.  LSTM i,f,g,o = oneDNN i,f,c~,o (same); vanilla RNN
 * has one gate; PyTorch's GRU r,z,n becomes lbr_gru u(=z),r,o(=n).  Biases:
 * lstm and rnn take one bias b_ih + b_hh; lbr_gru has 4 bias gates
 * [b_iz+b_hz, b_ir+b_hr, b_in, b_hn] (b_hn stays inside r * (...)).  The
 * gradients map back the same way (d b_ih = d b_hh = d bias for lstm/rnn).
 *
 * --check (on by default) compares oneDNN's y, final h (and c), gx, d
 * weight_ih, d weight_hh, d bias_ih and d bias_hh with chainrule's, on a few
 * small sizes, printing max|a - b| / max|b| per tensor (the largest error
 * relative to the tensor's scale; f32, expect about 1e-6).
 *
 * Threads: oneDNN here is an OpenMP build; --threads N calls
 * omp_set_num_threads (default 1).  Pin it: taskset -c 0.
 *
 * Run:  OMP_NUM_THREADS=1 taskset -c 0 build/tests/bench/bench-dnnl
 *   [--cells lstm,gru,rnn_tanh] [--sizes tiny,IxHxBxT,...] [--threads N]
 *   [--reps N] [--min-time S] [--warmup N] [--peak GFLOPS] [--machine]
 *   [--quick] [--check-only] [--no-check]
 */
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <unordered_map>
#include <vector>

#include "oneapi/dnnl/dnnl.hpp"

#include "layer_common.h"

using dnnl::memory;
using tag = dnnl::memory::format_tag;
using dt = dnnl::memory::data_type;

namespace {

struct options {
  std::vector<std::string> cells{"lstm", "gru", "rnn_tanh"};
  std::vector<lc_size> sizes;
  int threads = 1, reps = 10, warmup = 2;
  double min_time = 0.5, peak = 0;
  bool machine = false, check = true, time = true;
};

/* PyTorch gate p feeding oneDNN gate q: perm[q] = p. */
const int *gate_perm(const std::string &cell) {
  static const int ident[4] = {0, 1, 2, 3};
  static const int gru[3] = {1, 0, 2}; /* u = z, r = r, o = n */
  return cell == "gru" ? gru : ident;
}

float *mem_ptr(const memory &m) { return static_cast<float *>(m.get_data_handle()); }

void mem_zero(const memory &m) { std::memset(m.get_data_handle(), 0, m.get_desc().get_size()); }

/* A layer's primitives and buffers, built once. */
struct dnnl_layer {
  std::string cell;
  lc_size s{};
  int G = 0;
  dnnl::engine eng{dnnl::engine::kind::cpu, 0};
  dnnl::stream strm{eng};
  dnnl::primitive fwd, bwd;
  std::string fwd_impl, bwd_impl;
  std::unordered_map<int, memory> fwd_args, bwd_args;
  std::vector<memory> to_zero; /* diff weights and bias */
  /* user-layout (ldgoi / ldgo) memories for reading gradients back */
  memory user_dw_layer, user_dw_iter, user_dbias;

  memory arg_memory(const dnnl::primitive_desc_base &pd, int arg) {
    memory::desc md = pd.query_md(dnnl::query::exec_arg_md, arg);
    if (md.is_zero())
      return memory();
    memory m(md, eng);
    mem_zero(m);
    return m;
  }

  /* Copy user data (in user_md's layout) into m, reordering if needed. */
  void load(memory m, const memory::desc &user_md, const float *data) {
    memory u(user_md, eng);
    std::memcpy(mem_ptr(u), data, user_md.get_size());
    dnnl::reorder(u, m).execute(strm, u, m);
    strm.wait();
  }

  void build(const std::string &c, const lc_size &sz, const lc_ref &ref);
  void step();
  void read_grads(std::vector<float> &gw_ih, std::vector<float> &gw_hh, std::vector<float> &gb_ih,
                  std::vector<float> &gb_hh);
};

void dnnl_layer::build(const std::string &c, const lc_size &sz, const lc_ref &ref) {
  cell = c, s = sz, G = lc_gates(c.c_str());
  const memory::dim T = s.T, B = s.B, I = s.I, H = s.H;
  const int Gb = cell == "gru" ? 4 : G; /* bias gates */
  const auto dir = dnnl::rnn_direction::unidirectional_left2right;
  const auto fwd_kind = dnnl::prop_kind::forward_training;
  const auto bwd_kind = dnnl::prop_kind::backward;
  memory::desc src_layer({T, B, I}, dt::f32, tag::tnc), dst_layer({T, B, H}, dt::f32, tag::tnc);
  memory::desc iter({1, 1, B, H}, dt::f32, tag::ldnc);
  memory::desc wl_any({1, 1, I, G, H}, dt::f32, tag::any),
      wi_any({1, 1, H, G, H}, dt::f32, tag::any);
  memory::desc bias({1, 1, Gb, H}, dt::f32, tag::ldgo);
  memory::desc wl_user({1, 1, I, G, H}, dt::f32, tag::ldgoi);
  memory::desc wi_user({1, 1, H, G, H}, dt::f32, tag::ldgoi);
  memory::desc none;

  dnnl::primitive_desc_base fpd, bpd;
  if (cell == "lstm") {
    dnnl::lstm_forward::desc fd(fwd_kind, dir, src_layer, iter, iter, wl_any, wi_any, bias,
                                dst_layer, iter, iter);
    dnnl::lstm_forward::primitive_desc f(fd, eng);
    dnnl::lstm_backward::desc bd(bwd_kind, dir, src_layer, iter, iter, wl_any, wi_any, bias,
                                 dst_layer, iter, iter, src_layer, iter, iter, wl_any, wi_any, bias,
                                 dst_layer, iter, iter);
    dnnl::lstm_backward::primitive_desc b(bd, eng, f);
    fwd = dnnl::lstm_forward(f), bwd = dnnl::lstm_backward(b), fpd = f, bpd = b;
  } else if (cell == "gru") {
    dnnl::lbr_gru_forward::desc fd(fwd_kind, dir, src_layer, iter, wl_any, wi_any, bias, dst_layer,
                                   iter);
    dnnl::lbr_gru_forward::primitive_desc f(fd, eng);
    dnnl::lbr_gru_backward::desc bd(bwd_kind, dir, src_layer, iter, wl_any, wi_any, bias, dst_layer,
                                    iter, src_layer, iter, wl_any, wi_any, bias, dst_layer, iter);
    dnnl::lbr_gru_backward::primitive_desc b(bd, eng, f);
    fwd = dnnl::lbr_gru_forward(f), bwd = dnnl::lbr_gru_backward(b), fpd = f, bpd = b;
  } else {
    const auto act = dnnl::algorithm::eltwise_tanh;
    dnnl::vanilla_rnn_forward::desc fd(fwd_kind, act, dir, src_layer, iter, wl_any, wi_any, bias,
                                       dst_layer, iter);
    dnnl::vanilla_rnn_forward::primitive_desc f(fd, eng);
    dnnl::vanilla_rnn_backward::desc bd(bwd_kind, act, dir, src_layer, iter, wl_any, wi_any, bias,
                                        dst_layer, iter, src_layer, iter, wl_any, wi_any, bias,
                                        dst_layer, iter);
    dnnl::vanilla_rnn_backward::primitive_desc b(bd, eng, f);
    fwd = dnnl::vanilla_rnn_forward(f), bwd = dnnl::vanilla_rnn_backward(b), fpd = f, bpd = b;
  }
  fwd_impl = fpd.impl_info_str(), bwd_impl = bpd.impl_info_str();

  /* weights in PyTorch layout -> ldgoi with oneDNN's gate order */
  const int *perm = gate_perm(cell);
  std::vector<float> wl((size_t)(G * H * I)), wi((size_t)(G * H * H)), b((size_t)(Gb * H));
  for (int q = 0; q < G; q++)
    for (memory::dim o = 0; o < H; o++) {
      const memory::dim p_row = perm[q] * H + o, q_row = q * H + o;
      std::copy_n(ref.w_ih + p_row * I, I, wl.begin() + q_row * I);
      std::copy_n(ref.w_hh + p_row * H, H, wi.begin() + q_row * H);
      b[(size_t)q_row] = ref.b_ih[p_row] + (cell == "gru" && q == 2 ? 0.f : ref.b_hh[p_row]);
    }
  if (cell == "gru")
    for (memory::dim o = 0; o < H; o++)
      b[(size_t)(3 * H + o)] = ref.b_hh[2 * H + o]; /* b_hn */

  /* forward arguments */
  const int fwd_list[] = {DNNL_ARG_SRC_LAYER,     DNNL_ARG_SRC_ITER,     DNNL_ARG_SRC_ITER_C,
                          DNNL_ARG_WEIGHTS_LAYER, DNNL_ARG_WEIGHTS_ITER, DNNL_ARG_BIAS,
                          DNNL_ARG_DST_LAYER,     DNNL_ARG_DST_ITER,     DNNL_ARG_DST_ITER_C,
                          DNNL_ARG_WORKSPACE};
  for (int arg : fwd_list) {
    memory m = arg_memory(fpd, arg);
    if (m)
      fwd_args[arg] = m;
  }
  load(fwd_args.at(DNNL_ARG_SRC_LAYER), src_layer, ref.x);
  load(fwd_args.at(DNNL_ARG_WEIGHTS_LAYER), wl_user, wl.data());
  load(fwd_args.at(DNNL_ARG_WEIGHTS_ITER), wi_user, wi.data());
  load(fwd_args.at(DNNL_ARG_BIAS), bias, b.data());

  /* backward: share the forward's data and workspace, own copies of the
   * weights in the layouts it asked for */
  const int shared[] = {DNNL_ARG_SRC_LAYER, DNNL_ARG_SRC_ITER, DNNL_ARG_SRC_ITER_C,
                        DNNL_ARG_DST_LAYER, DNNL_ARG_DST_ITER, DNNL_ARG_DST_ITER_C,
                        DNNL_ARG_WORKSPACE, DNNL_ARG_BIAS};
  for (int arg : shared) {
    memory::desc md = bpd.query_md(dnnl::query::exec_arg_md, arg);
    if (md.is_zero())
      continue;
    auto it = fwd_args.find(arg);
    if (it == fwd_args.end() || it->second.get_desc() != md)
      throw std::runtime_error("backward wants a different layout for argument " +
                               std::to_string(arg));
    bwd_args[arg] = it->second;
  }
  bwd_args[DNNL_ARG_WEIGHTS_LAYER] = arg_memory(bpd, DNNL_ARG_WEIGHTS_LAYER);
  bwd_args[DNNL_ARG_WEIGHTS_ITER] = arg_memory(bpd, DNNL_ARG_WEIGHTS_ITER);
  load(bwd_args[DNNL_ARG_WEIGHTS_LAYER], wl_user, wl.data());
  load(bwd_args[DNNL_ARG_WEIGHTS_ITER], wi_user, wi.data());
  const int diff_list[] = {
      DNNL_ARG_DIFF_SRC_LAYER,     DNNL_ARG_DIFF_SRC_ITER,     DNNL_ARG_DIFF_SRC_ITER_C,
      DNNL_ARG_DIFF_WEIGHTS_LAYER, DNNL_ARG_DIFF_WEIGHTS_ITER, DNNL_ARG_DIFF_BIAS,
      DNNL_ARG_DIFF_DST_LAYER,     DNNL_ARG_DIFF_DST_ITER,     DNNL_ARG_DIFF_DST_ITER_C};
  for (int arg : diff_list) {
    memory m = arg_memory(bpd, arg); /* zero-filled: diff_dst_iter(_c) stay 0 */
    if (m)
      bwd_args[arg] = m;
  }
  load(bwd_args.at(DNNL_ARG_DIFF_DST_LAYER), dst_layer, ref.gy);
  to_zero = {bwd_args.at(DNNL_ARG_DIFF_WEIGHTS_LAYER), bwd_args.at(DNNL_ARG_DIFF_WEIGHTS_ITER),
             bwd_args.at(DNNL_ARG_DIFF_BIAS)};
  user_dw_layer = memory(wl_user, eng);
  user_dw_iter = memory(wi_user, eng);
  user_dbias = memory(bias, eng);
}

void dnnl_layer::step() {
  for (const memory &m : to_zero)
    mem_zero(m);
  fwd.execute(strm, fwd_args);
  bwd.execute(strm, bwd_args);
  strm.wait();
}

void dnnl_layer::read_grads(std::vector<float> &gw_ih, std::vector<float> &gw_hh,
                            std::vector<float> &gb_ih, std::vector<float> &gb_hh) {
  dnnl::reorder(bwd_args.at(DNNL_ARG_DIFF_WEIGHTS_LAYER), user_dw_layer)
      .execute(strm, bwd_args.at(DNNL_ARG_DIFF_WEIGHTS_LAYER), user_dw_layer);
  dnnl::reorder(bwd_args.at(DNNL_ARG_DIFF_WEIGHTS_ITER), user_dw_iter)
      .execute(strm, bwd_args.at(DNNL_ARG_DIFF_WEIGHTS_ITER), user_dw_iter);
  dnnl::reorder(bwd_args.at(DNNL_ARG_DIFF_BIAS), user_dbias)
      .execute(strm, bwd_args.at(DNNL_ARG_DIFF_BIAS), user_dbias);
  strm.wait();
  const memory::dim H = s.H, I = s.I;
  const float *wl = mem_ptr(user_dw_layer), *wi = mem_ptr(user_dw_iter), *db = mem_ptr(user_dbias);
  const int *perm = gate_perm(cell);
  gw_ih.assign((size_t)(G * H * I), 0.f);
  gw_hh.assign((size_t)(G * H * H), 0.f);
  gb_ih.assign((size_t)(G * H), 0.f);
  gb_hh.assign((size_t)(G * H), 0.f);
  for (int q = 0; q < G; q++)
    for (memory::dim o = 0; o < H; o++) {
      const memory::dim p_row = perm[q] * H + o, q_row = q * H + o;
      std::copy_n(wl + q_row * I, I, gw_ih.begin() + p_row * I);
      std::copy_n(wi + q_row * H, H, gw_hh.begin() + p_row * H);
      gb_ih[(size_t)p_row] = db[q_row];
      gb_hh[(size_t)p_row] = cell == "gru" && q == 2 ? db[3 * H + o] : db[q_row];
    }
}

/* max|a - b| / max|b| over n values (b: chainrule's), and max|a - b|. */
double rel_err(const float *a, const float *b, size_t n, double *abs_err) {
  double diff = 0, scale = 0;
  for (size_t i = 0; i < n; i++) {
    diff = std::max(diff, (double)std::fabs(a[i] - b[i]));
    scale = std::max(scale, (double)std::fabs(b[i]));
  }
  *abs_err = diff;
  return scale > 0 ? diff / scale : diff;
}

/* Compare one case with chainrule; returns the largest relative error. */
double check_case(const options &o, const std::string &cell, const lc_size &s) {
  lc_ref ref;
  char err[256], name[64];
  if (lc_reference(cell.c_str(), &s, true, &ref, err, sizeof err)) {
    std::fprintf(stderr, "bench-dnnl: %s\n", err);
    return INFINITY;
  }
  dnnl_layer L;
  L.build(cell, s, ref);
  L.step();
  L.step(); /* twice: the zeroing of the accumulated diff weights is checked too */
  std::vector<float> gw_ih, gw_hh, gb_ih, gb_hh;
  L.read_grads(gw_ih, gw_hh, gb_ih, gb_hh);
  const size_t TBH = (size_t)(s.T * s.B * s.H), BH = (size_t)(s.B * s.H);
  const size_t GH = (size_t)(L.G * s.H);
  struct item {
    const char *name;
    const float *dnnl, *cr;
    size_t n;
  } items[] = {
      {"y", mem_ptr(L.fwd_args.at(DNNL_ARG_DST_LAYER)), ref.y, TBH},
      {"h_T", mem_ptr(L.fwd_args.at(DNNL_ARG_DST_ITER)), ref.h_T, BH},
      {"c_T", cell == "lstm" ? mem_ptr(L.fwd_args.at(DNNL_ARG_DST_ITER_C)) : nullptr, ref.c_T, BH},
      {"gx", mem_ptr(L.bwd_args.at(DNNL_ARG_DIFF_SRC_LAYER)), ref.gx, (size_t)(s.T * s.B * s.I)},
      {"gW_ih", gw_ih.data(), ref.gw_ih, GH * (size_t)s.I},
      {"gW_hh", gw_hh.data(), ref.gw_hh, GH * (size_t)s.H},
      {"gb_ih", gb_ih.data(), ref.gb_ih, GH},
      {"gb_hh", gb_hh.data(), ref.gb_hh, GH},
  };
  double worst = 0;
  lc_size_str(&s, name, sizeof name);
  if (o.machine)
    std::printf("RESULT peer=onednn kind=check cell=%s size=%s", cell.c_str(), name);
  else
    std::printf("%-9s %-15s", cell.c_str(), name);
  for (const item &it : items) {
    if (!it.dnnl)
      continue;
    double abs_err, r = rel_err(it.dnnl, it.cr, it.n, &abs_err);
    worst = std::max(worst, r);
    if (o.machine)
      std::printf(" %s=%.3g", it.name, r);
    else
      std::printf(" %s %.2e", it.name, r);
  }
  std::printf(o.machine ? " max=%.3g\n" : "  | max %.2e\n", worst);
  lc_ref_free(&ref);
  return worst;
}

bool time_case(const options &o, const std::string &cell, const lc_size &s) {
  lc_ref ref;
  char err[256], name[64];
  if (lc_reference(cell.c_str(), &s, false, &ref, err, sizeof err)) {
    std::fprintf(stderr, "bench-dnnl: %s\n", err);
    return false;
  }
  dnnl_layer L;
  L.build(cell, s, ref);
  lc_ref_free(&ref);
  for (int w = 0; w < o.warmup; w++)
    L.step();
  std::vector<double> rep;
  double start = lc_now_s(), last = start;
  while ((int)rep.size() < o.reps || last - start < o.min_time) {
    L.step();
    double t = lc_now_s();
    rep.push_back(t - last);
    last = t;
  }
  int n = (int)rep.size();
  double mean = 1e3 * (last - start) / n;
  double ms = 1e3 * lc_median(rep.data(), n), ms_min = 1e3 * rep[0];
  double gflops = lc_flops(cell.c_str(), &s) / (ms * 1e6);
  lc_size_str(&s, name, sizeof name);
  if (o.machine) {
    std::printf("RESULT peer=onednn kind=layer cell=%s size=%s threads=%d ms=%.6f ms_mean=%.6f "
                "ms_min=%.6f reps=%d gflops=%.3f impl=%s/%s\n",
                cell.c_str(), name, o.threads, ms, mean, ms_min, n, gflops, L.fwd_impl.c_str(),
                L.bwd_impl.c_str());
  } else {
    char pct[16] = "";
    if (o.peak > 0)
      std::snprintf(pct, sizeof pct, " %7.1f%%", 100 * gflops / (o.peak * o.threads));
    std::printf("%-9s %-15s %3d %5d %9.3f %9.3f %9.3f %8.2f%s  %s/%s\n", cell.c_str(), name,
                o.threads, n, ms, mean, ms_min, gflops, pct, L.fwd_impl.c_str(),
                L.bwd_impl.c_str());
  }
  std::fflush(stdout);
  return true;
}

std::vector<std::string> split(const std::string &s) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= s.size()) {
    size_t end = s.find(',', start);
    if (end == std::string::npos)
      end = s.size();
    if (end > start)
      out.push_back(s.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

bool parse_args(int argc, char **argv, options &o) {
  int n;
  const lc_size *ds = lc_default_sizes(&n);
  o.sizes.assign(ds, ds + n);
  for (int i = 1; i < argc; i++) {
    std::string a = argv[i];
    if (a == "--machine") {
      o.machine = true;
    } else if (a == "--quick") {
      o.reps = 3, o.warmup = 1, o.min_time = 0.05;
    } else if (a == "--check-only") {
      o.time = false;
    } else if (a == "--no-check") {
      o.check = false;
    } else if (i + 1 < argc) {
      std::string v = argv[++i];
      if (a == "--cells") {
        o.cells = split(v);
        for (const std::string &c : o.cells)
          if (c != "lstm" && c != "gru" && c != "rnn_tanh") {
            std::fprintf(stderr, "bench-dnnl: unknown cell '%s' (lstm, gru, rnn_tanh)\n",
                         c.c_str());
            return false;
          }
      } else if (a == "--sizes") {
        o.sizes.clear();
        for (const std::string &item : split(v)) {
          lc_size s;
          if (!lc_parse_size(item.c_str(), &s)) {
            std::fprintf(stderr, "bench-dnnl: bad size '%s' (tiny or IxHxBxT)\n", item.c_str());
            return false;
          }
          o.sizes.push_back(s);
        }
      } else if (a == "--threads") {
        o.threads = std::atoi(v.c_str());
      } else if (a == "--reps") {
        o.reps = std::atoi(v.c_str());
      } else if (a == "--warmup") {
        o.warmup = std::atoi(v.c_str());
      } else if (a == "--min-time") {
        o.min_time = std::atof(v.c_str());
      } else if (a == "--peak") {
        o.peak = std::atof(v.c_str());
      } else {
        std::fprintf(stderr, "bench-dnnl: unknown option %s\n", a.c_str());
        return false;
      }
    } else {
      std::fprintf(stderr, "bench-dnnl: unknown option or missing value: %s\n", a.c_str());
      return false;
    }
  }
  if (o.threads < 1 || o.reps < 1 || o.warmup < 0 || !(o.min_time >= 0) || o.sizes.empty() ||
      o.cells.empty()) {
    std::fprintf(stderr, "bench-dnnl: bad --threads, --reps, --warmup, --min-time or list\n");
    return false;
  }
  return true;
}

const char *isa_name(dnnl::cpu_isa isa) {
  switch (isa) {
  case dnnl::cpu_isa::sse41: return "sse41";
  case dnnl::cpu_isa::avx: return "avx";
  case dnnl::cpu_isa::avx2: return "avx2";
  case dnnl::cpu_isa::avx2_vnni: return "avx2_vnni";
  case dnnl::cpu_isa::avx512_core: return "avx512_core";
  case dnnl::cpu_isa::avx512_core_vnni: return "avx512_core_vnni";
  case dnnl::cpu_isa::avx512_core_bf16: return "avx512_core_bf16";
  case dnnl::cpu_isa::avx512_core_amx: return "avx512_core_amx";
  default: return "other";
  }
}

} // namespace

int main(int argc, char **argv) {
  options o;
  if (!parse_args(argc, argv, o)) {
    std::fprintf(stderr, "usage: bench-dnnl [--cells lstm,gru,rnn_tanh] [--sizes tiny,IxHxBxT] "
                         "[--threads N] [--reps N] [--min-time S] [--warmup N] [--peak GFLOPS] "
                         "[--machine] [--quick] [--check-only] [--no-check]\n");
    return 2;
  }
  omp_set_num_threads(o.threads);
  const dnnl::version_t *v = dnnl::version();
  const char *env_omp = std::getenv("OMP_NUM_THREADS");
  std::printf("%soneDNN %d.%d.%d (%s), effective ISA %s, %d OpenMP thread(s) "
              "(OMP_NUM_THREADS=%s)\n",
              o.machine ? "# " : "", v->major, v->minor, v->patch, v->hash,
              isa_name(dnnl::get_effective_cpu_isa()), omp_get_max_threads(),
              env_omp ? env_omp : "unset");
  bool failed = false;
  try {
    if (o.check) {
      /* odd sizes (no padding luck), the tiny row and the H = 128 row */
      const lc_size check_sizes[] = {{20, 24, 3, 5}, {32, 32, 1, 32}, {64, 128, 32, 64}};
      if (!o.machine)
        std::printf("\ncorrectness vs chainrule (same weights and inputs): max|dnnl - cr| / "
                    "max|cr| per tensor\n");
      double worst = 0;
      for (const std::string &cell : o.cells)
        for (const lc_size &s : check_sizes)
          worst = std::max(worst, check_case(o, cell, s));
      const double tol = 2e-5;
      std::printf("%scheck: largest relative error %.2e (%s, tolerance %.0e)\n",
                  o.machine ? "# " : "", worst, worst <= tol ? "ok" : "FAIL", tol);
      if (!(worst <= tol))
        failed = true;
    }
    if (o.time) {
      if (!o.machine)
        std::printf("\nms: median of >= %d repetitions and >= %.2f s after %d warm-up; GFLOP/s "
                    "= 3*2*T*B*G*H*(I+H) / ms\n%-9s %-15s %3s %5s %9s %9s %9s %8s%s  %s\n",
                    o.reps, o.min_time, o.warmup, "cell", "IxHxBxT", "thr", "reps", "ms", "mean ms",
                    "min ms", "GFLOP/s", o.peak > 0 ? "  % peak" : "", "implementation fwd/bwd");
      for (const std::string &cell : o.cells)
        for (const lc_size &s : o.sizes)
          if (!time_case(o, cell, s))
            failed = true;
    }
  } catch (const dnnl::error &e) {
    std::fprintf(stderr, "bench-dnnl: oneDNN error: %s (status %d)\n", e.what(), (int)e.status);
    return 1;
  } catch (const std::exception &e) {
    std::fprintf(stderr, "bench-dnnl: %s\n", e.what());
    return 1;
  }
  return failed ? 1 : 0;
}
