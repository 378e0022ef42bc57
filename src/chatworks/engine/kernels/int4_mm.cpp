// Decode-sized matmuls (a few rows) on 4-bit weights by integer dot products, as llama.cpp does
// them: each activation block of 32 is rounded to integers with its own scale, multiplied by the
// weights' 4-bit codes in int8 arithmetic (AVX-512 VNNI, or AVX2's pair-wise multiply-add), and
// only the block's 32-term integer sum is scaled to float. Weights stay 4 bits in memory and are
// never widened to floats, so a step reads ~0.63 bytes per weight and does little else.
//
// Activations are 16-bit fixed point per block, in two int8 halves: x ~ s (256 a + b), s the
// block's largest |x| / (127 * 256), a = x rounded to 127 steps, b the rest rounded to 1/256 of
// a step, |a|, |b| <= 127. Each half takes the int8 instructions; the sums are joined as
// 256 * dot(a) + dot(b). One int8 (llama.cpp's Q8_0) moves an activation by up to 1/254 of its
// block's largest, more than bfloat16 does, and changed greedy answers more often than torch's
// int4 kernel with bfloat16 inputs (docs/benchmarks.md); this way they move 256x less, for
// twice the integer work on the same weight bytes.
//
// Weight layout (`int4_pack` in engine/int4_kernel.py makes it once at load): tiles of 16
// output rows; per tile, per block of 32 inputs, 320 bytes: four 64-byte chunks of codes, then
// 16 float16 scales, then 16 float16 minimums (w = code * scale + minimum, as GGUF's Q4_1).
// Chunk c holds inputs 8c..8c+7: byte 4 * row + j has input 8c + j in its low nibble and input
// 8c + 4 + j in its high one, so one AND (low) or shift and AND (high) gives 16 rows x 4 inputs
// of bytes, what one VNNI instruction multiplies against 4 broadcast activation bytes.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

