/* mgu.h — the minimal gated unit (Zhou et al., 2016), a recurrent cell that
 * no other framework ships, defined with chainrule's public cell API.
 *
 *   f  = sigmoid(x W_f^T + b_f + h U_f^T)
 *   n  = tanh(x W_n^T + b_n + (f * h) U_n^T)
 *   h' = (1 - f) * h + f * n
 *
 * Parameters per layer: weight_ih [2H, I] (rows: W_f then W_n),
 * bias_ih [2H], weight_hf [H, H] (U_f), weight_hn [H, H] (U_n). */
#ifndef CHAINRULE_EXAMPLE_MGU_H
#define CHAINRULE_EXAMPLE_MGU_H

#include "chainrule.h"

extern const cr_cell_def mgu_cell;

#endif
