/*
 * test_optim.c: SGD, Adam and AdamW against PyTorch 1.13 (optim_cases.h), hyper-parameter
 * and parameter checks, failing steps that change nothing, zero_grad, threads and strides.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "harness.h"
#include "optim_cases.h"
/* White-box: a .grad that no longer matches its parameter cannot be made through the ABI
 * (ag_tensor_set_grad checks both), so one test edits a grad's header directly. */
#include "../../engine/tensor.h"

static ag_tensor *param(ag_dtype dt, const double *data, const int64_t *shape, size_t ndim)
{
    ag_tensor *p = tensor_f64(data, shape, ndim, dt);
    OK(ag_tensor_set_requires_grad(p, 1));
    return p;
}

static void set_grad(ag_tensor *p, ag_dtype dt, const double *data, const int64_t *shape,
                     size_t ndim)
{
    ag_tensor *g = tensor_f64(data, shape, ndim, dt);
    OK(ag_tensor_set_grad(p, g));
    ag_tensor_release(g);
}

static int64_t version(const ag_tensor *t)
{
    int64_t v = -1;
    OK(ag_tensor_version(&v, t));
    return v;
}

/* Every element within `rel` of want, relatively. */
static void check_rel(const char *what, int step, const ag_tensor *t, const double *want,
                      int64_t n, double rel)
{
    int64_t got_n;
    double *got = values(t, &got_n);
    CHECK(got_n == n);
    for (int64_t i = 0; i < n && i < got_n; i++) {
        if (!(fabs(got[i] - want[i]) <= rel * fabs(want[i]))) {
            fprintf(stderr, "%s, step %d: element %lld = %.17g, expected %.17g\n", what, step + 1,
                    (long long)i, got[i], want[i]);
            harness_failures++;
            break;
        }
    }
    free(got);
}

static int make(ag_optimizer **o, const optim_case *c, ag_tensor *const *ps, size_t n)
{
    switch (c->kind) {
    case 0:
        return ag_optimizer_sgd(o, ps, n, c->lr, c->momentum, c->dampening, c->weight_decay,
                                c->nesterov);
    case 1:
        return ag_optimizer_adam(o, ps, n, c->lr, c->beta1, c->beta2, c->eps, c->weight_decay,
                                 c->amsgrad);
    default:
        return ag_optimizer_adamw(o, ps, n, c->lr, c->beta1, c->beta2, c->eps, c->weight_decay,
                                  c->amsgrad);
    }
}

static const int64_t s23[2] = {2, 3}, s4[1] = {4}, s3[1] = {3};

/* Each case: 5 steps on two parameters whose grads change every step, plus a third parameter
 * that never gets a grad and must stay untouched. The results must equal PyTorch's bit for bit
 * (float32 and float64): optim.c rounds each operation as PyTorch's CPU kernels do, and a
 * multiply-add contracted by the compiler (AdamW's decay, at -O3 with FMA) is off by an ulp. */
static void pytorch_cases(void)
{
    static const double third[3] = {0.5, -1.5, 2.5};
    for (size_t k = 0; k < sizeof oc_cases / sizeof oc_cases[0]; k++) {
        const optim_case *c = &oc_cases[k];
        ag_dtype dt = c->f64 ? AG_FLOAT64 : AG_FLOAT32;
        double rel = 0;
        ag_tensor *ps[3] = {param(dt, oc_init1, s23, 2), param(dt, oc_init2, s4, 1),
                            param(dt, third, s3, 1)};
        ag_optimizer *o = NULL;
        OK(make(&o, c, ps, 3));
        if (!o) continue;
        int64_t v3 = version(ps[2]);
        for (int s = 0; s < OC_STEPS; s++) {
            set_grad(ps[0], dt, oc_grad1[s], s23, 2);
            set_grad(ps[1], dt, oc_grad2[s], s4, 1);
            int64_t v0 = version(ps[0]), v1 = version(ps[1]);
            OK(ag_optimizer_step(o));
            CHECK(version(ps[0]) > v0);
            CHECK(version(ps[1]) > v1);
            check_rel(c->name, s, ps[0], c->want1[s], 6, rel);
            check_rel(c->name, s, ps[1], c->want2[s], 4, rel);
        }
        check_rel(c->name, OC_STEPS, ps[2], third, 3, 0);
        CHECK(version(ps[2]) == v3);
        ag_tensor *g = NULL;
        OK(ag_tensor_grad(&g, ps[2]));
        CHECK(g == NULL);
        ag_optimizer_release(o);
        for (int i = 0; i < 3; i++) ag_tensor_release(ps[i]);
    }
}

#define FAILS_MSG(status, call, msg)                                                       \
    do {                                                                                   \
        FAILS(status, call);                                                               \
        CHECK_STR(ag_last_error(), msg);                                                   \
    } while (0)