namespace {

constexpr int64_t kGroup = 32;                        // inputs per block
constexpr int64_t kTile = 16;                         // output rows per tile
constexpr int64_t kCodeBytes = kTile * kGroup / 2;    // 256
constexpr int64_t kBlockBytes = kCodeBytes + 4 * kTile;  // + float16 scales and minimums
constexpr int kMaxRowsVnni = 4;  // rows per pass over the weights (accumulators in registers)
constexpr int kMaxRowsAvx2 = 2;

enum Isa : int64_t { kAvx2 = 0, kAvx512Vnni = 1 };

// One row's activations per block: x ~ scale * (256 * high + low), |high|, |low| <= 127, and
// per block scale * sum(256 * high + low), which multiplies the weights' minimums.
struct Quantized {
  const int8_t* high;
  const int8_t* low;
  const float* scale;
  const float* scaled_sum;
};

// Activations rounded eight lanes at a time (AVX2, which every path's CPU has): x * (1 / step)
// rounded to even and clamped, as the comment above says. No "fma" in the targets: a fused
// multiply-add would round (x * inverse - a) differently from the two steps written.
__attribute__((target("avx2"))) inline __m256 to_int8(__m256 v) {
  const __m256 rounded = _mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  return _mm256_min_ps(_mm256_max_ps(rounded, _mm256_set1_ps(-127.f)), _mm256_set1_ps(127.f));
}

// 32 int32 in -127..127 -> 32 bytes in order (the packs interleave 128-bit lanes; the
// permutation undoes it).
__attribute__((target("avx2"))) inline void store_bytes(const __m256i (&v)[4], int8_t* out) {
  const __m256i words_01 = _mm256_packs_epi32(v[0], v[1]), words_23 = _mm256_packs_epi32(v[2], v[3]);
  const __m256i bytes = _mm256_packs_epi16(words_01, words_23);
  const __m256i in_order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  _mm256_storeu_si256((__m256i*)out, _mm256_permutevar8x32_epi32(bytes, in_order));
}

__attribute__((target("avx2"))) void quantize_row(const float* x, int64_t k, int8_t* high,
                                                  int8_t* low, float* scale, float* scaled_sum) {
  const __m256 magnitude = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
  for (int64_t b = 0; b < k / kGroup; ++b) {
    const float* v = x + b * kGroup;
    __m256 top = _mm256_setzero_ps();
    for (int i = 0; i < 4; ++i) {
      top = _mm256_max_ps(top, _mm256_and_ps(_mm256_loadu_ps(v + 8 * i), magnitude));
    }
    top = _mm256_max_ps(top, _mm256_permute2f128_ps(top, top, 1));
    top = _mm256_max_ps(top, _mm256_shuffle_ps(top, top, 0x4E));
    top = _mm256_max_ps(top, _mm256_shuffle_ps(top, top, 0xB1));
    const float step = _mm256_cvtss_f32(top) / 127.f;  // of `high`; `low`'s is step / 256
    const __m256 inverse = _mm256_set1_ps(step > 0.f ? 1.f / step : 0.f);
    __m256i a[4], rest[4], sum = _mm256_setzero_si256();
    for (int i = 0; i < 4; ++i) {
      const __m256 scaled = _mm256_mul_ps(_mm256_loadu_ps(v + 8 * i), inverse);
      const __m256 whole = to_int8(scaled);
      a[i] = _mm256_cvtps_epi32(whole);
      rest[i] = _mm256_cvtps_epi32(
          to_int8(_mm256_mul_ps(_mm256_sub_ps(scaled, whole), _mm256_set1_ps(256.f))));
      sum = _mm256_add_epi32(sum, _mm256_add_epi32(_mm256_slli_epi32(a[i], 8), rest[i]));
    }
    store_bytes(a, high + b * kGroup);
    store_bytes(rest, low + b * kGroup);
    __m128i total = _mm_add_epi32(_mm256_castsi256_si128(sum), _mm256_extracti128_si256(sum, 1));
    total = _mm_add_epi32(total, _mm_shuffle_epi32(total, 0x4E));
    total = _mm_add_epi32(total, _mm_shuffle_epi32(total, 0xB1));
    scale[b] = step / 256.f;
    scaled_sum[b] = scale[b] * static_cast<float>(_mm_cvtsi128_si32(total));
  }
}

inline int32_t four_bytes(const int8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

template <int R>
__attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,fma,f16c"))) void tiles_vnni(
    const uint8_t* weights, int64_t blocks, const Quantized* rows, float* out, int64_t n,
    int64_t first, int64_t last) {
  const __m512i low = _mm512_set1_epi8(0x0F);
  for (int64_t t = first; t < last; ++t) {
    const uint8_t* p = weights + t * blocks * kBlockBytes;
    __m512 acc[R];
    for (int r = 0; r < R; ++r) acc[r] = _mm512_setzero_ps();
    for (int64_t b = 0; b < blocks; ++b, p += kBlockBytes) {
      __m512i dot[R][2];  // with the activations' high and low bytes
      for (int r = 0; r < R; ++r) dot[r][0] = dot[r][1] = _mm512_setzero_si512();
      for (int c = 0; c < 4; ++c) {
        const __m512i v = _mm512_loadu_si512(p + 64 * c);
        const __m512i lo = _mm512_and_si512(v, low);
        const __m512i hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), low);
        for (int r = 0; r < R; ++r) {
          const int64_t at = b * kGroup + 8 * c;
          for (int part = 0; part < 2; ++part) {
            const int8_t* x = (part == 0 ? rows[r].high : rows[r].low) + at;
            dot[r][part] = _mm512_dpbusd_epi32(dot[r][part], lo, _mm512_set1_epi32(four_bytes(x)));
            dot[r][part] =
                _mm512_dpbusd_epi32(dot[r][part], hi, _mm512_set1_epi32(four_bytes(x + 4)));
          }
        }
      }
      const __m512 scale = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i*)(p + kCodeBytes)));
      const __m512 minimum =
          _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i*)(p + kCodeBytes + 2 * kTile)));
      for (int r = 0; r < R; ++r) {
        const __m512 both = _mm512_mul_ps(scale, _mm512_set1_ps(rows[r].scale[b]));
        const __m512i sums = _mm512_add_epi32(_mm512_slli_epi32(dot[r][0], 8), dot[r][1]);
        acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sums), both, acc[r]);
        acc[r] = _mm512_fmadd_ps(minimum, _mm512_set1_ps(rows[r].scaled_sum[b]), acc[r]);
      }
    }
    for (int r = 0; r < R; ++r) _mm512_storeu_ps(out + r * n + t * kTile, acc[r]);
  }
}

