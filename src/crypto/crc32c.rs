//! CRC32C (Castagnoli, reflected polynomial `0x82F63B78`), as used by iSCSI (RFC 3720) and by
//! the log's frame checksums.
//!
//! Owns: the software slicing-by-8 implementation and the choice between it and the hardware
//! instruction (`sys::crc32c_hw`). Must not: call the intrinsic itself (that call lives in `sys`).

use crate::sys::crc32c_hw;

/// The reflected Castagnoli polynomial.
const POLYNOMIAL_REFLECTED: u32 = 0x82F6_3B78;

/// Slicing-by-8 tables: `TABLES[k][b]` is the CRC of byte `b` followed by `k` zero bytes.
static TABLES: [[u32; 256]; 8] = build_tables();

const fn build_tables() -> [[u32; 256]; 8] {
    let mut tables = [[0u32; 256]; 8];
    let mut byte = 0;
    while byte < 256 {
        let mut crc = byte as u32;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ POLYNOMIAL_REFLECTED
            } else {
                crc >> 1
            };
            bit += 1;
        }
        tables[0][byte] = crc;
        byte += 1;
    }
    let mut slice = 1;
    while slice < 8 {
        let mut byte = 0;
        while byte < 256 {
            let previous = tables[slice - 1][byte];
            tables[slice][byte] = (previous >> 8) ^ tables[0][(previous & 0xFF) as usize];
            byte += 1;
        }
        slice += 1;
    }
    tables
}

/// Folds `data` into the raw register with slicing-by-8 (8 table lookups per 8 input bytes).
fn update_raw_software(mut crc: u32, data: &[u8]) -> u32 {
    let mut words = data.chunks_exact(8);
    for word in &mut words {
        let low = crc ^ u32::from_le_bytes([word[0], word[1], word[2], word[3]]);
        crc = TABLES[7][(low & 0xFF) as usize]
            ^ TABLES[6][((low >> 8) & 0xFF) as usize]
            ^ TABLES[5][((low >> 16) & 0xFF) as usize]
            ^ TABLES[4][(low >> 24) as usize]
            ^ TABLES[3][word[4] as usize]
            ^ TABLES[2][word[5] as usize]
            ^ TABLES[1][word[6] as usize]
            ^ TABLES[0][word[7] as usize];
    }
    for &byte in words.remainder() {
        crc = (crc >> 8) ^ TABLES[0][((crc ^ u32::from(byte)) & 0xFF) as usize];
    }
    crc
}

/// CRC32C of `data`, using the CPU instruction when present.
pub fn crc32c(data: &[u8]) -> u32 {
    extend(0, data)
}

/// Continues a checksum: `extend(crc32c(a), b) == crc32c(a ++ b)`.
pub fn extend(crc: u32, data: &[u8]) -> u32 {
    let state = !crc;
    let state = match crc32c_hw::crc32c_update_raw(state, data) {
        Some(hardware) => hardware,
        None => update_raw_software(state, data),
    };
    !state
}

/// CRC32C of `data` computed in software only (for tests and comparison benches).
pub fn crc32c_software(data: &[u8]) -> u32 {
    !update_raw_software(!0, data)
}

/// CRC32C of `data` computed by the CPU instruction, or `None` if this CPU has none.
pub fn crc32c_hardware(data: &[u8]) -> Option<u32> {
    crc32c_hw::crc32c_update_raw(!0, data).map(|state| !state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// RFC 3720 appendix B.4 vectors plus the common "123456789" check value.
    fn vectors() -> Vec<(Vec<u8>, u32)> {
        let pdu: Vec<u8> = vec![
            0x01, 0xc0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x14, 0, 0, 0, 0, 0, 0x04, 0, 0,
            0, 0, 0x14, 0, 0, 0, 0x18, 0x28, 0, 0, 0, 0, 0, 0, 0, 0x02, 0, 0, 0, 0, 0, 0, 0,
        ];
        vec![
            (vec![0u8; 32], 0x8A91_36AA),
            (vec![0xFFu8; 32], 0x62A8_AB43),
            ((0u8..32).collect(), 0x46DD_794E),
            ((0u8..32).rev().collect(), 0x113F_DB5C),
            (pdu, 0xD996_3A56),
            (b"123456789".to_vec(), 0xE306_9283),
            (Vec::new(), 0),
        ]
    }

    #[test]
    fn software_matches_rfc3720_vectors() {
        for (input, expected) in vectors() {
            assert_eq!(crc32c_software(&input), expected, "input {input:02x?}");
        }
    }

    #[test]
    fn dispatching_and_hardware_match_rfc3720_vectors() {
        for (input, expected) in vectors() {
            assert_eq!(crc32c(&input), expected, "input {input:02x?}");
            if let Some(hardware) = crc32c_hardware(&input) {
                assert_eq!(hardware, expected, "hardware, input {input:02x?}");
            }
        }
    }

    #[test]
    fn hardware_is_detected_on_x86_64_with_sse42() {
        assert_eq!(
            crc32c_hardware(b"x").is_some(),
            crc32c_hw::crc32c_hardware_available()
        );
    }

    proptest! {
        #[test]
        fn hardware_equals_software(data in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let software = crc32c_software(&data);
            if let Some(hardware) = crc32c_hardware(&data) {
                prop_assert_eq!(hardware, software);
            }
            prop_assert_eq!(crc32c(&data), software);
        }

        #[test]
        fn extend_equals_whole(data in proptest::collection::vec(any::<u8>(), 0..512), cut in 0usize..512) {
            let cut = cut.min(data.len());
            let (head, tail) = data.split_at(cut);
            prop_assert_eq!(extend(crc32c(head), tail), crc32c(&data));
        }
    }
}
