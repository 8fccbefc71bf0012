//! Tests of batching, augmentation and prefetching.

use std::sync::Arc;

use super::*;
use crate::prefetch::{Prefetch, with_prefetch};

/// `n` images of 3x4x5 with distinct pseudo-random bytes; label = index % 3.
fn data(n: usize) -> ImageDataset {
    let img = 3 * 4 * 5;
    let images = (0..n * img)
        .map(|k| ((k * 37 + k / 7) % 251) as u8 + 1)
        .collect();
    let labels = (0..n).map(|i| (i % 3) as u16).collect();
    ImageDataset::new(
        images,
        labels,
        3,
        (3, 4, 5),
        vec!["a".into(), "b".into(), "c".into()],
    )
    .unwrap()
}

fn cfg(batch_size: usize, shuffle: bool, augment: bool, drop_last: bool) -> LoaderConfig {
    LoaderConfig {
        batch_size,
        shuffle,
        augment,
        drop_last,
        seed: 9,
    }
}

#[test]
fn shapes_values_and_labels() {
    let d = data(10);
    let all: Vec<Batch> = batches(&d, &cfg(4, false, false, false), 0).collect();
    assert_eq!(
        all.iter().map(|b| b.batch_size).collect::<Vec<_>>(),
        vec![4, 4, 2]
    );
    for b in &all {
        assert_eq!(b.shape()[1..], [3, 4, 5]);
        assert_eq!(b.images.len(), b.batch_size * 60);
        assert_eq!(b.labels.len(), b.batch_size);
        assert!(b.images.iter().all(|&v| (0.0..=1.0).contains(&v)));
        for (k, &i) in b.indices.iter().enumerate() {
            assert_eq!(b.labels[k], (i % 3) as i64);
            let expect: Vec<f32> = d.image(i).iter().map(|&v| f32::from(v) / 255.0).collect();
            assert_eq!(b.images[k * 60..(k + 1) * 60], expect[..]);
        }
    }
    assert_eq!(
        all[1].indices,
        vec![4, 5, 6, 7],
        "no shuffle keeps dataset order"
    );
}

#[test]
fn counts_and_drop_last() {
    let d = data(10);
    assert_eq!(num_batches(10, &cfg(4, true, false, false)), 3);
    assert_eq!(num_batches(10, &cfg(4, true, false, true)), 2);
    assert_eq!(num_batches(8, &cfg(4, true, false, true)), 2);
    let it = batches(&d, &cfg(4, true, false, true), 3);
    assert_eq!(it.len(), 2);
    let seen: Vec<usize> = it
        .flat_map(|b| {
            assert_eq!(b.batch_size, 4);
            b.indices
        })
        .collect();
    assert_eq!(seen.len(), 8);
}

#[test]
fn every_sample_once_per_epoch() {
    let d = data(23);
    for epoch in 0..3 {
        let mut seen: Vec<usize> = batches(&d, &cfg(5, true, true, false), epoch)
            .flat_map(|b| b.indices)
            .collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..23).collect::<Vec<_>>());
    }
}

#[test]
fn reproducible_per_seed_and_epoch() {
    let d = data(30);
    let c = cfg(8, true, true, false);
    let a: Vec<Batch> = batches(&d, &c, 2).collect();
    assert_eq!(a, batches(&d, &c, 2).collect::<Vec<_>>());
    let other: Vec<Batch> = batches(&d, &c, 3).collect();
    assert_ne!(
        a[0].indices, other[0].indices,
        "each epoch has its own order"
    );
    let reseeded: Vec<Batch> = batches(
        &d,
        &LoaderConfig {
            seed: 10,
            ..c.clone()
        },
        2,
    )
    .collect();
    assert_ne!(a[0].indices, reseeded[0].indices);
    // Skipping (resume mid-epoch) gives the same later batch.
    assert_eq!(batches(&d, &c, 2).nth(2).unwrap(), a[2]);
    // Augmentation depends on (seed, epoch, index) only, not on batch layout.
    let single: Vec<Batch> = batches(
        &d,
        &LoaderConfig {
            batch_size: 1,
            ..c.clone()
        },
        2,
    )
    .collect();
    let b0 = &a[0];
    let k = 3;
    let same = single
        .iter()
        .find(|s| s.indices[0] == b0.indices[k])
        .unwrap();
    assert_eq!(same.images[..], b0.images[k * 60..(k + 1) * 60]);
    // And it is the documented augmentation.
    let mut out = vec![0.0; 60];
    Augmentation::sample(9, 2, b0.indices[k]).apply(d.image(b0.indices[k]), (3, 4, 5), &mut out);
    assert_eq!(out[..], b0.images[k * 60..(k + 1) * 60]);
}

