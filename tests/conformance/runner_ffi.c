/*
 * runner_ffi.c: the conformance suite's C runner. It uses libautograd as a foreign-language
 * binding would: dlopen by path, dlsym by name, ffi_call from a table of signatures that must
 * describe every symbol the library exports. Usage: conformance_ffi LIB CASEFILE...
 */
#define _GNU_SOURCE
#include <cjson/cJSON.h>
#include <dlfcn.h>
#include <elf.h>
#include <fcntl.h>
#include <ffi.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* ------------------------------------------------------------------------------------------ */
/* The ABI's constants, as a binding defines them (autograd.h is not included: the statuses   */
/* and dtypes are checked against the library at startup).                                    */
/* ------------------------------------------------------------------------------------------ */
static const char *const STATUS_NAMES[] = {
    "AG_OK", "AG_EINVAL", "AG_EDTYPE", "AG_ESHAPE", "AG_ERANGE", "AG_ENOGRAD", "AG_EGRAPH",
    "AG_EVERSION", "AG_ELEAF", "AG_ENOMEM", "AG_EANOMALY", "AG_ECALLBACK", "AG_EINTERNAL"};
enum { N_STATUS = sizeof STATUS_NAMES / sizeof *STATUS_NAMES, ST_OK = 0 };
static const char *const DTYPE_NAMES[] = {"float32", "float64", "int64", "bool"};
enum { DT_F32, DT_F64, DT_I64, DT_BOOL, N_DTYPES };
static const char *const REDUCTION_NAMES[] = {"none", "mean", "sum"};
static const struct { const char *name; unsigned value; } FLAGS[] = {
    {"retain_graph", 1}, {"create_graph", 2}, {"allow_unused", 4}};

/* ------------------------------------------------------------------------------------------ */
/* The table of signatures: one entry per public function of abi/autograd.h.                  */
/* ------------------------------------------------------------------------------------------ */
/* ret:    s status (int), i plain int, v void, c const char *, q uint64_t.
 * params: one space-separated token per C parameter:
 *   t tensor            T tensor array (its count is a later n)   Tq tensor array sized by the
 *                                                                  previous T (grad_outputs)
 *   o out tensor        O out tensor array (count: later n)       Oi out tensor array sized by
 *                                                                  the last T (ag_grad)
 *   L int64 array (count: later n)   n size_t count of the nearest preceding T, L or O
 *   d double  i int  l int64_t  z size_t  q uint64_t  u unsigned flags
 *   D ag_dtype  R ag_reduction  g generator  p optimizer  N node
 *   *d *l *z *i *D *q *s *c   scalar out-parameters (double, int64, size_t, int, dtype,
 *                             uint64, const char *, char * to free with ag_string_free)
 *   *g *p *N                  handle out-parameters (generator, optimizer, node)
 *   x anything a data file cannot express (callbacks, userdata, raw buffers, strings in):
 *     such functions are described (the symbol check needs them) but not callable from data.
 */
typedef struct sig {
    const char *name, *ret, *params;
} sig;

