//! VOC 2012 and Cityscapes loaders on tiny datasets written here in the official layouts,
//! including the bad-input cases.

use std::fs;
use std::path::Path;

use super::*;
use crate::error::DataError;

/// Position and value of a [`DataError::BadLabel`].
fn bad_label(e: &DataError) -> Option<(usize, usize, u8)> {
    match e {
        DataError::BadLabel { x, y, value, .. } => Some((*x, *y, *value)),
        _ => None,
    }
}

/// A `w x h` RGB image whose pixel (x, y) is (10x, 10y, 77), saved as PNG or JPEG by extension.
fn write_image(path: &Path, w: u32, h: u32) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([(10 * x) as u8, (10 * y) as u8, 77])
    })
    .save(path)
    .unwrap();
}

fn mask_values(w: usize, h: usize, f: impl Fn(usize, usize) -> u8) -> Vec<u8> {
    (0..h)
        .flat_map(|y| (0..w).map(move |x| (x, y)))
        .map(|(x, y)| f(x, y))
        .collect()
}

/// VOC with images `a` (4x3) and `b` (5x2); masks palette PNGs (and SBD-style gray ones).
fn voc_fixture(root: &Path) -> (Vec<u8>, Vec<u8>) {
    let voc = root.join("VOCdevkit/VOC2012");
    let sets = voc.join("ImageSets/Segmentation");
    fs::create_dir_all(&sets).unwrap();
    fs::create_dir_all(voc.join("SegmentationClass")).unwrap();
    fs::create_dir_all(voc.join("SegmentationClassAug")).unwrap();
    fs::write(sets.join("train.txt"), "a\nb\n").unwrap();
    fs::write(sets.join("train_aug.txt"), "b\n").unwrap();
    write_image(&voc.join("JPEGImages/a.jpg"), 4, 3);
    write_image(&voc.join("JPEGImages/b.jpg"), 5, 2);
    let ma = mask_values(
        4,
        3,
        |x, y| if x == 3 { 255 } else { (x + 4 * y) as u8 % 21 },
    );
    let mb = mask_values(5, 2, |x, _| [0, 20, 15, 255, 1][x]);
    write_palette_png(&voc.join("SegmentationClass/a.png"), &ma, 4, 3).unwrap();
    write_palette_png(&voc.join("SegmentationClass/b.png"), &mb, 5, 2).unwrap();
    write_gray_png(&voc.join("SegmentationClassAug/b.png"), &mb, 5, 2).unwrap();
    (ma, mb)
}

#[test]
fn voc_reads_palette_and_aug_masks() {
    let dir = tempfile::tempdir().unwrap();
    let (ma, mb) = voc_fixture(dir.path());
    // Any of the three accepted roots.
    for root in [
        dir.path().to_path_buf(),
        dir.path().join("VOCdevkit/VOC2012"),
    ] {
        let d = load_voc(&root, "train", false).unwrap();
        assert_eq!((d.len(), d.num_classes), (2, 21));
        let a = d.get(0).unwrap();
        assert_eq!((a.width, a.height, a.mask.clone()), (4, 3, ma.clone()));
        assert_eq!(a.rgb.len(), 4 * 3 * 3);
        // JPEG is lossy: the blue channel stays near 77.
        assert!(a.rgb.chunks(3).all(|p| (i32::from(p[2]) - 77).abs() < 12));
        assert_eq!(d.get(1).unwrap().mask, mb);
    }
    let aug = load_voc(dir.path(), "train", true).unwrap();
    assert_eq!(aug.len(), 1);
    assert!(
        aug.entries()[0]
            .mask
            .ends_with("SegmentationClassAug/b.png")
    );
    assert_eq!(aug.get(0).unwrap().mask, mb);
}

#[test]
fn voc_palette_is_the_devkit_colormap() {
    let p = voc_palette();
    assert_eq!(&p[0..3], &[0, 0, 0]);
    assert_eq!(&p[3..6], &[128, 0, 0]); // aeroplane
    assert_eq!(&p[15 * 3..16 * 3], &[192, 128, 128]); // person
    assert_eq!(&p[255 * 3..], &[224, 224, 192]); // void border
}

