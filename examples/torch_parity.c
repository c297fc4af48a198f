/* torch_parity.c — run a recurrent layer stack described by a PyTorch
 * fixture (tests/fixtures/README.md gives the format) through chainrule and
 * compare every output and gradient with PyTorch's.
 *
 *   usage: torch-parity FILE.safetensors [--dtype f64|f32] [--tol T]
 *
 * For each expected tensor E and computed A it prints the relative error
 * max|A - E| / max|E| (the error relative to the tensor's scale, which stays
 * meaningful where elements are near 0).  Exit status: 0 if every error is
 * within the tolerance (default 1e-9 in f64, 1e-4 in f32), 1 on a mismatch,
 * 2 for bad usage or a malformed file.
 *
 * PyTorch's other options come from the metadata too: "bidirectional": "1"
 * (parameters ..._reverse, states [L*D,B,.], outputs [T,B,D*H_out]),
 * "proj_size": "P" (lstm: weight_hr_l{k}, h [.., P]), "batch_first": "1"
 * (input and output [B,T,.]), "lengths": "5,3,4" (a packed sequence: each
 * sequence's own length, padded outputs 0) and "bias": "0" (no biases in the
 * file: chainrule's are held at zero and not trained, which is the same
 * function).
 *
 * A fixture whose metadata has "check": "hvp" also holds a direction
 * v.<name> for every leaf (the parameters, input, h0, c0) and
 * hvp.<name> = d/d<name> of sum_m <grad.<m>, v.<m>>: the Hessian-vector
 * product, which chainrule computes by differentiating its own gradients
 * (cr_autograd_grad with create_graph) and prints in rows of the same
 * form. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chainrule.h"
#include "chainrule/io.h"

#define MAX_PARAMS 256
#define MAX_BATCH 4096

typedef struct {
  cr_ctx *ctx;
  cr_st_file *f;
  const char *path;
  cr_dtype dt;
  double tol, worst;
  int failures;
} run;

static long meta_long(run *r, const char *key, long lo, long hi) {
  const char *v = cr_st_meta(r->f, key);
  if (!v) {
    fprintf(stderr, "torch-parity: %s: metadata has no '%s'\n", r->path, key);
    return -1;
  }
  char *end;
  errno = 0;
  long x = strtol(v, &end, 10);
  if (errno || *end || end == v || x < lo || x > hi) {
    fprintf(stderr, "torch-parity: %s: metadata '%s' = '%s' is not an integer in %ld..%ld\n",
            r->path, key, v, lo, hi);
    return -1;
  }
  return x;
}

/* A 0/1 flag of the metadata (absent: 0), or -1 (message printed). */
static int meta_flag(run *r, const char *key) {
  if (!cr_st_meta(r->f, key))
    return 0;
  return (int)meta_long(r, key, 0, 1);
}

/* "lengths": B comma-separated integers in 1..T into len; 0 if absent, 1 if
 * read, -1 (message printed) if malformed. */
static int meta_lengths(run *r, int64_t T, int64_t B, int64_t *len) {
  const char *v = cr_st_meta(r->f, "lengths");
  if (!v)
    return 0;
  const char *p = v;
  for (int64_t b = 0; b < B; b++) {
    char *end;
    errno = 0;
    long long x = strtoll(p, &end, 10);
    if (errno || end == p || x < 1 || x > T || (*end != (b + 1 < B ? ',' : '\0'))) {
      fprintf(stderr,
              "torch-parity: %s: metadata 'lengths' = '%s' is not %lld integers in "
              "1..%lld separated by commas\n",
              r->path, v, (long long)B, (long long)T);
      return -1;
    }
    len[b] = x;
    p = end + 1;
  }
  return 1;
}

/* A copy of the file's tensor name in the run's dtype, or NULL (message printed). */
static cr_tensor *load(run *r, const char *name) {
  cr_tensor *t = cr_st_get(r->ctx, r->f, name);
  if (!t) {
    fprintf(stderr, "torch-parity: %s\n", cr_ctx_error(r->ctx));
    return NULL;
  }
  if (cr_dtype_of(t) != r->dt) {
    cr_tensor *c = cr_persist(r->ctx, cr_cast(r->ctx, t, r->dt));
    cr_tensor_free(t);
    t = c;
  }
  return t;
}

static bool same_shape(const cr_tensor *a, int ndim, const int64_t *shape) {
  if (cr_ndim(a) != ndim)
    return false;
  for (int i = 0; i < ndim; i++)
    if (cr_shape(a)[i] != shape[i])
      return false;
  return true;
}