static void invalid_config(void)
{
    ag_tensor *p = param(AG_FLOAT32, oc_init2, s4, 1);
    ag_optimizer *o = NULL; /* must stay as it is on failure */
    FAILS_MSG(AG_EINVAL, ag_optimizer_sgd(&o, &p, 1, -1, 0, 0, 0, 0),
              "ag_optimizer_sgd: Invalid learning rate: -1.0");
    FAILS_MSG(AG_EINVAL, ag_optimizer_sgd(&o, &p, 1, NAN, 0, 0, 0, 0),
              "ag_optimizer_sgd: Invalid learning rate: nan");
    FAILS_MSG(AG_EINVAL, ag_optimizer_sgd(&o, &p, 1, 0.1, -0.5, 0, 0, 0),
              "ag_optimizer_sgd: Invalid momentum value: -0.5");
    FAILS_MSG(AG_EINVAL, ag_optimizer_sgd(&o, &p, 1, 0.1, 0, 0, -0.01, 0),
              "ag_optimizer_sgd: Invalid weight_decay value: -0.01");
    FAILS_MSG(AG_EINVAL, ag_optimizer_sgd(&o, &p, 1, 0.1, 0, 0, 0, 1),
              "ag_optimizer_sgd: Nesterov momentum requires a momentum and zero dampening");
    FAILS_MSG(AG_EINVAL, ag_optimizer_sgd(&o, &p, 1, 0.1, 0.9, 0.1, 0, 1),
              "ag_optimizer_sgd: Nesterov momentum requires a momentum and zero dampening");
    FAILS_MSG(AG_EINVAL, ag_optimizer_adam(&o, &p, 1, -1, 0.9, 0.999, 1e-8, 0, 0),
              "ag_optimizer_adam: Invalid learning rate: -1.0");
    FAILS_MSG(AG_EINVAL, ag_optimizer_adam(&o, &p, 1, 1e-3, 0.9, 0.999, -1e-8, 0, 0),
              "ag_optimizer_adam: Invalid epsilon value: -1e-08");
    FAILS_MSG(AG_EINVAL, ag_optimizer_adam(&o, &p, 1, 1e-3, 1, 0.999, 1e-8, 0, 0),
              "ag_optimizer_adam: Invalid beta parameter at index 0: 1.0");
    FAILS_MSG(AG_EINVAL, ag_optimizer_adam(&o, &p, 1, 1e-3, 0.9, -0.1, 1e-8, 0, 0),
              "ag_optimizer_adam: Invalid beta parameter at index 1: -0.1");
    FAILS_MSG(AG_EINVAL, ag_optimizer_adam(&o, &p, 1, 1e-3, 0.9, 0.999, 1e-8, -1, 0),
              "ag_optimizer_adam: Invalid weight_decay value: -1.0");
    FAILS_MSG(AG_EINVAL, ag_optimizer_adamw(&o, &p, 1, 1e-3, -0.5, 0.999, 1e-8, 0.01, 0),
              "ag_optimizer_adamw: Invalid beta parameter at index 0: -0.5");
    FAILS_MSG(AG_EINVAL, ag_optimizer_adamw(&o, &p, 1, 1e-3, 0.9, 0.999, 1e-8, INFINITY, 0),
              "ag_optimizer_adamw: Invalid weight_decay value: inf");
    /* Numbers as Python's repr writes them, as in PyTorch's messages (str.format of a float):
     * torch.optim.SGD([p], lr=-0.123456789) -> "Invalid learning rate: -0.123456789". */
    static const struct {
        double v;
        const char *text;
    } reprs[] = {{-0.123456789, "-0.123456789"}, {-0.1, "-0.1"}, {-1e-05, "-1e-05"},
                 {-0.0001, "-0.0001"}, {-1e15, "-1000000000000000.0"}, {-1e16, "-1e+16"},
                 {-1.0 / 3, "-0.3333333333333333"}, {-123.25, "-123.25"},
                 {-5e-324, "-5e-324"}, {-1.7976931348623157e308, "-1.7976931348623157e+308"},
                 {-INFINITY, "-inf"}};
    for (size_t k = 0; k < sizeof reprs / sizeof reprs[0]; k++) {
        char want[96];
        snprintf(want, sizeof want, "ag_optimizer_sgd: Invalid learning rate: %s", reprs[k].text);
        FAILS_MSG(AG_EINVAL, ag_optimizer_sgd(&o, &p, 1, reprs[k].v, 0, 0, 0, 0), want);
    }
    CHECK(o == NULL);

    /* set_lr */
    OK(ag_optimizer_sgd(&o, &p, 1, 0.1, 0, 0, 0, 0));
    double lr = 0;
    FAILS_MSG(AG_EINVAL, ag_optimizer_set_lr(o, -2),
              "ag_optimizer_set_lr: Invalid learning rate: -2.0");
    FAILS(AG_EINVAL, ag_optimizer_set_lr(o, INFINITY));
    FAILS(AG_EINVAL, ag_optimizer_set_lr(o, NAN));
    OK(ag_optimizer_get_lr(&lr, o));
    CHECK(lr == 0.1);
    OK(ag_optimizer_set_lr(o, 0.5));
    OK(ag_optimizer_get_lr(&lr, o));
    CHECK(lr == 0.5);
    static const double ones[4] = {1, 1, 1, 1};
    set_grad(p, AG_FLOAT32, ones, s4, 1);
    OK(ag_optimizer_step(o)); /* p - 0.5 * 1 */
    double want[4];
    for (int i = 0; i < 4; i++) want[i] = (double)(float)(oc_init2[i] - 0.5);
    check_rel("set_lr", 0, p, want, 4, 1e-7);
    ag_optimizer_release(o);
    ag_tensor_release(p);
}

