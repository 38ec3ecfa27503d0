//! Every anypop config under topologies/ is valid for the current config
//! format (as the lab tests localise them), and every clab file parses
//! and references only files that exist. Runs without root.

use std::path::Path;

use anypop_integration::lab::anypop::localize;
use anypop_integration::lab::netns::ClabFile;
use anypop_integration::lab::repo_root;

fn topology_dirs() -> Vec<std::path::PathBuf> {
    let mut dirs: Vec<_> = std::fs::read_dir(repo_root().join("topologies"))
        .expect("topologies/ exists")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs
}

#[test]
fn bgp_topologies_anypop_configs_are_valid() {
    let mut checked = 0;
    for dir in topology_dirs() {
        let Ok(entries) = std::fs::read_dir(dir.join("anypop")) else {
            continue;
        };
        for e in entries.flatten() {
            let path = e.path();
            if path.extension().and_then(|x| x.to_str()) != Some("yaml") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let cfg = anypop::config::parse(&localize(&text, Path::new("/tmp/lab")))
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert!(
                !cfg.bgp.peers.is_empty(),
                "{}: no BGP peers",
                path.display()
            );
            assert!(
                cfg.local_pop().is_some(),
                "{}: node.pop unset",
                path.display()
            );
            checked += 1;
        }
    }
    assert!(checked >= 4, "only {checked} anypop configs found");
}

#[test]
fn bgp_topologies_clab_files_parse_and_bind_existing_files() {
    let mut checked = 0;
    for dir in topology_dirs() {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let clab = dir.join(format!("{name}.clab.yml"));
        let text =
            std::fs::read_to_string(&clab).unwrap_or_else(|e| panic!("{}: {e}", clab.display()));
        let topo = ClabFile::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", clab.display()));
        assert_eq!(topo.name, name, "{}", clab.display());
        assert!(!topo.links.is_empty());
        assert!(dir.join("README.md").exists(), "{name}: README.md missing");
        // Every bind source exists (relative to the topology dir).
        for line in text.lines() {
            let t = line.trim().trim_start_matches("- ");
            if let Some((src, dst)) = t.split_once(':') {
                if dst.starts_with("/etc/") && !src.contains(' ') {
                    assert!(dir.join(src).exists(), "{name}: bind source {src} missing");
                }
            }
        }
        checked += 1;
    }
    assert!(checked >= 3);
}