/* Compare computed a with the file's tensor name; print a line. */
static bool compare(run *r, const char *name, const cr_tensor *a) {
  const cr_st_info *info = cr_st_find(r->f, name);
  if (!info) {
    fprintf(stderr, "torch-parity: %s: expected tensor '%s' is missing\n", r->path, name);
    return false;
  }
  cr_tensor *e = cr_st_get(r->ctx, r->f, name);
  if (!e) {
    fprintf(stderr, "torch-parity: %s\n", cr_ctx_error(r->ctx));
    return false;
  }
  char shp[64];
  cr_shape_str(shp, sizeof shp, cr_ndim(e), cr_shape(e));
  if (!a || cr_numel(a) != cr_numel(e) || !same_shape(a, cr_ndim(e), cr_shape(e))) {
    char got[64] = "none";
    if (a)
      cr_shape_str(got, sizeof got, cr_ndim(a), cr_shape(a));
    fprintf(stderr, "torch-parity: %s: '%s' is %s in the file but chainrule computed %s\n", r->path,
            name, shp, got);
    cr_tensor_free(e);
    return false;
  }
  double max_err = 0, scale = 0;
  for (int64_t i = 0; i < cr_numel(e); i++) {
    double x = cr_get_flat(a, i), y = cr_get_flat(e, i);
    max_err = fmax(max_err, isnan(x) ? INFINITY : fabs(x - y));
    scale = fmax(scale, fabs(y));
  }
  double rel = scale > 0 ? max_err / scale : max_err;
  bool ok = rel <= r->tol;
  printf("  %-28s %-12s max abs err %.3e  rel err %.3e  %s\n", name, shp, max_err, rel,
         ok ? "ok" : "MISMATCH");
  r->worst = fmax(r->worst, rel);
  r->failures += !ok;
  cr_tensor_free(e);
  return true;
}

/* The Hessian-vector product rows: leaves are the parameters, the input
 * and the initial states (the fixture's order), v.<name> their direction. */
static bool check_hvp(run *r, cr_rnn *rnn, cr_tensor *loss, cr_tensor *input, cr_tensor **init,
                      int S, const char *const *state_names) {
  cr_tensor *leaf[MAX_PARAMS + 3], *v[MAX_PARAMS + 3], *g[MAX_PARAMS + 3], *hv[MAX_PARAMS + 3];
  const char *names[MAX_PARAMS + 3];
  int n = 0;
  for (int i = 0; i < cr_rnn_num_params(rnn); i++) {
    if (!cr_requires_grad(cr_rnn_param(rnn, i)))
      continue; /* a bias the file does not have (bias = 0) */
    leaf[n] = cr_rnn_param(rnn, i);
    names[n++] = cr_rnn_param_name(rnn, i);
  }
  leaf[n] = input;
  names[n++] = "input";
  for (int s = 0; s < S; s++, n++) {
    leaf[n] = init[s];
    names[n] = state_names[s];
  }
  char vname[80];
  bool ok = true;
  for (int i = 0; i < n; i++) {
    snprintf(vname, sizeof vname, "v.%s", names[i]);
    v[i] = NULL;
    if (ok && !(v[i] = load(r, vname)))
      ok = false;
  }
  cr_autograd_opts keep = {.create_graph = true, .zeros_for_unused = true};
  cr_autograd_opts zeros = {.zeros_for_unused = true};
  cr_tensor *dot = NULL;
  if (ok && cr_autograd_grad(r->ctx, 1, &loss, NULL, n, leaf, &keep, g) == CR_OK) {
    /* dot = sum_m <dL/dm, v_m>: its gradient is H v */
    for (int i = 0; i < n; i++) {
      cr_tensor *term = cr_sum(r->ctx, cr_mul(r->ctx, g[i], v[i]));
      dot = dot ? cr_add(r->ctx, dot, term) : term;
    }
  }
  if (ok && (!dot || cr_autograd_grad(r->ctx, 1, &dot, NULL, n, leaf, &zeros, hv) != CR_OK)) {
    fprintf(stderr, "torch-parity: %s: Hessian-vector product: %s\n", r->path,
            cr_ctx_error(r->ctx));
    ok = false;
  }
  for (int i = 0; ok && i < n; i++) {
    snprintf(vname, sizeof vname, "hvp.%s", names[i]);
    ok = compare(r, vname, hv[i]);
  }
  for (int i = 0; i < n; i++)
    cr_tensor_free(v[i]);
  return ok;
}

