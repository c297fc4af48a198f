/* fused_chain.c — building a fused chain (chainrule/fused.h): ops by name
 * on numbered slots, checked as they come, and the plan of what its VJP
 * keeps from the forward. */
#include "fused_impl.h"

static const char *const unary_names[FU_COUNT] = {
#define CR_UNARY(ID, name, FWD, DER, READS, GRAPH) #name,
#include "elementwise.def"
#undef CR_UNARY
};
static const char *const binary_names[FB_COUNT] = {
#define CR_BINARY(ID, name, FWD, READS, GA, GB, GRAPH_A, GRAPH_B) #name,
#include "elementwise.def"
#undef CR_BINARY
};
static const uint32_t unary_reads[FU_COUNT] = {
#define CR_UNARY(ID, name, FWD, DER, READS, GRAPH) READS,
#include "elementwise.def"
#undef CR_UNARY
};
static const uint32_t binary_reads[FB_COUNT] = {
#define CR_BINARY(ID, name, FWD, READS, GA, GB, GRAPH_A, GRAPH_B) READS,
#include "elementwise.def"
#undef CR_BINARY
};

cr_fused *cr_fused_new_blocks(int n_inputs, const int *blocks) {
  if (n_inputs < 1 || n_inputs > CR_FUSED_MAX_INPUTS)
    return NULL;
  int slots = 0;
  for (int k = 0; k < n_inputs; k++) {
    const int b = blocks ? blocks[k] : 1;
    if (b < 1 || slots + b > CR_FUSED_MAX_INPUTS)
      return NULL;
    slots += b;
  }
  cr_fused *f = calloc(1, sizeof *f);
  if (!f)
    return NULL;
  fused_prog *p = &f->prog;
  p->n_tensors = n_inputs;
  for (int k = 0; k < n_inputs; k++) {
    p->blocks[k] = (int8_t)(blocks ? blocks[k] : 1);
    for (int b = 0; b < p->blocks[k]; b++) {
      p->tensor_of[p->n_in] = (int8_t)k;
      p->block_of[p->n_in++] = (int8_t)b;
    }
  }
  return f;
}

cr_fused *cr_fused_new(int n_inputs) { return cr_fused_new_blocks(n_inputs, NULL); }

void cr_fused_free(cr_fused *f) { free(f); }

const char *cr_fused_error(const cr_fused *f) {
  return !f ? "no chain (NULL)" : f->err[0] ? f->err : NULL;
}

/* keep the first error of a chain (op name, then what is wrong) */
static int step_fail(cr_fused *f, const char *name, const char *why, int slot) {
  if (!f->err[0])
    snprintf(f->err, sizeof f->err, "%s (op %d of the chain): %s", name, f->prog.n_ops, why);
  if (slot >= 0)
    snprintf(f->err + strlen(f->err), sizeof f->err - strlen(f->err), " (slot %d)", slot);
  return -1;
}

int cr_fused_op(cr_fused *f, const char *name, int x, int y, double a, double b) {
  if (!f)
    return -1;
  if (f->err[0])
    return -1; /* the first error stands */
  if (!name)
    return step_fail(f, "(null)", "no op name", -1);
  fused_prog *p = &f->prog;
  if (p->n_ops == CR_FUSED_MAX_OPS)
    return step_fail(f, name, "the chain is full (CR_FUSED_MAX_OPS ops)", -1);
  fused_step s = {.x = x, .y = -1, .a = a, .b = b, .kind = -1};
  for (int k = 0; k < FU_COUNT; k++)
    if (!strcmp(name, unary_names[k])) {
      s.kind = k;
      s.reads = unary_reads[k];
    }
  for (int k = 0; k < FB_COUNT && s.kind < 0; k++)
    if (!strcmp(name, binary_names[k])) {
      s.kind = k;
      s.binary = true;
      s.y = y;
      s.reads = binary_reads[k];
    }
  if (s.kind < 0)
    return step_fail(f, name,
                     "not an elementwise op (a unary op by its name, or add, sub, mul, div, "
                     "maximum, minimum)",
                     -1);
  const int have = p->n_in + p->n_ops;
  if (x < 0 || x >= have)
    return step_fail(f, name, "its operand does not exist yet", x);
  if (s.binary && (y < 0 || y >= have))
    return step_fail(f, name, "its second operand does not exist yet", y);
  p->ops[p->n_ops++] = s;
  cr__fused_plan(p); /* the chain so far, as its VJP would run it */
  return have;
}

/* What the VJP needs of the forward.  Op j's derivative reads its
 * operands (RX, RAB) and/or its result (RY).  A result read so (sigmoid,
 * tanh, exp, sqrt: what their unfused VJPs keep too) is saved by the
 * forward (the chain's own result is the node's output); every other value needed is
 * recomputed from what it is made of: ops of a flop or two, on values in
 * cache.  need: the slots whose values the VJP uses, saved or recomputed
 * (an input outside it is not read, so a recurrent layer may release it). */
void cr__fused_plan(fused_prog *p) {
  uint64_t need = 0;
  for (int j = p->n_ops - 1; j >= 0; j--) {
    fused_step *s = &p->ops[j];
    const int sy = p->n_in + j;
    s->saved = !s->binary && (s->reads & CR__READS_OUT);
    if (s->reads & CR__READS_OUT)
      need |= 1ull << sy;
    if (s->reads & CR__READS_IN(0))
      need |= 1ull << s->x;
    if (s->binary && (s->reads & CR__READS_IN(1)))
      need |= 1ull << s->y;
    if ((need >> sy & 1) && !s->saved) /* recomputed: from its operands */
      need |= 1ull << s->x | (s->binary ? 1ull << s->y : 0);
  }
  p->need = need;
}

uint64_t cr__fused_recomputed(const fused_prog *p) {
  uint64_t m = 0;
  for (int j = 0; j < p->n_ops; j++)
    if ((p->need >> (p->n_in + j) & 1) && !p->ops[j].saved)
      m |= 1ull << j;
  return m;
}
