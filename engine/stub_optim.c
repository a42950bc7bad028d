/* TEMPORARY stub */
#include "optim.h"
eng_err optimizer_new(optimizer **out, tensor *const *params, int n, const opt_config *cfg)
{ (void)out; (void)params; (void)n; (void)cfg; return err_set(E_INTERNAL, "not implemented yet"); }
eng_err optimizer_step(optimizer *o) { (void)o; return E_INTERNAL; }
eng_err optimizer_zero_grad(optimizer *o, bool set_to_none) { (void)o; (void)set_to_none; return E_INTERNAL; }
double optimizer_get_lr(const optimizer *o) { (void)o; return 0; }
eng_err optimizer_set_lr(optimizer *o, double lr) { (void)o; (void)lr; return E_INTERNAL; }
void optimizer_retain(optimizer *o) { (void)o; }
void optimizer_release(optimizer *o) { (void)o; }
