/* registry.h — access to the table of all ops (tests, teaching tools). */
#ifndef CHAINRULE_REGISTRY_H
#define CHAINRULE_REGISTRY_H

#include "op.h"

int cr__op_count(void);
/* The i-th op descriptor (0 <= i < count), else NULL. */
const cr_op_desc *cr__op_at(int i);

#endif
