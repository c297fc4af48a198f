/* fused_impl.h — what the two halves of the fused-chain op share: a
 * chain as built (fused_chain.c) and as run and differentiated (fused.c). */
#ifndef CR_FUSED_IMPL_H
#define CR_FUSED_IMPL_H

#include "op.h"

#include "chainrule/fused.h"

/* the rows of elementwise.def, numbered as unary.c and binary.c number them */
enum {
#define CR_UNARY(ID, name, FWD, DER, READS, GRAPH) FU_##ID,
#include "elementwise.def"
#undef CR_UNARY
  FU_COUNT
};
enum {
#define CR_BINARY(ID, name, FWD, READS, GA, GB, GRAPH_A, GRAPH_B) FB_##ID,
#include "elementwise.def"
#undef CR_BINARY
  FB_COUNT
};

/* one op of a chain: result slot = n_in + its index */
typedef struct {
  bool binary;
  bool saved; /* its values are kept from the forward for the VJP (below) */
  int kind;
  int x, y; /* operand slots (y: binary only) */
  double a, b;
  uint32_t reads; /* what its derivative reads: its row's READS (RX, RY, RAB) */
} fused_step;

typedef struct {
  int n_in, n_ops; /* n_in: input slots (an input of k column blocks has k) */
  int n_tensors;   /* inputs to apply to */
  int8_t tensor_of[CR_FUSED_MAX_INPUTS], block_of[CR_FUSED_MAX_INPUTS]; /* of each input slot */
  int8_t blocks[CR_FUSED_MAX_INPUTS];                                   /* of each input tensor */
  uint64_t need; /* bit s: the VJP needs slot s's values (saved or recomputed) */
  fused_step ops[CR_FUSED_MAX_OPS];
} fused_prog;

struct cr_fused {
  fused_prog prog;
  char err[192];
};

#define SLOTS (CR_FUSED_MAX_INPUTS + CR_FUSED_MAX_OPS)

/* Decide what the VJP keeps and recomputes (fills each op's saved and the
 * chain's need); cr_fused_op does it as each op comes. */
void cr__fused_plan(fused_prog *p);
/* the ops (bit j) the VJP runs again: needed and not saved */
uint64_t cr__fused_recomputed(const fused_prog *p);

#endif
