/* tensor.c - type traits table (GGML's type ids, block sizes, byte sizes). */
#include "tensor.h"

static const pg_type_traits traits_[PG_TYPE_COUNT] = {
    [PG_TYPE_F32] = {"F32", 1, 4, true},
    [PG_TYPE_F16] = {"F16", 1, 2, true},
    [PG_TYPE_Q4_0] = {"Q4_0", 32, 18, true},
    [PG_TYPE_Q4_1] = {"Q4_1", 32, 20, true},
    [PG_TYPE_Q5_0] = {"Q5_0", 32, 22, true},
    [PG_TYPE_Q5_1] = {"Q5_1", 32, 24, true},
    [PG_TYPE_Q8_0] = {"Q8_0", 32, 34, true},
    [PG_TYPE_Q8_1] = {"Q8_1", 32, 36, false},
    [PG_TYPE_Q2_K] = {"Q2_K", 256, 84, true},
    [PG_TYPE_Q3_K] = {"Q3_K", 256, 110, true},
    [PG_TYPE_Q4_K] = {"Q4_K", 256, 144, true},
    [PG_TYPE_Q5_K] = {"Q5_K", 256, 176, true},
    [PG_TYPE_Q6_K] = {"Q6_K", 256, 210, true},
    [PG_TYPE_Q8_K] = {"Q8_K", 256, 292, false},
    [16] = {"IQ2_XXS", 256, 66, false},
    [17] = {"IQ2_XS", 256, 74, false},
    [18] = {"IQ3_XXS", 256, 98, false},
    [19] = {"IQ1_S", 256, 50, false},
    [PG_TYPE_IQ4_NL] = {"IQ4_NL", 32, 18, true},
    [21] = {"IQ3_S", 256, 110, false},
    [22] = {"IQ2_S", 256, 82, false},
    [PG_TYPE_IQ4_XS] = {"IQ4_XS", 256, 136, true},
    [PG_TYPE_I8] = {"I8", 1, 1, false},
    [PG_TYPE_I16] = {"I16", 1, 2, false},
    [PG_TYPE_I32] = {"I32", 1, 4, false},
    [PG_TYPE_I64] = {"I64", 1, 8, false},
    [PG_TYPE_F64] = {"F64", 1, 8, false},
    [29] = {"IQ1_M", 256, 56, false},
    [PG_TYPE_BF16] = {"BF16", 1, 2, true},
    [PG_TYPE_TQ1_0] = {"TQ1_0", 256, 54, true},
    [PG_TYPE_TQ2_0] = {"TQ2_0", 256, 66, true},
    [PG_TYPE_MXFP4] = {"MXFP4", 32, 17, true},
    [PG_TYPE_Q16_0] = {"Q16_0", 32, 68, false},
};

const pg_type_traits *pg_type_info(int type) {
    if (type < 0 || type >= PG_TYPE_COUNT || !traits_[type].name) return NULL;
    return &traits_[type];
}

const char *pg_type_name(int type) {
    const pg_type_traits *t = pg_type_info(type);
    return t ? t->name : "?";
}

size_t pg_row_bytes(pg_type t, int64_t n) {
    const pg_type_traits *tt = pg_type_info(t);
    if (!tt || n < 0 || n % tt->blck) return 0;
    return (size_t)(n / tt->blck) * tt->type_size;
}

int64_t pg_tensor_nelements(const pg_tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->n_dims; i++) n *= t->ne[i];
    return n;
}