static const sig SIGS[] = {
    {"ag_version_number", "i", ""},
    {"ag_version_string", "c", ""},
    {"ag_last_error", "c", ""},
    {"ag_last_status", "i", ""},
    {"ag_clear_error", "v", ""},
    {"ag_status_name", "c", "i"},
    {"ag_set_error", "i", "i x"},
    {"ag_set_allocator", "s", "x"},
    {"ag_set_num_threads", "s", "i"},
    {"ag_get_num_threads", "i", ""},
    {"ag_set_deferral_enabled", "i", "i"},
    {"ag_is_deferral_enabled", "i", ""},
    {"ag_synchronize", "i", ""},
    {"ag_memory_in_use", "q", ""},
    {"ag_set_grad_enabled", "i", "i"},
    {"ag_is_grad_enabled", "i", ""},
    {"ag_set_anomaly_enabled", "i", "i"},
    {"ag_is_anomaly_enabled", "i", ""},
    {"ag_generator_new", "s", "*g q"},
    {"ag_generator_manual_seed", "s", "g q"},
    {"ag_generator_release", "v", "g"},
    {"ag_manual_seed", "s", "q"},
    {"ag_tensor_from_data", "s", "o x D L n"},
    {"ag_tensor_from_f64", "s", "o x D L n"},
    {"ag_tensor_scalar", "s", "o d D"},
    {"ag_tensor_scalar_requires_grad", "s", "o d D i"},
    {"ag_empty", "s", "o D L n"},
    {"ag_zeros", "s", "o D L n"},
    {"ag_ones", "s", "o D L n"},
    {"ag_full", "s", "o D L n d"},
    {"ag_arange", "s", "o D d d d"},
    {"ag_eye", "s", "o D l l"},
    {"ag_rand", "s", "o g D L n"},
    {"ag_randn", "s", "o g D L n"},
    {"ag_randint", "s", "o g l l D L n"},
    {"ag_empty_like", "s", "o t"},
    {"ag_zeros_like", "s", "o t"},
    {"ag_ones_like", "s", "o t"},
    {"ag_full_like", "s", "o t d"},
    {"ag_rand_like", "s", "o g t"},
    {"ag_randn_like", "s", "o g t"},
    {"ag_tensor_retain", "s", "t"},
    {"ag_tensor_release", "v", "t"},
    {"ag_tensor_dtype", "s", "*D t"},
    {"ag_tensor_ndim", "s", "*z t"},
    {"ag_tensor_numel", "s", "*l t"},
    {"ag_tensor_shape", "s", "x z t"},
    {"ag_tensor_strides", "s", "x z t"},
    {"ag_tensor_size", "s", "*l t l"},
    {"ag_tensor_storage_offset", "s", "*l t"},
    {"ag_tensor_is_contiguous", "s", "*i t"},
    {"ag_tensor_shares_storage", "s", "*i t t"},
    {"ag_tensor_version", "s", "*l t"},
    {"ag_tensor_item", "s", "*d t"},
    {"ag_tensor_item_int64", "s", "*l t"},
    {"ag_tensor_copy_data", "s", "x z t"},
    {"ag_tensor_copy_f64", "s", "x z t"},
    {"ag_tensor_copy_i64", "s", "x z t"},
    {"ag_tensor_to_string", "s", "*c t"},
    {"ag_string_free", "v", "x"},
    {"ag_tensor_requires_grad", "s", "*i t"},
    {"ag_tensor_set_requires_grad", "s", "t i"},
    {"ag_tensor_is_leaf", "s", "*i t"},
    {"ag_tensor_grad", "s", "o t"},
    {"ag_tensor_set_grad", "s", "t t"},
    {"ag_tensor_zero_grad", "s", "t"},
    {"ag_tensor_grad_fn", "s", "*N t"},
    {"ag_tensor_retain_grad", "s", "t"},
    {"ag_tensor_retains_grad", "s", "*i t"},
    {"ag_tensor_detach", "s", "o t"},
    {"ag_tensor_register_hook", "s", "x t x u x x"},
    {"ag_tensor_remove_hook", "s", "t q"},
    {"ag_backward", "s", "t t u"},
    {"ag_grad", "s", "Oi T Tq n T n u"},
    {"ag_node_retain", "s", "N"},
    {"ag_node_release", "v", "N"},
    {"ag_node_name", "s", "*s N"},
    {"ag_node_num_next", "s", "*z N"},
    {"ag_node_next", "s", "*N *l N z"},
    {"ag_node_variable", "s", "o N"},
    {"ag_function_apply", "s", "x z x z x x x u x x"},
    {"ag_function_ctx_save", "s", "x t"},
    {"ag_function_ctx_num_saved", "s", "*z x"},
    {"ag_function_ctx_saved", "s", "o x z"},
    {"ag_function_ctx_needs_input_grad", "s", "*i x z"},
    {"ag_add", "s", "o t t"},
    {"ag_sub", "s", "o t t"},
    {"ag_mul", "s", "o t t"},
    {"ag_div", "s", "o t t"},
    {"ag_pow", "s", "o t t"},
    {"ag_maximum", "s", "o t t"},
    {"ag_minimum", "s", "o t t"},
    {"ag_add_scalar", "s", "o t d"},
    {"ag_sub_scalar", "s", "o t d"},
    {"ag_rsub_scalar", "s", "o t d"},
    {"ag_mul_scalar", "s", "o t d"},
    {"ag_div_scalar", "s", "o t d"},
    {"ag_rdiv_scalar", "s", "o t d"},
    {"ag_pow_scalar", "s", "o t d"},
    {"ag_rpow_scalar", "s", "o t d"},
    {"ag_neg", "s", "o t"},
    {"ag_exp", "s", "o t"},
    {"ag_log", "s", "o t"},
    {"ag_log1p", "s", "o t"},
    {"ag_expm1", "s", "o t"},
    {"ag_sqrt", "s", "o t"},
    {"ag_rsqrt", "s", "o t"},
    {"ag_abs", "s", "o t"},
    {"ag_sin", "s", "o t"},
    {"ag_cos", "s", "o t"},
    {"ag_tanh", "s", "o t"},
    {"ag_sigmoid", "s", "o t"},
    {"ag_relu", "s", "o t"},
    {"ag_leaky_relu", "s", "o t d"},
    {"ag_gelu", "s", "o t i"},
    {"ag_silu", "s", "o t"},
    {"ag_softplus", "s", "o t d d"},
    {"ag_clamp", "s", "o t d d"},
    {"ag_clamp_min", "s", "o t d"},
    {"ag_clamp_max", "s", "o t d"},
    {"ag_where", "s", "o t t t"},
    {"ag_eq", "s", "o t t"},
    {"ag_ne", "s", "o t t"},
    {"ag_lt", "s", "o t t"},
    {"ag_le", "s", "o t t"},
    {"ag_gt", "s", "o t t"},
    {"ag_ge", "s", "o t t"},
    {"ag_eq_scalar", "s", "o t d"},
    {"ag_ne_scalar", "s", "o t d"},
    {"ag_lt_scalar", "s", "o t d"},
    {"ag_le_scalar", "s", "o t d"},
    {"ag_gt_scalar", "s", "o t d"},
    {"ag_ge_scalar", "s", "o t d"},
    {"ag_sum", "s", "o t"},
    {"ag_sum_dims", "s", "o t L n i"},
    {"ag_mean", "s", "o t"},
    {"ag_mean_dims", "s", "o t L n i"},
    {"ag_max", "s", "o t"},
    {"ag_min", "s", "o t"},
    {"ag_max_dim", "s", "o o t l i"},
    {"ag_min_dim", "s", "o o t l i"},
    {"ag_amax", "s", "o t L n i"},
    {"ag_amin", "s", "o t L n i"},
    {"ag_var", "s", "o t L n l i"},
    {"ag_std", "s", "o t L n l i"},
    {"ag_logsumexp", "s", "o t L n i"},
    {"ag_norm", "s", "o t d L n i"},
    {"ag_argmax", "s", "o t l i"},
    {"ag_argmin", "s", "o t l i"},
    {"ag_argmax_all", "s", "o t"},
    {"ag_argmin_all", "s", "o t"},
    {"ag_matmul", "s", "o t t"},
    {"ag_linear", "s", "o t t t"},
    {"ag_reshape", "s", "o t L n"},
    {"ag_view", "s", "o t L n"},
    {"ag_transpose", "s", "o t l l"},
    {"ag_t", "s", "o t"},
    {"ag_permute", "s", "o t L n"},
    {"ag_expand", "s", "o t L n"},
    {"ag_slice", "s", "o t l l l l"},
    {"ag_narrow", "s", "o t l l l"},
    {"ag_select", "s", "o t l l"},
    {"ag_squeeze", "s", "o t"},
    {"ag_squeeze_dim", "s", "o t l"},
    {"ag_unsqueeze", "s", "o t l"},
    {"ag_flatten", "s", "o t l l"},
    {"ag_contiguous", "s", "o t"},
    {"ag_clone", "s", "o t"},
    {"ag_to_dtype", "s", "o t D"},
    {"ag_index_select", "s", "o t l t"},
    {"ag_gather", "s", "o t l t"},
    {"ag_scatter_add", "s", "o t l t t"},
    {"ag_masked_fill", "s", "o t t d"},
    {"ag_cat", "s", "o T n l"},
    {"ag_stack", "s", "o T n l"},
    {"ag_split_count", "s", "*z t l l"},
    {"ag_split", "s", "O n t l l"},
    {"ag_chunk_count", "s", "*z t l l"},
    {"ag_chunk", "s", "O n t l l"},
    {"ag_softmax", "s", "o t l"},
    {"ag_log_softmax", "s", "o t l"},
    {"ag_cross_entropy", "s", "o t t t R l d"},
    {"ag_nll_loss", "s", "o t t t R l"},
    {"ag_mse_loss", "s", "o t t R"},
    {"ag_binary_cross_entropy_with_logits", "s", "o t t t t R"},
    {"ag_dropout", "s", "o g t d i"},
    {"ag_layer_norm", "s", "o t L n t t d"},
    {"ag_embedding", "s", "o t t"},
    {"ag_add_", "s", "t t"},
    {"ag_sub_", "s", "t t"},
    {"ag_mul_", "s", "t t"},
    {"ag_add_scalar_", "s", "t d"},
    {"ag_mul_scalar_", "s", "t d"},
    {"ag_zero_", "s", "t"},
    {"ag_fill_", "s", "t d"},
    {"ag_copy_", "s", "t t"},
    {"ag_optimizer_sgd", "s", "*p T n d d d d i"},
    {"ag_optimizer_adam", "s", "*p T n d d d d d i"},
    {"ag_optimizer_adamw", "s", "*p T n d d d d d i"},
    {"ag_optimizer_step", "s", "p"},
    {"ag_optimizer_zero_grad", "s", "p i"},
    {"ag_optimizer_get_lr", "s", "*d p"},
    {"ag_optimizer_set_lr", "s", "p d"},
    {"ag_optimizer_retain", "s", "p"},
    {"ag_optimizer_release", "v", "p"},
};
enum { N_SIGS = sizeof SIGS / sizeof *SIGS, MAX_PARAMS = 12 };

/* A resolved entry: the symbol, its parsed tokens and its prepared call interface. */
typedef struct fn_entry {
    const sig *s;
    void (*fn)(void);
    int np;
    char tok[MAX_PARAMS][3];
    ffi_type *types[MAX_PARAMS];
    ffi_cif cif;
    int callable; /* no 'x' parameter and a status return */
} fn_entry;

static fn_entry ENTRIES[N_SIGS];
static void *LIB;

static int entry_cmp(const void *a, const void *b)
{
    return strcmp(((const fn_entry *)a)->s->name, ((const fn_entry *)b)->s->name);
}

