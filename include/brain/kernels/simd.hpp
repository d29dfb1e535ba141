#pragma once
// Values for the CPU loops: a float or double, or a SIMD pack of them, with the few operations the
// kernels need (select, broadcast, load/store, horizontal reductions) and the one exponential.
//
// Why explicit packs: the loops used to be written as scalar code for GCC's auto-vectoriser. On
// the AMD machines (znver3 tuning) the LibTorch benchmark's translation unit left them scalar (the
// inliner's budget ran out before the loops' lambdas), -O2 (GCC 12's very-cheap cost model) left
// every loop scalar, and so did the x86-64 baseline for double: 5-25x slower than the vectorised
// loop (docs/performance.md, "Why it was slow on AMD"). With GCC/Clang vector extensions the loops
// are vectorised whatever the optimisation level, the inliner or the cost model say; the width is
// the widest the compiler may use (AVX-512: 64 bytes, AVX: 32, else 16). Other compilers, nvcc,
// and BRAIN_NO_SIMD get width 1: the same loops over scalars.
//
// Every function here is generic over V (a scalar or a pack): the kernels write each formula once
// and instantiate it for packs (the body of a loop) and for scalars (its tail, and the CUDA
// threads). Masks are bool for scalars and integer vectors (-1 / 0 per lane) for packs.

#include <brain/config.hpp>

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>
#include <utility>

#if !defined(BRAIN_NO_SIMD) && !defined(__CUDACC__) && (defined(__GNUC__) || defined(__clang__))
#define BRAIN_SIMD 1
#else
#define BRAIN_SIMD 0
#endif

