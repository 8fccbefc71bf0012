//! Derivation of independent random streams from one user seed.
//!
//! Reproducibility must not depend on the number of threads or on the order
//! in which work is scheduled, so every random decision (the shuffle of an
//! epoch, the augmentation of one sample, the drawing of one synthetic image)
//! gets its own generator, seeded by a hash of the user seed and the
//! coordinates of that decision. A resumed run therefore sees exactly the
//! batches it would have seen without the interruption.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// Domain tags keep streams of different purposes apart even when their
/// other coordinates coincide.
pub(crate) mod tag {
    pub const EPOCH_ORDER: u64 = 0x6570_6f63_685f_6f72; // "epoch_or"
    pub const AUGMENT: u64 = 0x6175_676d_656e_7421; // "augment!"
    pub const SPLIT: u64 = 0x7370_6c69_745f_7661; // "split_va"
    pub const SHAPES_TRAIN: u64 = 0x7368_6170_6573_5f74; // "shapes_t"
    pub const SHAPES_TEST: u64 = 0x7368_6170_6573_5f65; // "shapes_e"
    pub const SEG_TRAIN: u64 = 0x7365_675f_7472_6169; // "seg_trai"
    pub const SEG_TEST: u64 = 0x7365_675f_7465_7374; // "seg_test"
    pub const FIXTURE: u64 = 0x6669_7874_7572_6521; // "fixture!"
    pub const DETECTION_ORDER: u64 = 0x6465_745f_6f72_6472; // "det_ordr"
    pub const DETECTION_FLIP: u64 = 0x6465_745f_666c_6970; // "det_flip"
    pub const DETECTION_SHAPES: u64 = 0x6465_745f_7368_6170; // "det_shap"
    pub const FOLDER_CROP: u64 = 0x666f_6c64_6572_6372; // "foldercr"
    pub const CORRUPTION: u64 = 0x636f_7272_7570_7421; // "corrupt!"
}

/// SplitMix64 finaliser: a cheap bijective mixer with good avalanche.
fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Hashes a sequence of coordinates into one 64-bit seed.
pub(crate) fn mix(parts: &[u64]) -> u64 {
    parts
        .iter()
        .fold(0x243F_6A88_85A3_08D3, |h, &p| splitmix64(h ^ splitmix64(p)))
}

/// A generator that is a pure function of `parts`.
pub(crate) fn rng_for(parts: &[u64]) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(mix(parts))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mix_depends_on_every_part_and_order() {
        let a = mix(&[1, 2, 3]);
        assert_eq!(a, mix(&[1, 2, 3]));
        assert_ne!(a, mix(&[1, 2, 4]));
        assert_ne!(a, mix(&[2, 1, 3]));
        assert_ne!(a, mix(&[1, 2]));
    }
}