static void invalid_params(void)
{
    ag_tensor *p = param(AG_FLOAT32, oc_init2, s4, 1), *r, *i64, *nograd;
    ag_optimizer *o = NULL;
    FAILS_MSG(AG_EINVAL, ag_optimizer_sgd(&o, &p, 0, 0.1, 0, 0, 0, 0),
              "ag_optimizer_sgd: optimizer got an empty parameter list");
    FAILS(AG_EINVAL, ag_optimizer_sgd(&o, NULL, 1, 0.1, 0, 0, 0, 0));
    FAILS(AG_EINVAL, ag_optimizer_sgd(NULL, &p, 1, 0.1, 0, 0, 0, 0));
    OK(ag_mul_scalar(&r, p, 2.0)); /* non-leaf */
    ag_tensor *two[2] = {p, r};
    FAILS_MSG(AG_ELEAF, ag_optimizer_adam(&o, two, 2, 1e-3, 0.9, 0.999, 1e-8, 0, 0),
              "ag_optimizer_adam: can't optimize a non-leaf Tensor (params[1])");
    OK(ag_zeros(&i64, AG_INT64, s4, 1));
    two[1] = i64;
    FAILS_MSG(AG_EDTYPE, ag_optimizer_sgd(&o, two, 2, 0.1, 0, 0, 0, 0),
              "ag_optimizer_sgd: optimizer can only optimize Tensors of floating point dtype, "
              "but params[1] is int64");
    ag_tensor *three[3] = {p, NULL, p};
    FAILS_MSG(AG_EINVAL, ag_optimizer_sgd(&o, three, 3, 0.1, 0, 0, 0, 0),
              "ag_optimizer_sgd: params[1] is NULL");
    OK(ag_zeros(&nograd, AG_FLOAT64, s3, 1));
    three[1] = nograd;
    FAILS_MSG(AG_EINVAL, ag_optimizer_sgd(&o, three, 3, 0.1, 0, 0, 0, 0),
              "ag_optimizer_sgd: params[0] and params[2] are the same tensor");
    /* An expanded leaf: in-place updates would write one element many times. */
    ag_tensor *one, *wide;
    const int64_t s1[1] = {1};
    OK(ag_zeros(&one, AG_FLOAT32, s1, 1));
    OK(ag_expand(&wide, one, s3, 1));
    FAILS(AG_EINVAL, ag_optimizer_sgd(&o, &wide, 1, 0.1, 0, 0, 0, 0));
    CHECK(strstr(ag_last_error(), "single memory location (params[0])") != NULL);
    ag_tensor_release(wide);
    ag_tensor_release(one);
    CHECK(o == NULL);
    /* A float leaf that does not require grad is accepted, as in PyTorch. */
    OK(ag_optimizer_sgd(&o, three + 1, 1, 0.1, 0, 0, 0, 0));
    OK(ag_optimizer_step(o));
    ag_optimizer_release(o);
    ag_tensor_release(nograd);
    ag_tensor_release(i64);
    ag_tensor_release(r);
    ag_tensor_release(p);
}

/* A step that fails on the second parameter leaves the first (and every state) untouched:
 * the next good steps give PyTorch's values from step 1 on. */
static void failing_step(void)
{
    const optim_case *c = NULL;
    for (size_t k = 0; k < sizeof oc_cases / sizeof oc_cases[0]; k++)
        if (!strcmp(oc_cases[k].name, "adamw amsgrad")) c = &oc_cases[k];
    CHECK(c != NULL);
    if (!c) return;
    ag_tensor *ps[2] = {param(AG_FLOAT32, oc_init1, s23, 2), param(AG_FLOAT32, oc_init2, s4, 1)};
    ag_optimizer *o;
    OK(make(&o, c, ps, 2));
    for (int bad = 0; bad < 2; bad++) {
        set_grad(ps[0], AG_FLOAT32, oc_grad1[0], s23, 2);
        set_grad(ps[1], AG_FLOAT32, oc_grad2[0], s4, 1);
        ag_tensor *g;
        OK(ag_tensor_grad(&g, ps[1]));
        tensor *t = (tensor *)g;
        int64_t v0 = version(ps[0]), v1 = version(ps[1]);
        if (bad == 0) {
            t->shape[0] = 3;
            t->numel = 3;
            FAILS(AG_ESHAPE, ag_optimizer_step(o));
            CHECK_STR(ag_last_error(), "ag_optimizer_step: params[1] has a gradient of shape [3], "
                                       "expected [4]");
            t->shape[0] = 4;
            t->numel = 4;
        } else {
            t->dtype = DT_F64;
            FAILS(AG_EDTYPE, ag_optimizer_step(o));
            CHECK_STR(ag_last_error(), "ag_optimizer_step: params[1] has a gradient of dtype "
                                       "float64, expected float32");
            t->dtype = DT_F32;
        }
        ag_tensor_release(g);
        CHECK(version(ps[0]) == v0 && version(ps[1]) == v1);
        check_rel("failed step", 0, ps[0], oc_init1, 6, 0);
        check_rel("failed step", 0, ps[1], oc_init2, 4, 0);
    }
    for (int s = 0; s < OC_STEPS; s++) {
        set_grad(ps[0], AG_FLOAT32, oc_grad1[s], s23, 2);
        set_grad(ps[1], AG_FLOAT32, oc_grad2[s], s4, 1);
        OK(ag_optimizer_step(o));
        check_rel("after failed step", s, ps[0], c->want1[s], 6, 1e-6);
        check_rel("after failed step", s, ps[1], c->want2[s], 4, 1e-6);
    }
    ag_optimizer_release(o);
    ag_tensor_release(ps[0]);
    ag_tensor_release(ps[1]);
}