#[test]
fn voc_bad_inputs_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    voc_fixture(dir.path());
    let voc = dir.path().join("VOCdevkit/VOC2012");
    // A listed id without its files.
    fs::write(voc.join("ImageSets/Segmentation/val.txt"), "a\nzzz\n").unwrap();
    let e = load_voc(dir.path(), "val", false).unwrap_err();
    assert!(matches!(e, DataError::MissingFile { .. }), "{e}");
    assert!(
        e.to_string().contains("zzz.jpg") && e.to_string().contains("val.txt"),
        "{e}"
    );
    // A missing split list.
    let e = load_voc(dir.path(), "trainval", false).unwrap_err();
    assert!(e.to_string().contains("trainval.txt"), "{e}");
    // Mask of the wrong size.
    write_palette_png(&voc.join("SegmentationClass/a.png"), &[0; 6], 3, 2).unwrap();
    let d = load_voc(dir.path(), "train", false).unwrap();
    let e = d.get(0).unwrap_err();
    assert!(matches!(
        e,
        DataError::MaskSize {
            mask_w: 3,
            mask_h: 2,
            image_w: 4,
            image_h: 3,
            ..
        }
    ));
    assert!(
        e.to_string().contains("a.png") && e.to_string().contains("a.jpg"),
        "{e}"
    );
    // A label that is neither a class nor 255.
    let mut m = vec![0u8; 12];
    m[6] = 21;
    write_palette_png(&voc.join("SegmentationClass/a.png"), &m, 4, 3).unwrap();
    let e = d.get(0).unwrap_err();
    assert_eq!(bad_label(&e), Some((2, 1, 21)), "{e}");
    assert!(
        e.to_string().contains("a.png") && e.to_string().contains("0..=20"),
        "{e}"
    );
    // An image that is not an image.
    fs::write(voc.join("JPEGImages/b.jpg"), b"not a jpeg").unwrap();
    let e = d.get(1).unwrap_err();
    assert!(
        matches!(e, DataError::Decode { .. }) && e.to_string().contains("b.jpg"),
        "{e}"
    );
    // A colour PNG as mask.
    write_image(&voc.join("SegmentationClass/a.png"), 4, 3);
    let e = d.get(0).unwrap_err();
    assert!(
        matches!(e, DataError::Decode { .. }) && e.to_string().contains("a.png"),
        "{e}"
    );
}

/// Cityscapes with one city and two frames; frame 0's mask holds label ids 0..=33 and 255.
fn cityscapes_fixture(root: &Path) -> Vec<u8> {
    let ids = mask_values(7, 5, |x, y| {
        let i = x + 7 * y;
        if i < 34 { i as u8 } else { 255 }
    });
    for frame in ["000000", "000001"] {
        let stem = format!("aachen_000000_{frame}");
        write_image(
            &root.join(format!("leftImg8bit/train/aachen/{stem}_leftImg8bit.png")),
            7,
            5,
        );
        let gt = root.join(format!("gtFine/train/aachen/{stem}_gtFine_labelIds.png"));
        fs::create_dir_all(gt.parent().unwrap()).unwrap();
        write_gray_png(&gt, &ids, 7, 5).unwrap();
    }
    ids
}

#[test]
fn cityscapes_maps_label_ids_to_train_ids() {
    let dir = tempfile::tempdir().unwrap();
    cityscapes_fixture(dir.path());
    let d = load_cityscapes(dir.path(), "train").unwrap();
    assert_eq!((d.len(), d.num_classes), (2, 19));
    assert!(
        d.entries()[0]
            .image
            .ends_with("aachen_000000_000000_leftImg8bit.png")
    );
    let s = d.get(0).unwrap();
    // PNG is lossless: the image comes back exactly.
    assert_eq!(&s.rgb[..6], &[0, 0, 77, 10, 0, 77]);
    // From cityscapesScripts' labels.py: road 7 -> 0, sidewalk 8 -> 1, building 11 -> 2,
    // pole 17 -> 5, sky 23 -> 10, car 26 -> 13, bicycle 33 -> 18; the rest 255.
    let mut expected = [255u8; 35];
    for (id, train) in [
        (7, 0),
        (8, 1),
        (11, 2),
        (12, 3),
        (13, 4),
        (17, 5),
        (19, 6),
        (20, 7),
    ] {
        expected[id] = train;
    }
    for (id, train) in [
        (21, 8),
        (22, 9),
        (23, 10),
        (24, 11),
        (25, 12),
        (26, 13),
        (27, 14),
    ] {
        expected[id] = train;
    }
    for (id, train) in [(28, 15), (31, 16), (32, 17), (33, 18)] {
        expected[id] = train;
    }
    assert_eq!(&s.mask[..35], &expected[..]);
    assert_eq!(s.mask.iter().filter(|&&v| v != 255).count(), 19);
}

#[test]
fn cityscapes_bad_inputs_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut ids = cityscapes_fixture(dir.path());
    let e = load_cityscapes(dir.path(), "val").unwrap_err();
    assert!(e.to_string().contains("leftImg8bit/val"), "{e}");
    let gt = dir.path().join("gtFine/train/aachen");
    ids[3] = 34;
    write_gray_png(
        &gt.join("aachen_000000_000001_gtFine_labelIds.png"),
        &ids,
        7,
        5,
    )
    .unwrap();
    let d = load_cityscapes(dir.path(), "train").unwrap();
    let e = d.get(1).unwrap_err();
    assert_eq!(bad_label(&e), Some((3, 0, 34)), "{e}");
    assert!(e.to_string().contains("000001_gtFine_labelIds.png"), "{e}");
    fs::remove_file(gt.join("aachen_000000_000000_gtFine_labelIds.png")).unwrap();
    let e = load_cityscapes(dir.path(), "train").unwrap_err();
    assert!(matches!(e, DataError::MissingFile { .. }), "{e}");
    assert!(e.to_string().contains("000000_gtFine_labelIds.png"), "{e}");
}
