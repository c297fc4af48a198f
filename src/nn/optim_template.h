/* optim_template.h — instantiates a family's kernels, the file named by
 * OPT_KERNELS, for T = float and for T = double.  Inside that file
 * OPT_FN(name) is name_f or name_d, and FMA and SQRT are T's fused
 * multiply-add and square root.  No include guard: a family's .c includes
 * it once, after defining OPT_KERNELS. */
#define OPT_CAT2(a, b) a##b
#define OPT_CAT(a, b) OPT_CAT2(a, b)
#define OPT_FN(name) OPT_CAT(name, SFX)

#define T float
#define SFX _f
#define FMA fmaf
#define SQRT sqrtf
#include OPT_KERNELS
#undef T
#undef SFX
#undef FMA
#undef SQRT

#define T double
#define SFX _d
#define FMA fma
#define SQRT sqrt
#include OPT_KERNELS
#undef T
#undef SFX
#undef FMA
#undef SQRT

#undef OPT_FN
#undef OPT_CAT
#undef OPT_CAT2
