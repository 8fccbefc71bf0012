//! The GPU scripts run where no one can fix them mid-way (a lent machine, minutes of budget):
//! check here that they parse and that both agree on the pack names.

use std::path::Path;
use std::process::Command;

fn script(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("gpu").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn gpu_scripts_parse() {
    for name in ["build.sh", "run.sh"] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("gpu").join(name);
        let out = Command::new("bash")
            .arg("-n")
            .arg(&path)
            .output()
            .expect("bash");
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn every_pack_build_sh_makes_is_one_run_sh_runs() {
    let build = script("build.sh");
    let run = script("run.sh");
    // build.sh names the test binaries in its Python map and packs `afan` itself.
    let map = build
        .lines()
        .find(|l| l.trim_start().starts_with("names = {"))
        .expect("build.sh's names map");
    let mut packs: Vec<&str> = map
        .split(':')
        .skip(1)
        .filter_map(|s| s.split('"').nth(1))
        .collect();
    packs.push("afan");
    assert_eq!(packs.len(), 5, "{map}");
    let usage = run
        .lines()
        .find(|l| l.contains("usage: xtask/gpu/run.sh"))
        .expect("run.sh's usage line");
    for pack in packs {
        assert!(usage.contains(pack), "run.sh's usage lacks pack {pack}");
        if pack != "afan" {
            assert!(
                run.contains(&format!("        {pack}) t ")),
                "run.sh has no test arm for pack {pack}"
            );
        }
    }
}