static void zero_grad(void)
{
    ag_tensor *ps[3] = {param(AG_FLOAT32, oc_init1, s23, 2), param(AG_FLOAT64, oc_init2, s4, 1),
                        param(AG_FLOAT32, oc_init2, s4, 1)};
    ag_optimizer *o;
    OK(ag_optimizer_adam(&o, ps, 3, 1e-3, 0.9, 0.999, 1e-8, 0, 0));
    set_grad(ps[0], AG_FLOAT32, oc_grad1[0], s23, 2);
    set_grad(ps[1], AG_FLOAT64, oc_grad2[0], s4, 1);
    ag_tensor *g0, *g1, *g;
    OK(ag_tensor_grad(&g0, ps[0]));
    OK(ag_tensor_grad(&g1, ps[1]));
    int64_t gv = version(g0);
    OK(ag_optimizer_zero_grad(o, 0)); /* in place: the same tensors, now zero */
    CHECK(version(g0) > gv);
    static const double zeros[6] = {0};
    OK(ag_tensor_grad(&g, ps[0]));
    CHECK(g == g0);
    ag_tensor_release(g);
    check_rel("zero_grad", 0, g0, zeros, 6, 0);
    check_rel("zero_grad", 0, g1, zeros, 4, 0);
    OK(ag_tensor_grad(&g, ps[2]));
    CHECK(g == NULL);
    /* Zero grads still count as grads: Adam's state starts (and p moves by 0). */
    OK(ag_optimizer_step(o));
    check_rel("zero step", 0, ps[0], oc_init1, 6, 0);
    OK(ag_optimizer_zero_grad(o, 1)); /* set_to_none */
    OK(ag_tensor_grad(&g, ps[0]));
    CHECK(g == NULL);
    OK(ag_tensor_grad(&g, ps[1]));
    CHECK(g == NULL);
    check_rel("kept by the caller", 0, g1, zeros, 4, 0);
    ag_tensor_release(g0);
    ag_tensor_release(g1);

    /* A .grad with history (create_graph) is detached as well as zeroed. */
    ag_tensor *sq, *sum;
    OK(ag_mul(&sq, ps[2], ps[2]));
    OK(ag_sum(&sum, sq));
    OK(ag_backward(sum, NULL, AG_CREATE_GRAPH));
    OK(ag_tensor_grad(&g, ps[2]));
    CHECK(g && strcmp(grad_fn_name(g), "") != 0);
    ag_tensor_release(g);
    OK(ag_optimizer_zero_grad(o, 0));
    OK(ag_tensor_grad(&g, ps[2]));
    CHECK(g && strcmp(grad_fn_name(g), "") == 0);
    if (g) check_rel("detached", 0, g, zeros, 4, 0);
    ag_tensor_release(g);
    ag_tensor_release(sq);
    ag_tensor_release(sum);
    ag_optimizer_release(o);
    for (int i = 0; i < 3; i++) ag_tensor_release(ps[i]);
}

static int requires_grad(const ag_tensor *t)
{
    int r = -1;
    OK(ag_tensor_requires_grad(&r, t));
    return r;
}

/* zero_grad(set_to_none=False) works on each .grad itself, as PyTorch 1.13's does:
 *   if p.grad.grad_fn is not None: p.grad.detach_()
 *   else: p.grad.requires_grad_(False)
 *   p.grad.zero_()
 * so a handle the caller kept to the old .grad is zeroed, detached and no longer reaches its
 * graph; ag_tensor_zero_grad does the same to one tensor's .grad. Checked against torch:
 *   p = torch.tensor([1., 2., 3.], requires_grad=True)
 *   (p ** 3).sum().backward(create_graph=True); g = p.grad
 *   torch.optim.SGD([p], lr=0.1).zero_grad(set_to_none=False)
 *   g is p.grad, g.requires_grad, g.grad_fn -> True, False, None
 *   g.sum().backward() -> "element 0 of tensors does not require grad and does not have a
 *   grad_fn"; p.grad = (w * 2)[0:3] -> "Can't detach views in-place. Use detach() instead..."
 *   p.grad = L (a leaf requiring grad) -> L.requires_grad False. */