namespace brain::inline v0::kernels::simd {

#if BRAIN_SIMD
/// Bytes per pack: the widest vector registers the compiler was allowed to use.
#if defined(__AVX512F__)
inline constexpr std::size_t register_bytes = 64;
#elif defined(__AVX__)
inline constexpr std::size_t register_bytes = 32;
#else
inline constexpr std::size_t register_bytes = 16;
#endif
#else
inline constexpr std::size_t register_bytes = 0;
#endif

/// Element type, mask type and width of a value type V.
template <class V>
struct traits {  // scalars
  using element = V;
  using mask = bool;
  using bits = std::conditional_t<sizeof(V) == 4, std::uint32_t, std::uint64_t>;
  static constexpr int width = 1;
};

#if BRAIN_SIMD
typedef float f32_pack __attribute__((vector_size(register_bytes)));
typedef double f64_pack __attribute__((vector_size(register_bytes)));
typedef std::int32_t i32_pack __attribute__((vector_size(register_bytes)));
typedef std::int64_t i64_pack __attribute__((vector_size(register_bytes)));
typedef std::uint32_t u32_pack __attribute__((vector_size(register_bytes)));
typedef std::uint64_t u64_pack __attribute__((vector_size(register_bytes)));
template <>
struct traits<f32_pack> {
  using element = float;
  using mask = i32_pack;
  using bits = u32_pack;
  static constexpr int width = static_cast<int>(register_bytes / 4);
};
template <>
struct traits<f64_pack> {
  using element = double;
  using mask = i64_pack;
  using bits = u64_pack;
  static constexpr int width = static_cast<int>(register_bytes / 8);
};
template <class T>
struct pack_of;
template <>
struct pack_of<float> {
  using type = f32_pack;
};
template <>
struct pack_of<double> {
  using type = f64_pack;
};
/// The SIMD pack of T (float or double).
template <class T>
using pack = typename pack_of<T>::type;
#else
/// Without SIMD, a "pack" is one value.
template <class T>
using pack = T;
#endif

template <class V>
using element_t = typename traits<V>::element;
template <class V>
using mask_t = typename traits<V>::mask;
/// Lanes of a pack of T: the step of the kernels' vector loops (1 without SIMD).
template <class T>
inline constexpr int width = traits<pack<T>>::width;

/// The bits of v (an unsigned integer of the same width per lane), and back.
template <class V>
BRAIN_HOST_DEVICE BRAIN_INLINE_ELEMENT typename traits<V>::bits to_bits(V v) {
  return std::bit_cast<typename traits<V>::bits>(v);
}
template <class V>
BRAIN_HOST_DEVICE BRAIN_INLINE_ELEMENT V from_bits(typename traits<V>::bits b) {
  return std::bit_cast<V>(b);
}

/// mask ? a : b, lane by lane, never branching: packs use the vector conditional (a blend under
/// the mask); scalars select on the bits, with the comparison computed unconditionally, because
/// GCC will not if-convert a floating-point ?: under -ftrapping-math.
template <class V>
BRAIN_HOST_DEVICE BRAIN_INLINE_ELEMENT V select(mask_t<V> mask, V a, V b) {
  if constexpr (traits<V>::width == 1) {
    using bits = typename traits<V>::bits;
    const bits m = bits(0) - static_cast<bits>(static_cast<bool>(mask));
    return from_bits<V>((to_bits(a) & m) | (to_bits(b) & ~m));
  } else {
    return mask ? a : b;
  }
}
/// For scalars the mask may come from integer arithmetic on bools (a | b).
template <class V>
  requires(traits<V>::width == 1)
BRAIN_HOST_DEVICE BRAIN_INLINE_ELEMENT V select(int mask, V a, V b) {
  return select<V>(mask != 0, a, b);
}

/// V with every lane set to x.
template <class V>
BRAIN_HOST_DEVICE BRAIN_INLINE_ELEMENT V broadcast(element_t<V> x) {
  if constexpr (traits<V>::width == 1)
    return x;
  else
    return V{} + x;
}

/// The larger of a and b per lane; NaN in b never wins, NaN in a stays (callers check validity apart).
template <class V>
BRAIN_HOST_DEVICE BRAIN_INLINE_ELEMENT V larger(V a, V b) {
  return select<V>(b > a, b, a);
}

/// Width-wide values at p (any alignment), and back.
template <class V, class T>
BRAIN_HOST_DEVICE BRAIN_INLINE_ELEMENT V load(const T* p) {
  if constexpr (traits<V>::width == 1) {
    return static_cast<V>(*p);
  } else {
    static_assert(std::is_same_v<T, element_t<V>>, "packs load their own element type");
    V v;
    std::memcpy(&v, p, sizeof v);
    return v;
  }
}
template <class V, class T>
BRAIN_HOST_DEVICE BRAIN_INLINE_ELEMENT void store(T* p, V v) {
  if constexpr (traits<V>::width == 1) {
    *p = static_cast<T>(v);
  } else {
    static_assert(std::is_same_v<T, element_t<V>>, "packs store their own element type");
    std::memcpy(p, &v, sizeof v);
  }
}

/// Lane l of v.
template <class V>
BRAIN_HOST_DEVICE BRAIN_INLINE_ELEMENT element_t<V> lane(V v, int l) {
  if constexpr (traits<V>::width == 1)
    return (void)l, v;
  else
    return v[l];
}

namespace detail {
/// The element type of a scalar or of any vector-extension type (also half packs, integer packs).
template <class V>
struct lane_type_of {
  using type = V;
};
#if BRAIN_SIMD
template <class V>
  requires requires(V v) { v[0]; }
struct lane_type_of<V> {
  using type = std::remove_cvref_t<decltype(std::declval<V>()[0])>;
};
/// The low (High = false) or high half of a pack, as a pack of half the width.
template <bool High, class V, std::size_t... I>
BRAIN_INLINE_ELEMENT auto half(V v, std::index_sequence<I...>) {
  constexpr std::size_t offset = High ? sizeof...(I) : 0;
  typedef typename lane_type_of<V>::type half_pack __attribute__((vector_size(sizeof(V) / 2)));
  return half_pack{v[I + offset]...};
}
#endif
/// op over v's lanes as a tree of halves (op takes and returns packs of any width, or scalars).
template <class V, class Op>
BRAIN_INLINE_ELEMENT auto reduce(V v, Op op) {
  using E = typename lane_type_of<V>::type;
  if constexpr (sizeof(V) == sizeof(E)) {
    return static_cast<E>(v[0]);
  } else {
#if BRAIN_SIMD
    constexpr std::size_t half_width = sizeof(V) / sizeof(E) / 2;
    return reduce(op(half<false>(v, std::make_index_sequence<half_width>{}),
                     half<true>(v, std::make_index_sequence<half_width>{})),
                  op);
#endif
  }
}
}  // namespace detail

/// x in every lane of an integer pack B (or x itself for a scalar B).
template <class B>
BRAIN_HOST_DEVICE BRAIN_INLINE_ELEMENT B splat(typename detail::lane_type_of<B>::type x) {
  if constexpr (std::is_arithmetic_v<B>)
    return x;
  else
    return B{} + x;
}

/// The sum of v's lanes, pairwise (a tree of halves).
template <class V>
BRAIN_HOST_DEVICE BRAIN_INLINE_ELEMENT element_t<V> sum_lanes(V v) {
  if constexpr (traits<V>::width == 1)
    return v;
  else
    return detail::reduce(v, [](auto a, auto b) { return a + b; });
}
/// The largest of v's lanes (as larger(): NaN never wins).
template <class V>
BRAIN_HOST_DEVICE BRAIN_INLINE_ELEMENT element_t<V> max_lanes(V v) {
  if constexpr (traits<V>::width == 1)
    return v;
  else
    return detail::reduce(v, [](auto a, auto b) { return b > a ? b : a; });
}
/// True when any lane of the mask is set.
template <class V>
BRAIN_HOST_DEVICE BRAIN_INLINE_ELEMENT bool any(mask_t<V> m) {
  if constexpr (traits<V>::width == 1) {
    return m;
  } else {
    using lane_int = std::conditional_t<sizeof(element_t<V>) == 4, std::int32_t, std::int64_t>;
    lane_int found = 0;
    for (int l = 0; l < traits<V>::width; ++l) found |= m[l];
    return found != 0;
  }
}

/// log(x) without a library call or a branch, for a float or double value or pack (one per group
/// in the kernels, so a libm call per group cost 18% of the float loss at n = 32). The method and
/// coefficients of fdlibm's e_log.c and e_logf.c (as in musl): x = 2^k (1 + f), 1 + f in
/// [sqrt(2)/2, sqrt(2)), log(1 + f) = f - f^2/2 + s (f^2/2 + R(s^2)), s = f / (2 + f); within 1 ulp.
/// log(0) = -inf, log(x < 0) = NaN, log(+inf) = +inf, NaN for NaN; denormals are scaled first.
template <class V>
BRAIN_HOST_DEVICE BRAIN_INLINE_ELEMENT V log_branchless(V x) {
  using E = element_t<V>;
  using bits = typename traits<V>::bits;
  const auto c = [](E value) { return broadcast<V>(value); };
  constexpr bool single = sizeof(E) == 4;
  constexpr int mantissa = single ? 23 : 52;
  constexpr std::uint64_t one = single ? 0x3f800000u : 0x3ff0000000000000u;
  constexpr std::uint64_t sqrt_half = single ? 0x3f3504f3u : 0x3fe6a09e00000000u;  // bits of ~sqrt(2)/2
  constexpr std::uint64_t mantissa_mask = (std::uint64_t(1) << mantissa) - 1;
  constexpr E shifter = single ? E(12582912.0f) : E(6755399441055744.0);          // 1.5 * 2^mantissa
  constexpr E denormal_scale = single ? E(33554432.0f) : E(18014398509481984.0);  // 2^25, 2^54
  constexpr E denormal_shift = single ? E(25) : E(54);
  const auto tiny = x < c(std::numeric_limits<E>::min());
  const V y = select<V>(tiny, x * c(denormal_scale), x);
  // Moves the exponent boundary to sqrt(2)/2: 1 + f lands in [sqrt(2)/2, sqrt(2)).
  const bits moved = to_bits(y) + splat<bits>(one - sqrt_half);
  const bits exponent = moved >> mantissa;  // biased, sign bit clear for x > 0
  // k as a floating-point value, read off the shifter's low bits (no integer conversion needed).
  const V k = (from_bits<V>(to_bits(c(shifter)) + exponent) - c(shifter)) - c(single ? E(127) : E(1023)) -
              select<V>(tiny, c(denormal_shift), c(0));
  const V f = from_bits<V>((moved & splat<bits>(mantissa_mask)) + splat<bits>(sqrt_half)) - c(1);
  const V s = f / (c(2) + f), z = s * s, w = z * z, half_f2 = c(0.5) * f * f;
  V r;
  if constexpr (single) {
    const V t1 = w * (c(4.0000972152e-01f) + w * c(2.4279078841e-01f));
    const V t2 = z * (c(6.6666662693e-01f) + w * c(2.8498786688e-01f));
    r = t1 + t2;
  } else {
    const V t1 =
        w * (c(3.999999999940941908e-01) + w * (c(2.222219843214978396e-01) + w * c(1.531383769920937332e-01)));
    const V t2 =
        z * (c(6.666666666666735130e-01) +
             w * (c(2.857142874366239149e-01) + w * (c(1.818357216161805012e-01) + w * c(1.479819860511658591e-01))));
    r = t1 + t2;
  }
  constexpr E ln2_hi = single ? E(6.9313812256e-01f) : E(6.93147180369123816490e-01);
  constexpr E ln2_lo = single ? E(9.0580006145e-06f) : E(1.90821492927058770002e-10);
  const V value = s * (half_f2 + r) + k * c(ln2_lo) - half_f2 + f + k * c(ln2_hi);
  constexpr E inf = std::numeric_limits<E>::infinity();
  return select<V>(x == c(0), c(-inf),
                   select<V>(x < c(0), c(std::numeric_limits<E>::quiet_NaN()), select<V>(x < c(inf), value, x)));
}

/// exp(x) without a library call or a branch, for a float or double value or pack: exp(x) = 2^k
/// exp(r), x = k ln 2 + r, |r| <= ln 2 / 2 (Cody and Waite's two-part ln 2), rounding k with the
/// 1.5 * 2^(mantissa bits) shifter. The one exponential of brain's kernels (CPU loops and CUDA).
///   float:  Cephes' expf polynomial, relative error below 1e-7 on [-87.3, 88.3]; exactly 0 below
///           -87.3 (so exp(-inf) = 0), +inf above 88.3, NaN for NaN.
///   double: exp(r) = 1 + 2 r P(r^2) / (Q(r^2) - r P(r^2)) with Cephes' coefficients (about 1 ulp),
///           2^k applied as two powers of two so that denormal results are right; exactly 0 below
///           log(denorm_min), +inf above log(max), NaN for NaN.
template <class V>
BRAIN_HOST_DEVICE BRAIN_INLINE_ELEMENT V exp_branchless(V x) {
  using E = element_t<V>;
  using bits = typename traits<V>::bits;
  const auto c = [](E value) { return broadcast<V>(value); };
  if constexpr (sizeof(E) == 4) {
    constexpr float lo = -87.3f, hi = 88.3f, log2e = 1.44269504088896341f;
    constexpr float ln2_hi = 0.693359375f, ln2_lo = -2.12194440e-4f, shifter = 12582912.0f;  // 1.5 * 2^23
    const auto below = x<c(lo), above = x> c(hi), nan = x != x;
    const V clamped = select<V>(below | nan, c(lo), select<V>(above, c(hi), x));
    const V shifted = clamped * c(log2e) + c(shifter);  // round(x log2 e) in the low bits
    const V k = shifted - c(shifter);
    const V r = clamped - k * c(ln2_hi) - k * c(ln2_lo);
    const V poly =
        ((((c(1.9875691500e-4f) * r + c(1.3981999507e-3f)) * r + c(8.3334519073e-3f)) * r + c(4.1665795894e-2f)) * r +
         c(1.6666665459e-1f)) *
            r +
        c(5.0000001201e-1f);
    const bits k_bits = to_bits(shifted) - to_bits(c(shifter));  // k as a two's complement integer
    const V e = (poly * r * r + r + c(1.0f)) * from_bits<V>((k_bits + splat<bits>(127)) << 23);
    return select<V>(below, c(0.0f), select<V>(above, c(std::numeric_limits<float>::infinity()), select<V>(nan, x, e)));
  } else {
    constexpr double log2e = 1.4426950408889634, ln2_hi = 6.93145751953125e-1, ln2_lo = 1.42860682030941723212e-6;
    constexpr double lo = -745.13321910194122, hi = 709.78271289338397;
    constexpr double shifter = 6755399441055744.0;  // 1.5 * 2^52: adding it rounds to an integer
    const V clamped = select<V>(x < c(lo), c(lo), select<V>(x > c(hi), c(hi), x));
    const V k = (clamped * c(log2e) + c(shifter)) - c(shifter);
    const V r = (clamped - k * c(ln2_hi)) - k * c(ln2_lo), r2 = r * r;
    const V p =
        r * ((c(1.26177193074810590878e-4) * r2 + c(3.02994407707441961300e-2)) * r2 + c(9.99999999999999999910e-1));
    const V q =
        ((c(3.00198505138664455042e-6) * r2 + c(2.52448340349684104192e-3)) * r2 + c(2.27265548208155028766e-1)) * r2 +
        c(2.00000000000000000009e0);
    const V e = c(1.0) + c(2.0) * p / (q - p);
    // 2^k as 2^k1 * 2^k2, k1 = round(k / 2): each factor's exponent stays normal for k in [-1075, 1024].
    const V k1 = (k * c(0.5) + c(shifter)) - c(shifter), k2 = k - k1;
    const auto power_of_two = [&](V integer) {  // 2^integer, the integer read off the shifted bits
      return from_bits<V>(((to_bits(integer + c(shifter)) - to_bits(c(shifter))) + splat<bits>(1023)) << 52);
    };
    const V value = e * power_of_two(k1) * power_of_two(k2);
    return select<V>(x < c(lo), c(0.0),
                     select<V>(x > c(hi), c(std::numeric_limits<double>::infinity()), select<V>(x != x, x, value)));
  }
}

}  // namespace brain::inline v0::kernels::simd