static int usage(void) {
  fprintf(stderr, "usage: torch-parity FILE.safetensors [--dtype f64|f32] [--tol T]\n");
  return 2;
}

int main(int argc, char **argv) {
  run r = {0};
  r.dt = CR_F64;
  r.tol = -1;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--dtype") && i + 1 < argc) {
      const char *v = argv[++i];
      if (!strcmp(v, "f64"))
        r.dt = CR_F64;
      else if (!strcmp(v, "f32"))
        r.dt = CR_F32;
      else {
        fprintf(stderr, "torch-parity: --dtype must be f64 or f32, not '%s'\n", v);
        return 2;
      }
    } else if (!strcmp(argv[i], "--tol") && i + 1 < argc) {
      char *end;
      r.tol = strtod(argv[++i], &end);
      if (*end || !(r.tol > 0)) {
        fprintf(stderr, "torch-parity: --tol must be a positive number, not '%s'\n", argv[i]);
        return 2;
      }
    } else if (argv[i][0] == '-') {
      fprintf(stderr, "torch-parity: unknown option '%s'\n", argv[i]);
      return usage();
    } else if (!r.path) {
      r.path = argv[i];
    } else {
      return usage();
    }
  }
  if (!r.path)
    return usage();
  if (r.tol < 0)
    r.tol = r.dt == CR_F64 ? 1e-9 : 1e-4;

  int rc = 2;
  r.ctx = cr_ctx_new();
  cr_rng *rng = cr_rng_new(0);
  cr_rnn *rnn = NULL;
  cr_tensor *input = NULL, *init[2] = {NULL, NULL}, *lw_out = NULL, *lw_fin[2] = {NULL, NULL};
  r.f = cr_st_open(r.ctx, r.path);
  if (!r.f) {
    fprintf(stderr, "torch-parity: %s\n", cr_ctx_error(r.ctx));
    goto done;
  }
  const char *cell_name = cr_st_meta(r.f, "cell");
  const cr_cell_def *cell = cr_cell_by_name(cell_name);
  if (!cell) {
    fprintf(stderr,
            "torch-parity: %s: metadata 'cell' is %s%s%s; expected rnn_tanh, rnn_relu, "
            "lstm or gru\n",
            r.path, cell_name ? "'" : "", cell_name ? cell_name : "missing", cell_name ? "'" : "");
    goto done;
  }
  long L = meta_long(&r, "num_layers", 1, 16), I = meta_long(&r, "input_size", 1, 1 << 20),
       H = meta_long(&r, "hidden_size", 1, 1 << 20);
  if (L < 0 || I < 0 || H < 0)
    goto done;
  int bidir = meta_flag(&r, "bidirectional"), batch_first = meta_flag(&r, "batch_first");
  int bias = cr_st_meta(r.f, "bias") ? (int)meta_long(&r, "bias", 0, 1) : 1;
  long P = cr_st_meta(r.f, "proj_size") ? meta_long(&r, "proj_size", 0, 1 << 20) : 0;
  if (bidir < 0 || batch_first < 0 || bias < 0 || P < 0)
    goto done;
  cr_rnn_config cfg = {cell, I, H, (int)L, 0.0, batch_first, r.dt};
  cr_rnn_variant var = {.bidirectional = bidir, .proj_size = P};
  rnn = cr_rnn_new_ex(r.ctx, &cfg, &var, rng);
  if (!rnn || cr_rnn_num_params(rnn) > MAX_PARAMS) {
    fprintf(stderr, "torch-parity: %s: %s\n", r.path,
            rnn ? "too many parameters" : cr_ctx_error(r.ctx));
    goto done;
  }
  for (int i = 0; i < cr_rnn_num_params(rnn); i++) {
    cr_tensor *p = cr_rnn_param(rnn, i);
    if (!bias && !strncmp(cr_rnn_param_name(rnn, i), "bias_", 5)) {
      /* PyTorch's bias=False: the same function as biases held at zero */
      cr_set_requires_grad(p, false);
      if (cr_fill(r.ctx, p, 0.0) != CR_OK)
        goto done;
      continue;
    }
    if (cr_st_read_into(r.ctx, r.f, cr_rnn_param_name(rnn, i), p) != CR_OK) {
      fprintf(stderr, "torch-parity: %s\n", cr_ctx_error(r.ctx));
      goto done;
    }
  }
  int S = cell->n_states;
  const char *state_names[2] = {"h0", "c0"}, *final_names[2] = {"h_n", "c_n"};
  const char *lw_names[2] = {"loss_w.h_n", "loss_w.c_n"};
  if (!(input = load(&r, "input")) || !(lw_out = load(&r, "loss_w.output")))
    goto done;
  if (cr_ndim(input) != 3 || cr_dim(input, 2) != I || cr_dim(input, batch_first) > MAX_BATCH) {
    char s[64];
    cr_shape_str(s, sizeof s, cr_ndim(input), cr_shape(input));
    fprintf(stderr, "torch-parity: %s: 'input' is %s, expected [%s,%ld] (B <= %d)\n", r.path, s,
            batch_first ? "B,T" : "T,B", I, MAX_BATCH);
    goto done;
  }
  const int64_t T = cr_dim(input, batch_first ? 1 : 0), B = cr_dim(input, batch_first ? 0 : 1);
  static int64_t lengths[MAX_BATCH];
  int has_lengths = meta_lengths(&r, T, B, lengths);
  if (has_lengths < 0)
    goto done;
  for (int s = 0; s < S; s++)
    if (!(init[s] = load(&r, state_names[s])) || !(lw_fin[s] = load(&r, lw_names[s])))
      goto done;
  cr_set_requires_grad(input, true);
  for (int s = 0; s < S; s++)
    cr_set_requires_grad(init[s], true);

  char proj[32] = "";
  if (P)
    snprintf(proj, sizeof proj, ", proj %ld", P);
  printf("torch-parity %s: %s%s, %ld layer%s, input %ld, hidden %ld%s, T=%lld, B=%lld%s%s%s, "
         "%s, tolerance %g\n",
         r.path, bidir ? "bidirectional " : "", cell->name, L, L == 1 ? "" : "s", I, H, proj,
         (long long)T, (long long)B, batch_first ? ", batch first" : "",
         has_lengths ? ", lengths " : "", has_lengths ? cr_st_meta(r.f, "lengths") : "",
         cr_dtype_name(r.dt), r.tol);
  cr_tensor *out = NULL, *fin[2] = {NULL, NULL};
  if (cr_rnn_forward(r.ctx, rnn, input, init, has_lengths ? lengths : NULL, NULL, &out, fin) !=
      CR_OK) {
    fprintf(stderr, "torch-parity: %s: %s\n", r.path, cr_ctx_error(r.ctx));
    goto done;
  }
  /* loss = sum(output * w_out) + sum(h_n * w_h) [+ sum(c_n * w_c)] */
  cr_tensor *loss = cr_sum(r.ctx, cr_mul(r.ctx, out, lw_out));
  for (int s = 0; s < S; s++)
    loss = cr_add(r.ctx, loss, cr_sum(r.ctx, cr_mul(r.ctx, fin[s], lw_fin[s])));
  if (!loss || cr_backward(r.ctx, loss) != CR_OK) {
    fprintf(stderr, "torch-parity: %s: %s\n", r.path, cr_ctx_error(r.ctx));
    goto done;
  }
  bool complete = compare(&r, "output", out) && compare(&r, "loss", loss);
  for (int s = 0; s < S; s++)
    complete = complete && compare(&r, final_names[s], fin[s]);
  char gname[80];
  for (int i = 0; complete && i < cr_rnn_num_params(rnn); i++) {
    if (!cr_requires_grad(cr_rnn_param(rnn, i)))
      continue; /* not in the file (bias = 0) */
    snprintf(gname, sizeof gname, "grad.%s", cr_rnn_param_name(rnn, i));
    complete = compare(&r, gname, cr_grad(cr_rnn_param(rnn, i)));
  }
  complete = complete && compare(&r, "grad.input", cr_grad(input));
  for (int s = 0; complete && s < S; s++) {
    snprintf(gname, sizeof gname, "grad.%s", state_names[s]);
    complete = compare(&r, gname, cr_grad(init[s]));
  }
  const char *check = cr_st_meta(r.f, "check");
  if (complete && check && !strcmp(check, "hvp"))
    complete = check_hvp(&r, rnn, loss, input, init, S, state_names);
  if (!complete)
    goto done;
  printf("%s: worst relative error %.3e (tolerance %g): %s\n", r.path, r.worst, r.tol,
         r.failures ? "MISMATCH" : "match");
  rc = r.failures ? 1 : 0;
done:
  cr_tensor_free(input);
  cr_tensor_free(lw_out);
  for (int s = 0; s < 2; s++) {
    cr_tensor_free(init[s]);
    cr_tensor_free(lw_fin[s]);
  }
  cr_rnn_free(rnn);
  cr_st_close(r.f);
  cr_rng_free(rng);
  cr_ctx_free(r.ctx);
  return rc;
}