static void zero_grad_in_place(void)
{
    static const double x[3] = {1, 2, 3}, zeros[4] = {0}, ones[4] = {1, 1, 1, 1};
    const int64_t s1[1] = {3};
    for (int api = 0; api < 2; api++) { /* ag_optimizer_zero_grad, ag_tensor_zero_grad */
        ag_tensor *p = param(AG_FLOAT32, x, s1, 1), *cube, *sum, *g, *cur;
        OK(ag_pow_scalar(&cube, p, 3.0));
        OK(ag_sum(&sum, cube));
        OK(ag_backward(sum, NULL, AG_CREATE_GRAPH));
        OK(ag_tensor_grad(&g, p));
        CHECK(requires_grad(g) == 1);
        ag_optimizer *o;
        OK(ag_optimizer_sgd(&o, &p, 1, 0.1, 0, 0, 0, 0));
        int64_t v = version(g);
        OK(api == 0 ? ag_optimizer_zero_grad(o, 0) : ag_tensor_zero_grad(p));
        OK(ag_tensor_grad(&cur, p));
        CHECK(cur == g);
        ag_tensor_release(cur);
        CHECK(version(g) == v + 1);
        CHECK(requires_grad(g) == 0);
        CHECK(strcmp(grad_fn_name(g), "") == 0);
        check_rel("zeroed in place", 0, g, zeros, 3, 0);
        ag_tensor *gs;
        OK(ag_sum(&gs, g));
        FAILS_MSG(AG_ENOGRAD, ag_backward(gs, NULL, 0),
                  "ag_backward: element 0 of tensors does not require grad and does not have a "
                  "grad_fn");
        ag_tensor_release(gs);
        ag_tensor_release(g);
        ag_tensor_release(sum);
        ag_tensor_release(cube);

        /* A leaf requiring grad set as .grad stops requiring grad. */
        ag_tensor *leaf = param(AG_FLOAT32, ones, s1, 1);
        OK(ag_tensor_set_grad(p, leaf));
        OK(api == 0 ? ag_optimizer_zero_grad(o, 0) : ag_tensor_zero_grad(p));
        CHECK(requires_grad(leaf) == 0);
        check_rel("leaf grad", 0, leaf, zeros, 3, 0);
        ag_tensor_release(leaf);

        /* A view with a grad_fn cannot be detached in place: refused, and nothing changes,
         * not even the parameters before it (PyTorch zeroes those before it fails). */
        ag_tensor *q = param(AG_FLOAT32, x, s1, 1);
        const int64_t s4b[1] = {4};
        ag_tensor *w4 = param(AG_FLOAT32, ones, s4b, 1), *w2, *view;
        OK(ag_mul_scalar(&w2, w4, 2.0));
        OK(ag_slice(&view, w2, 0, 0, 3, 1));
        set_grad(p, AG_FLOAT32, x, s1, 1);
        OK(ag_tensor_set_grad(q, view));
        ag_optimizer *o2;
        ag_tensor *two[2] = {p, q};
        OK(ag_optimizer_sgd(&o2, two, 2, 0.1, 0, 0, 0, 0));
        if (api == 0)
            FAILS_MSG(AG_EINVAL, ag_optimizer_zero_grad(o2, 0),
                      "ag_optimizer_zero_grad: Can't detach views in-place. Use detach() "
                      "instead. (the .grad of params[1])");
        else
            FAILS_MSG(AG_EINVAL, ag_tensor_zero_grad(q),
                      "ag_tensor_zero_grad: Can't detach views in-place. Use detach() instead.");
        OK(ag_tensor_grad(&cur, p));
        check_rel("kept", 0, cur, x, 3, 0);
        ag_tensor_release(cur);
        CHECK(strcmp(grad_fn_name(view), "SliceBackward0") == 0);
        static const double twos[3] = {2, 2, 2};
        check_rel("kept view", 0, view, twos, 3, 0);

        /* A view made under no_grad of a tensor requiring grad: zero_() refuses it under grad
         * mode, as in PyTorch; under no_grad it is zeroed, and so is that part of its base. */
        ag_tensor *ngv;
        int prev = ag_set_grad_enabled(0);
        OK(ag_slice(&ngv, w4, 0, 0, 3, 1));
        ag_set_grad_enabled(prev);
        OK(ag_tensor_set_grad(q, ngv));
        FAILS(AG_EINVAL, api == 0 ? ag_optimizer_zero_grad(o2, 0) : ag_tensor_zero_grad(q));
        CHECK(strstr(ag_last_error(), "A view was created in no_grad mode and is being modified "
                                      "inplace with grad mode enabled.") != NULL);
        check_rel("no_grad view kept", 0, w4, ones, 4, 0);
        prev = ag_set_grad_enabled(0);
        OK(api == 0 ? ag_optimizer_zero_grad(o2, 0) : ag_tensor_zero_grad(q));
        ag_set_grad_enabled(prev);
        static const double w4_after[4] = {0, 0, 0, 1};
        check_rel("no_grad view zeroed", 0, w4, w4_after, 4, 0);
        ag_tensor_release(ngv);
        ag_optimizer_release(o2);
        ag_tensor_release(view);
        ag_tensor_release(w2);
        ag_tensor_release(w4);
        ag_tensor_release(q);
        ag_optimizer_release(o);
        ag_tensor_release(p);
    }
}

