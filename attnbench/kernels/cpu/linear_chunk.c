/* Causal chunked linear attention, sum rule, forward only, fused for a CPU core.
 *
 * One call runs rows [row0, row1) of q, k, v (rows x n x F or D, contiguous) and writes out.
 * Per chunk of C tokens, with the memory S (F x D) and key sum z (F) it enters with:
 *   Q = phi(q), K = phi(k) (elementwise: identity or elu + 1; optionally sum-normalised),
 *   A = tril(Q K^T), O = [Q | A] [S ; V] (one product), O /= den (attention normalisation:
 *   den = rowsum(A) + Q z + EPS), S += K^T V, z += colsum(K).
 * Every product goes to the BLAS that torch links (sgemm_/dgemm_, LP64), on operands that stay
 * in L1/L2; phi, the mask, the denominators and the output are one pass over each chunk, the
 * next chunk's rows are prefetched while this one is computed, and the output is written once
 * (streaming stores where the row is 64-byte aligned). The arithmetic, and the FLOP count, is
 * that of the eager chunked form (`chunk_blocks.py`) with the same C.
 *
 * The body is linear_chunk.inc, included once per precision. Scratch comes from the caller
 * (torch tensors, so that memory measurement sees it); `scratch_floats` gives its size.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

extern void sgemm_(const char*, const char*, const int*, const int*, const int*, const float*,
                   const float*, const int*, const float*, const int*, const float*, float*,
                   const int*);
extern void dgemm_(const char*, const char*, const int*, const int*, const int*, const double*,
                   const double*, const int*, const double*, const int*, const double*, double*,
                   const int*);
/* MKL, where torch links it: keep each call's BLAS on the calling thread (the caller splits
 * rows across threads itself); absent elsewhere */
extern int MKL_Set_Num_Threads_Local(int) __attribute__((weak));

enum { MAP_IDENTITY = 0, MAP_ELU = 1 };

long scratch_floats(long f, long d, long c) {
  /* [Q | A] c x (f + c), K c x f, [S ; V] (f + c) x d, O c x d, z f, den c, 16 per region for alignment */
  return c * (f + c) + c * f + (f + c) * d + c * d + f + c + 6 * 16;
}

/* exp(x) for x <= 0 in float: Cody-Waite reduction and a degree-7 polynomial (relative error
 * < 2e-7), written so that the compiler vectorises the loop around it (libm's expf is not
 * vectorised without -ffast-math, which would drop the NaN checks) */
static inline float exp_nonpositive(float x) {
  float c = x < -87.f ? -87.f : x;
  float r = c * 1.44269504088896341f + 12582912.f; /* 1.5 * 2^23: round to nearest */
  float nf = r - 12582912.f;
  int32_t ni;
  memcpy(&ni, &r, 4);
  ni -= 0x4B400000;
  float f = (c - nf * 0.693145751953125f) - nf * 1.42860682030941723212e-6f;
  float p = 1.f / 5040.f;
  p = p * f + 1.f / 720.f;
  p = p * f + 1.f / 120.f;
  p = p * f + 1.f / 24.f;
  p = p * f + 1.f / 6.f;
  p = p * f + 0.5f;
  p = p * f + 1.f;
  p = p * f + 1.f;
  int32_t pi;
  memcpy(&pi, &p, 4);
  pi += ni * (1 << 23);
  float e;
  memcpy(&e, &pi, 4);
  return e;
}

static inline void prefetch(const void* p, long bytes) {
  for (long o = 0; o < bytes; o += 64) __builtin_prefetch((const char*)p + o, 0, 1);
}

#define REAL float
#define NAME(x) x##_f32
#define GEMM sgemm_
#define EXP_NONPOSITIVE exp_nonpositive
#include "linear_chunk.inc"
#undef REAL
#undef NAME
#undef GEMM
#undef EXP_NONPOSITIVE

#define REAL double
#define NAME(x) x##_f64
#define GEMM dgemm_
#define EXP_NONPOSITIVE exp
#include "linear_chunk.inc"
