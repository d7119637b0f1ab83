//! Hardware CRC32C (Castagnoli) through the SSE4.2 `crc32` instruction, via `std::arch`.
//!
//! Owns: the only `unsafe` needed for CRC32C (calling `target_feature` intrinsics after runtime
//! detection). Must not: contain the software fallback or any policy; `crypto::crc32c` decides.

/// Folds `data` into the raw (non-inverted) CRC32C register `state` with the CPU instruction.
///
/// Returns `None` when the CPU lacks the instruction (or the target is not x86-64), so the caller
/// falls back to software.
pub fn crc32c_update_raw(state: u32, data: &[u8]) -> Option<u32> {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("sse4.2") {
            // SAFETY: `update_sse42` is only compiled with `target_feature(enable = "sse4.2")`;
            // we just checked at runtime that this CPU supports SSE4.2, so the instructions it
            // uses are valid here. It reads `data` through safe slice operations only.
            return Some(unsafe { update_sse42(state, data) });
        }
    }
    let _ = (state, data);
    None
}

/// Whether the hardware path is available on this CPU.
pub fn crc32c_hardware_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("sse4.2")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse4.2")]
unsafe fn update_sse42(state: u32, data: &[u8]) -> u32 {
    use std::arch::x86_64::{_mm_crc32_u64, _mm_crc32_u8};
    let mut crc = u64::from(state);
    let mut words = data.chunks_exact(8);
    for word in &mut words {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(word);
        // The intrinsic is safe to call inside a function with the feature enabled.
        crc = _mm_crc32_u64(crc, u64::from_le_bytes(bytes));
    }
    // The upper 32 bits of `_mm_crc32_u64`'s result are always zero.
    let mut crc32 = crc as u32;
    for &byte in words.remainder() {
        crc32 = _mm_crc32_u8(crc32, byte);
    }
    crc32
}
