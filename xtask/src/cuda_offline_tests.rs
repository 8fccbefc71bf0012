use super::*;

/// sha256("abc"), FIPS 180-2 appendix B.1.
const ABC_SHA256: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

fn sidecar(archive_sha: &str) -> String {
    format!("\u{FEFF}{{\"archive_sha256\": \"{archive_sha}\", \"content_sha256\": \"00\"}}")
}

fn fake_bundle(dir: &Path, content: &[u8], sums: Option<String>) {
    let (archive, sums_name) = release_names().unwrap();
    std::fs::write(dir.join(archive), content).unwrap();
    if let Some(s) = sums {
        std::fs::write(dir.join(sums_name), s).unwrap();
    }
}

#[test]
fn paths_follow_the_bundler_rules() {
    let l = Layout::new(Path::new("/h"), None);
    assert_eq!(l.cache_dir, Path::new("/h/.cache/tracel"));
    assert_eq!(
        l.llvm_path,
        Path::new("/h/.local/share/tracel/tracel-llvm-23.1.0-4")
    );
    assert_eq!(
        l.sentinel(),
        Path::new("/h/.local/share/tracel/tracel-llvm-23.1.0-4/.tracel-llvm-installed")
    );
    // dirs: an absolute XDG_DATA_HOME moves the bundle, a relative one is ignored; the cache
    // always stays under $HOME (the bundler uses home_dir(), not XDG_CACHE_HOME).
    let x = Layout::new(Path::new("/h"), Some(Path::new("/data")));
    assert_eq!(x.llvm_path, Path::new("/data/tracel/tracel-llvm-23.1.0-4"));
    assert_eq!(x.cache_dir, l.cache_dir);
    assert_eq!(Layout::new(Path::new("/h"), Some(Path::new("rel"))), l);
    if cfg!(all(target_os = "linux", target_arch = "x86_64")) {
        let (a, s) = l.cache_files().unwrap();
        assert_eq!(
            a,
            Path::new("/h/.cache/tracel/tracel-llvm-23.1.0-4-linux-x64.tar.xz")
        );
        assert_eq!(
            s,
            Path::new("/h/.cache/tracel/tracel-llvm-23.1.0-4-linux-x64.checksums.json")
        );
        assert_eq!(
            urls().unwrap()[0],
            "https://github.com/tracel-ai/tracel-llvm/releases/download/v23.1.0-4/linux-x64.tar.xz"
        );
    }
}

#[test]
fn a_verified_bundle_lands_where_the_build_script_reads_it() {
    let home = tempfile::tempdir().unwrap();
    let bundle = tempfile::tempdir().unwrap();
    fake_bundle(bundle.path(), b"abc", Some(sidecar(ABC_SHA256)));
    let layout = Layout::new(home.path(), None);
    let report = install_archive(bundle.path(), &layout).unwrap();
    assert!(report[0].contains(ABC_SHA256), "{report:?}");
    let (archive, sums) = layout.cache_files().unwrap();
    assert_eq!(std::fs::read(&archive).unwrap(), b"abc");
    assert_eq!(expected_sha256(&sums).unwrap(), ABC_SHA256);
    assert!(archive.starts_with(home.path().join(".cache/tracel")));
}

#[test]
fn a_wrong_checksum_or_a_missing_file_is_refused_by_name() {
    let home = tempfile::tempdir().unwrap();
    let layout = Layout::new(home.path(), None);
    let bundle = tempfile::tempdir().unwrap();
    fake_bundle(bundle.path(), b"abd", Some(sidecar(ABC_SHA256)));
    let e = format!("{:#}", install_archive(bundle.path(), &layout).unwrap_err());
    assert!(
        e.contains("differs from archive_sha256") && e.contains(ABC_SHA256),
        "{e}"
    );
    assert!(
        !layout.cache_dir.exists(),
        "nothing is copied after a mismatch"
    );

    let bundle = tempfile::tempdir().unwrap();
    fake_bundle(bundle.path(), b"abc", None);
    let e = format!("{:#}", install_archive(bundle.path(), &layout).unwrap_err());
    assert!(e.contains("missing") && e.contains("checksums.json"), "{e}");

    let bundle = tempfile::tempdir().unwrap();
    fake_bundle(
        bundle.path(),
        b"abc",
        Some("{\"archive_sha256\": \"x\"}".into()),
    );
    let e = format!("{:#}", install_archive(bundle.path(), &layout).unwrap_err());
    assert!(e.contains("content_sha256"), "{e}");
}

#[test]
fn an_extracted_bundle_is_copied_only_when_complete() {
    let home = tempfile::tempdir().unwrap();
    let layout = Layout::new(home.path(), None);
    let src = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(src.path().join("bin")).unwrap();
    std::fs::write(src.path().join("bin/llvm-config"), "#!/bin/sh\n").unwrap();
    let e = format!("{:#}", install_extracted(src.path(), &layout).unwrap_err());
    assert!(e.contains(SENTINEL), "{e}");
    std::fs::write(src.path().join(SENTINEL), "").unwrap();
    install_extracted(src.path(), &layout).unwrap();
    assert!(layout.sentinel().is_file());
    assert!(layout.llvm_path.join("bin/llvm-config").is_file());
    let e = format!("{:#}", install_extracted(src.path(), &layout).unwrap_err());
    assert!(e.contains("already exists"), "{e}");
}

