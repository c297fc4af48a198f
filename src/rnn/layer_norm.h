/* layer_norm.h — layer normalisation from ops, for the cells (layer_norm.c). */
#ifndef CHAINRULE_LAYER_NORM_H
#define CHAINRULE_LAYER_NORM_H

#include "chainrule/rnn.h"
#include "internal.h"

/* (v - mean(v)) / sqrt(var(v) + eps) over the last axis (population variance). */
cr_tensor *cr__layer_norm(cr_ctx *ctx, cr_tensor *v, double eps);
/* The same for each of the G groups of the last axis (its size a multiple of G). */
cr_tensor *cr__layer_norm_groups(cr_ctx *ctx, cr_tensor *v, int G, double eps);

#endif
