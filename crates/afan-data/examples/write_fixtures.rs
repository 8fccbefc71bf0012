//! CIFAR-format data without downloading anything (`cargo xtask fixtures [DIR]` runs this):
//! the generated shapes as `cifar-10-batches-bin/` (learnable), so `afan train --data ...` can be
//! tried on the real code path, and a random-pixel CIFAR-100 `.tar.gz` archive.
//!
//! An example of this crate rather than code in xtask: xtask then needs none of afan-data's
//! dependencies, which it would otherwise build a second time, with its own feature set, at the
//! start of every CI run.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .ok_or("usage: write_fixtures DIR")?;
    let (train, test) = afan_data::shapes10(5000, 1000, 0);
    let folder =
        afan_data::write_cifar_dataset(&dir, afan_data::CifarKind::Cifar10, &train, &test)?;
    println!("{}", folder.display());
    let noise = dir.join("random");
    let fx = afan_data::write_cifar_archive(&noise, afan_data::CifarKind::Cifar100, 4, 0)?;
    println!("{}", fx.path.display());
    Ok(())
}