/// The constants above are copied from the bundler's source; when cargo has that source (any
/// machine that built or type-checked the `cuda` feature), check they still agree with it.
#[test]
fn constants_agree_with_the_bundler_source_when_present() {
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")));
    let Some(src) = cargo_home.and_then(|c| {
        std::fs::read_dir(c.join("registry/src"))
            .ok()?
            .flatten()
            .map(|d| {
                d.path()
                    .join(format!("tracel-llvm-bundler-{LLVM_FULL_VERSION}"))
            })
            .find(|p| p.is_dir())
    }) else {
        eprintln!(
            "tracel-llvm-bundler-{LLVM_FULL_VERSION} source not in the cargo registry; skipped"
        );
        return;
    };
    let config = std::fs::read_to_string(src.join("src/config.rs")).unwrap();
    let build = std::fs::read_to_string(src.join("build.rs")).unwrap();
    for needle in [
        "TRACEL_LLVM_CACHE_DIRECTORY_NAME: &str = \"tracel\"",
        "TRACEL_LLVM_CACHE_PREFIX: &str = \"tracel-llvm\"",
        "TRACEL_LLVM_VERSION: &str = \"23.1.0\"",
        "TRACEL_LLVM_RELEASE_NUMBER: &str = \"4\"",
        BASE_URL,
        "home.join(\".cache\").join(\"tracel\")",
        "data_local_dir()",
        "\"linux-x64.tar.xz\"",
        "replace(\".tar.xz\", \".checksums.json\")",
        "format!(\"tracel-llvm-{TRACEL_LLVM_FULL_VERSION}-{}\", self.filename())",
        SENTINEL,
    ] {
        assert!(config.contains(needle), "config.rs no longer has {needle}");
    }
    for needle in [SKIP_ENV, "if sentinel.exists()", "archive_sha256"] {
        assert!(build.contains(needle), "build.rs no longer has {needle}");
    }
}

/// A wheel-shaped zip: the LLVM prefix under `mlc_llvm_static/static/`, plus metadata outside it.
fn fake_wheel(path: &Path) {
    use std::io::Write;
    let mut zip = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    let exec = zip::write::SimpleFileOptions::default().unix_permissions(0o755);
    let plain = zip::write::SimpleFileOptions::default().unix_permissions(0o644);
    zip.start_file("mlc_llvm_static/static/bin/llvm-config", exec)
        .unwrap();
    zip.write_all(b"#!/usr/bin/env python3\n").unwrap();
    zip.start_file("mlc_llvm_static/static/lib/libLLVMCore.a", plain)
        .unwrap();
    zip.write_all(b"!<arch>\n").unwrap();
    zip.start_file("mlc_llvm_static-23.1.1.post0.dist-info/METADATA", plain)
        .unwrap();
    zip.write_all(b"Name: mlc-llvm-static\n").unwrap();
    zip.finish().unwrap();
}

#[test]
fn pinned_wheels_unpack_to_the_bundle_path_with_the_sentinel() {
    let home = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let name = "w.whl";
    fake_wheel(&dir.path().join(name));
    let sha = sha256_file(&dir.path().join(name)).unwrap();
    let layout = Layout::new(home.path(), None);
    let report = crate::cuda_wheels::install_wheels(dir.path(), &layout, &[(name, &sha)]).unwrap();
    assert!(report[0].contains("(2 files)"), "{report:?}");
    let config = layout.llvm_path.join("bin/llvm-config");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&config).unwrap().permissions().mode() & 0o777,
        0o755
    );
    assert!(layout.llvm_path.join("lib/libLLVMCore.a").is_file());
    assert!(
        !layout
            .llvm_path
            .join("mlc_llvm_static-23.1.1.post0.dist-info")
            .exists()
    );
    assert!(layout.sentinel().is_file());
    // A second install does not overwrite the first.
    let e = crate::cuda_wheels::install_wheels(dir.path(), &layout, &[(name, &sha)]).unwrap_err();
    assert!(e.to_string().contains("already exists"), "{e}");
}

#[test]
fn a_wheel_with_another_checksum_or_missing_is_refused_and_nothing_is_written() {
    let home = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    fake_wheel(&dir.path().join("w.whl"));
    let layout = Layout::new(home.path(), None);
    let e = crate::cuda_wheels::install_wheels(dir.path(), &layout, &[("w.whl", ABC_SHA256)])
        .unwrap_err()
        .to_string();
    assert!(e.contains("w.whl") && e.contains(ABC_SHA256), "{e}");
    let e = crate::cuda_wheels::install_wheels(dir.path(), &layout, &crate::cuda_wheels::WHEELS)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(crate::cuda_wheels::WHEELS[0].0) && e.contains("pip download"),
        "{e}"
    );
    assert!(!layout.llvm_path.exists() && !layout.sentinel().exists());
}