/* A .grad in the parameter's own memory: PyTorch reads it after AdamW's param.mul_(1 - lr*wd)
 * and before writing p, and refuses it in plain SGD's param.add_(grad) when it overlaps p
 * other than element for element. Expected values from PyTorch 1.13 (foreach=False):
 *   p = torch.tensor([[1., -2.], [3., 0.5]], dtype=dt).requires_grad_()
 *   p.grad = p.detach()  # "same"; or p.detach().t(): "t"
 *   o = torch.optim.<kind>([p], foreach=False, **kw); 3 x o.step(); p.flatten().tolist() */
static void grad_in_param_memory(void)
{
    static const double init[4] = {1, -2, 3, 0.5};
    static const int64_t s22[2] = {2, 2};
    static const struct {
        const char *name;
        int kind, f64, transposed;
        double want[4];
    } cases[] = {
        /* AdamW(lr=0.1, betas=(0.9, 0.999), eps=1.0, weight_decay=0.5) */
        {"adamw same", 2, 0, 0,
         {0.7227107882499695, -1.5313773155212402, 2.363840103149414, 0.34097468852996826}},
        {"adamw t", 2, 0, 1,
         {0.7227107882499695, -1.9248887300491333, 2.758497714996338, 0.34097468852996826}},
        {"adamw same f64", 2, 1, 0,
         {0.7227107760044623, -1.5313772610689314, 2.3638403229568303, 0.3409747218772728}},
        {"adamw t f64", 2, 1, 1,
         {0.7227107760044623, -1.9248887507121304, 2.758497622804972, 0.3409747218772728}},
        /* Adam, same hyper-parameters (weight_decay as L2) */
        {"adam t", 1, 0, 1,
         {0.8226364254951477, -2.200005531311035, 3.1034975051879883, 0.3750808537006378}},
        {"adam t f64", 1, 1, 1,
         {0.8226364000676019, -2.200005691097574, 3.103497550076174, 0.37508084801942443}},
        /* SGD(lr=0.1, momentum=0.9, weight_decay=0.5) */
        {"sgd momentum t", 0, 0, 1,
         {0.2631250321865082, -3.1000001430511475, 3.3631248474121094, 0.1315625160932541}},
        /* SGD(lr=0.1, weight_decay=0.5) */
        {"sgd weight_decay t", 0, 0, 1,
         {0.6141250133514404, -2.5869998931884766, 3.201125144958496, 0.3070625066757202}},
        {"sgd weight_decay t f64", 0, 1, 1, {0.614125, -2.587, 3.2011249999999998, 0.3070625}},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        ag_dtype dt = cases[k].f64 ? AG_FLOAT64 : AG_FLOAT32;
        ag_tensor *p = param(dt, init, s22, 2), *d, *g;
        OK(ag_tensor_detach(&d, p));
        if (cases[k].transposed) {
            OK(ag_transpose(&g, d, 0, 1));
            ag_tensor_release(d);
        } else {
            g = d;
        }
        OK(ag_tensor_set_grad(p, g));
        ag_tensor_release(g);
        ag_optimizer *o = NULL;
        optim_case c = {.kind = cases[k].kind, .lr = 0.1, .beta1 = 0.9, .beta2 = 0.999,
                        .eps = 1.0, .weight_decay = 0.5,
                        .momentum = !strcmp(cases[k].name, "sgd momentum t") ? 0.9 : 0};
        OK(make(&o, &c, &p, 1));
        for (int s = 0; s < 3; s++) OK(ag_optimizer_step(o));
        check_rel(cases[k].name, 2, p, cases[k].want, 4, 0);
        ag_optimizer_release(o);
        ag_tensor_release(p);
    }
    /* Plain SGD: "unsupported operation: some elements of the input tensor and the written-to
     * tensor refer to a single memory location. Please clone() the tensor before performing
     * the operation." from PyTorch; nothing changes. The same grad without overlap in memory
     * order (p.detach()) is fine: p - 0.1 * p. */
    for (int t = 0; t < 2; t++) {
        ag_tensor *p = param(AG_FLOAT32, init, s22, 2), *d, *g;
        OK(ag_tensor_detach(&d, p));
        if (t) {
            OK(ag_transpose(&g, d, 0, 1));
            ag_tensor_release(d);
        } else {
            g = d;
        }
        OK(ag_tensor_set_grad(p, g));
        ag_tensor_release(g);
        ag_optimizer *o = NULL;
        OK(ag_optimizer_sgd(&o, &p, 1, 0.1, 0, 0, 0, 0));
        if (t) {
            FAILS_MSG(AG_EINVAL, ag_optimizer_step(o),
                      "ag_optimizer_step: unsupported operation: some elements of the input "
                      "tensor and the written-to tensor refer to a single memory location "
                      "(params[0] and its gradient). Please clone() the tensor before "
                      "performing the operation.");
            CHECK(version(p) == 0);
            check_rel("sgd t", 0, p, init, 4, 0);
        } else {
            OK(ag_optimizer_step(o));
            static const double want[4] = {0.8999999761581421, -1.7999999523162842,
                                           2.700000047683716, 0.44999998807907104};
            check_rel("sgd same", 0, p, want, 4, 0);
        }
        ag_optimizer_release(o);
        ag_tensor_release(p);
    }
}