/// A 1x3x4 image whose pixel (y, x) is 10 * (y + 1) + x + 1.
fn grid() -> Vec<u8> {
    (0..3)
        .flat_map(|y| (0..4).map(move |x| (10 * (y + 1) + x + 1) as u8))
        .collect()
}

fn apply(aug: Augmentation) -> Vec<u8> {
    let mut out = vec![0.0; 12];
    aug.apply(&grid(), (1, 3, 4), &mut out);
    out.iter().map(|&v| (v * 255.0).round() as u8).collect()
}

#[test]
fn crop_and_flip_move_pixels() {
    let p = CROP_PADDING;
    assert_eq!(apply(Augmentation::IDENTITY), grid());
    let flipped = apply(Augmentation {
        flip: true,
        ..Augmentation::IDENTITY
    });
    assert_eq!(
        flipped,
        vec![14, 13, 12, 11, 24, 23, 22, 21, 34, 33, 32, 31]
    );
    // Crop one column right of centre: content moves left, zeros enter on the right.
    let right = apply(Augmentation {
        crop_x: p + 1,
        crop_y: p,
        flip: false,
    });
    assert_eq!(right, vec![12, 13, 14, 0, 22, 23, 24, 0, 32, 33, 34, 0]);
    // Crop two rows above centre: content moves down, zero rows on top.
    let up = apply(Augmentation {
        crop_x: p,
        crop_y: p - 2,
        flip: false,
    });
    assert_eq!(up, vec![0, 0, 0, 0, 0, 0, 0, 0, 11, 12, 13, 14]);
    // Crop, then flip the cropped image (torchvision order).
    let both = apply(Augmentation {
        crop_x: p - 1,
        crop_y: p + 1,
        flip: true,
    });
    assert_eq!(both, vec![23, 22, 21, 0, 33, 32, 31, 0, 0, 0, 0, 0]);
    // The farthest crop sees only padding.
    assert_eq!(
        apply(Augmentation {
            crop_x: 0,
            crop_y: 0,
            flip: false
        }),
        vec![0; 12]
    );
}

#[test]
fn sampled_augmentations_cover_the_range() {
    let augs: Vec<Augmentation> = (0..500).map(|i| Augmentation::sample(1, 0, i)).collect();
    for v in 0..=2 * CROP_PADDING {
        assert!(
            augs.iter().any(|a| a.crop_x == v) && augs.iter().any(|a| a.crop_y == v),
            "offset {v}"
        );
    }
    let flips = augs.iter().filter(|a| a.flip).count();
    assert!((200..300).contains(&flips), "{flips} flips of 500");
    assert_eq!(Augmentation::sample(1, 0, 7), augs[7]);
    assert_ne!(
        (0..20)
            .map(|i| Augmentation::sample(1, 1, i))
            .collect::<Vec<_>>(),
        augs[..20],
        "epochs differ"
    );
}

#[test]
fn prefetch_yields_the_same_batches() {
    let d = data(17);
    let c = cfg(4, true, true, false);
    let direct: Vec<Batch> = batches(&d, &c, 1).collect();
    let shared = Arc::new(d.clone());
    let pre = Prefetch::new(shared_batches(shared.clone(), &c, 1), 2);
    assert_eq!(pre.len(), direct.len());
    assert_eq!(pre.collect::<Vec<_>>(), direct);
    let scoped = with_prefetch(batches(&d, &c, 1), 2, |it| it.collect::<Vec<_>>());
    assert_eq!(scoped, direct);
    // Stopping early must not hang.
    let mut pre = Prefetch::new(
        shared_batches(shared, &LoaderConfig { batch_size: 1, ..c }, 1),
        1,
    );
    assert!(pre.next().is_some());
    drop(pre);
    let first = with_prefetch(batches(&d, &cfg(1, false, false, false), 0), 1, |it| {
        it.next()
    });
    assert_eq!(first.unwrap().indices, vec![0]);
}

#[test]
fn prefetch_reraises_producer_panic() {
    let iter = (0..3).map(|i| {
        if i == 1 {
            panic!("boom")
        } else {
            batches(&data(1), &cfg(1, false, false, false), 0)
                .next()
                .unwrap()
        }
    });
    let result = std::panic::catch_unwind(|| Prefetch::new(iter, 1).count());
    assert!(result.is_err());
}
