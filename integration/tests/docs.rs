//! The README and `docs/` hold together: the README links every
//! `docs/*.md`, every relative link in them (and in containerlab's and the
//! topologies' READMEs) leads to an existing file (and
//! `#anchor` to an existing heading, slugged as GitHub does), and each
//! doc's "Contents" list names each of its `##` sections. Reads files only:
//! no root, no network.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// README.md and every `docs/*.md`, sorted.
fn doc_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo().join("docs"))
        .expect("docs/ exists")
        .map(|e| e.expect("docs/ entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "docs/ has no .md files");
    files.insert(0, repo().join("README.md"));
    files
}

/// The other markdown pages of the repository: containerlab's and each
/// topology's README.
fn other_pages() -> Vec<PathBuf> {
    let mut files = vec![repo().join("containerlab/README.md")];
    let mut topologies: Vec<PathBuf> = std::fs::read_dir(repo().join("topologies"))
        .expect("topologies/ exists")
        .map(|e| e.expect("topologies/ entry").path().join("README.md"))
        .filter(|p| p.exists())
        .collect();
    topologies.sort();
    files.extend(topologies);
    files
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The text outside fenced code blocks, one entry per line (fenced lines
/// become empty so paragraphs stay apart).
fn prose_lines(text: &str) -> Vec<&str> {
    let mut in_fence = false;
    text.lines()
        .map(|line| {
            if line.trim_start().starts_with("```") {
                in_fence = !in_fence;
                return "";
            }
            if in_fence {
                ""
            } else {
                line
            }
        })
        .collect()
}

/// `(level, text)` of every ATX heading outside code blocks.
fn headings(text: &str) -> Vec<(usize, String)> {
    prose_lines(text)
        .into_iter()
        .filter_map(|line| {
            let level = line.chars().take_while(|&c| c == '#').count();
            let rest = line.get(level..)?;
            (level > 0 && rest.starts_with(' ')).then(|| (level, rest.trim().to_string()))
        })
        .collect()
}

/// GitHub's anchor for a heading: lower case, only letters, digits, `-`,
/// `_` and spaces kept, spaces turned into `-`.
fn slug(heading: &str) -> String {
    heading
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | ' '))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// Every anchor of a file, duplicates numbered `-1`, `-2`, ... as GitHub does.
fn anchors(text: &str) -> BTreeSet<String> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut out = BTreeSet::new();
    for (_, h) in headings(text) {
        let base = slug(&h);
        let n = seen.entry(base.clone()).or_insert(0);
        out.insert(if *n == 0 {
            base.clone()
        } else {
            format!("{base}-{n}")
        });
        *n += 1;
    }
    out
}

/// The targets of every inline link `[text](target)` outside code blocks
/// and code spans.
fn link_targets(text: &str) -> Vec<String> {
    let prose = prose_lines(text).join("\n");
    let mut targets = Vec::new();
    for paragraph in prose.split("\n\n") {
        // Drop code spans: every other backtick-delimited piece.
        let plain: String = paragraph
            .split('`')
            .enumerate()
            .filter(|(i, _)| i % 2 == 0)
            .map(|(_, s)| s)
            .collect::<Vec<_>>()
            .join("");
        let mut rest = plain.as_str();
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            let end = after.find(')').unwrap_or(after.len());
            targets.push(after[..end].trim().to_string());
            rest = &after[end..];
        }
    }
    targets
}

#[test]
fn slugs_follow_github() {
    assert_eq!(slug("`pops[].checks`"), "popschecks");
    assert_eq!(slug("REST API and `anypop ctl`"), "rest-api-and-anypop-ctl");
    assert_eq!(
        slug("Timing, hysteresis and defaults"),
        "timing-hysteresis-and-defaults"
    );
    let text = "# A\n## Metrics\n```\n## not a heading\n```\n### Metrics\n";
    let got: Vec<String> = anchors(text).into_iter().collect();
    assert_eq!(got, ["a", "metrics", "metrics-1"]);
    let links = link_targets("see [x](a.md#b) and `[y](not.md)`\n```\n[z](no.md)\n```\n");
    assert_eq!(links, ["a.md#b"]);
}

#[test]
fn readme_links_every_doc() {
    let readme = read(&repo().join("README.md"));
    let targets: BTreeSet<String> = link_targets(&readme)
        .into_iter()
        .map(|t| t.split('#').next().unwrap_or_default().to_string())
        .collect();
    for file in doc_files().iter().skip(1) {
        let name = file.file_name().expect("file name").to_string_lossy();
        let target = format!("docs/{name}");
        assert!(
            targets.contains(&target),
            "README.md does not link {target}"
        );
    }
}

#[test]
fn relative_links_and_anchors_resolve() {
    let mut problems = Vec::new();
    let mut checked = 0;
    for file in doc_files().into_iter().chain(other_pages()) {
        let text = read(&file);
        let dir = file.parent().expect("parent");
        let rel = file
            .strip_prefix(repo())
            .unwrap_or(&file)
            .display()
            .to_string();
        for target in link_targets(&text) {
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            let (path, anchor) = match target.split_once('#') {
                Some((p, a)) => (p, Some(a)),
                None => (target.as_str(), None),
            };
            let dest = if path.is_empty() {
                file.clone()
            } else {
                dir.join(path)
            };
            checked += 1;
            if !dest.exists() {
                problems.push(format!("{rel}: link {target}: no such file"));
                continue;
            }
            if let Some(anchor) = anchor {
                if dest.extension().is_none_or(|e| e != "md") {
                    problems.push(format!(
                        "{rel}: link {target}: anchor into a non-markdown file"
                    ));
                } else if !anchors(&read(&dest)).contains(anchor) {
                    problems.push(format!("{rel}: link {target}: no heading with that anchor"));
                }
            }
        }
    }
    assert!(checked > 50, "only {checked} relative links found");
    assert!(
        problems.is_empty(),
        "broken links:\n{}",
        problems.join("\n")
    );
}

#[test]
fn every_doc_section_is_in_its_contents() {
    let mut problems = Vec::new();
    for file in doc_files().iter().skip(1) {
        let text = read(file);
        let name = file.file_name().expect("file name").to_string_lossy();
        let lines = prose_lines(&text);
        let Some(start) = lines.iter().position(|l| *l == "## Contents") else {
            problems.push(format!("{name}: no \"## Contents\" section"));
            continue;
        };
        let contents: String = lines[start + 1..]
            .iter()
            .take_while(|l| !l.starts_with('#'))
            .copied()
            .collect::<Vec<_>>()
            .join("\n");
        let listed: BTreeSet<String> = link_targets(&contents)
            .into_iter()
            .filter_map(|t| t.strip_prefix('#').map(str::to_string))
            .collect();
        for (level, h) in headings(&text) {
            if level == 2 && h != "Contents" && !listed.contains(&slug(&h)) {
                problems.push(format!("{name}: section \"{h}\" missing from Contents"));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