static fn_entry *lookup(const char *name)
{
    sig key_sig = {name, NULL, NULL};
    fn_entry key = {.s = &key_sig};
    return bsearch(&key, ENTRIES, N_SIGS, sizeof key, entry_cmp);
}

static ffi_type *ffi_of(const char *t)
{
    if (t[0] == '*' || t[0] == 't' || t[0] == 'T' || t[0] == 'o' || t[0] == 'O' || t[0] == 'L'
        || t[0] == 'g' || t[0] == 'p' || t[0] == 'N' || t[0] == 'x')
        return &ffi_type_pointer;
    switch (t[0]) {
    case 'd': return &ffi_type_double;
    case 'i': case 'D': case 'R': return &ffi_type_sint; /* C enums are int-sized here */
    case 'l': return &ffi_type_sint64;
    case 'q': return &ffi_type_uint64;
    case 'u': return &ffi_type_uint;
    case 'n': case 'z': return sizeof(size_t) == 8 ? &ffi_type_uint64 : &ffi_type_uint32;
    }
    return NULL;
}

/* Resolves and prepares every entry; returns the number of problems. */
static int prepare_entries(void)
{
    int bad = 0;
    /* Sorted first: each cif points into its entry, which must not move afterwards. */
    for (size_t k = 0; k < N_SIGS; k++) ENTRIES[k].s = &SIGS[k];
    qsort(ENTRIES, N_SIGS, sizeof *ENTRIES, entry_cmp);
    for (size_t k = 0; k < N_SIGS; k++) {
        fn_entry *e = &ENTRIES[k];
        *(void **)&e->fn = dlsym(LIB, e->s->name);
        if (!e->fn) {
            fprintf(stderr, "signature table: %s is not exported by the library\n", e->s->name);
            bad++;
            continue;
        }
        e->callable = e->s->ret[0] == 's';
        const char *p = e->s->params;
        while (*p) {
            while (*p == ' ') p++;
            if (!*p) break;
            size_t len = strcspn(p, " ");
            if (e->np == MAX_PARAMS || len > 2) {
                fprintf(stderr, "signature table: bad parameters for %s\n", e->s->name);
                exit(2);
            }
            memcpy(e->tok[e->np], p, len);
            e->tok[e->np][len] = 0;
            e->types[e->np] = ffi_of(e->tok[e->np]);
            if (!e->types[e->np]) {
                fprintf(stderr, "signature table: bad token '%s' for %s\n", e->tok[e->np],
                        e->s->name);
                exit(2);
            }
            if (e->tok[e->np][0] == 'x') e->callable = 0;
            e->np++;
            p += len;
        }
        ffi_type *rt = e->s->ret[0] == 'v'   ? &ffi_type_void
                       : e->s->ret[0] == 'c' ? &ffi_type_pointer
                       : e->s->ret[0] == 'q' ? &ffi_type_uint64
                                             : &ffi_type_sint;
        if (ffi_prep_cif(&e->cif, FFI_DEFAULT_ABI, (unsigned)e->np, rt, e->types) != FFI_OK) {
            fprintf(stderr, "ffi_prep_cif failed for %s\n", e->s->name);
            exit(2);
        }
    }
    for (size_t k = 1; k < N_SIGS; k++)
        if (!strcmp(ENTRIES[k - 1].s->name, ENTRIES[k].s->name)) {
            fprintf(stderr, "signature table: %s is listed twice\n", ENTRIES[k].s->name);
            bad++;
        }
    return bad;
}

/* ------------------------------------------------------------------------------------------ */
/* The exported-symbol check: parse .dynsym/.dynstr of the ELF file                            */
/* ------------------------------------------------------------------------------------------ */
static int check_exports(const char *path)
{
    int fd = open(path, O_RDONLY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        fprintf(stderr, "cannot open %s\n", path);
        if (fd >= 0) close(fd);
        return 1;
    }
    size_t size = (size_t)st.st_size;
    const unsigned char *base = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (base == MAP_FAILED) {
        fprintf(stderr, "cannot map %s\n", path);
        return 1;
    }
    int bad = 0;
    const Elf64_Ehdr *eh = (const void *)base;
    if (size < sizeof *eh || memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0
        || eh->e_ident[EI_CLASS] != ELFCLASS64 || eh->e_shoff == 0
        || eh->e_shoff + (size_t)eh->e_shnum * sizeof(Elf64_Shdr) > size) {
        fprintf(stderr, "%s: not a 64-bit ELF file with section headers\n", path);
        munmap((void *)base, size);
        return 1;
    }
    const Elf64_Shdr *sh = (const void *)(base + eh->e_shoff);
    const Elf64_Shdr *dynsym = NULL, *verdef = NULL;
    for (unsigned i = 0; i < eh->e_shnum; i++) {
        if (sh[i].sh_type == SHT_DYNSYM) dynsym = &sh[i];
        if (sh[i].sh_type == SHT_GNU_verdef) verdef = &sh[i];
    }
    if (!dynsym || dynsym->sh_link >= eh->e_shnum || dynsym->sh_entsize != sizeof(Elf64_Sym)) {
        fprintf(stderr, "%s: no usable .dynsym\n", path);
        munmap((void *)base, size);
        return 1;
    }
    const char *dynstr = (const char *)base + sh[dynsym->sh_link].sh_offset;

    /* Version definitions (AUTOGRAD_0.1 ...) appear in .dynsym as absolute symbols; they
     * name versions, not functions. */
    const char *versions[16];
    int n_versions = 0;
    if (verdef && verdef->sh_link < eh->e_shnum) {
        const char *vstr = (const char *)base + sh[verdef->sh_link].sh_offset;
        const unsigned char *p = base + verdef->sh_offset;
        for (unsigned k = 0; k < verdef->sh_info; k++) {
            const Elf64_Verdef *vd = (const void *)p;
            const Elf64_Verdaux *aux = (const void *)(p + vd->vd_aux);
            if (n_versions < 16) versions[n_versions++] = vstr + aux->vda_name;
            if (!vd->vd_next) break;
            p += vd->vd_next;
        }
    }

    const Elf64_Sym *syms = (const void *)(base + dynsym->sh_offset);
    size_t nsyms = dynsym->sh_size / sizeof(Elf64_Sym);
    int n_exported = 0;
    for (size_t k = 0; k < nsyms; k++) {
        const Elf64_Sym *s = &syms[k];
        int bind = ELF64_ST_BIND(s->st_info);
        if (s->st_shndx == SHN_UNDEF || (bind != STB_GLOBAL && bind != STB_WEAK)) continue;
        const char *name = dynstr + s->st_name;
        if (s->st_shndx == SHN_ABS) {
            int is_version = 0;
            for (int v = 0; v < n_versions; v++) is_version |= !strcmp(name, versions[v]);
            if (is_version) continue;
        }
        n_exported++;
        if (!lookup(name)) {
            fprintf(stderr, "symbol check: the library exports '%s', which the signature table "
                            "does not describe\n", name);
            bad++;
        }
    }
    munmap((void *)base, size);
    if (n_exported != N_SIGS) {
        fprintf(stderr, "symbol check: %d exported symbols, %d in the signature table\n",
                n_exported, (int)N_SIGS);
        bad++;
    }
    return bad;
}

