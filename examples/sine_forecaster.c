#include <chainrule.h>
#include <math.h>
#include <stdio.h>

int main(void) { /* an LSTM learns to continue sine waves: x_t -> x_{t+1} */
  cr_ctx *ctx = cr_ctx_new();
  cr_rng *rng = cr_rng_new(1);
  cr_rnn_config lstm = {&cr_cell_lstm, 1, 32, 1, 0, true, CR_F32}; /* in 1, hidden 32, [B,T,.] */
  cr_module *net = cr_module_new(ctx, "Forecaster");
  cr_module *rnn = cr_module_add(ctx, net, "rnn", cr_nn_rnn(ctx, &lstm, NULL, rng));
  cr_module *head = cr_module_add(ctx, net, "head", cr_nn_linear(ctx, 32, 1, true, CR_F32, rng));
  cr_optim *opt = cr_module_optim(ctx, net, CR_ADAM, 1e-2);
  float x[16][33]; /* 16 windows of 33 samples, each at its own phase */
  for (int step = 0; opt && step <= 300 && !cr_ctx_status(ctx); step++, cr_ctx_reset(ctx)) {
    for (int i = 0; i < 16 * 33; i++)
      x[i / 33][i % 33] = sinf(0.3f * (float)(i % 33) + 2.4f * (float)(i / 33) + (float)step);
    cr_tensor *seq = cr_from_f32(ctx, CR_SHAPE(16, 33, 1), &x[0][0]);
    cr_tensor *h = cr_module_forward(ctx, rnn, cr_slice(ctx, seq, 1, 0, 32, 1)); /* [16,32,32] */
    cr_tensor *loss = cr_mse(ctx, cr_module_forward(ctx, head, h), cr_slice(ctx, seq, 1, 1, 33, 1));
    cr_module_zero_grad(net);
    if (cr_backward(ctx, loss) == CR_OK && cr_optim_step(ctx, opt) == CR_OK && step % 100 == 0)
      printf("step %d: mse %.5f\n", step, cr_item(loss));
  }
  cr_checkpoint ck = {.model = net, .optim = opt, .rng = rng}; /* cr_checkpoint_load reads it */
  if (cr_ctx_status(ctx) || cr_checkpoint_save(ctx, &ck, "forecaster.safetensors"))
    fprintf(stderr, "%s\n", cr_ctx_error(ctx));
  cr_module_print(stdout, net);
  cr_optim_free(opt), cr_module_free(net), cr_rng_free(rng), cr_ctx_free(ctx);
}
