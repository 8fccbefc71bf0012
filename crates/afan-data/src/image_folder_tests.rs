use super::*;
use rand::SeedableRng;

/// `ROOT/{cat,dog}/*.png` plus files the scan must skip.
fn folder(dir: &Path) -> PathBuf {
    let root = dir.join("train");
    for (class, shade) in [("dog", 200u8), ("cat", 20)] {
        std::fs::create_dir_all(root.join(class)).unwrap();
        for i in 0..3 {
            let img =
                image::RgbImage::from_pixel(40 + i * 10, 30, image::Rgb([shade, shade, shade]));
            img.save(root.join(class).join(format!("{i}.png"))).unwrap();
        }
        std::fs::write(root.join(class).join("notes.txt"), "not an image").unwrap();
    }
    root
}

#[test]
fn classes_are_sorted_folders_and_only_images_count() {
    let dir = tempfile::tempdir().unwrap();
    let f = ImageFolder::open(&folder(dir.path())).unwrap();
    assert_eq!(f.class_names, ["cat", "dog"]);
    assert_eq!(f.len(), 6);
    assert_eq!(f.labels, [0, 0, 0, 1, 1, 1]);
    assert!(f.files[0].ends_with("cat/0.png"));
}

#[test]
fn batches_decode_crop_and_label_every_image_once() {
    let dir = tempfile::tempdir().unwrap();
    let f = ImageFolder::open(&folder(dir.path())).unwrap();
    let t = FolderTransform {
        crop: 16,
        resize: 20,
    };
    for augment in [false, true] {
        let config = LoaderConfig {
            batch_size: 4,
            shuffle: augment,
            augment,
            drop_last: false,
            seed: 3,
        };
        let mut seen = Vec::new();
        for b in 0..f.num_batches(&config) {
            let batch = f.batch(&config, t, 1, b).unwrap();
            assert_eq!(batch.shape()[1..], [3, 16, 16]);
            for (k, (&label, &idx)) in batch.labels.iter().zip(&batch.indices).enumerate() {
                // Uniform images: every pixel keeps the class's shade through crop and resize.
                let shade = if label == 0 { 20.0 } else { 200.0 } / 255.0;
                let px = &batch.images[k * 768..(k + 1) * 768];
                assert!(px.iter().all(|v| (v - shade).abs() < 1e-6), "image {idx}");
                seen.push(idx);
            }
        }
        seen.sort();
        assert_eq!(seen, (0..6).collect::<Vec<_>>());
    }
}

#[test]
fn random_resized_crops_respect_torchvision_bounds_and_are_reproducible() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    for _ in 0..500 {
        let (x, y, w, h) = crop_params(500, 375, &mut rng);
        assert!(x + w <= 500 && y + h <= 375 && w > 0 && h > 0);
        let frac = (w * h) as f64 / (500.0 * 375.0);
        let ratio = w as f64 / h as f64;
        // Either a sampled box (area and ratio within bounds up to rounding) or the fallback.
        assert!(
            (0.07..=1.0).contains(&frac) && (0.74..=1.35).contains(&ratio),
            "{w}x{h}"
        );
    }
    // A 1000x10 strip cannot fit the ratio bounds: the centred fallback keeps h, w = 4/3 h.
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2);
    assert_eq!(crop_params(1000, 10, &mut rng), (493, 0, 13, 10));
    let dir = tempfile::tempdir().unwrap();
    let f = ImageFolder::open(&folder(dir.path())).unwrap();
    let config = LoaderConfig::train(6, 9);
    let t = FolderTransform { crop: 8, resize: 8 };
    assert_eq!(
        f.batch(&config, t, 2, 0).unwrap(),
        f.batch(&config, t, 2, 0).unwrap()
    );
}

#[test]
fn bad_folders_and_images_name_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let err = ImageFolder::open(&dir.path().join("absent"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("absent"), "{err}");
    let err = ImageFolder::open(dir.path()).unwrap_err().to_string();
    assert!(err.contains("no class folders"), "{err}");
    let root = folder(dir.path());
    std::fs::create_dir_all(root.join("empty")).unwrap();
    let err = ImageFolder::open(&root).unwrap_err().to_string();
    assert!(err.contains("empty") && err.contains("no .jpg"), "{err}");
    std::fs::remove_dir(root.join("empty")).unwrap();
    std::fs::write(root.join("cat").join("broken.jpg"), b"\xff\xd8 not a jpeg").unwrap();
    let f = ImageFolder::open(&root).unwrap();
    let config = LoaderConfig::eval(16);
    let err = f
        .batch(&config, FolderTransform { crop: 8, resize: 8 }, 0, 0)
        .unwrap_err();
    assert!(err.to_string().contains("broken.jpg"), "{err}");
}

#[test]
fn an_epoch_yields_the_batches_drawn_one_by_one() {
    let dir = tempfile::tempdir().unwrap();
    let f = ImageFolder::open(&folder(dir.path())).unwrap();
    let config = LoaderConfig::train(4, 5);
    let t = FolderTransform { crop: 8, resize: 8 };
    let all: Vec<Batch> = f.epoch(&config, t, 3).collect::<Result<_, _>>().unwrap();
    assert_eq!(all.len(), f.num_batches(&config));
    for (i, b) in all.iter().enumerate() {
        assert_eq!(b, &f.batch(&config, t, 3, i).unwrap());
    }
}
