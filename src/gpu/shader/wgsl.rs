//! WGSL source assembly: the shared pieces under `shaders/common/` spliced into a kernel where it
//! says `//!include common/NAME.wgsl` (each piece once per kernel, however often it is asked for,
//! included pieces may include others), and the generated lines of `scan_vec4.wgsl`.

use thiserror::Error;

/// The line prefix that includes a shared piece (a WGSL comment, so that the kernel files stay
/// valid WGSL to editors and linters).
const INCLUDE: &str = "//!include ";

/// The shared pieces, by the name a kernel includes them with (their path under `shaders/`).
const PIECES: [(&str, &str); 8] = [
    (
        "common/helpers.wgsl",
        include_str!("../../../shaders/common/helpers.wgsl"),
    ),
    (
        "common/io_xwy.wgsl",
        include_str!("../../../shaders/common/io_xwy.wgsl"),
    ),
    (
        "common/matmul.wgsl",
        include_str!("../../../shaders/common/matmul.wgsl"),
    ),
    (
        "common/act_vec4.wgsl",
        include_str!("../../../shaders/common/act_vec4.wgsl"),
    ),
    (
        "common/layer_norm.wgsl",
        include_str!("../../../shaders/common/layer_norm.wgsl"),
    ),
    (
        "common/head_rows.wgsl",
        include_str!("../../../shaders/common/head_rows.wgsl"),
    ),
    (
        "common/scan.wgsl",
        include_str!("../../../shaders/common/scan.wgsl"),
    ),
    (
        "common/scan_stage.wgsl",
        include_str!("../../../shaders/common/scan_stage.wgsl"),
    ),
];

/// A kernel's source names a shared piece that does not exist.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("WGSL include `{0}` is not one of the shared pieces under shaders/common/")]
pub struct MissingInclude(pub String);

/// `src` with its include lines replaced by the pieces they name, recursively; a piece already
/// included (here or by an earlier piece) is left out the second time.
pub fn resolve_includes(src: &str) -> Result<String, MissingInclude> {
    resolve_with(src, &PIECES)
}

fn resolve_with(src: &str, pieces: &[(&str, &str)]) -> Result<String, MissingInclude> {
    let mut out = String::with_capacity(src.len() * 2);
    let mut seen = Vec::new();
    splice(src, pieces, &mut seen, &mut out)?;
    Ok(out)
}

fn splice<'a>(
    src: &str,
    pieces: &[(&'a str, &'a str)],
    seen: &mut Vec<&'a str>,
    out: &mut String,
) -> Result<(), MissingInclude> {
    for line in src.lines() {
        let Some(name) = line.trim().strip_prefix(INCLUDE) else {
            out.push_str(line);
            out.push('\n');
            continue;
        };
        let name = name.trim();
        let &(key, text) = pieces
            .iter()
            .find(|(n, _)| *n == name)
            .ok_or_else(|| MissingInclude(name.to_string()))?;
        if !seen.contains(&key) {
            seen.push(key);
            splice(text, pieces, seen, out)?;
        }
    }
    Ok(())
}

/// Sum of `terms` as a balanced tree (short dependency chains).
fn tree_sum(terms: &[String]) -> String {
    match terms {
        [] => "0.0".into(),
        [t] => t.clone(),
        _ => {
            let (a, b) = terms.split_at(terms.len() / 2);
            format!("({} + {})", tree_sum(a), tree_sum(b))
        }
    }
}

/// Expands the `// GENERATED:` lines of `scan_vec4.wgsl` for `nv` vec4 registers per state row.
pub fn expand_scan_vec4(src: &str, nv: u32) -> String {
    let idx: Vec<u32> = (0..nv).collect();
    let decl: String = idx
        .iter()
        .map(|q| format!("    var s{q} = vec4<f32>(0.0);\n"))
        .collect();
    let dots = |arr: u32| -> Vec<String> {
        idx.iter()
            .map(|q| format!("dot(s{q}, sh[o + {}u])", arr * nv + q))
            .collect()
    };
    let sa = format!("            let sa = {};\n", tree_sum(&dots(2)));
    let update: String = idx
        .iter()
        .map(|q| {
            format!(
                "            s{q} = s{q} * sh[o + {}u] + sa * sh[o + {}u] + vi * sh[o + {}u];\n",
                nv + q,
                3 * nv + q,
                4 * nv + q
            )
        })
        .collect();
    let y = format!("            let y = {};\n", tree_sum(&dots(0)));
    let store: String = idx
        .iter()
        .flat_map(|q| (0..4).map(move |c| format!("    state[so + {}u] = s{q}[{c}];\n", 4 * q + c)))
        .collect();
    let mut out = String::with_capacity(src.len() + 4096);
    for line in src.lines() {
        match line.trim() {
            "// GENERATED: state declarations" => out.push_str(&decl),
            "// GENERATED: sa" => out.push_str(&sa),
            "// GENERATED: update" => out.push_str(&update),
            "// GENERATED: y" => out.push_str(&y),
            "// GENERATED: state store" => out.push_str(&store),
            _ => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOY: [(&str, &str); 3] = [
        ("a.wgsl", "//!include b.wgsl\nfn a() {}\n"),
        ("b.wgsl", "fn b() {}\n"),
        (
            "c.wgsl",
            "//!include a.wgsl\n//!include b.wgsl\nfn c() {}\n",
        ),
    ];

    #[test]
    fn includes_resolve_recursively_once_each() {
        let src = "// kernel\n//!include c.wgsl\n  //!include a.wgsl  \nfn main() {}\n";
        let out = resolve_with(src, &TOY).unwrap();
        assert_eq!(
            out,
            "// kernel\nfn b() {}\nfn a() {}\nfn c() {}\nfn main() {}\n"
        );
        // no include: the source unchanged (but for a final newline)
        assert_eq!(resolve_with("fn x() {}", &TOY).unwrap(), "fn x() {}\n");
    }

    #[test]
    fn missing_include_is_an_error() {
        assert_eq!(
            resolve_with("//!include nope.wgsl\n", &TOY),
            Err(MissingInclude("nope.wgsl".into()))
        );
        // also when a piece names it
        let pieces = [("a.wgsl", "//!include gone.wgsl\n")];
        assert_eq!(
            resolve_with("//!include a.wgsl\n", &pieces),
            Err(MissingInclude("gone.wgsl".into()))
        );
    }

    #[test]
    fn shared_pieces_resolve_and_include_nothing_twice() {
        for (name, _) in PIECES {
            let out = resolve_includes(&format!("{INCLUDE}{name}\n{INCLUDE}{name}\n")).unwrap();
            assert!(!out.contains(INCLUDE), "{name}: {out}");
            // each piece's header comment appears once
            let first = out.lines().next().unwrap_or_default();
            assert_eq!(out.matches(first).count(), 1, "{name}");
        }
    }
}