// AVX2 has no byte dot product into int32: _mm256_maddubs_epi16 multiplies unsigned codes
// (<= 15) by signed activations (|a| <= 127) and adds pairs into int16, <= 2 * 15 * 127 = 3,810
// each; a block's 8 of them add up to <= 30,480, inside int16, so one _mm256_madd_epi16 per
// block widens to int32.
template <int R>
__attribute__((target("avx2,fma,f16c"))) void tiles_avx2(const uint8_t* weights, int64_t blocks,
                                                           const Quantized* rows, float* out,
                                                           int64_t n, int64_t first,
                                                           int64_t last) {
  const __m256i low = _mm256_set1_epi8(0x0F);
  const __m256i ones = _mm256_set1_epi16(1);
  for (int64_t t = first; t < last; ++t) {
    const uint8_t* p = weights + t * blocks * kBlockBytes;
    __m256 acc[R][2];
    for (int r = 0; r < R; ++r) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
    for (int64_t b = 0; b < blocks; ++b, p += kBlockBytes) {
      __m256i dot[R][2][2];  // [row][output rows 0-7, 8-15][activations' high, low bytes]
      for (int r = 0; r < R; ++r)
        for (int h = 0; h < 2; ++h) dot[r][h][0] = dot[r][h][1] = _mm256_setzero_si256();
      for (int c = 0; c < 4; ++c) {
        for (int h = 0; h < 2; ++h) {
          const __m256i v = _mm256_loadu_si256((const __m256i*)(p + 64 * c + 32 * h));
          const __m256i lo = _mm256_and_si256(v, low);
          const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low);
          for (int r = 0; r < R; ++r) {
            const int64_t at = b * kGroup + 8 * c;
            for (int part = 0; part < 2; ++part) {
              const int8_t* x = (part == 0 ? rows[r].high : rows[r].low) + at;
              const __m256i a = _mm256_maddubs_epi16(lo, _mm256_set1_epi32(four_bytes(x)));
              const __m256i e = _mm256_maddubs_epi16(hi, _mm256_set1_epi32(four_bytes(x + 4)));
              dot[r][h][part] = _mm256_add_epi16(dot[r][h][part], _mm256_add_epi16(a, e));
            }
          }
        }
      }
      for (int h = 0; h < 2; ++h) {
        const __m256 scale =
            _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(p + kCodeBytes + 16 * h)));
        const __m256 minimum = _mm256_cvtph_ps(
            _mm_loadu_si128((const __m128i*)(p + kCodeBytes + 2 * kTile + 16 * h)));
        for (int r = 0; r < R; ++r) {
          const __m256i high = _mm256_madd_epi16(dot[r][h][0], ones);
          const __m256i joined =
              _mm256_add_epi32(_mm256_slli_epi32(high, 8), _mm256_madd_epi16(dot[r][h][1], ones));
          const __m256 sums = _mm256_cvtepi32_ps(joined);
          const __m256 both = _mm256_mul_ps(scale, _mm256_set1_ps(rows[r].scale[b]));
          acc[r][h] = _mm256_fmadd_ps(sums, both, acc[r][h]);
          acc[r][h] = _mm256_fmadd_ps(minimum, _mm256_set1_ps(rows[r].scaled_sum[b]), acc[r][h]);
        }
      }
    }
    for (int r = 0; r < R; ++r) {
      _mm256_storeu_ps(out + r * n + t * kTile, acc[r][0]);
      _mm256_storeu_ps(out + r * n + t * kTile + 8, acc[r][1]);
    }
  }
}