/* ------------------------------------------------------------------------------------------ */
/* Calling through the table                                                                  */
/* ------------------------------------------------------------------------------------------ */
/* av[i] points at the value of parameter i, as ffi_call wants. */
static ffi_arg invoke(const char *name, void **av, void **ptr_ret)
{
    fn_entry *e = lookup(name);
    if (!e || !e->fn) {
        fprintf(stderr, "internal: %s is not in the signature table\n", name);
        exit(2);
    }
    union {
        ffi_arg i;
        void *p;
    } r = {0};
    void *none[1] = {NULL};
    ffi_call(&e->cif, e->fn, &r, av ? av : none);
    if (ptr_ret) *ptr_ret = r.p;
    return r.i;
}

/* A status-returning call: CALL("ag_foo", &arg0, &arg1 ...) with pointers to the values. */
#define CALL(name, ...) ((int)invoke(name, (void *[]){__VA_ARGS__}, NULL))

static const char *lib_string(const char *name, void **av)
{
    void *p = NULL;
    invoke(name, av, &p);
    return p;
}
static const char *last_error(void) { return lib_string("ag_last_error", NULL); }
static const char *status_name(int st)
{
    return st >= 0 && st < N_STATUS ? STATUS_NAMES[st] : "(unknown status)";
}
static int set_grad_enabled(int on)
{
    return (int)invoke("ag_set_grad_enabled", (void *[]){&on}, NULL);
}

typedef enum hkind { H_TENSOR, H_GEN, H_OPT, H_NODE } hkind;
static const char *const HKIND_NAMES[] = {"tensor", "generator", "optimizer", "node"};

static void release_handle(hkind k, void *h)
{
    static const char *const fns[] = {"ag_tensor_release", "ag_generator_release",
                                      "ag_optimizer_release", "ag_node_release"};
    if (h) invoke(fns[k], (void *[]){&h}, NULL);
}

/* Startup checks of our constants against the library. */
static int check_constants(void)
{
    int bad = 0;
    for (int st = 0; st <= N_STATUS; st++) {
        const char *got = lib_string("ag_status_name", (void *[]){&st});
        const char *want = st < N_STATUS ? STATUS_NAMES[st] : "AG_UNKNOWN";
        if (!got || strcmp(got, want)) {
            fprintf(stderr, "constants: ag_status_name(%d) is '%s', the runner expects '%s'\n", st,
                    got ? got : "(null)", want);
            bad++;
        }
    }
    /* Dtypes: a scalar 1 of each, as PyTorch prints it, tells which dtype each value is. */
    static const char *const printed[] = {"tensor(1.)", "tensor(1., dtype=torch.float64)",
                                          "tensor(1)", "tensor(True)"};
    for (int dt = 0; dt < N_DTYPES; dt++) {
        void *t = NULL, **pt = &t;
        double one = 1;
        char *s = NULL, **ps = &s;
        int st = CALL("ag_tensor_scalar", &pt, &one, &dt);
        if (st == ST_OK) st = CALL("ag_tensor_to_string", &ps, &t);
        if (st != ST_OK || strcmp(s, printed[dt])) {
            fprintf(stderr, "constants: dtype %d (%s) prints as '%s', expected '%s' (%s)\n", dt,
                    DTYPE_NAMES[dt], st == ST_OK ? s : "?", printed[dt],
                    st == ST_OK ? "" : last_error());
            bad++;
        }
        if (s) invoke("ag_string_free", (void *[]){&s}, NULL);
        release_handle(H_TENSOR, t);
    }
    return bad;
}

/* ------------------------------------------------------------------------------------------ */
/* Named handles of a case                                                                    */
/* ------------------------------------------------------------------------------------------ */
typedef struct binding {
    char *name;
    hkind kind;
    void *h;
} binding;

static binding *ENV;
static size_t ENV_N, ENV_CAP;

static binding *env_find(const char *name)
{
    for (size_t i = 0; i < ENV_N; i++)
        if (!strcmp(ENV[i].name, name)) return &ENV[i];
    return NULL;
}

/* Binds name to h (a reference the environment now owns), releasing what it held. */
static void env_set(const char *name, hkind kind, void *h)
{
    binding *b = env_find(name);
    if (b) {
        release_handle(b->kind, b->h);
        b->kind = kind;
        b->h = h;
        return;
    }
    if (ENV_N == ENV_CAP) {
        ENV_CAP = ENV_CAP ? 2 * ENV_CAP : 64;
        ENV = realloc(ENV, ENV_CAP * sizeof *ENV);
        if (!ENV) abort();
    }
    ENV[ENV_N++] = (binding){strdup(name), kind, h};
}

static void env_remove(const char *name)
{
    binding *b = env_find(name);
    if (!b) return;
    release_handle(b->kind, b->h);
    free(b->name);
    *b = ENV[--ENV_N];
}