static void references(void)
{
    ag_tensor *p = param(AG_FLOAT32, oc_init2, s4, 1);
    set_grad(p, AG_FLOAT32, oc_grad2[0], s4, 1);
    ag_optimizer *o;
    OK(ag_optimizer_sgd(&o, &p, 1, 0.1, 0.9, 0, 0, 0));
    OK(ag_optimizer_retain(o));
    ag_optimizer_release(o);
    ag_tensor_release(p); /* the optimizer keeps its own reference */
    OK(ag_optimizer_step(o));
    OK(ag_optimizer_step(o));
    OK(ag_optimizer_zero_grad(o, 1));
    ag_optimizer_release(o);
    ag_optimizer_release(NULL);
    /* An empty parameter gets (empty) state and a version bump like any other. */
    const int64_t s0[1] = {0};
    ag_tensor *e, *eg;
    OK(ag_zeros(&e, AG_FLOAT32, s0, 1));
    OK(ag_zeros(&eg, AG_FLOAT32, s0, 1));
    OK(ag_tensor_set_requires_grad(e, 1));
    OK(ag_tensor_set_grad(e, eg));
    OK(ag_optimizer_adam(&o, &e, 1, 1e-3, 0.9, 0.999, 1e-8, 0, 1));
    OK(ag_optimizer_step(o));
    CHECK(version(e) == 1);
    ag_optimizer_release(o);
    ag_tensor_release(eg);
    ag_tensor_release(e);
    FAILS(AG_EINVAL, ag_optimizer_step(NULL));
    FAILS(AG_EINVAL, ag_optimizer_retain(NULL));
}

/* Large parameters (many parallel chunks) give the same bits for any thread count, and
 * strided parameters and gradients give the same bits as contiguous ones. */
enum { R = 700, C = 300, N = R * C, RUNS = 4 };

static void strided_run(double *res, int run, int kind, ag_dtype dt, const double *init,
                        const double *grad, const double *grad_t)
{
    const int64_t shape[2] = {R, C}, shape_t[2] = {C, R};
    ag_tensor *p, *g, *base = NULL, *gbase = NULL;
    OK(ag_set_num_threads(run == 0 ? 1 : 4));
    if (run < 2) { /* contiguous */
        p = param(dt, init, shape, 2);
        g = tensor_f64(grad, shape, 2, dt);
    } else if (run == 2) { /* the transposes of [R, C] tensors: a dense but permuted layout */
        base = tensor_f64(init, shape, 2, dt);
        gbase = tensor_f64(grad, shape, 2, dt);
        OK(ag_transpose(&p, base, 0, 1));
        OK(ag_tensor_set_requires_grad(p, 1));
        OK(ag_transpose(&g, gbase, 0, 1));
    } else { /* a contiguous parameter, a transposed gradient: the strided kernels */
        p = param(dt, init, shape, 2);
        gbase = tensor_f64(grad_t, shape_t, 2, dt);
        OK(ag_transpose(&g, gbase, 0, 1));
    }
    ag_optimizer *o = NULL;
    optim_case c = {.kind = kind, .lr = 0.01, .momentum = 0.9, .weight_decay = 0.01,
                    .nesterov = 1, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8,
                    .amsgrad = kind == 2};
    OK(make(&o, &c, &p, 1));
    OK(ag_tensor_set_grad(p, g));
    for (int s = 0; s < 3; s++) OK(ag_optimizer_step(o));
    /* The transposed view's results are read in its base's order. */
    OK(ag_tensor_copy_f64(res, N, base ? base : p));
    ag_optimizer_release(o);
    ag_tensor_release(p);
    ag_tensor_release(g);
    ag_tensor_release(base);
    ag_tensor_release(gbase);
}

static void threads_and_strides(void)
{
    double *init = malloc(N * sizeof *init), *grad = malloc(N * sizeof *grad);
    double *grad_t = malloc(N * sizeof *grad_t), *res[RUNS];
    for (int i = 0; i < N; i++) {
        init[i] = sin(i * 0.37) + 0.01 * (i % 13);
        grad[i] = cos(i * 0.11) * (1 + (i % 7));
    }
    for (int i = 0; i < R; i++)
        for (int j = 0; j < C; j++) grad_t[j * R + i] = grad[i * C + j];
    for (int run = 0; run < RUNS; run++) res[run] = malloc(N * sizeof(double));
    for (int kind = 0; kind < 3; kind++) {
        for (int f64 = 0; f64 < 2; f64++) {
            for (int run = 0; run < RUNS; run++)
                strided_run(res[run], run, kind, f64 ? AG_FLOAT64 : AG_FLOAT32, init, grad, grad_t);
            for (int run = 1; run < RUNS; run++)
                CHECK(memcmp(res[0], res[run], N * sizeof(double)) == 0);
            CHECK(res[0][12345] != init[12345]);
        }
    }
    OK(ag_set_num_threads(0));
    for (int run = 0; run < RUNS; run++) free(res[run]);
    free(init);
    free(grad);
    free(grad_t);
}