using TileFn = void (*)(const uint8_t*, int64_t, const Quantized*, float*, int64_t, int64_t,
                        int64_t);

TileFn pick(int64_t isa, int rows) {
  static const TileFn vnni[] = {tiles_vnni<1>, tiles_vnni<2>, tiles_vnni<3>, tiles_vnni<4>};
  static const TileFn avx2[] = {tiles_avx2<1>, tiles_avx2<2>};
  return (isa == kAvx512Vnni ? vnni : avx2)[rows - 1];
}

// x [rows, k] float32 times the packed weights [tiles, k / 32, 320] -> [rows, 16 * tiles].
at::Tensor int4_mm(const at::Tensor& x, const at::Tensor& packed, int64_t isa) {
  TORCH_CHECK(x.dim() == 2 && x.scalar_type() == at::kFloat, "x: float32 [rows, inputs]");
  TORCH_CHECK(packed.dim() == 3 && packed.scalar_type() == at::kByte &&
                  packed.size(2) == kBlockBytes && packed.is_contiguous(),
              "packed: uint8 [tiles, blocks, 320] from int4_pack");
  TORCH_CHECK(x.size(1) == packed.size(1) * kGroup, "inputs differ from the packed weights'");
  TORCH_CHECK(isa == kAvx2 || isa == kAvx512Vnni, "isa: 0 (AVX2) or 1 (AVX-512 VNNI)");
  const at::Tensor input = x.contiguous();
  const int64_t m = input.size(0), k = input.size(1), tiles = packed.size(0), blocks = k / kGroup;
  const int64_t n = tiles * kTile;
  at::Tensor out = at::empty({m, n}, x.options());
  if (m == 0) return out;
  at::Tensor codes = at::empty({2, m, k}, x.options().dtype(at::kChar));
  at::Tensor scales = at::empty({2, m, blocks}, x.options());
  std::vector<Quantized> rows(m);
  for (int64_t r = 0; r < m; ++r) {
    int8_t* high = codes.data_ptr<int8_t>() + r * k;
    float* scale = scales.data_ptr<float>() + r * blocks;
    quantize_row(input.data_ptr<float>() + r * k, k, high, high + m * k, scale,
                 scale + m * blocks);
    rows[r] = {high, high + m * k, scale, scale + m * blocks};
  }
  const uint8_t* weights = packed.data_ptr<uint8_t>();
  float* result = out.data_ptr<float>();
  // Threads split the tiles; each takes at least ~64 KB of weights, or waking it costs more.
  const int64_t grain = std::max<int64_t>(1, (64 << 10) / (blocks * kBlockBytes));
  at::parallel_for(0, tiles, grain, [&](int64_t first, int64_t last) {
    const int64_t most = isa == kAvx512Vnni ? kMaxRowsVnni : kMaxRowsAvx2;
    for (int64_t r = 0; r < m; r += most) {
      const int chunk = static_cast<int>(std::min<int64_t>(most, m - r));
      pick(isa, chunk)(weights, blocks, rows.data() + r, result + r * n, n, first, last);
    }
  });
  return out;
}

}  // namespace

TORCH_LIBRARY(chatworks, m) {
  m.def("int4_mm(Tensor x, Tensor packed, int isa) -> Tensor");
}

TORCH_LIBRARY_IMPL(chatworks, CPU, m) {
  m.impl("int4_mm", &int4_mm);
}