static void env_clear(void)
{
    while (ENV_N) {
        binding *b = &ENV[--ENV_N];
        release_handle(b->kind, b->h);
        free(b->name);
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Running cases                                                                              */
/* ------------------------------------------------------------------------------------------ */
typedef struct tol {
    double rtol, atol;
} tol;

typedef struct run_ctx {
    const char *file, *case_name;
    char step[48];   /* "4" or "4.2" inside a no_grad block */
    const char *op;  /* the step's op (and fn) for messages */
    const char *fn;
    tol tols[2];     /* float32, float64 */
} run_ctx;

static int VERBOSE;

static int fail(const run_ctx *c, const char *fmt, ...)
{
    va_list ap;
    printf("FAIL %s [%s] step %s (%s%s%s): ", c->case_name, c->file, c->step, c->op,
           c->fn ? " " : "", c->fn ? c->fn : "");
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    return -1;
}

static int dtype_from_name(const char *s)
{
    for (int i = 0; i < N_DTYPES; i++)
        if (s && !strcmp(s, DTYPE_NAMES[i])) return i;
    return -1;
}

/* A number of the data: a JSON number, "nan"/"inf"/"-inf", or true/false. */
static int json_number(const cJSON *j, double *out)
{
    if (cJSON_IsNumber(j)) *out = j->valuedouble;
    else if (cJSON_IsBool(j)) *out = cJSON_IsTrue(j) ? 1 : 0;
    else if (cJSON_IsString(j) && !strcmp(j->valuestring, "nan")) *out = NAN;
    else if (cJSON_IsString(j) && !strcmp(j->valuestring, "inf")) *out = INFINITY;
    else if (cJSON_IsString(j) && !strcmp(j->valuestring, "-inf")) *out = -INFINITY;
    else return -1;
    return 0;
}

static int json_int(const cJSON *j, int64_t *out)
{
    if (!cJSON_IsNumber(j) || j->valuedouble != trunc(j->valuedouble)) return -1;
    *out = (int64_t)j->valuedouble;
    return 0;
}

/* An int64 array of the data (NULL when empty, as the ABI takes (NULL, 0)). */
static int json_ints(const cJSON *arr, int64_t **out, size_t *n)
{
    if (!cJSON_IsArray(arr)) return -1;
    size_t len = (size_t)cJSON_GetArraySize(arr);
    int64_t *v = len ? malloc(len * sizeof *v) : NULL;
    size_t i = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, arr)
    {
        if (json_int(it, &v[i++])) {
            free(v);
            return -1;
        }
    }
    *out = v;
    *n = len;
    return 0;
}

static const cJSON *get(const cJSON *o, const char *key)
{
    return cJSON_GetObjectItemCaseSensitive(o, key);
}

static const char *get_str(const cJSON *o, const char *key)
{
    const cJSON *j = get(o, key);
    return cJSON_IsString(j) ? j->valuestring : NULL;
}

static int lookup_handle(const run_ctx *c, const char *name, hkind kind, void **h)
{
    binding *b = name ? env_find(name) : NULL;
    if (!b) return fail(c, "bad case: no handle named '%s'", name ? name : "?");
    if (b->kind != kind)
        return fail(c, "bad case: '%s' is a %s, not a %s", name, HKIND_NAMES[b->kind],
                    HKIND_NAMES[kind]);
    *h = b->h;
    return 0;
}

static void print_values(const char *label, const double *v, int64_t n)
{
    printf("    %-8s [", label);
    for (int64_t i = 0; i < n && i < 16; i++) printf("%s%.9g", i ? ", " : "", v[i]);
    printf("%s]\n", n > 16 ? ", ..." : "");
}

static void fmt_ints(char *buf, size_t size, const int64_t *v, size_t n)
{
    buf[0] = 0;
    for (size_t i = 0; i < n && i < 16; i++)
        snprintf(buf + strlen(buf), size - strlen(buf), "%s%lld", i ? ", " : "", (long long)v[i]);
}

static int close_enough(double got, double want, int dt, const tol *tols)
{
    if (isnan(want)) return isnan(got);
    if (dt != DT_F32 && dt != DT_F64) return got == want;
    if (isinf(want)) return got == want;
    const tol *t = &tols[dt];
    return fabs(got - want) <= t->atol + t->rtol * fabs(want);
}

/* Checks tensor h (NULL allowed) against the expectation fields of step e. */
static int check_tensor(const run_ctx *c, void *h, const cJSON *e, const char *what)
{
    if (cJSON_IsTrue(get(e, "none"))) {
        if (h) return fail(c, "%s: expected none, got a tensor", what);
        return 0;
    }
    if (!h) return fail(c, "%s: expected a tensor, got none", what);
    int st, dt = -1;
    int *pdt = &dt;
    if ((st = CALL("ag_tensor_dtype", &pdt, &h)))
        return fail(c, "%s: ag_tensor_dtype returned %s: %s", what, status_name(st), last_error());
    const char *want_dt = get_str(e, "dtype");
    if (want_dt && dtype_from_name(want_dt) != dt)
        return fail(c, "%s: dtype: expected %s, got %s", what, want_dt,
                    dt >= 0 && dt < N_DTYPES ? DTYPE_NAMES[dt] : "?");

    const cJSON *shape = get(e, "shape");
    if (shape) {
        int64_t *want = NULL, got[16];
        size_t nwant = 0, ndim = 0, *pndim = &ndim, cap = 16;
        int64_t *pgot = got;
        if (json_ints(shape, &want, &nwant)) return fail(c, "bad case: shape");
        st = CALL("ag_tensor_ndim", &pndim, &h);
        if (!st) st = CALL("ag_tensor_shape", &pgot, &cap, &h);
        int same = !st && ndim == nwant && (!ndim || !memcmp(got, want, ndim * sizeof *got));
        char sw[256], sg[256];
        fmt_ints(sw, sizeof sw, want, nwant);
        fmt_ints(sg, sizeof sg, got, st ? 0 : ndim);
        free(want);
        if (!same) return fail(c, "%s: shape: expected [%s], got [%s]", what, sw, sg);
    }

    const cJSON *data = get(e, "data");
    if (data) {
        int64_t numel = 0, *pn = &numel;
        if ((st = CALL("ag_tensor_numel", &pn, &h)))
            return fail(c, "%s: ag_tensor_numel returned %s", what, status_name(st));
        int64_t nwant = cJSON_GetArraySize(data);
        if (numel != nwant)
            return fail(c, "%s: expected %lld elements, got %lld", what, (long long)nwant,
                        (long long)numel);
        double *got = malloc(((size_t)numel + 1) * sizeof *got);
        double *want = malloc(((size_t)numel + 1) * sizeof *want);
        size_t cap = (size_t)numel;
        int64_t i = 0;
        const cJSON *it;
        cJSON_ArrayForEach(it, data)
        {
            if (json_number(it, &want[i++])) {
                free(got);
                free(want);
                return fail(c, "bad case: data element %lld", (long long)(i - 1));
            }
        }
        st = CALL("ag_tensor_copy_f64", &got, &cap, &h);
        int r = 0;
        if (st) {
            r = fail(c, "%s: ag_tensor_copy_f64 returned %s", what, status_name(st));
        } else {
            for (i = 0; i < numel; i++)
                if (!close_enough(got[i], want[i], dt, c->tols)) break;
            if (i < numel) {
                if (dt == DT_F32 || dt == DT_F64)
                    r = fail(c, "%s: element %lld: expected %.17g, got %.17g (%s: rtol %g, "
                             "atol %g)", what, (long long)i, want[i], got[i], DTYPE_NAMES[dt],
                             c->tols[dt].rtol, c->tols[dt].atol);
                else
                    r = fail(c, "%s: element %lld: expected %.17g, got %.17g (%s: exact)", what,
                             (long long)i, want[i], got[i], DTYPE_NAMES[dt]);
                print_values("expected", want, numel);
                print_values("got", got, numel);
            }
        }
        free(got);
        free(want);
        if (r) return r;
    }

    static const char *const int_queries[][2] = {{"requires_grad", "ag_tensor_requires_grad"},
                                                 {"is_leaf", "ag_tensor_is_leaf"},
                                                 {"is_contiguous", "ag_tensor_is_contiguous"}};
    for (int q = 0; q < 3; q++) {
        const cJSON *j = get(e, int_queries[q][0]);
        if (!j) continue;
        int v = -1, *pv = &v;
        if ((st = CALL(int_queries[q][1], &pv, &h)))
            return fail(c, "%s: %s returned %s", what, int_queries[q][1], status_name(st));
        if (v != cJSON_IsTrue(j))
            return fail(c, "%s: %s: expected %s, got %s", what, int_queries[q][0],
                        cJSON_IsTrue(j) ? "true" : "false", v ? "true" : "false");
    }

    static const char *const i64_queries[][2] = {{"version", "ag_tensor_version"},
                                                 {"storage_offset", "ag_tensor_storage_offset"}};
    for (int q = 0; q < 2; q++) {
        const cJSON *j = get(e, i64_queries[q][0]);
        if (!j) continue;
        int64_t v = -1, *pv = &v, want;
        if (json_int(j, &want)) return fail(c, "bad case: %s", i64_queries[q][0]);
        if ((st = CALL(i64_queries[q][1], &pv, &h)))
            return fail(c, "%s: %s returned %s", what, i64_queries[q][1], status_name(st));
        if (v != want)
            return fail(c, "%s: %s: expected %lld, got %lld", what, i64_queries[q][0],
                        (long long)want, (long long)v);
    }

    const cJSON *strides = get(e, "strides");
    if (strides) {
        int64_t *want = NULL, got[16], *pgot = got;
        size_t nwant = 0, cap = 16;
        if (json_ints(strides, &want, &nwant)) return fail(c, "bad case: strides");
        st = CALL("ag_tensor_strides", &pgot, &cap, &h);
        int same = !st && nwant <= 16 && (!nwant || !memcmp(got, want, nwant * sizeof *got));
        char sw[256], sg[256];
        fmt_ints(sw, sizeof sw, want, nwant);
        fmt_ints(sg, sizeof sg, got, st ? 0 : nwant);
        free(want);
        if (!same) return fail(c, "%s: strides: expected [%s], got [%s]", what, sw, sg);
    }

    const cJSON *gf = get(e, "grad_fn");
    if (gf) {
        void *node = NULL, **pnode = &node;
        if ((st = CALL("ag_tensor_grad_fn", &pnode, &h)))
            return fail(c, "%s: ag_tensor_grad_fn returned %s", what, status_name(st));
        const char *name = NULL, **pname = &name;
        if (node && (st = CALL("ag_node_name", &pname, &node))) {
            release_handle(H_NODE, node);
            return fail(c, "%s: ag_node_name returned %s", what, status_name(st));
        }
        int r = 0;
        if (cJSON_IsNull(gf) && node)
            r = fail(c, "%s: grad_fn: expected none, got %s", what, name);
        else if (cJSON_IsString(gf) && (!node || strcmp(name, gf->valuestring)))
            r = fail(c, "%s: grad_fn: expected %s, got %s", what, gf->valuestring,
                     node ? name : "none");
        release_handle(H_NODE, node);
        if (r) return r;
    }
    return 0;
}

static int step_expect(run_ctx *c, const cJSON *s, int of_grad)
{
    void *h;
    const char *name = get_str(s, "t");
    if (lookup_handle(c, name, H_TENSOR, &h)) return -1;
    if (!of_grad) return check_tensor(c, h, s, name);
    if (!h) return fail(c, "bad case: '%s' is none", name);
    void *g = NULL, **pg = &g;
    int st = CALL("ag_tensor_grad", &pg, &h);
    if (st) return fail(c, "ag_tensor_grad returned %s: %s", status_name(st), last_error());
    char what[200];
    snprintf(what, sizeof what, "%s.grad", name);
    int r = check_tensor(c, g, s, what);
    release_handle(H_TENSOR, g);
    return r;
}

static int step_tensor(run_ctx *c, const cJSON *s)
{
    const char *name = get_str(s, "out");
    int dt = dtype_from_name(get_str(s, "dtype"));
    int64_t *shape = NULL;
    size_t ndim = 0;
    const cJSON *data = get(s, "data");
    if (!name || dt < 0 || json_ints(get(s, "shape"), &shape, &ndim) || !cJSON_IsArray(data))
        return fail(c, "bad case: tensor step");
    size_t n = (size_t)cJSON_GetArraySize(data);
    double *vals = malloc((n + 1) * sizeof *vals); /* never NULL, even for no elements */
    size_t i = 0;
    const cJSON *it;
    int r = 0;
    cJSON_ArrayForEach(it, data) if (json_number(it, &vals[i++])) r = -1;
    if (r) {
        free(vals);
        free(shape);
        return fail(c, "bad case: tensor data");
    }
    void *t = NULL, **pt = &t;
    int st = CALL("ag_tensor_from_f64", &pt, &vals, &dt, &shape, &ndim);
    free(vals);
    free(shape);
    if (st) return fail(c, "ag_tensor_from_f64 returned %s: %s", status_name(st), last_error());
    if (cJSON_IsTrue(get(s, "requires_grad"))) {
        int one = 1;
        if ((st = CALL("ag_tensor_set_requires_grad", &t, &one))) {
            release_handle(H_TENSOR, t);
            return fail(c, "ag_tensor_set_requires_grad returned %s: %s", status_name(st),
                        last_error());
        }
    }
    env_set(name, H_TENSOR, t);
    return 0;
}

/* ---- the call step ---- */
static char SENTINEL_OBJ;
#define SENTINEL ((void *)&SENTINEL_OBJ)

typedef union value {
    void *p;
    double d;
    int i;
    int64_t l;
    uint64_t q;
    size_t z;
    unsigned u;
    const char *s;
    char *c;
} value;

typedef struct call_state {
    value v[MAX_PARAMS];       /* parameter values (what av points at) */
    value out[MAX_PARAMS];     /* single out-parameters: v[k].p == &out[k] */
    void **arrays[MAX_PARAMS]; /* out tensor arrays */
    size_t array_len[MAX_PARAMS];
    void *to_free[MAX_PARAMS]; /* input buffers */
} call_state;

static int is_handle_out(const char *t)
{
    return !strcmp(t, "o") || !strcmp(t, "*g") || !strcmp(t, "*p") || !strcmp(t, "*N");
}
static int is_scalar_out(const char *t) { return t[0] == '*' && !is_handle_out(t); }
static hkind handle_kind(const char *t)
{
    return t[0] == 'o' ? H_TENSOR : t[1] == 'g' ? H_GEN : t[1] == 'p' ? H_OPT : H_NODE;
}

/* Decodes one data argument into parameter k (tokens t T Tq L d i l z q u D R g p N). */
static int decode_arg(run_ctx *c, call_state *cs, fn_entry *e, int k, const cJSON *a,
                      size_t *last_count, size_t *last_t_count)
{
    const char *tk = e->tok[k];
    value *v = &cs->v[k];
    int is_null = cJSON_IsTrue(get(a, "null"));
    const cJSON *j;
    switch (tk[0]) {
    case 't': case 'g': case 'p': case 'N': {
        static const char *const keys[] = {"t", "gen", "opt", "node"}; /* by hkind */
        hkind kind = tk[0] == 't' ? H_TENSOR : tk[0] == 'g' ? H_GEN : tk[0] == 'p' ? H_OPT
                                                                                 : H_NODE;
        if (is_null) {
            v->p = NULL;
            return 0;
        }
        const char *name = get_str(a, keys[kind]);
        if (!name)
            return fail(c, "bad case: parameter %d wants {\"%s\": name}", k + 1, keys[kind]);
        return lookup_handle(c, name, kind, &v->p);
    }
    case 'd':
        if (json_number(get(a, "f"), &v->d))
            return fail(c, "bad case: parameter %d wants f", k + 1);
        return 0;
    case 'i': case 'l': case 'z': case 'q': {
        int64_t x;
        if (json_int(get(a, "i"), &x)) return fail(c, "bad case: parameter %d wants i", k + 1);
        if (tk[0] == 'i') v->i = (int)x;
        else if (tk[0] == 'l') v->l = x;
        else if (tk[0] == 'z') v->z = (size_t)x;
        else v->q = (uint64_t)x;
        return 0;
    }
    case 'u':
        if ((j = get(a, "flags"))) {
            if (!cJSON_IsArray(j)) return fail(c, "bad case: flags");
            unsigned f = 0;
            const cJSON *it;
            cJSON_ArrayForEach(it, j)
            {
                size_t q = 0;
                while (q < sizeof FLAGS / sizeof *FLAGS
                       && (!cJSON_IsString(it) || strcmp(it->valuestring, FLAGS[q].name)))
                    q++;
                if (q == sizeof FLAGS / sizeof *FLAGS) return fail(c, "bad case: unknown flag");
                f |= FLAGS[q].value;
            }
            v->u = f;
            return 0;
        } else {
            int64_t x;
            if (json_int(get(a, "i"), &x))
                return fail(c, "bad case: parameter %d wants flags", k + 1);
            v->u = (unsigned)x;
            return 0;
        }
    case 'D':
        if ((v->i = dtype_from_name(get_str(a, "dtype"))) < 0)
            return fail(c, "bad case: parameter %d wants dtype", k + 1);
        return 0;
    case 'R': {
        const char *r = get_str(a, "reduction");
        for (v->i = 0; v->i < 3; v->i++)
            if (r && !strcmp(r, REDUCTION_NAMES[v->i])) return 0;
        return fail(c, "bad case: parameter %d wants reduction", k + 1);
    }
    case 'L':
        if (is_null) {
            v->p = NULL;
            *last_count = 0;
            return 0;
        } else {
            int64_t *arr;
            if (json_ints(get(a, "ints"), &arr, last_count))
                return fail(c, "bad case: parameter %d wants ints", k + 1);
            v->p = cs->to_free[k] = arr;
            return 0;
        }
    }
    /* T and Tq: tensor arrays */
    if (is_null && tk[1] == 'q') {
        v->p = NULL;
        return 0;
    }
    j = get(a, "ts");
    if (!cJSON_IsArray(j)) return fail(c, "bad case: parameter %d wants ts", k + 1);
    size_t n = (size_t)cJSON_GetArraySize(j), i = 0;
    if (tk[1] == 'q' && n != *last_t_count)
        return fail(c, "bad case: parameter %d has %zu tensors, %zu expected", k + 1, n,
                    *last_t_count);
    void **arr = calloc(n + 1, sizeof *arr);
    v->p = cs->to_free[k] = arr;
    const cJSON *it;
    cJSON_ArrayForEach(it, j)
    {
        if (cJSON_IsNull(it)) arr[i++] = NULL;
        else if (lookup_handle(c, cJSON_IsString(it) ? it->valuestring : NULL, H_TENSOR, &arr[i++]))
            return -1;
    }
    if (tk[1] != 'q') *last_count = *last_t_count = n;
    return 0;
}

static int compare_value(run_ctx *c, const char *tk, const value *got, const cJSON *want)
{
    double w;
    switch (tk[1]) {
    case 's': case 'c': {
        const char *g = tk[1] == 's' ? got->s : got->c;
        if (!cJSON_IsString(want)) return fail(c, "bad case: value");
        if (!g || strcmp(g, want->valuestring))
            return fail(c, "value: expected \"%s\", got \"%s\"", want->valuestring,
                        g ? g : "(null)");
        return 0;
    }
    case 'd':
        if (json_number(want, &w)) return fail(c, "bad case: value");
        if (!close_enough(got->d, w, DT_F64, c->tols))
            return fail(c, "value: expected %.17g, got %.17g (float64: rtol %g, atol %g)", w,
                        got->d, c->tols[DT_F64].rtol, c->tols[DT_F64].atol);
        return 0;
    }
    int64_t g = tk[1] == 'l' ? got->l : tk[1] == 'z' ? (int64_t)got->z
                : tk[1] == 'q' ? (int64_t)got->q : got->i;
    int64_t wi;
    if (json_int(want, &wi)) return fail(c, "bad case: value");
    if (g != wi) return fail(c, "value: expected %lld, got %lld", (long long)wi, (long long)g);
    return 0;
}

static int step_call(run_ctx *c, const cJSON *s)
{
    const char *fn = get_str(s, "fn");
    c->fn = fn;
    fn_entry *e = fn ? lookup(fn) : NULL;
    if (!e) return fail(c, "bad case: unknown function");
    if (!e->callable) return fail(c, "bad case: %s cannot be called from data", fn);
    const cJSON *args = get(s, "args"), *outj = get(s, "out"), *err = get(s, "error");
    const cJSON *valuej = get(s, "value");

    /* The out names, in ABI order of the out-parameters (an out array takes them all). */
    const cJSON *outs[64];
    int n_outs = 0;
    if (cJSON_IsString(outj)) outs[n_outs++] = outj;
    else if (cJSON_IsArray(outj)) {
        const cJSON *it;
        cJSON_ArrayForEach(it, outj)
        {
            if (n_outs == 64) return fail(c, "bad case: too many outs");
            outs[n_outs++] = it;
        }
    }

    call_state cs;
    memset(&cs, 0, sizeof cs);
    void *av[MAX_PARAMS];
    int r = 0, ai = 0, oi = 0, n_args = cJSON_GetArraySize(args);
    size_t last_count = 0, last_t_count = 0;
    /* Pass 1: inputs, in order. */
    for (int k = 0; k < e->np && !r; k++) {
        const char *tk = e->tok[k];
        av[k] = &cs.v[k];
        if (tk[0] == 'o' || tk[0] == 'O' || tk[0] == '*') continue;
        if (tk[0] == 'n') {
            cs.v[k].z = last_count;
            continue;
        }
        if (ai >= n_args) {
            r = fail(c, "bad case: too few args");
            break;
        }
        r = decode_arg(c, &cs, e, k, cJSON_GetArrayItem(args, ai++), &last_count, &last_t_count);
    }
    if (!r && ai != n_args) r = fail(c, "bad case: %d args given, %d used", n_args, ai);
    /* Pass 2: outputs. O takes every out name and sets the n that follows it. */
    for (int k = 0; k < e->np && !r; k++) {
        const char *tk = e->tok[k];
        if (tk[0] == 'O') {
            size_t len = tk[1] == 'i' ? last_t_count : (size_t)n_outs;
            if (tk[1] == 'i' && outj && (size_t)n_outs != len) {
                r = fail(c, "bad case: %d out names for %zu outputs", n_outs, len);
                break;
            }
            cs.arrays[k] = malloc((len + 1) * sizeof(void *));
            cs.array_len[k] = len;
            for (size_t i = 0; i < len; i++) cs.arrays[k][i] = SENTINEL;
            cs.v[k].p = cs.arrays[k];
            if (tk[1] != 'i' && k + 1 < e->np && e->tok[k + 1][0] == 'n') cs.v[k + 1].z = len;
            oi = n_outs;
        } else if (is_handle_out(tk)) {
            const cJSON *name = oi < n_outs ? outs[oi] : NULL;
            oi++;
            if (name && cJSON_IsNull(name)) {
                cs.v[k].p = NULL; /* an optional output not wanted (ag_max_dim) */
            } else {
                cs.out[k].p = SENTINEL;
                cs.v[k].p = &cs.out[k];
            }
        } else if (is_scalar_out(tk)) {
            cs.out[k].l = 0;
            cs.v[k].p = &cs.out[k];
        }
    }
    if (!r && oi < n_outs) r = fail(c, "bad case: %d out names, %d outputs", n_outs, oi);

    int st = -1;
    if (!r) {
        if (VERBOSE > 1) printf("  call %s\n", fn);
        st = (int)invoke(fn, av, NULL);
    }

    /* Collect the outputs: (name, kind, handle) of every written handle. */
    int written_bad = 0;
    if (!r) {
        int want_status = ST_OK;
        if (err) {
            const char *sn = get_str(err, "status");
            for (want_status = 0; want_status < N_STATUS; want_status++)
                if (sn && !strcmp(sn, STATUS_NAMES[want_status])) break;
            if (want_status == N_STATUS) r = fail(c, "bad case: error status");
        }
        if (!r && st != want_status) {
            if (err)
                r = fail(c, "expected %s, got %s%s%s", STATUS_NAMES[want_status], status_name(st),
                         st ? ": " : "", st ? last_error() : "");
            else
                r = fail(c, "returned %s: %s", status_name(st), last_error());
        }
        if (!r && err) {
            int ls = (int)invoke("ag_last_status", NULL, NULL);
            const char *msg = last_error();
            const char *sub = get_str(err, "message_contains");
            if (ls != st)
                r = fail(c, "ag_last_status is %s after a call that returned %s", status_name(ls),
                         status_name(st));
            else if (!msg || !*msg)
                r = fail(c, "failed with %s but ag_last_error is empty", status_name(st));
            else if (sub && !strstr(msg, sub))
                r = fail(c, "message \"%s\" does not contain \"%s\"", msg, sub);
            else if (VERBOSE > 1)
                printf("  expected failure: %s\n", msg);
        }
    }
    /* Out-parameters: bound on success; on failure they must be untouched (ABI rule). */
    oi = 0;
    for (int k = 0; k < e->np; k++) {
        const char *tk = e->tok[k];
        if (tk[0] == 'O' && cs.arrays[k]) {
            for (size_t i = 0; i < cs.array_len[k]; i++) {
                void *h = cs.arrays[k][i];
                const cJSON *name = (int)i < n_outs ? outs[i] : NULL;
                if (st == ST_OK && !err && !r && cJSON_IsString(name)) {
                    if (h == SENTINEL) {
                        written_bad = 1;
                        h = NULL;
                    }
                    env_set(name->valuestring, H_TENSOR, h);
                } else if (h != SENTINEL) {
                    if (st != ST_OK) written_bad = 2;
                    release_handle(H_TENSOR, h);
                }
            }
            oi = n_outs;
            free(cs.arrays[k]);
        } else if (is_handle_out(tk)) {
            const cJSON *name = oi < n_outs ? outs[oi] : NULL;
            oi++;
            if (cs.v[k].p == NULL) continue;
            void *h = cs.out[k].p;
            if (st == ST_OK && !err && !r && cJSON_IsString(name)) {
                if (h == SENTINEL) {
                    written_bad = 1;
                    h = NULL;
                }
                env_set(name->valuestring, handle_kind(tk), h);
            } else if (h != SENTINEL) {
                if (st != ST_OK) written_bad = 2;
                release_handle(handle_kind(tk), h);
            }
        } else if (is_scalar_out(tk) && st == ST_OK && !err && !r) {
            if (valuej) r = compare_value(c, tk, &cs.out[k], valuej);
            if (tk[1] == 'c') invoke("ag_string_free", (void *[]){&cs.out[k].c}, NULL);
        }
    }
    for (int k = 0; k < e->np; k++) free(cs.to_free[k]);
    if (!r && written_bad == 1) r = fail(c, "returned AG_OK without writing an output");
    if (!r && written_bad == 2) r = fail(c, "wrote an out-parameter although it failed");
    return r;
}

static int run_steps(run_ctx *c, const cJSON *steps, const char *prefix);

static int run_step(run_ctx *c, const cJSON *s)
{
    const char *op = get_str(s, "op");
    c->op = op ? op : "?";
    c->fn = NULL;
    if (!op) return fail(c, "bad case: step without op");
    if (!strcmp(op, "tensor")) return step_tensor(c, s);
    if (!strcmp(op, "call")) return step_call(c, s);
    if (!strcmp(op, "expect")) return step_expect(c, s, 0);
    if (!strcmp(op, "expect_grad")) return step_expect(c, s, 1);
    if (!strcmp(op, "release")) {
        const char *name = get_str(s, "name");
        if (!name || !env_find(name)) return fail(c, "bad case: release of an unknown name");
        env_remove(name);
        return 0;
    }
    if (!strcmp(op, "no_grad")) {
        int prev = set_grad_enabled(0);
        char prefix[32];
        snprintf(prefix, sizeof prefix, "%.24s.", c->step);
        int r = run_steps(c, get(s, "steps"), prefix);
        set_grad_enabled(prev);
        return r;
    }
    return fail(c, "bad case: unknown op");
}

static int run_steps(run_ctx *c, const cJSON *steps, const char *prefix)
{
    if (!cJSON_IsArray(steps)) return fail(c, "bad case: steps");
    int i = 0;
    const cJSON *s;
    cJSON_ArrayForEach(s, steps)
    {
        snprintf(c->step, sizeof c->step, "%s%d", prefix, ++i);
        if (run_step(c, s)) return -1;
    }
    return 0;
}

static int read_tols(const cJSON *j, tol *tols)
{
    if (!j) return 0;
    for (int dt = 0; dt < 2; dt++) {
        const cJSON *t = get(j, DTYPE_NAMES[dt]);
        if (!t) continue;
        if (json_number(get(t, "rtol"), &tols[dt].rtol)
            || json_number(get(t, "atol"), &tols[dt].atol))
            return -1;
    }
    return 0;
}

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    if (buf) buf[n] = 0;
    fclose(f);
    return buf;
}