/* Allocation failures at every point of create, step and zero_grad: AG_ENOMEM, and nothing
 * changed (the next step without failures still gives PyTorch's first step). */
static long oom_left = -1; /* allocations before failing; -1 = never fail */

static void *oom_alloc(size_t n, void *ud)
{
    (void)ud;
    if (oom_left == 0) return NULL;
    if (oom_left > 0) oom_left--;
    return malloc(n);
}

static void oom_free(void *p, void *ud)
{
    (void)ud;
    free(p);
}

static void out_of_memory(void)
{
    const optim_case *c = NULL;
    for (size_t k = 0; k < sizeof oc_cases / sizeof oc_cases[0]; k++)
        if (!strcmp(oc_cases[k].name, "adam amsgrad")) c = &oc_cases[k];
    CHECK(c != NULL);
    if (!c) return;
    const ag_allocator a = {oom_alloc, oom_free, NULL};
    int done = 0;
    for (long k = 0; k < 1000 && !done; k++) {
        ag_tensor *ps[2] = {param(AG_FLOAT32, oc_init1, s23, 2),
                            param(AG_FLOAT32, oc_init2, s4, 1)};
        ag_tensor *x, *hist; /* a .grad with history, for zero_grad's detach */
        set_grad(ps[0], AG_FLOAT32, oc_grad1[0], s23, 2);
        x = param(AG_FLOAT32, oc_grad2[0], s4, 1);
        OK(ag_mul_scalar(&hist, x, 1.0));
        OK(ag_tensor_set_grad(ps[1], hist));
        ag_optimizer *o = NULL;
        OK(ag_set_allocator(&a));
        oom_left = k;
        int rc = make(&o, c, ps, 2);
        if (rc == AG_OK) rc = ag_optimizer_step(o);
        int stepped = rc == AG_OK;
        if (rc == AG_OK) rc = ag_optimizer_zero_grad(o, 0);
        oom_left = -1;
        OK(ag_set_allocator(NULL));
        CHECK(rc == AG_OK || rc == AG_ENOMEM);
        done = rc == AG_OK;
        if (!stepped) {
            CHECK(version(ps[0]) == 0 && version(ps[1]) == 0);
            check_rel("oom", 0, ps[0], oc_init1, 6, 0);
            check_rel("oom", 0, ps[1], oc_init2, 4, 0);
        } else {
            check_rel("oom", 0, ps[0], c->want1[0], 6, 1e-6);
            check_rel("oom", 0, ps[1], c->want2[0], 4, 1e-6);
            ag_tensor *g;
            OK(ag_tensor_grad(&g, ps[1]));
            CHECK(strcmp(grad_fn_name(g), done ? "" : "MulBackward0") == 0);
            ag_tensor_release(g);
        }
        if (o && !stepped) {
            OK(ag_optimizer_step(o)); /* the failed step left no state behind */
            check_rel("oom retry", 0, ps[0], c->want1[0], 6, 1e-6);
            check_rel("oom retry", 0, ps[1], c->want2[0], 4, 1e-6);
        }
        ag_optimizer_release(o);
        ag_tensor_release(hist);
        ag_tensor_release(x);
        ag_tensor_release(ps[0]);
        ag_tensor_release(ps[1]);
    }
    CHECK(done);
}

/* The copy of a .grad overlapping its parameter is made before anything is written: a step
 * that cannot allocate it changes nothing. */
static void out_of_memory_grad_copy(void)
{
    static const double init[4] = {1, -2, 3, 0.5};
    static const int64_t s22[2] = {2, 2};
    const ag_allocator a = {oom_alloc, oom_free, NULL};
    int done = 0;
    for (long k = 0; k < 100 && !done; k++) {
        ag_tensor *p = param(AG_FLOAT32, init, s22, 2), *d, *g;
        OK(ag_tensor_detach(&d, p));
        OK(ag_transpose(&g, d, 0, 1));
        OK(ag_tensor_set_grad(p, g));
        ag_optimizer *o;
        OK(ag_optimizer_adamw(&o, &p, 1, 0.1, 0.9, 0.999, 1.0, 0.5, 0));
        OK(ag_set_allocator(&a));
        oom_left = k;
        int rc = ag_optimizer_step(o);
        oom_left = -1;
        OK(ag_set_allocator(NULL));
        CHECK(rc == AG_OK || rc == AG_ENOMEM);
        done = rc == AG_OK;
        if (!done) {
            CHECK(version(p) == 0);
            check_rel("oom grad copy", 0, p, init, 4, 0);
        }
        ag_optimizer_release(o);
        ag_tensor_release(g);
        ag_tensor_release(d);
        ag_tensor_release(p);
    }
    CHECK(done);
}

int main(void)
{
    pytorch_cases();
    invalid_config();
    invalid_params();
    failing_step();
    zero_grad();
    zero_grad_in_place();
    grad_in_param_memory();
    references();
    threads_and_strides();
    out_of_memory();
    out_of_memory_grad_copy();
    return harness_finish("test_optim");
}
