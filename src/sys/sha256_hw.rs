//! The SHA-256 compression function through the x86 SHA extensions (`sha256rnds2`,
//! `sha256msg1`, `sha256msg2`), via `std::arch`.
//!
//! Owns: the only `unsafe` needed for hardware SHA-256 (calling `target_feature` intrinsics
//! after runtime detection). Must not: pad, buffer or hold any policy; `crypto::sha256` owns
//! the hash and the software fallback, and decides.

/// Compresses one 64-byte `block` into `state` (FIPS 180-4 §6.2.2) with the CPU's SHA
/// instructions, `k` being the 64 round constants.
///
/// Returns `false`, leaving `state` untouched, when the CPU lacks the instructions (or the
/// target is not x86-64): the caller then compresses in software.
pub fn compress(state: &mut [u32; 8], block: &[u8; 64], k: &[u32; 64]) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        if available() {
            // SAFETY: `compress_sha_ni` is compiled with `target_feature(enable = "sha,sse2,
            // ssse3,sse4.1")`; `available` just checked at runtime that this CPU has each of
            // them, so every instruction it uses is valid here. It touches memory only through
            // safe indexing of its array arguments.
            unsafe { compress_sha_ni(state, block, k) };
            return true;
        }
    }
    let _ = (state, block, k);
    false
}

/// Whether the hardware path is available on this CPU (the detection is cached by std).
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("sha")
            && std::is_x86_feature_detected!("sse2")
            && std::is_x86_feature_detected!("ssse3")
            && std::is_x86_feature_detected!("sse4.1")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The 64 rounds as 16 groups of 4. The message schedule in groups of four words
/// `G[g] = W[4g..4g+4]`: `G[0..4]` are the block's words, and for `g >= 4`
/// `G[g] = msg2(msg1(G[g-4], G[g-3]) + (W[4g-7..4g-3]), G[g-1])`, where `msg1` adds
/// `σ0(W[t-15])` to `W[t-16]`, the middle term is `W[t-7]` (the last three words of `G[g-2]`
/// and the first of `G[g-1]`), and `msg2` adds `σ1(W[t-2])`. The working variables live in
/// two registers, `abef` (lanes F, E, B, A from lane 0) and `cdgh` (H, G, D, C), the layout
/// `sha256rnds2` reads and writes: each call does two rounds from the low two lanes of its
/// `W + K` operand and returns the new A, B, E, F, while the old A, B, E, F become C, D, G, H.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
fn compress_sha_ni(state: &mut [u32; 8], block: &[u8; 64], k: &[u32; 64]) {
    use std::arch::x86_64::{
        __m128i, _mm_add_epi32, _mm_alignr_epi8, _mm_blend_epi16, _mm_extract_epi32, _mm_set_epi32,
        _mm_setzero_si128, _mm_sha256msg1_epu32, _mm_sha256msg2_epu32, _mm_sha256rnds2_epu32,
        _mm_shuffle_epi32,
    };
    // Four words into lanes 0..4 (no pointer: the loads are safe code).
    let lanes = |w: [u32; 4]| _mm_set_epi32(w[3] as i32, w[2] as i32, w[1] as i32, w[0] as i32);
    let quad = |words: &[u32], at: usize| [words[at], words[at + 1], words[at + 2], words[at + 3]];
    // lanes A B C D and E F G H, rearranged into F E B A and H G D C.
    let abcd = lanes(quad(state, 0));
    let efgh = lanes(quad(state, 4));
    let badc = _mm_shuffle_epi32(abcd, 0xB1);
    let hgfe = _mm_shuffle_epi32(efgh, 0x1B);
    let mut abef = _mm_alignr_epi8(badc, hgfe, 8);
    let mut cdgh = _mm_blend_epi16(hgfe, badc, 0xF0);
    let (abef_in, cdgh_in) = (abef, cdgh);

    let mut groups: [__m128i; 4] = [_mm_setzero_si128(); 4];
    for g in 0..16 {
        let words = if g < 4 {
            // The block's words are big-endian.
            let word = |i: usize| {
                let at = 16 * g + 4 * i;
                u32::from_be_bytes([block[at], block[at + 1], block[at + 2], block[at + 3]])
            };
            lanes([word(0), word(1), word(2), word(3)])
        } else {
            let (w16, w12, w8, w4) = (
                groups[g % 4],
                groups[(g + 1) % 4],
                groups[(g + 2) % 4],
                groups[(g + 3) % 4],
            );
            let partial = _mm_add_epi32(_mm_sha256msg1_epu32(w16, w12), _mm_alignr_epi8(w4, w8, 4));
            _mm_sha256msg2_epu32(partial, w4)
        };
        groups[g % 4] = words;
        let scheduled = _mm_add_epi32(words, lanes(quad(k, 4 * g)));
        // Two rounds each; the roles of the two registers swap at each call, so after both
        // `abef` holds A B E F again and `cdgh` C D G H.
        cdgh = _mm_sha256rnds2_epu32(cdgh, abef, scheduled);
        abef = _mm_sha256rnds2_epu32(abef, cdgh, _mm_shuffle_epi32(scheduled, 0x0E));
    }
    abef = _mm_add_epi32(abef, abef_in);
    cdgh = _mm_add_epi32(cdgh, cdgh_in);
    // Back to A B C D and E F G H.
    let feba = _mm_shuffle_epi32(abef, 0x1B);
    let dchg = _mm_shuffle_epi32(cdgh, 0xB1);
    let abcd = _mm_blend_epi16(feba, dchg, 0xF0);
    let efgh = _mm_alignr_epi8(dchg, feba, 8);
    *state = [
        _mm_extract_epi32(abcd, 0) as u32,
        _mm_extract_epi32(abcd, 1) as u32,
        _mm_extract_epi32(abcd, 2) as u32,
        _mm_extract_epi32(abcd, 3) as u32,
        _mm_extract_epi32(efgh, 0) as u32,
        _mm_extract_epi32(efgh, 1) as u32,
        _mm_extract_epi32(efgh, 2) as u32,
        _mm_extract_epi32(efgh, 3) as u32,
    ];
}