int main(int argc, char **argv)
{
    const char *filter = NULL;
    int argi = 1;
    while (argi < argc && argv[argi][0] == '-') {
        if (!strcmp(argv[argi], "-v")) VERBOSE++;
        else if (!strcmp(argv[argi], "-vv")) VERBOSE += 2;
        else if (!strcmp(argv[argi], "-k") && argi + 1 < argc) filter = argv[++argi];
        else break;
        argi++;
    }
    if (argc - argi < 2) {
        fprintf(stderr, "usage: %s [-v] [-k SUBSTRING] path/to/libautograd.so CASES.json...\n",
                argv[0]);
        return 2;
    }
    const char *lib_path = argv[argi++];
    LIB = dlopen(lib_path, RTLD_NOW | RTLD_LOCAL);
    if (!LIB) {
        fprintf(stderr, "dlopen: %s\n", dlerror());
        return 2;
    }
    int setup_bad = prepare_entries();
    setup_bad += check_exports(lib_path);
    if (setup_bad) {
        fprintf(stderr, "the signature table does not match the library (%d problems)\n",
                setup_bad);
        dlclose(LIB);
        return 1;
    }
    if (check_constants()) {
        dlclose(LIB);
        return 1;
    }

    int passed = 0, failed = 0, skipped = 0;
    for (; argi < argc; argi++) {
        const char *path = argv[argi];
        const char *file = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
        char *text = read_file(path);
        cJSON *root = text ? cJSON_Parse(text) : NULL;
        free(text);
        const cJSON *fmt = get(root, "format");
        tol file_tols[2] = {{0, 0}, {0, 0}};
        if (!root || !cJSON_IsNumber(fmt) || fmt->valueint != 1
            || read_tols(get(root, "tolerances"), file_tols)) {
            printf("FAIL %s: cannot read a format-1 case file\n", path);
            failed++;
            cJSON_Delete(root);
            continue;
        }
        const cJSON *cs;
        cJSON_ArrayForEach(cs, get(root, "cases"))
        {
            run_ctx c = {.file = file, .case_name = get_str(cs, "name"), .op = "case"};
            if (!c.case_name) c.case_name = "(unnamed)";
            if (filter && !strstr(c.case_name, filter)) continue;
            memcpy(c.tols, file_tols, sizeof file_tols);
            int r = read_tols(get(cs, "tolerances"), c.tols);
            if (r) r = fail(&c, "bad case: tolerances");
            if (VERBOSE) printf("case %s\n", c.case_name);
            set_grad_enabled(1);
            invoke("ag_clear_error", NULL, NULL);
            if (!r) r = run_steps(&c, get(cs, "steps"), "");
            env_clear();
            if (!r && !(int)invoke("ag_is_grad_enabled", NULL, NULL))
                r = fail(&c, "grad mode left disabled");
            if (r) failed++;
            else passed++;
        }
        cJSON_Delete(root);
    }
    free(ENV);
    /* No dlclose: unloading would drop the OpenMP runtime's pointers to its own start-up
     * allocations and make them look leaked to valgrind. */
    printf("%d passed, %d failed, %d skipped\n", passed, failed, skipped);
    return failed ? 1 : 0;
}
